"""Connections to upstream identity providers (SPEC §2.2): every key format and condition for them.

The connection lives at ``CONNECTIONS/{id}``; a lock item ``CONNECTION_NAME/{name}`` makes names
unique, both written in one transaction so concurrent creates have one winner. Its enabled
clients are a string set on the record, changed with ADD and DELETE so concurrent enablement
changes never overwrite each other. Every write below raises
:class:`~chalicelib.store.dynamo.ConditionFailed` when its condition does not hold.

:class:`Connection` (and :class:`ConnectionOptions`) list every field the item carries. They are
``TypedDict``s: at run time the record stays the plain dict DynamoDB returns, and the login paths
load no validation model to read it.
"""
from __future__ import annotations

from typing import Any, TypedDict, cast

from chalicelib.store.dynamo import ConditionFailed, table

PK = "CONNECTIONS"
NAME_PK = "CONNECTION_NAME"
ENABLED_CLIENTS = "enabled_clients"
_NEW = "attribute_not_exists(pk)"
_EXISTS = "attribute_exists(pk)"


class ConnectionOptions(TypedDict, total=False):
    """``options`` as stored: management/connections.py's ``resolve_options`` (never the upstream
    ``client_secret``, which lives in Secrets Manager; nor ``callback_url``, computed from the
    name)."""
    type: str  # "front_channel" | "back_channel"
    client_id: str
    discovery_url: str
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    end_session_endpoint: str
    scope: str  # space-separated, with openid
    connection_settings: dict[str, Any]  # {"pkce": "auto" | "S256" | "plain" | "disabled"}
    attribute_map: dict[str, Any]  # {"mapping_mode", "userinfo_scope", "attributes"}
    set_user_root_attributes: str  # "on_each_login" | "on_first_login" | "never_on_login"
    domain_aliases: list[str]
    icon_url: str
    upstream_params: dict[str, dict[str, str]]  # name -> {"value"} or {"alias"}
    token_endpoint_auth_method: str  # "client_secret_post" | "client_secret_basic" | "private_key_jwt"
    token_endpoint_jwtca_aud_format: str  # "token_endpoint" | "issuer"
    id_token_signed_response_algs: list[str]
    send_back_channel_nonce: bool
    token_storage: str  # "none" | "vault"
    token_retention_days: int
    token_exchange_clients: list[str]
    oidc_metadata: dict[str, Any]  # the discovery document, when discovery_url is set
    # Stored and echoed, not acted on (management/auth0_fields.py: inert).
    tenant_domain: str
    token_endpoint_auth_signing_alg: str
    pushed_authorization_request_endpoint: str
    id_token_session_expiry_supported: bool
    federated_connections_access_tokens: dict[str, Any]
    # Accepted only with the value that asks for nothing the broker does not do (``refused``).
    non_persistent_attrs: list[str]
    dpop_signing_alg: str
    enable_pushed_authorization_requests: bool


class Connection(TypedDict, total=False):
    """A connection as stored. ``id``, ``name``, ``strategy`` and ``options`` are always there;
    ``enabled_clients`` is absent when no client is enabled (a string set in DynamoDB: read back
    as a sorted list, written as a set)."""
    pk: str
    sk: str
    id: str
    name: str
    strategy: str  # "oidc"
    display_name: str
    show_as_button: bool
    is_domain_connection: bool
    realms: list[str]
    metadata: dict[str, str]
    options: ConnectionOptions
    client_secret_set: bool  # the upstream client secret is in Secrets Manager
    enabled_clients: list[str] | set[str]
    # Top-level Auth0 fields kept and echoed (``authentication`` only as {"active": true}).
    authentication: dict[str, Any]
    connected_accounts: dict[str, Any]
    cross_app_access_requesting_app: dict[str, Any]
    cross_app_access_resource_app: dict[str, Any]


def create(record: Connection) -> None:
    """The record (with ``id`` and ``name``) and its name lock; fails when the name is taken."""
    table().transact([
        {"Put": {"Item": {"pk": NAME_PK, "sk": record["name"], "connection_id": record["id"]},
                 "ConditionExpression": _NEW}},
        {"Put": {"Item": {"pk": PK, "sk": record["id"], **record}, "ConditionExpression": _NEW}},
    ])


def get(connection_id: str) -> Connection | None:
    return cast("Connection | None", table().get(PK, connection_id))


def id_for_name(name: str) -> str | None:
    lock = table().get(NAME_PK, name)
    return lock["connection_id"] if lock else None


def list_all() -> list[Connection]:
    return [cast(Connection, item) for item in table().query(PK)]


def update(connection_id: str, sets: dict[str, Any], enabled: list[str] | None) -> Connection:
    """Set the fields in ``sets`` and, unless ``enabled`` is None, replace the enabled clients
    (an empty list removes the set); fails when the connection is gone. Returns the record."""
    names, values, parts = {}, {}, []
    for index, (field, value) in enumerate(sets.items()):
        names[f"#f{index}"] = field
        values[f":v{index}"] = value
        parts.append(f"#f{index} = :v{index}")
    expression = "SET " + ", ".join(parts) if parts else ""
    if enabled is not None:
        names["#ec"] = ENABLED_CLIENTS
        if enabled:
            values[":ec"] = set(enabled)
            expression = (expression + ", " if expression else "SET ") + "#ec = :ec"
        else:
            expression = (expression + " " if expression else "") + "REMOVE #ec"
    updated = table().update(PK, connection_id, expression, condition=_EXISTS, names=names,
                             values=values or None)
    if updated is None:  # ALL_NEW: every update that happened returns the item
        raise ConditionFailed()
    return cast(Connection, updated)


def add_enabled_clients(connection_id: str, client_ids: set[str]) -> None:
    table().update(PK, connection_id, f"ADD {ENABLED_CLIENTS} :v", condition=_EXISTS,
                   values={":v": client_ids}, return_values="NONE")


def remove_enabled_clients(connection_id: str, client_ids: set[str]) -> None:
    table().update(PK, connection_id, f"DELETE {ENABLED_CLIENTS} :v", condition=_EXISTS,
                   values={":v": client_ids}, return_values="NONE")


def delete(connection_id: str, name: str) -> None:
    """The record and its name lock, in one transaction."""
    table().transact([
        {"Delete": {"Key": {"pk": PK, "sk": connection_id}}},
        {"Delete": {"Key": {"pk": NAME_PK, "sk": name}}},
    ])
