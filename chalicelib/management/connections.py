"""Connections to upstream OpenID Connect providers: the connection itself and its storage (SPEC §2.2).

The body models, the view every route returns, and the writes (create, PATCH, delete, enabled
clients) with the cache they drop. Their parts live beside this module: ``options`` (models,
validation, discovery) in ``management/connection_options``, the claim-template grammar of the
attribute map in ``management/claim_templates``, the upstream ``client_secret`` (in Secrets
Manager only; the item records only *that* one is set) in ``management/connection_secrets``.
Storage (keys, name uniqueness, enabled clients) is chalicelib/store/connections.py. Deleting a
connection deletes its users first: chalicelib/cascades.py.
"""
from __future__ import annotations

import functools
import logging
import re
import secrets as pysecrets
import string
from collections.abc import Mapping
from typing import Annotated, Any, Optional, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.errors import Conflict, InvalidBody, NotFound
from chalicelib.management.auth0_fields import JsonValue, fields_marked, inert, only
from chalicelib.management.connection_keys import delete_keys
from chalicelib.management.connection_options import (  # noqa: F401  (importable from here)
    ALIASABLE,
    ASSERTION_ALGS,
    ASYMMETRIC_ALGS,
    DOMAIN,
    ENDPOINT_FIELDS,
    METADATA_LIMIT,
    OPTION_EXTRAS,
    PROTECTED_UPSTREAM_PARAMS,
    AttributeMap,
    ConnectionSettings,
    Options,
    UpstreamParam,
    check_read_only_options,
    needs_secret,
    resolve_options,
)
from chalicelib.management.connection_secrets import (
    put_upstream_secret,
    schedule_upstream_secret_deletion,
)
from chalicelib.management.validation import payload_error, validate
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
from chalicelib.settings import get_settings
from chalicelib.store import clients as client_records
from chalicelib.store import connections as store
from chalicelib.store.connections import Connection
from chalicelib.store.dynamo import ConditionFailed

log = logging.getLogger(__name__)

ALNUM = string.ascii_letters + string.digits
NAME_PATTERN = r"^[a-zA-Z0-9](-[a-zA-Z0-9]|[a-zA-Z0-9])*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


JsonObject = Annotated[dict, JsonValue]


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


TOP_LEVEL_EXTRAS = (*fields_marked(ConnectionFields, "refused-otherwise"),
                    *fields_marked(ConnectionFields, "inert"))
OPTIONS_SCOPE = "read:connections_options"

_bad = payload_error


def backchannel_logout_url(name: str) -> str:
    """Where the connection's IdP sends its logout tokens (SPEC §11): to register there."""
    return get_settings().url(f"login/backchannel-logout/{name}")


def view(item: Mapping[str, Any], scopes: frozenset[str] | set[str]) -> dict[str, Any]:
    """The connection as every route returns it: ``options`` only for a caller holding
    read:connections_options (SPEC §2.2), with the read-only ``callback_url`` and
    ``backchannel_logout_url`` added."""
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
                           "callback_url": get_settings().connection_callback_url(item["name"]),
                           "backchannel_logout_url": backchannel_logout_url(item["name"])}
    return body


def _without_backchannel_logout_url(body: Any) -> tuple[Any, Any]:
    """(the body without ``options.backchannel_logout_url``, the value sent). Read-only like
    ``callback_url``: a GET → edit → PATCH round trip sends it back unchanged, which is ignored;
    another value is a 400 (:func:`_check_backchannel_logout_url`), since an administrator who
    sets it may believe the IdP will call it. Taken out before validation, so the options model
    need not know it."""
    options = body.get("options") if isinstance(body, dict) else None
    if not isinstance(options, dict) or "backchannel_logout_url" not in options:
        return body, None
    options = dict(options)
    sent = options.pop("backchannel_logout_url")
    return {**body, "options": options}, sent


def _check_backchannel_logout_url(sent: Any, name: str) -> None:
    if sent is not None and sent != backchannel_logout_url(name):
        raise _bad("backchannel_logout_url is read-only: it is the connection's own back-channel "
                   "logout URL", "options.backchannel_logout_url")


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
    body, sent_logout_url = _without_backchannel_logout_url(body)
    data = validate(ConnectionCreate, body)
    if data.strategy != "oidc":
        raise _bad(f"strategy {data.strategy} is not supported: only oidc", "strategy")
    check_read_only_options(data.options, data.name)
    _check_backchannel_logout_url(sent_logout_url, data.name)
    options = resolve_options(data.options, None)
    secret = data.options.client_secret
    if needs_secret(options) and not secret:
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
            put_upstream_secret(connection_id, secret, data.name)
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
    body, sent_logout_url = _without_backchannel_logout_url(body)
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
        _check_backchannel_logout_url(sent_logout_url, current["name"])
        # PATCH replaces options as a whole (as Auth0 does), except that an absent
        # client_secret keeps the stored one instead of wiping it.
        options = resolve_options(data.options, current.get("options"))
        new_secret = data.options.client_secret
        has_secret = bool(new_secret) or current.get("client_secret_set", False)
        if needs_secret(options) and not has_secret:
            raise _bad("client_secret is required for back_channel with "
                       f"{options['token_endpoint_auth_method']}", "options.client_secret")
        sets["options"] = options
        if new_secret:
            sets["client_secret_set"] = True
    enabled = _check_enabled_clients(data.enabled_clients)
    if new_secret:
        put_upstream_secret(connection_id, new_secret, current["name"])
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
        schedule_upstream_secret_deletion(connection_id)
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
