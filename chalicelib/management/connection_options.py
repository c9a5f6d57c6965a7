"""A connection's ``options``: their models, validation and discovery (SPEC §2.2).

:func:`resolve_options` turns the ``options`` of a create or PATCH body into the stored form
(``store.connections.ConnectionOptions``): endpoints filled from the provider's discovery
document, scopes, attribute map (its templates: ``management/claim_templates``), upstream
parameters, domains and ID token algorithms checked. The upstream ``client_secret`` is not part of
it (``management/connection_secrets``).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Optional, Union, cast

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.errors import InvalidBody
from chalicelib.management.auth0_fields import JsonValue, fields_marked, inert, only, refused
from chalicelib.management.claim_templates import check_attribute_templates
from chalicelib.management.validation import check_stored_url, payload_error
from chalicelib.settings import get_settings
from chalicelib.store import clients as client_records
from chalicelib.store.connections import ConnectionOptions
from chalicelib.tokens import ASYMMETRIC_ALGS

ALIASABLE = ("acr_values", "audience", "client_id", "display", "id_token_hint", "login_hint",
             "max_age", "prompt", "resource", "response_mode", "response_type", "ui_locales")
# Parameters the broker itself controls: letting upstream_params set them would break the
# protocol's own defences (state, nonce, PKCE, redirect URI).
PROTECTED_UPSTREAM_PARAMS = ("client_id", "redirect_uri", "response_type", "response_mode", "scope",
                             "state", "nonce", "code_challenge", "code_challenge_method",
                             "request", "request_uri", "client_secret", "code_verifier")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
ENDPOINT_FIELDS = ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint",
                   "end_session_endpoint")
METADATA_LIMIT = 128 * 1024
MAX_RETENTION_DAYS = 365
MAX_EXCHANGE_CLIENTS = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


JsonObject = Annotated[dict, JsonValue]


class UpstreamParam(_Strict):
    value: Optional[str] = Field(default=None, max_length=255)
    alias: Optional[Literal[ALIASABLE]] = None  # type: ignore[valid-type]


class AttributeMap(_Strict):
    mapping_mode: Literal["use_map", "bind_all", "basic_profile"] = "basic_profile"
    userinfo_scope: Optional[str] = Field(default=None, max_length=1024)
    attributes: Optional[dict[str, str]] = Field(default=None, max_length=100)


class ConnectionSettings(_Strict):
    pkce: Literal["auto", "S256", "plain", "disabled"] = "auto"


# Auth0's enum for client assertions (private_key_jwt): asymmetric only.
ASSERTION_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "ES256", "ES384")
NO_UPSTREAM_DPOP = Annotated[
    Optional[str], *refused(why="the broker does not use DPoP toward identity providers")]
NO_UPSTREAM_PAR = Annotated[
    Optional[bool], *refused(False, why="the broker does not push authorization requests "
                                        "(RFC 9126) to identity providers")]
KEEPS_ATTRIBUTES = Annotated[
    Optional[list[Annotated[str, Field(max_length=255)]]], *refused([], why=(
        "the broker keeps every mapped attribute in the user profile; it cannot leave some out"))]
AssertionAlg = Annotated[Optional[str], only(
    *ASSERTION_ALGS, why="client assertions are signed with an asymmetric key (the connection's "
                         "key sets the algorithm); never HMAC or none")]


class Options(_Strict):
    type: Literal["front_channel", "back_channel"] = "front_channel"
    discovery_url: Optional[str] = Field(default=None, max_length=2048)
    issuer: Optional[str] = Field(default=None, max_length=2048)
    authorization_endpoint: Optional[str] = Field(default=None, max_length=2048)
    token_endpoint: Optional[str] = Field(default=None, max_length=2048)
    jwks_uri: Optional[str] = Field(default=None, max_length=2048)
    userinfo_endpoint: Optional[str] = Field(default=None, max_length=2048)
    end_session_endpoint: Optional[str] = Field(default=None, max_length=2048)
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: Optional[str] = Field(default=None, min_length=1, max_length=700)
    scope: Optional[Union[str, list[str]]] = None
    scopes: Optional[Union[str, list[str]]] = None
    connection_settings: Optional[ConnectionSettings] = None
    attribute_map: Optional[AttributeMap] = None
    set_user_root_attributes: Literal["on_each_login", "on_first_login", "never_on_login"] = (
        "on_each_login")
    domain_aliases: Optional[list[str]] = Field(default=None, max_length=1000)
    icon_url: Optional[str] = Field(default=None, max_length=2048)
    upstream_params: Optional[dict[str, UpstreamParam]] = Field(default=None, max_length=50)
    token_endpoint_auth_method: Optional[Literal["client_secret_post", "client_secret_basic",
                                                 "private_key_jwt"]] = Field(
        default=None, description="Default client_secret_post.")
    id_token_signed_response_algs: Optional[list[str]] = Field(default=None, min_length=1,
                                                               max_length=10)
    # private_key_jwt: the client assertion's aud is the token endpoint (default) or the issuer.
    token_endpoint_jwtca_aud_format: Optional[Literal["token_endpoint", "issuer"]] = None
    send_back_channel_nonce: bool = True
    # The upstream token vault and the token exchange (SPEC §10; chalicelib/vault.py). Stored only
    # when given: absent means none, 30 days and no client.
    token_storage: Optional[Literal["none", "vault"]] = Field(
        default=None, description="vault: keep each user's upstream access, refresh and ID tokens "
                                  "(encrypted) for the token exchange. Default none.")
    token_retention_days: Optional[int] = Field(
        default=None, ge=1, le=MAX_RETENTION_DAYS,
        description="How long a user's vaulted tokens are kept after their last login or refresh. "
                    "Default 30.")
    token_exchange_clients: Optional[list[Annotated[str, Field(min_length=1, max_length=64)]]] = (
        Field(default=None, max_length=MAX_EXCHANGE_CLIENTS,
              description="The applications (client ids) allowed to exchange tokens through this "
                          "connection (RFC 8693). Each must exist."))
    # Read-only (SPEC §2.2): accepted so a GET → edit → PATCH round trip works, then ignored.
    oidc_metadata: Optional[dict] = None
    # Read-only too, but a value that differs from the real one is a mistake worth a 400: the
    # administrator may believe the broker will use it (check_read_only_options).
    callback_url: Optional[str] = Field(
        default=None, max_length=2048, json_schema_extra={"readOnly": True},
        description="Read-only: the connection's own redirect URI. Accepted unchanged (a GET "
                    "sent back by PATCH), refused when different.")
    # Stored and echoed, not acted on (docs/AUTH0-COMPATIBILITY.md).
    tenant_domain: Optional[str] = inert(max_length=255)
    token_endpoint_auth_signing_alg: AssertionAlg = inert(
        "The algorithm is the one of the connection's private_key_jwt key.")
    pushed_authorization_request_endpoint: Optional[str] = inert(max_length=2048)
    id_token_session_expiry_supported: Optional[bool] = inert()
    federated_connections_access_tokens: Optional[JsonObject] = inert(
        "The broker's own upstream token vault is token_storage.")
    # Accepted only with the value that asks for nothing the broker does not do.
    non_persistent_attrs: KEEPS_ATTRIBUTES = None
    dpop_signing_alg: NO_UPSTREAM_DPOP = None
    enable_pushed_authorization_requests: NO_UPSTREAM_PAR = None


OPTION_EXTRAS = (*fields_marked(Options, "inert"), *fields_marked(Options, "refused-otherwise"))

_bad = payload_error


def _normalize_scope(options: Options) -> str:
    raw = options.scope if options.scope is not None else options.scopes
    if options.scope is not None and options.scopes is not None:
        if _split_scope(options.scope) != _split_scope(options.scopes):
            raise _bad("scope and scopes disagree: give one of them", "options.scope")
    if raw is None:
        return "openid profile email"
    parts = _split_scope(raw)
    if "openid" not in parts:
        raise _bad("scope must contain openid", "options.scope")
    if len(" ".join(parts)) > 1024:
        raise _bad("scope is too long", "options.scope")
    return " ".join(parts)


def _split_scope(raw: Union[str, list[str]]) -> list[str]:
    items = raw if isinstance(raw, list) else re.split(r"[\s,]+", raw)
    seen: list[str] = []
    for item in items:
        item = item.strip()
        if item and item not in seen:
            if not re.match(r"^[\x21\x23-\x5B\x5D-\x7E]+$", item):  # RFC 6749 §3.3 scope-token
                raise _bad(f"invalid scope value {item!r}", "options.scope")
            seen.append(item)
    return seen


def _check_url(value: str, where: str) -> str:
    return check_stored_url(value, field=where,
                            allow_loopback_http=get_settings().allow_insecure_loopback)


def check_read_only_options(options: Options, name: str) -> None:
    """``callback_url`` is computed from the name; sent back unchanged it is ignored."""
    if options.callback_url is not None and (
            options.callback_url != get_settings().connection_callback_url(name)):
        raise _bad("callback_url is read-only: it is the connection's own redirect URI",
                   "options.callback_url")


def _check_attribute_map(mapping: AttributeMap | None) -> dict:
    if mapping is None:
        return {"mapping_mode": "basic_profile"}
    result = mapping.model_dump(exclude_none=True)
    if mapping.userinfo_scope is not None:
        result["userinfo_scope"] = " ".join(
            _split_scope(mapping.userinfo_scope))
    check_attribute_templates(mapping.attributes)
    return result


def _check_upstream_params(params: dict[str, UpstreamParam] | None) -> dict | None:
    if not params:
        return None
    result = {}
    for name, param in params.items():
        where = f"options.upstream_params.{name}"
        if not re.match(r"^[A-Za-z0-9_.\-]{1,64}$", name):
            raise _bad("parameter names are letters, digits, _ . and -", where)
        if name in PROTECTED_UPSTREAM_PARAMS:
            raise _bad(f"{name} is set by the broker and cannot be overridden", where)
        if (param.value is None) == (param.alias is None):
            raise _bad("give exactly one of value or alias", where)
        result[name] = param.model_dump(exclude_none=True)
    return result


def _check_domains(domains: list[str] | None) -> list[str] | None:
    if domains is None:
        return None
    result = []
    for domain in domains:
        lowered = domain.strip().lower()
        if not DOMAIN.match(lowered):
            raise _bad(f"{domain!r} is not a domain name", "options.domain_aliases")
        if lowered not in result:
            result.append(lowered)
    return result


def _check_algs(algs: list[str] | None, metadata: dict | None) -> list[str]:
    if algs is None:
        found = ["RS256"]
        listed = (metadata or {}).get("id_token_signing_alg_values_supported") or []
        for alg in listed if isinstance(listed, list) else []:
            if alg in ASYMMETRIC_ALGS and alg not in found:
                found.append(alg)
        return found
    for alg in algs:
        if alg not in ASYMMETRIC_ALGS:
            raise _bad(f"algorithm {alg} is not allowed: only asymmetric algorithms "
                       f"({', '.join(ASYMMETRIC_ALGS)}); never none or HMAC",
                       "options.id_token_signed_response_algs")
    return list(dict.fromkeys(algs))


def _discover(options: Options, discovery_url: str) -> dict[str, Any]:
    # Cold start: discovery's HTTP stack (requests) loads only when a connection is written.
    from chalicelib.management.upstream_discovery import DiscoveryError, fetch_discovery

    _check_url(discovery_url, "options.discovery_url")
    try:
        document = fetch_discovery(
            discovery_url,
            allow_loopback=get_settings().allow_insecure_loopback,
            require_token_endpoint=options.type == "back_channel",
        )
    except DiscoveryError as exc:
        raise InvalidBody(f"Discovery failed: {exc}") from None
    return document


def resolve_options(options: Options, previous: Mapping[str, Any] | None) -> ConnectionOptions:
    """Validate options and fill endpoints from discovery: the stored form (no client_secret)."""
    metadata = None
    if options.discovery_url:
        if (previous is not None and previous.get("discovery_url") == options.discovery_url
                and previous.get("oidc_metadata")):
            metadata = previous["oidc_metadata"]
        else:
            metadata = _discover(options, options.discovery_url)
    resolved: dict[str, Any] = {"type": options.type, "client_id": options.client_id}
    if options.discovery_url:
        resolved["discovery_url"] = options.discovery_url
    issuer = options.issuer or (metadata or {}).get("issuer")
    if not issuer:
        raise _bad("issuer is required (give discovery_url or issuer)", "options.issuer")
    resolved["issuer"] = issuer if options.issuer is None else _check_issuer(options.issuer)
    for field in ENDPOINT_FIELDS:
        explicit = getattr(options, field)
        value = explicit if explicit is not None else (metadata or {}).get(field)
        if value is not None:
            if not isinstance(value, str):
                raise _bad(f"{field} must be a URL", f"options.{field}")
            resolved[field] = _check_url(value, f"options.{field}")
    for field in ("authorization_endpoint", "jwks_uri"):
        if field not in resolved:
            raise _bad(f"{field} is required (give discovery_url or {field})", f"options.{field}")
    if options.type == "back_channel" and "token_endpoint" not in resolved:
        raise _bad("token_endpoint is required for back_channel", "options.token_endpoint")
    if metadata is not None:
        supported = metadata.get("response_types_supported") or []
        wanted = "id_token" if options.type == "front_channel" else "code"
        if isinstance(supported, list) and wanted not in supported:
            raise _bad(f"the provider does not support response_type {wanted} needed by "
                       f"{options.type}", "options.type")
    resolved["scope"] = _normalize_scope(options)
    resolved["connection_settings"] = (options.connection_settings or ConnectionSettings()
                                       ).model_dump()
    resolved["attribute_map"] = _check_attribute_map(options.attribute_map)
    resolved["set_user_root_attributes"] = options.set_user_root_attributes
    domains = _check_domains(options.domain_aliases)
    if domains is not None:
        resolved["domain_aliases"] = domains
    if options.icon_url is not None:
        resolved["icon_url"] = _check_url(options.icon_url, "options.icon_url")
    params = _check_upstream_params(options.upstream_params)
    if params is not None:
        resolved["upstream_params"] = params
    resolved["token_endpoint_auth_method"] = (options.token_endpoint_auth_method
                                              or "client_secret_post")
    if options.token_endpoint_jwtca_aud_format is not None:  # validated by the model (Literal)
        resolved["token_endpoint_jwtca_aud_format"] = options.token_endpoint_jwtca_aud_format
    resolved["id_token_signed_response_algs"] = _check_algs(options.id_token_signed_response_algs,
                                                            metadata)
    resolved["send_back_channel_nonce"] = options.send_back_channel_nonce
    resolved.update(_vault_options(options))
    if metadata is not None:
        resolved["oidc_metadata"] = metadata
    for field in OPTION_EXTRAS:
        if getattr(options, field) is not None:
            resolved[field] = getattr(options, field)
    return cast(ConnectionOptions, resolved)


def _vault_options(options: Options) -> dict[str, Any]:
    """``token_storage``, ``token_retention_days`` (the model bounds them) and
    ``token_exchange_clients``: each an existing client, once."""
    found: dict[str, Any] = {}
    if options.token_storage is not None:
        found["token_storage"] = options.token_storage
    if options.token_retention_days is not None:
        found["token_retention_days"] = options.token_retention_days
    if options.token_exchange_clients is not None:
        unique = list(dict.fromkeys(options.token_exchange_clients))
        for client_id in unique:
            if client_records.get(client_id) is None:
                raise _bad(f"client {client_id} does not exist", "options.token_exchange_clients")
        found["token_exchange_clients"] = unique
    return found


def _check_issuer(issuer: str) -> str:
    _check_url(issuer, "options.issuer")
    if "?" in issuer:
        raise _bad("issuer must not contain a query", "options.issuer")
    return issuer


def needs_secret(options: ConnectionOptions) -> bool:
    return (options["type"] == "back_channel"
            and options["token_endpoint_auth_method"] in ("client_secret_post", "client_secret_basic"))
