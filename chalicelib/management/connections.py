"""Connections to upstream OpenID Connect providers: validation, discovery, storage (SPEC §2.2).

Storage (keys, name uniqueness, enabled clients) is chalicelib/store/connections.py. The upstream
``client_secret`` goes to Secrets Manager only; the item records only *that* one is set. Deleting
a connection deletes its users first: chalicelib/cascades.py.
"""
from __future__ import annotations

import functools
import logging
import re
import secrets as pysecrets
import string
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Optional, Union, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.errors import Conflict, InvalidBody, NotFound
from chalicelib.management.auth0_fields import JsonValue, fields_marked, inert, only, refused
from chalicelib.management.connection_keys import delete_keys
from chalicelib.management.validation import check_stored_url, validate
from chalicelib.registry.connections import (  # noqa: F401  (the read side: old callers)
    CONFIG_CACHE_SECONDS,
    REGISTERED_CLAIMS,
    TEMPLATE_EXPR,
    TEMPLATE_PART,
    cached_connection,
    cached_connection_by_name,
    cached_enabled_connections_for,
    connection_record,
    connection_secret,
    enabled_connections_for,
    forget_cached_connections,
    get_connection,
    get_connection_by_name,
)
from chalicelib.secrets import connection_secret_name, secret_store
from chalicelib.settings import get_settings
from chalicelib.store import clients as client_records
from chalicelib.store import connections as store
from chalicelib.store.connections import Connection, ConnectionOptions
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.tokens import ASYMMETRIC_ALGS

log = logging.getLogger(__name__)

ALNUM = string.ascii_letters + string.digits
NAME_PATTERN = r"^[a-zA-Z0-9](-[a-zA-Z0-9]|[a-zA-Z0-9])*$"

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


class Purpose(_Strict):
    active: bool
    cross_app_access: Optional[bool] = None
    allow_missing_user_id: Optional[bool] = None


class AuthenticationPurpose(_Strict):
    active: Annotated[bool, only(True, why="the broker always uses a connection to sign users "
                                           "in; disable it for applications instead")]


class ConnectionFields(_Strict):
    display_name: Optional[str] = Field(default=None, min_length=1, max_length=128)
    show_as_button: Optional[bool] = None
    is_domain_connection: Optional[bool] = None
    realms: Optional[list[str]] = Field(default=None, max_length=10)
    metadata: Optional[dict[str, str]] = Field(default=None, max_length=10)
    enabled_clients: Optional[list[str]] = Field(default=None, max_length=1000)
    options: Optional[Options] = None
    authentication: Optional[AuthenticationPurpose] = Field(
        default=None, json_schema_extra={"x-broker": "refused-otherwise"},
        description="Accepted only as {active: true}: the broker always uses a connection to "
                    "sign users in.")
    connected_accounts: Optional[Purpose] = inert()
    cross_app_access_requesting_app: Optional[JsonObject] = inert()
    cross_app_access_resource_app: Optional[JsonObject] = inert()

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value):
        for key, item in (value or {}).items():
            if not key or len(key) > 255:
                raise ValueError("metadata keys are 1 to 255 characters")
            if len(item) > 255:
                raise ValueError("metadata values are at most 255 characters")
        return value

    @field_validator("realms")
    @classmethod
    def _realms(cls, value):
        for realm in value or []:
            if not re.match(NAME_PATTERN, realm) or len(realm) > 128:
                raise ValueError("realms must be valid connection names")
        return value


class ConnectionCreate(ConnectionFields):
    name: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    strategy: str = Field(min_length=1, max_length=64)
    options: Options


class ConnectionUpdate(ConnectionFields):
    name: Optional[str] = None
    strategy: Optional[str] = None
    id: Optional[str] = Field(default=None, max_length=64, json_schema_extra={"readOnly": True},
                              description="Read-only: accepted when it is the connection's id.")


OPTION_EXTRAS = (*fields_marked(Options, "inert"), *fields_marked(Options, "refused-otherwise"))
TOP_LEVEL_EXTRAS = (*fields_marked(ConnectionFields, "refused-otherwise"),
                    *fields_marked(ConnectionFields, "inert"))


def _bad(message: str, where: str) -> InvalidBody:
    return InvalidBody(f"Payload validation error: '{message}' on property {where}")


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
    for target, template in (mapping.attributes or {}).items():
        where = f"options.attribute_map.attributes.{target}"
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", target):
            raise _bad("attribute names are letters, digits and _", where)
        if target in REGISTERED_CLAIMS:
            raise _bad(f"{target} is a registered claim and cannot be mapped", where)
        if len(template) > 1024:
            raise _bad("template is too long", where)
        for expression in TEMPLATE_PART.findall(template):
            if not TEMPLATE_EXPR.match(expression.strip()):
                raise _bad(f"unknown template expression ${{{expression}}}", where)
        if "${" in TEMPLATE_PART.sub("", template):
            raise _bad("template has an unclosed ${ expression", where)
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
    if metadata is not None:
        resolved["oidc_metadata"] = metadata
    for field in OPTION_EXTRAS:
        if getattr(options, field) is not None:
            resolved[field] = getattr(options, field)
    return cast(ConnectionOptions, resolved)


def _check_issuer(issuer: str) -> str:
    _check_url(issuer, "options.issuer")
    if "?" in issuer:
        raise _bad("issuer must not contain a query", "options.issuer")
    return issuer


def _needs_secret(options: ConnectionOptions) -> bool:
    return (options["type"] == "back_channel"
            and options["token_endpoint_auth_method"] in ("client_secret_post", "client_secret_basic"))


OPTIONS_SCOPE = "read:connections_options"


def view(item: Mapping[str, Any], scopes: frozenset[str] | set[str]) -> dict[str, Any]:
    """The connection as every route returns it: ``options`` only for a caller holding
    read:connections_options (SPEC §2.2), with the read-only ``callback_url`` added."""
    body = {
        "id": item["id"],
        "name": item["name"],
        "strategy": item["strategy"],
        "display_name": item.get("display_name", item["name"]),
        "show_as_button": item.get("show_as_button", False),
        "is_domain_connection": item.get("is_domain_connection", False),
        "realms": item.get("realms", [item["name"]]),
        "metadata": item.get("metadata", {}),
        "enabled_clients": sorted(item.get("enabled_clients") or []),
    }
    body.update({k: item[k] for k in TOP_LEVEL_EXTRAS if item.get(k) is not None})
    if OPTIONS_SCOPE in scopes:
        body["options"] = {**item.get("options", {}),
                           "callback_url": get_settings().connection_callback_url(item["name"])}
    return body


def _drops_cached_connections(write):
    """Run an administrator's write, then drop the login paths' cache (``registry/connections``:
    by id, by name and the per-client enabled lists) in this container (SPEC §8), also when the
    write failed half-way."""
    @functools.wraps(write)
    def wrapper(*args, **kwargs):
        try:
            return write(*args, **kwargs)
        finally:
            forget_cached_connections()
    return wrapper


def _check_enabled_clients(client_ids: list[str] | None) -> list[str] | None:
    if client_ids is None:
        return None
    unique = list(dict.fromkeys(client_ids))
    for client_id in unique:
        if client_records.get(client_id) is None:
            raise _bad(f"client {client_id} does not exist", "enabled_clients")
    return unique


def _top_level_extras(data: ConnectionFields) -> dict:
    return {field: data.model_dump(include={field}, exclude_none=True)[field]
            for field in TOP_LEVEL_EXTRAS if getattr(data, field) is not None}


@_drops_cached_connections
def create_connection(body: dict) -> Connection:
    """Create it; returns the stored record (shape it with ``view``)."""
    data = validate(ConnectionCreate, body)
    if data.strategy != "oidc":
        raise _bad(f"strategy {data.strategy} is not supported: only oidc", "strategy")
    check_read_only_options(data.options, data.name)
    options = resolve_options(data.options, None)
    secret = data.options.client_secret
    if _needs_secret(options) and not secret:
        raise _bad("client_secret is required for back_channel with "
                   f"{options['token_endpoint_auth_method']}", "options.client_secret")
    enabled = _check_enabled_clients(data.enabled_clients) or []
    connection_id = "con_" + "".join(pysecrets.choice(ALNUM) for _ in range(16))
    record = cast(Connection, {
        "id": connection_id,
        "name": data.name,
        "strategy": "oidc",
        "display_name": data.display_name or data.name,
        "show_as_button": bool(data.show_as_button),
        "is_domain_connection": bool(data.is_domain_connection),
        "realms": data.realms if data.realms is not None else [data.name],
        "metadata": data.metadata or {},
        "options": options,
        "client_secret_set": bool(secret),
        **_top_level_extras(data),
    })
    try:
        store.create({**record, "enabled_clients": set(enabled)} if enabled else record)
    except ConditionFailed:
        raise Conflict("A connection with the same name already exists",
                       error_code="connection_conflict") from None
    if secret:
        try:
            secret_store().put(connection_secret_name(get_settings().secret_prefix, connection_id),
                               secret, description=f"Upstream client secret of {data.name}")
        except Exception:
            # Nothing half-done: without its secret the connection must not exist.
            store.delete(connection_id, data.name)
            raise
    record["enabled_clients"] = enabled
    return record


def require_connection(connection_id: str) -> Connection:
    item = connection_record(connection_id)
    if item is None:
        raise NotFound("The connection does not exist", error_code="inexistent_connection")
    return item


def list_connections() -> list[Connection]:
    return store.list_all()


@_drops_cached_connections
def update_connection(connection_id: str, body: dict) -> Connection:
    """Apply a PATCH; returns the stored record (shape it with ``view``)."""
    data = validate(ConnectionUpdate, body)
    current = require_connection(connection_id)
    if data.name is not None and data.name != current["name"]:
        raise _bad("name cannot be changed", "name")
    if data.strategy is not None and data.strategy != current["strategy"]:
        raise _bad("strategy cannot be changed", "strategy")
    sets: dict[str, Any] = {}
    new_secret = None
    if data.display_name is not None:
        sets["display_name"] = data.display_name
    if data.id is not None and data.id != connection_id:
        raise _bad("id is read-only", "id")
    for field in ("show_as_button", "is_domain_connection", "realms", "metadata"):
        value = getattr(data, field)
        if value is not None:
            sets[field] = value
    sets.update(_top_level_extras(data))
    if data.options is not None:
        check_read_only_options(data.options, current["name"])
        # PATCH replaces options as a whole (as Auth0 does), except that an absent
        # client_secret keeps the stored one instead of wiping it.
        options = resolve_options(data.options, current.get("options"))
        new_secret = data.options.client_secret
        has_secret = bool(new_secret) or current.get("client_secret_set", False)
        if _needs_secret(options) and not has_secret:
            raise _bad("client_secret is required for back_channel with "
                       f"{options['token_endpoint_auth_method']}", "options.client_secret")
        sets["options"] = options
        if new_secret:
            sets["client_secret_set"] = True
    enabled = _check_enabled_clients(data.enabled_clients)
    if new_secret:
        secret_store().put(connection_secret_name(get_settings().secret_prefix, connection_id),
                           new_secret, description=f"Upstream client secret of {current['name']}")
    if sets or enabled is not None:
        try:
            current = store.update(connection_id, sets, enabled)
        except ConditionFailed:
            raise NotFound("The connection does not exist",
                           error_code="inexistent_connection") from None
    return current


@_drops_cached_connections
def delete_connection_records(connection: Mapping[str, Any]) -> None:
    """The connection's own items, its upstream secret and its private_key_jwt keys. Only
    :func:`chalicelib.cascades.delete_connection` calls this, once the connection's users are
    gone."""
    connection_id = connection["id"]
    store.delete(connection_id, connection["name"])
    if connection.get("client_secret_set"):
        secret_store().schedule_deletion(
            connection_secret_name(get_settings().secret_prefix, connection_id))
    delete_keys(connection_id)  # private_key_jwt keys (a no-op when it never had any)


class EnablementItem(_Strict):
    client_id: str = Field(min_length=1, max_length=128)
    status: bool


@_drops_cached_connections
def set_enabled_clients(connection_id: str, body: list) -> None:
    if not isinstance(body, list) or not 1 <= len(body) <= 50:
        raise InvalidBody("Payload validation error: 'expected an array of 1 to 50 items' on "
                          "property body")
    items = [validate(EnablementItem, entry) for entry in body]
    require_connection(connection_id)
    enable = {i.client_id for i in items if i.status}
    disable = {i.client_id for i in items if not i.status}
    if enable & disable:
        raise _bad("a client cannot be both enabled and disabled", "client_id")
    for client_id in enable:
        if client_records.get(client_id) is None:
            raise _bad(f"client {client_id} does not exist", "client_id")
    # DynamoDB refuses ADD and DELETE on one attribute in one update: two idempotent updates,
    # each atomic on the set, so concurrent enablement changes never overwrite each other.
    steps = []
    if enable:
        steps.append((store.add_enabled_clients, enable))
    if disable:
        steps.append((store.remove_enabled_clients, disable))
    for write, client_ids in steps:
        try:
            write(connection_id, client_ids)
        except ConditionFailed:
            raise NotFound("The connection does not exist",
                           error_code="inexistent_connection") from None


@_drops_cached_connections
def disable_client_everywhere(client_id: str) -> None:
    for item in list_connections():
        if client_id in (item.get("enabled_clients") or []):
            try:
                store.remove_enabled_clients(item["id"], {client_id})
            except ConditionFailed:
                continue
