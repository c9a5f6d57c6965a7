"""Client grants: which scopes a machine client gets for an audience (SPEC §2.4)."""
from __future__ import annotations

import secrets as pysecrets
import string

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.errors import Conflict, InvalidBody, NotFound
from chalicelib.management.auth import MANAGEMENT_SCOPES
from chalicelib.management.validation import validate
from chalicelib.settings import get_settings
from chalicelib.store.dynamo import ConditionFailed, table

PK = "CLIENT_GRANTS"
KEY_PK = "CLIENT_GRANT_KEY"
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


def view(item: dict) -> dict:
    return {"id": item["id"], "client_id": item["client_id"], "audience": item["audience"],
            "scope": item.get("scope", [])}


def create_grant(body: dict) -> dict:
    from chalicelib.management.clients import require_client

    data = validate(GrantCreate, body)
    client = require_client(data.client_id)
    if client.get("token_endpoint_auth_method") == "none":
        raise InvalidBody("Public applications cannot get client grants")
    scopes = _check_scopes(data.audience, data.scope)
    grant_id = "cgr_" + "".join(pysecrets.choice(ALNUM) for _ in range(16))
    record = {"id": grant_id, "client_id": data.client_id, "audience": data.audience,
              "scope": scopes}
    unique_key = f"{data.client_id}|{data.audience}"
    try:
        table().transact([
            {"Put": {"Item": {"pk": KEY_PK, "sk": unique_key, "grant_id": grant_id},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Put": {"Item": {"pk": PK, "sk": grant_id, **record},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
    except ConditionFailed:
        raise Conflict("A client grant for this client and audience already exists",
                       error_code="client_grant_conflict") from None
    return view(record)


def list_grants(client_id: str | None = None, audience: str | None = None) -> list[dict]:
    found = []
    for item in table().query(PK):
        if client_id is not None and item["client_id"] != client_id:
            continue
        if audience is not None and item["audience"] != audience:
            continue
        found.append(view(item))
    return found


def require_grant(grant_id: str) -> dict:
    item = table().get(PK, grant_id) if grant_id and len(grant_id) <= 64 else None
    if item is None:
        raise NotFound("The client grant does not exist", error_code="inexistent_client_grant")
    return item


def update_grant(grant_id: str, body: dict) -> dict:
    data = validate(GrantUpdate, body)
    item = require_grant(grant_id)
    scopes = _check_scopes(item["audience"], data.scope)
    try:
        updated = table().update(PK, grant_id, "SET #s = :s", condition="attribute_exists(pk)",
                                 names={"#s": "scope"}, values={":s": scopes})
    except ConditionFailed:
        raise NotFound("The client grant does not exist",
                       error_code="inexistent_client_grant") from None
    return view(updated)


def delete_grant(grant_id: str) -> None:
    item = require_grant(grant_id)
    table().transact([
        {"Delete": {"Key": {"pk": PK, "sk": grant_id}}},
        {"Delete": {"Key": {"pk": KEY_PK, "sk": f"{item['client_id']}|{item['audience']}"}}},
    ])


def delete_grants_of_client(client_id: str) -> None:
    for grant in list_grants(client_id=client_id):
        delete_grant(grant["id"])


def scopes_for(client_id: str, audience: str) -> list[str] | None:
    """The scopes granted to ``client_id`` for ``audience``; None when there is no grant."""
    settings = get_settings()
    if settings.admin_client_id and client_id == settings.admin_client_id:
        return list(MANAGEMENT_SCOPES) if audience == settings.management_audience else None
    key = table().get(KEY_PK, f"{client_id}|{audience}")
    if key is None:
        return None
    item = table().get(PK, key["grant_id"])
    return item.get("scope", []) if item else None
