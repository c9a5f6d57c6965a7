"""Applications (OAuth clients): validation, secrets as salted hashes, storage (SPEC §2.3).

Deleting a client also deletes its grants and enablements and revokes its tokens:
chalicelib/cascades.py.
"""
from __future__ import annotations

import datetime as dt
import functools
import secrets as pysecrets
import string
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Optional, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.errors import InvalidBody, NotFound
from chalicelib.management.auth0_fields import JsonValue, fields_marked, inert, only, refused
from chalicelib.management.validation import check_stored_url, validate
from chalicelib.provider.cors import normalise_origin
from chalicelib.registry.clients import (  # noqa: F401  (the read side: old callers)
    CONFIG_CACHE_SECONDS,
    cached_client,
    forget_cached_clients,
    get_client,
    hash_secret,
    secret_matches,
)
from chalicelib.settings import get_settings
from chalicelib.store import clients as store
from chalicelib.store.clients import Client
from chalicelib.store.dynamo import ConditionFailed

ALNUM = string.ascii_letters + string.digits

AppType = Literal["regular_web", "spa", "native", "non_interactive"]
AuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]
GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]
PUBLIC_APP_TYPES = ("spa", "native")

DEFAULT_GRANTS = {
    "regular_web": ["authorization_code", "refresh_token"],
    "spa": ["authorization_code", "refresh_token"],
    "native": ["authorization_code", "refresh_token"],
    "non_interactive": ["client_credentials"],
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


JsonObject = Annotated[dict[str, Any], JsonValue]
Strings = Annotated[list[Annotated[str, Field(max_length=2048)]], Field(max_length=100)]
NOTIFIES_EVERY_LOGOUT = ("the broker notifies every listed URL whenever it ends a session "
                         "(RP-initiated logout, Global Token Revocation, user or session deletion)")


class LogoutInitiators(_Strict):
    mode: Annotated[Optional[str], only("all", why=NOTIFIES_EVERY_LOGOUT)] = None
    selected_initiators: Optional[list[Annotated[str, Field(max_length=64)]]] = inert(
        max_length=20)


class LogoutSessionMetadata(_Strict):
    include: Optional[bool] = inert()


class OidcLogout(_Strict):
    backchannel_logout_urls: list[str] = Field(default_factory=list, max_length=10)
    backchannel_logout_initiators: Optional[LogoutInitiators] = None
    backchannel_logout_session_metadata: Optional[LogoutSessionMetadata] = inert()


class RefreshTokenPolicy(_Strict):
    audience: str = Field(min_length=1, max_length=600)
    scope: list[Annotated[str, Field(max_length=280)]] = Field(max_length=200)


class RefreshTokenSettings(_Strict):
    rotation_type: Optional[Literal["rotating", "non-rotating"]] = None
    expiration_type: Optional[Literal["expiring", "non-expiring"]] = None
    token_lifetime: Optional[int] = Field(default=None, ge=1, le=31_557_600)
    idle_token_lifetime: Optional[int] = Field(default=None, ge=1, le=31_557_600)
    infinite_token_lifetime: Optional[bool] = None
    infinite_idle_token_lifetime: Optional[bool] = None
    leeway: Optional[int] = Field(default=None, ge=0, le=60)
    policies: Optional[list[RefreshTokenPolicy]] = inert(max_length=20)


SignedAlg = Annotated[Optional[str], only(
    "RS256", why="the broker signs ID tokens with RS256 only: HS256 would let anyone holding the "
                 "client secret forge them, and no other algorithm is offered")]


class JwtConfiguration(_Strict):
    lifetime_in_seconds: Optional[int] = Field(default=None, ge=60, le=86400)
    alg: SignedAlg = None
    secret_encoded: Optional[bool] = inert()
    scopes: Optional[JsonObject] = inert()


class SignedRequestObject(_Strict):
    required: Annotated[Optional[bool], only(
        False, why="the broker does not support signed request objects (JAR, RFC 9101)")] = None
    credentials: Optional[list[JsonObject]] = inert(max_length=0)


NO_PAR = Annotated[
    Optional[bool], *refused(False, why="the broker has no pushed authorization request endpoint "
                                        "(RFC 9126); it cannot require one")]
NO_DPOP = Annotated[
    Optional[bool], *refused(False, why="the broker does not bind tokens to a key (DPoP, mTLS); "
                                        "it cannot require proof of possession")]
NO_FAPI = Annotated[
    Optional[str], *refused("none", why="the broker implements no FAPI profile")]
NO_IP_HEADER = Annotated[
    Optional[bool], *refused(False, why="the broker never trusts a client-supplied IP header")]
NO_PROMPT = Annotated[
    Optional[bool], *refused(True, why="the broker shows no confirmation prompt for "
                                       "non-verifiable callback URIs (as with true)")]
NO_CLIENT_CREDENTIALS = Annotated[
    Optional[JsonObject], *refused(why="the broker authenticates applications with "
                                       "their client secret only (private_key_jwt and "
                                       "mTLS credentials would not be checked)")]
NO_ENCRYPTION = Annotated[
    Optional[JsonObject], *refused(why="the broker does not encrypt tokens or assertions")]
NO_QUOTA = Annotated[
    Optional[JsonObject], *refused(why="the broker enforces no per-client token quota")]
NO_VAULT_ACCESS = Annotated[
    Optional[JsonObject], *refused(why="the broker has no privileged token vault access")]
ORGANIZATIONS = Annotated[
    Optional[str], *refused("deny", "allow", why="the broker has no organizations: it cannot "
                                                 "require one")]
NOT_GLOBAL = Annotated[
    Optional[bool], *refused(False, why="applications at the broker are never global")]


class ClientFields(_Strict):
    # Acted on (SPEC §2.3).
    name: Optional[str] = Field(default=None, min_length=1, max_length=128)
    description: Optional[str] = Field(default=None, max_length=140)
    app_type: Optional[AppType] = None
    token_endpoint_auth_method: Optional[AuthMethod] = None
    callbacks: Optional[list[str]] = Field(default=None, max_length=100)
    allowed_logout_urls: Optional[list[str]] = Field(default=None, max_length=100)
    allowed_origins: Optional[list[str]] = Field(default=None, max_length=100)
    web_origins: Optional[list[str]] = Field(default=None, max_length=100)
    grant_types: Optional[list[GrantType]] = Field(default=None, max_length=3)
    oidc_logout: Optional[OidcLogout] = None
    oidc_backchannel_logout: Optional[OidcLogout] = Field(
        default=None, description="Auth0's deprecated spelling of oidc_logout: read as it on "
                                  "input, never returned.")
    refresh_token: Optional[RefreshTokenSettings] = None
    jwt_configuration: Optional[JwtConfiguration] = None
    is_first_party: Optional[bool] = None
    logo_uri: Optional[str] = Field(default=None, max_length=2048)
    client_metadata: Optional[dict[str, str]] = Field(default=None, max_length=10)
    # Stored and echoed, not acted on (docs/AUTH0-COMPATIBILITY.md).
    oidc_conformant: Optional[bool] = inert("The broker always behaves as OIDC-conformant.")
    client_aliases: Optional[Strings] = inert()
    allowed_clients: Optional[Strings] = inert()
    session_transfer: Optional[JsonObject] = inert()
    sso: Optional[bool] = inert()
    sso_disabled: Optional[bool] = inert()
    cross_origin_authentication: Optional[bool] = inert()
    cross_origin_loc: Optional[str] = inert(max_length=2048)
    custom_login_page_on: Optional[bool] = inert()
    custom_login_page: Optional[str] = inert(max_length=65536)
    custom_login_page_preview: Optional[str] = inert(max_length=65536)
    form_template: Optional[str] = inert(max_length=65536)
    addons: Optional[JsonObject] = inert("No key may look like a secret.")
    mobile: Optional[JsonObject] = inert()
    initiate_login_uri: Optional[str] = inert(max_length=2048)
    native_social_login: Optional[JsonObject] = inert()
    fedcm_login: Optional[JsonObject] = inert()
    default_organization: Optional[JsonObject] = inert()
    organization_require_behavior: Optional[Literal[
        "no_prompt", "pre_login_prompt", "post_login_prompt"]] = inert()
    organization_discovery_methods: Optional[list[Literal["email", "organization_name"]]] = inert(
        max_length=2)
    token_exchange: Optional[JsonObject] = inert()
    par_request_expiry: Optional[int] = inert(ge=5, le=600)
    resource_server_identifier: Optional[str] = inert(max_length=600)
    identity_assertion_authorization_grant: Optional[JsonObject] = inert()
    third_party_security_mode: Optional[Literal["strict", "permissive"]] = inert()
    redirection_policy: Optional[Literal["allow_always", "open_redirect_protection"]] = inert()
    express_configuration: Optional[JsonObject] = inert()
    my_organization_configuration: Optional[JsonObject] = inert()
    async_approval_notification_channels: Optional[JsonObject] = inert()
    # Accepted only with the value that asks for nothing the broker does not do.
    organization_usage: ORGANIZATIONS = None
    require_pushed_authorization_requests: NO_PAR = None
    require_proof_of_possession: NO_DPOP = None
    compliance_level: NO_FAPI = None
    is_token_endpoint_ip_header_trusted: NO_IP_HEADER = None
    skip_non_verifiable_callback_uri_confirmation_prompt: NO_PROMPT = None
    signed_request_object: Optional[SignedRequestObject] = None
    client_authentication_methods: NO_CLIENT_CREDENTIALS = None
    encryption_key: NO_ENCRYPTION = None
    token_quota: NO_QUOTA = None
    token_vault_privileged_access: NO_VAULT_ACCESS = None

    @field_validator("client_metadata")
    @classmethod
    def _metadata(cls, value):
        for key, item in (value or {}).items():
            if not key:
                raise ValueError("client_metadata keys must not be empty")
            if len(key) > 255 or len(item) > 255:
                raise ValueError("client_metadata keys and values are at most 255 characters")
        return value


class ClientCreate(ClientFields):
    name: str = Field(min_length=1, max_length=128)


class ClientUpdate(ClientFields):
    # Read-only: what a GET returns, accepted back unchanged so GET -> PATCH works.
    client_id: Optional[str] = Field(default=None, max_length=128,
                                     json_schema_extra={"readOnly": True})
    created_at: Optional[str] = Field(default=None, max_length=64,
                                      json_schema_extra={"readOnly": True})
    updated_at: Optional[str] = Field(default=None, max_length=64,
                                      json_schema_extra={"readOnly": True})
    global_: NOT_GLOBAL = Field(default=None, alias="global")


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_client_id() -> str:
    return "".join(pysecrets.choice(ALNUM) for _ in range(32))


def new_client_secret() -> str:
    return pysecrets.token_urlsafe(48)


def _check_urls(urls: list[str] | None, what: str, *, native: bool, allow_loopback: bool) -> None:
    for url in urls or []:
        check_stored_url(url, field=what, allow_loopback_http=allow_loopback or native,
                         private_scheme=native)


def _check_origins(origins: list[str] | None, what: str, *, allow_loopback: bool) -> list[str]:
    """Browser origins (``scheme://host[:port]``) allowed to call the token endpoint with CORS, as
    Auth0's Allowed Origins / Allowed Web Origins. Exact origins only: no path, no wildcard."""
    from urllib.parse import urlsplit

    checked: list[str] = []
    for value in origins or []:
        check_stored_url(value, field=what, allow_loopback_http=allow_loopback)
        parts = urlsplit(value)
        normal = normalise_origin(f"{parts.scheme}://{parts.netloc}")
        if parts.path not in ("", "/") or parts.query or "?" in value or normal is None:
            raise InvalidBody(f"Payload validation error: '{what} must be origins "
                              f"(scheme://host[:port], no path)' on property {what}")
        if normal not in checked:
            checked.append(normal)
    return checked


def _resolve(merged: dict[str, Any]) -> Client:
    """Apply defaults and the cross-field rules; raise InvalidBody on a violation. Returns
    ``merged`` itself, now the record of a client (without its id, secret and dates)."""
    settings = get_settings()
    app_type = merged.get("app_type") or "regular_web"
    merged["app_type"] = app_type
    public = app_type in PUBLIC_APP_TYPES
    method = merged.get("token_endpoint_auth_method") or ("none" if public else "client_secret_post")
    if public and method != "none":
        raise InvalidBody("Payload validation error: 'spa and native applications are public: "
                          "token_endpoint_auth_method must be none' on property "
                          "token_endpoint_auth_method")
    if not public and method == "none":
        raise InvalidBody("Payload validation error: 'token_endpoint_auth_method none is only for "
                          "spa and native applications' on property token_endpoint_auth_method")
    merged["token_endpoint_auth_method"] = method
    grants = merged.get("grant_types")
    if grants is None:
        grants = list(DEFAULT_GRANTS[app_type])
    if len(set(grants)) != len(grants):
        raise InvalidBody("Payload validation error: 'grant_types must be unique' on property "
                          "grant_types")
    if public and "client_credentials" in grants:
        raise InvalidBody("Payload validation error: 'client_credentials needs a confidential "
                          "application' on property grant_types")
    merged["grant_types"] = grants
    native = app_type == "native"
    _check_urls(merged.get("callbacks"), "callbacks", native=native,
                allow_loopback=settings.allow_insecure_loopback)
    _check_urls(merged.get("allowed_logout_urls"), "allowed_logout_urls", native=native,
                allow_loopback=settings.allow_insecure_loopback)
    for what in ("allowed_origins", "web_origins"):
        merged[what] = _check_origins(merged.get(what), what,
                                      allow_loopback=settings.allow_insecure_loopback)
    logout = merged.get("oidc_logout") or {}
    _check_urls(logout.get("backchannel_logout_urls"), "oidc_logout.backchannel_logout_urls",
                native=False, allow_loopback=settings.allow_insecure_loopback)
    if merged.get("logo_uri"):
        _check_urls([merged["logo_uri"]], "logo_uri", native=False,
                    allow_loopback=settings.allow_insecure_loopback)
    refresh = dict(merged.get("refresh_token") or {})
    rotation = refresh.get("rotation_type") or ("rotating" if public else "non-rotating")
    if public and rotation != "rotating":
        raise InvalidBody("Payload validation error: 'public applications must rotate refresh "
                          "tokens' on property refresh_token.rotation_type")
    refresh["rotation_type"] = rotation
    if rotation == "rotating" and refresh.get("expiration_type") == "non-expiring":
        raise InvalidBody("Payload validation error: 'rotating refresh tokens must be expiring' "
                          "on property refresh_token.expiration_type")
    refresh.setdefault("expiration_type", "expiring")
    refresh.setdefault("token_lifetime", 2_592_000)
    refresh.setdefault("idle_token_lifetime", 1_296_000)
    if refresh["idle_token_lifetime"] > refresh["token_lifetime"]:
        raise InvalidBody("Payload validation error: 'idle_token_lifetime cannot exceed "
                          "token_lifetime' on property refresh_token.idle_token_lifetime")
    merged["refresh_token"] = refresh
    jwt_config = dict(merged.get("jwt_configuration") or {})
    jwt_config.setdefault("lifetime_in_seconds", 36000)
    jwt_config.setdefault("alg", "RS256")
    merged["jwt_configuration"] = jwt_config
    merged.setdefault("callbacks", [])
    merged.setdefault("allowed_logout_urls", [])
    merged["oidc_logout"] = {**logout,
                             "backchannel_logout_urls": logout.get("backchannel_logout_urls") or []}
    merged.setdefault("is_first_party", True)
    merged.setdefault("client_metadata", {})
    return cast(Client, merged)


INERT_FIELDS = fields_marked(ClientFields, "inert")
REFUSED_OTHERWISE_FIELDS = (*fields_marked(ClientFields, "refused-otherwise"),
                            "signed_request_object")
PUBLIC_FIELDS = (
    "client_id", "name", "description", "app_type", "token_endpoint_auth_method", "callbacks",
    "allowed_logout_urls", "allowed_origins", "web_origins", "grant_types", "oidc_logout",
    "refresh_token", "jwt_configuration",
    "is_first_party", "logo_uri", "client_metadata", "created_at", "updated_at",
    *INERT_FIELDS, *REFUSED_OTHERWISE_FIELDS,
)
READ_ONLY_FIELDS = ("client_id", "created_at", "updated_at", "global_")


def _deprecated_logout(data: dict) -> dict:
    """Auth0's deprecated ``oidc_backchannel_logout`` is read as ``oidc_logout``."""
    if "oidc_backchannel_logout" not in data:
        return data
    old = data.pop("oidc_backchannel_logout")
    if "oidc_logout" in data and data["oidc_logout"] != old:
        raise InvalidBody("Payload validation error: 'oidc_backchannel_logout and oidc_logout "
                          "disagree: give oidc_logout only' on property oidc_backchannel_logout")
    data["oidc_logout"] = old
    return data


def view(item: Mapping[str, Any], secret: str | None = None) -> dict[str, Any]:
    body = {k: item[k] for k in PUBLIC_FIELDS if k in item and item[k] is not None}
    if secret is not None:
        body["client_secret"] = secret
    return body


def _drops_cached_clients(write):
    """Run an administrator's write, then drop the login paths' cache (``registry/clients``) in
    this container (SPEC §8), also when the write failed half-way."""
    @functools.wraps(write)
    def wrapper(*args, **kwargs):
        try:
            return write(*args, **kwargs)
        finally:
            forget_cached_clients()
    return wrapper


@_drops_cached_clients
def create_client(body: dict) -> dict:
    data = _deprecated_logout(validate(ClientCreate, body).model_dump(exclude_none=True))
    record = _resolve(data)
    record["client_id"] = new_client_id()
    secret = None
    if record["token_endpoint_auth_method"] != "none":
        secret = new_client_secret()
        record["client_secret_hash"] = hash_secret(secret)
    record["created_at"] = record["updated_at"] = _now_iso()
    store.create(record)
    return view(record, secret)


def require_client(client_id: str) -> Client:
    item = store.get(client_id)
    if item is None:
        raise NotFound("The client does not exist", error_code="inexistent_client")
    return item


def client_is_active(client_id: str) -> bool:
    settings = get_settings()
    if settings.admin_client_id and client_id == settings.admin_client_id:
        return True
    return get_client(client_id) is not None


def list_clients() -> list[dict[str, Any]]:
    # Typed as plain dicts for the callers (login/try_connection.py): the records are ``Client``s.
    return [cast("dict[str, Any]", client) for client in store.list_all()]


def _without_nulls(value):
    """In a PATCH, a null inside a settings object means "back to the default"."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


@_drops_cached_clients
def update_client(client_id: str, body: dict) -> dict:
    if isinstance(body, dict) and "name" in body and body["name"] is None:
        raise InvalidBody("Payload validation error: 'name cannot be removed' on property name")
    patch = {k: _without_nulls(v)
             for k, v in validate(ClientUpdate, body).model_dump(exclude_unset=True).items()}
    if patch.get("client_id") not in (None, client_id):
        raise InvalidBody("Payload validation error: 'client_id is read-only' on property "
                          "client_id")
    for field in READ_ONLY_FIELDS:  # a GET sent back: accepted unchanged, then ignored
        patch.pop(field, None)
    patch = _deprecated_logout(patch)
    current = require_client(client_id)
    merged = {k: v for k, v in current.items() if k in PUBLIC_FIELDS}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    was_public = current["app_type"] in PUBLIC_APP_TYPES
    if "app_type" in patch and "token_endpoint_auth_method" not in patch and (
        (patch["app_type"] in PUBLIC_APP_TYPES) != was_public
    ):
        merged.pop("token_endpoint_auth_method", None)
        merged.pop("grant_types", None) if "grant_types" not in patch else None
    record = _resolve(merged)
    record["client_id"] = client_id
    record["created_at"] = current.get("created_at")
    record["updated_at"] = _now_iso()
    secret = None
    if record["token_endpoint_auth_method"] == "none":
        record.pop("client_secret_hash", None)
    elif current.get("client_secret_hash"):
        record["client_secret_hash"] = current["client_secret_hash"]
    else:
        # Becoming confidential: it needs a secret, shown once, as on create.
        secret = new_client_secret()
        record["client_secret_hash"] = hash_secret(secret)
    try:
        store.replace(record)
    except ConditionFailed:
        raise NotFound("The client does not exist", error_code="inexistent_client") from None
    return view(record, secret)


@_drops_cached_clients
def rotate_secret(client_id: str) -> dict:
    current = require_client(client_id)
    if current.get("token_endpoint_auth_method") == "none":
        raise InvalidBody("Public applications have no client secret")
    secret = new_client_secret()
    try:
        updated = store.set_secret_hash(client_id, hash_secret(secret), _now_iso())
    except ConditionFailed:
        raise NotFound("The client does not exist", error_code="inexistent_client") from None
    return view(updated or current, secret)


@_drops_cached_clients
def delete_client_record(client_id: str) -> None:
    """The client's own item. Only :func:`chalicelib.cascades.delete_client` calls this, between
    removing what refers to the client and revoking its tokens."""
    store.delete(client_id)
