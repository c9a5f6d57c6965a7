"""Resource servers (APIs): validation and rules (SPEC §2.5). Keys live in store/resource_servers.

An API's ``identifier`` is the only audience, besides the Management API, that the broker mints
access tokens for. It can never be a client's ``client_id`` (a token with ``aud`` = another
application's id could pass for that application's own token) nor one of the broker's own
audiences (Management API, userinfo).
"""
from __future__ import annotations

import re
import secrets as pysecrets
from dataclasses import replace
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.errors import Conflict, InvalidBody, NotFound
from chalicelib.management.validation import validate
from chalicelib.registry.resource_servers import (  # noqa: F401  (read helpers: old callers)
    MAX_AUDIENCE_LENGTH,
    OIDC_SCOPES,
    cached_resource_server,
    forget_cached_resource_servers,
    token_scope,
)
from chalicelib.settings import get_settings
from chalicelib.store import resource_servers as store
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.store.resource_servers import ResourceServer

MAX_TOKEN_LIFETIME = 30 * 24 * 3600  # SPEC §2.5: at most 30 days
DEFAULT_TOKEN_LIFETIME = 86400
DEFAULT_TOKEN_LIFETIME_FOR_WEB = 7200
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]{1,280}$")
# Stored and echoed, not acted on (Auth0 round trips); each is limited to the value that asks
# for nothing the broker does not do.
INERT_FIELDS = ("token_dialect", "enforce_policies", "authorization_details",
                "subject_type_authorization", "allow_online_access",
                "allow_online_access_with_ephemeral_sessions")
READ_ONLY = ("id", "identifier")
PUBLIC_FIELDS = ("id", "identifier", "name", "scopes", "signing_alg", "token_lifetime",
                 "token_lifetime_for_web", "allow_offline_access",
                 "skip_consent_for_verifiable_first_party_clients", *INERT_FIELDS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ScopeDefinition(_Strict):
    value: str = Field(min_length=1, max_length=280)
    description: str = Field(default="", max_length=500)

    @field_validator("value")
    @classmethod
    def _token(cls, value: str) -> str:
        if not SCOPE_TOKEN.match(value):
            raise ValueError("scope values are printable ASCII without spaces, quotes or "
                             "backslashes (RFC 6749 §3.3)")
        if value in OIDC_SCOPES:
            raise ValueError(f"{value} is an OpenID Connect scope and cannot be defined by an API")
        return value


class PolicyUser(_Strict):
    # Only Auth0's default: a user-flow token needs no client grant (what the broker does).
    policy: Literal["allow_all"]


class PolicyClient(_Strict):
    # Only Auth0's default: client_credentials needs a client grant (what the broker does).
    policy: Literal["require_client_grant"]


class SubjectTypeAuthorization(_Strict):
    user: Optional[PolicyUser] = None
    client: Optional[PolicyClient] = None


class AuthorizationDetail(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str = Field(min_length=1, max_length=255)


class ResourceServerFields(_Strict):
    name: Optional[str] = Field(default=None, min_length=1, max_length=200)
    scopes: Optional[list[ScopeDefinition]] = Field(default=None, max_length=200)
    signing_alg: Optional[str] = Field(default=None, max_length=16)
    signing_secret: Optional[str] = None
    token_lifetime: Optional[int] = Field(default=None, ge=1, le=MAX_TOKEN_LIFETIME)
    token_lifetime_for_web: Optional[int] = Field(default=None, ge=1, le=MAX_TOKEN_LIFETIME)
    allow_offline_access: Optional[bool] = None
    skip_consent_for_verifiable_first_party_clients: Optional[bool] = None
    token_dialect: Optional[Literal["access_token", "rfc9068_profile"]] = None
    enforce_policies: Optional[bool] = None
    authorization_details: Optional[list[AuthorizationDetail]] = Field(default=None, max_length=50)
    subject_type_authorization: Optional[SubjectTypeAuthorization] = None
    # Accepted only as null (Terraform sends them so): anything else asks for a protection the
    # broker does not give, and is refused rather than silently ignored (SPEC §2.4).
    token_encryption: Optional[dict] = None
    consent_policy: Optional[str] = None
    proof_of_possession: Optional[dict] = None
    authorization_policy: Optional[dict] = None
    allow_online_access: Optional[bool] = None
    allow_online_access_with_ephemeral_sessions: Optional[bool] = None

    @field_validator("name")
    @classmethod
    def _name(cls, value):
        if value is not None and ("<" in value or ">" in value):
            raise ValueError("name cannot contain < or >")
        return value

    @field_validator("signing_alg")
    @classmethod
    def _alg(cls, value):
        # The broker signs every access token with its RS256 keys; HS256 would mean a shared
        # secret the API could also sign with.
        if value is not None and value != "RS256":
            raise ValueError(f"signing_alg {value} is not supported: access tokens are signed "
                             f"with RS256")
        return value

    @field_validator("signing_secret")
    @classmethod
    def _secret(cls, value):
        if value is not None:
            raise ValueError("signing_secret is not supported: access tokens are signed with "
                             "RS256")
        return value

    @field_validator("enforce_policies")
    @classmethod
    def _rbac(cls, value):
        if value:
            raise ValueError("enforce_policies (RBAC) is not supported")
        return value

    @field_validator("token_encryption", "consent_policy", "proof_of_possession",
                     "authorization_policy")
    @classmethod
    def _unsupported(cls, value, info):
        if value is not None:
            raise ValueError(f"{info.field_name} is not supported")
        return value

    @field_validator("scopes")
    @classmethod
    def _unique(cls, value):
        values = [s.value for s in value or []]
        if len(set(values)) != len(values):
            raise ValueError("scope values must be unique")
        return value


class ResourceServerCreate(ResourceServerFields):
    identifier: str = Field(min_length=1, max_length=MAX_AUDIENCE_LENGTH)


class ResourceServerUpdate(ResourceServerFields):
    # Read-only: accepted when unchanged, so a GET sent back by PATCH works.
    id: Optional[str] = Field(default=None, max_length=64, json_schema_extra={"readOnly": True})
    identifier: Optional[str] = Field(default=None, max_length=MAX_AUDIENCE_LENGTH,
                                      json_schema_extra={"readOnly": True})


def _not_found() -> NotFound:
    return NotFound("The resource server does not exist", error_code="inexistent_resource_server")


def _check_identifier(identifier: str) -> None:
    from chalicelib.management.clients import get_client

    settings = get_settings()
    if any(not c.isprintable() or c.isspace() for c in identifier):
        raise InvalidBody("Payload validation error: 'identifier must not contain whitespace or "
                          "control characters' on property identifier")
    if len(identifier.encode("utf-8")) > store.MAX_IDENTIFIER_BYTES:
        raise InvalidBody("Payload validation error: 'identifier is too long' on property "
                          "identifier")
    own = {settings.management_audience, settings.management_audience.rstrip("/"),
           settings.url("userinfo")}
    if identifier in own:
        raise InvalidBody("Payload validation error: 'identifier is one of the broker's own "
                          "audiences' on property identifier")
    if identifier == settings.admin_client_id or get_client(identifier) is not None:
        raise InvalidBody("Payload validation error: 'identifier cannot be a client_id' on "
                          "property identifier")


def _resolve(fields: dict) -> dict:
    """Defaults and cross-field rules on the merged fields (everything but id/identifier)."""
    lifetime = fields.get("token_lifetime") or DEFAULT_TOKEN_LIFETIME
    web = fields.get("token_lifetime_for_web") or min(DEFAULT_TOKEN_LIFETIME_FOR_WEB, lifetime)
    if web > lifetime:
        raise InvalidBody("Payload validation error: 'token_lifetime_for_web cannot exceed "
                          "token_lifetime' on property token_lifetime_for_web")
    return {
        "scopes": [{"value": s["value"], "description": s.get("description", "")}
                   for s in fields.get("scopes") or []],
        "signing_alg": "RS256",
        "token_lifetime": lifetime,
        "token_lifetime_for_web": web,
        "allow_offline_access": bool(fields.get("allow_offline_access", False)),
        "skip_consent_for_verifiable_first_party_clients": bool(
            fields.get("skip_consent_for_verifiable_first_party_clients", True)),
        "inert": {k: fields[k] for k in INERT_FIELDS if fields.get(k) is not None},
    }


def view(server: ResourceServer) -> dict:
    body: dict[str, Any] = {
        "id": server.id, "identifier": server.identifier, "name": server.name,
        "scopes": server.scopes, "signing_alg": server.signing_alg,
        "token_lifetime": server.token_lifetime,
        "token_lifetime_for_web": server.token_lifetime_for_web,
        "allow_offline_access": server.allow_offline_access,
        "skip_consent_for_verifiable_first_party_clients":
            server.skip_consent_for_verifiable_first_party_clients,
    }
    body.update(server.inert)
    return body


def create_resource_server(body: dict) -> dict:
    data = validate(ResourceServerCreate, body).model_dump(exclude_none=True)
    identifier = data.pop("identifier")
    _check_identifier(identifier)
    server = ResourceServer(id=pysecrets.token_hex(store.ID_LENGTH // 2), identifier=identifier,
                            name=data.get("name") or identifier, **_resolve(data))
    forget_cached_resource_servers()
    try:
        store.create(server)
    except ConditionFailed:
        raise Conflict("A resource server with this identifier already exists",
                       error_code="resource_server_conflict") from None
    return view(server)


def require_resource_server(server_id: str) -> ResourceServer:
    found = store.get_by_id(server_id)
    if found is None:
        raise _not_found()
    return found


def list_resource_servers() -> list[dict]:
    return [view(s) for s in store.list_all()]


def update_resource_server(server_id: str, body: dict) -> dict:
    if isinstance(body, dict) and "name" in body and body["name"] is None:
        raise InvalidBody("Payload validation error: 'name cannot be removed' on property name")
    patch = validate(ResourceServerUpdate, body).model_dump(exclude_unset=True)
    current = require_resource_server(server_id)
    for field in READ_ONLY:  # a GET sent back: accepted unchanged, refused when different
        if field in patch and patch.pop(field) != getattr(current, field):
            raise InvalidBody(f"Payload validation error: '{field} cannot be changed' on "
                              f"property {field}")
    merged = {k: v for k, v in view(current).items() if k not in READ_ONLY}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)  # null: back to the default
        else:
            merged[key] = value
    updated = replace(current, name=merged.get("name") or current.name, **_resolve(merged))
    forget_cached_resource_servers()
    try:
        store.replace(updated)
    except ConditionFailed:
        raise _not_found() from None
    return view(updated)


def delete_resource_server(server_id: str) -> None:
    """SPEC §2.5: no further tokens for it (token writes check it still exists); its client
    grants go too. Grants are swept before and after, so a grant created concurrently (its write
    checks the API exists) cannot survive it."""
    from chalicelib.management import grants

    server = require_resource_server(server_id)
    grants.delete_grants_of_audience(server.identifier)
    forget_cached_resource_servers()
    try:
        store.delete(server)
    except ConditionFailed:
        raise _not_found() from None
    grants.delete_grants_of_audience(server.identifier)

