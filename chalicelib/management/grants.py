"""Client grants: which scopes a machine client gets for an audience (SPEC §2.4)."""
from __future__ import annotations

import secrets as pysecrets
import string
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.errors import Conflict, InvalidBody, NotFound
from chalicelib.management.auth import MANAGEMENT_SCOPES
from chalicelib.management.validation import validate
from chalicelib.settings import get_settings
from chalicelib.store import client_grants as store
from chalicelib.store import resource_servers
from chalicelib.store.client_grants import ClientGrant
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.store.resource_servers import ResourceServer

ALNUM = string.ascii_letters + string.digits


class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    client_id: str = Field(min_length=1, max_length=128)
    audience: str = Field(min_length=1, max_length=600)
    scope: list[str] = Field(max_length=200)


class GrantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    scope: list[str] = Field(max_length=200)


def _check_scopes(audience: str, scopes: list[str]) -> list[str]:
    for scope in scopes:
        if not scope or len(scope) > 280 or any(c.isspace() for c in scope):
            raise InvalidBody("Payload validation error: 'scope values must be non-empty and "
                              "contain no whitespace' on property scope")
    if audience == get_settings().management_audience:
        unknown = sorted(set(scopes) - set(MANAGEMENT_SCOPES))
        if unknown:
            raise InvalidBody(f"Payload validation error: 'unknown Management API scope "
                              f"{unknown[0]}' on property scope")
    return sorted(set(scopes))


def _api_for(audience: str, scopes: list[str]) -> ResourceServer | None:
    """The registered API a grant is for (None for the Management API). Auth0 answers 404 for an
    unregistered audience; a grant may only carry scopes the API defines (SPEC §2.5)."""
    if audience == get_settings().management_audience:
        return None
    server = resource_servers.get_by_identifier(audience)
    if server is None:
        raise NotFound("The resource server does not exist",
                       error_code="inexistent_resource_server")
    unknown = sorted(set(scopes) - server.scope_values())
    if unknown:
        raise InvalidBody(f"Payload validation error: 'scope {unknown[0]} is not defined by the "
                          f"resource server' on property scope")
    return server


def view(item: ClientGrant) -> dict[str, Any]:
    return {"id": item["id"], "client_id": item["client_id"], "audience": item["audience"],
            "scope": item.get("scope", [])}


def create_grant(body: dict) -> dict:
    # Cold start: the token endpoint imports this module (scopes_for); the clients module and
    # its pydantic models load only when an administrator creates a grant.
    from chalicelib.management.clients import require_client

    data = validate(GrantCreate, body)
    client = require_client(data.client_id)
    if client.get("token_endpoint_auth_method") == "none":
        raise InvalidBody("Public applications cannot get client grants")
    scopes = _check_scopes(data.audience, data.scope)
    server = _api_for(data.audience, scopes)
    grant_id = "cgr_" + "".join(pysecrets.choice(ALNUM) for _ in range(16))
    record: ClientGrant = {"id": grant_id, "client_id": data.client_id, "audience": data.audience,
                           "scope": scopes}
    if server is not None:
        # Ties the grant to this registration: an API deleted and registered again under the
        # same identifier does not inherit grants that survived its deletion.
        record["resource_server_id"] = server.id
    # A grant cannot be written for an API being deleted at the same moment.
    checks = [] if server is None else [resource_servers.still_exists_check(server.identifier,
                                                                             server.id)]
    try:
        store.create(record, *checks)
    except ConditionFailed as exc:
        if server is not None and exc.reasons[-1:] == ["ConditionalCheckFailed"]:
            raise NotFound("The resource server does not exist",
                           error_code="inexistent_resource_server") from None
        raise Conflict("A client grant for this client and audience already exists",
                       error_code="client_grant_conflict") from None
    return view(record)


def list_grants(client_id: str | None = None, audience: str | None = None) -> list[dict]:
    found = []
    for item in store.list_all():
        if client_id is not None and item["client_id"] != client_id:
            continue
        if audience is not None and item["audience"] != audience:
            continue
        found.append(view(item))
    return found


def require_grant(grant_id: str) -> ClientGrant:
    item = store.get(grant_id)
    if item is None:
        raise NotFound("The client grant does not exist", error_code="inexistent_client_grant")
    return item


def update_grant(grant_id: str, body: dict) -> dict:
    data = validate(GrantUpdate, body)
    item = require_grant(grant_id)
    scopes = _check_scopes(item["audience"], data.scope)
    _api_for(item["audience"], scopes)
    try:
        updated = store.set_scope(grant_id, scopes)
    except ConditionFailed:
        raise NotFound("The client grant does not exist",
                       error_code="inexistent_client_grant") from None
    return view(updated)


def delete_grant(grant_id: str) -> None:
    store.delete(require_grant(grant_id))


def delete_grants_of_client(client_id: str) -> None:
    for grant in list_grants(client_id=client_id):
        delete_grant(grant["id"])


def delete_grants_of_audience(audience: str) -> None:
    for grant in list_grants(audience=audience):
        try:
            delete_grant(grant["id"])
        except NotFound:
            pass  # deleted concurrently


def grant_for(client_id: str, audience: str) -> ClientGrant | None:
    """The stored grant of ``client_id`` for ``audience`` (never the bootstrap admin's)."""
    return store.for_pair(client_id, audience)


def scopes_for(client_id: str, audience: str) -> list[str] | None:
    """The scopes granted to ``client_id`` for ``audience``; None when there is no grant."""
    settings = get_settings()
    if settings.admin_client_id and client_id == settings.admin_client_id:
        return list(MANAGEMENT_SCOPES) if audience == settings.management_audience else None
    item = grant_for(client_id, audience)
    return item.get("scope", []) if item else None
