"""Connections to upstream identity providers (SPEC §2.2) as the login paths read them.

``/authorize`` and the callback read a connection (by id, by name, or the ones enabled for an
application) through a 30 s per-container cache: a warm container does not re-read it per
request. Every write in ``management/connections`` drops the whole cache in its own container
(:func:`forget_cached_connections`: by id, by name and the per-client enabled lists, SPEC §8);
other containers see a change within :data:`CONFIG_CACHE_SECONDS`. The records are the stored
dicts, as ``store/connections`` returns them (their fields: ``store.connections.Connection``).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

from chalicelib.secrets import connection_secret_name, secret_store
from chalicelib.settings import get_settings
from chalicelib.store import connections as store
from chalicelib.store.connections import Connection
from chalicelib.ttl_cache import TtlCache

# What an attribute map may contain (the Management API refuses anything else; claim mapping at
# login reads templates by the same rules): registered JWT/OIDC claims and the broker's own user
# fields are never targets, and ``${...}`` expressions read only these context values.
REGISTERED_CLAIMS = ("iss", "sub", "aud", "exp", "nbf", "iat", "jti", "nonce", "at_hash", "c_hash",
                     "s_hash", "azp", "auth_time", "sid", "acr", "amr", "cnf", "scope", "client_id",
                     "user_id", "identities", "created_at", "updated_at", "last_login",
                     "logins_count", "events")
TEMPLATE_PART = re.compile(r"\$\{([^}]*)\}")
TEMPLATE_EXPR = re.compile(
    # Claim names may be Auth0-style namespaced URLs (``https://example.com/roles``).
    r"^context\.(tokenset|userinfo)\.[A-Za-z0-9_:./\-]{1,128}$|^context\.connection\.(id|name|strategy)$"
)

CONFIG_CACHE_SECONDS = 30
_config_cache = TtlCache(CONFIG_CACHE_SECONDS)


def connection_record(connection_id: str) -> Connection | None:
    if not isinstance(connection_id, str) or not connection_id.startswith("con_") or len(
            connection_id) > 64:
        return None
    return store.get(connection_id)


def get_connection(connection_id: str) -> dict[str, Any] | None:
    return plain(connection_record(connection_id))


def get_connection_by_name(name: str) -> dict[str, Any] | None:
    if not isinstance(name, str) or not name or len(name) > 128:
        return None
    connection_id = store.id_for_name(name)
    return get_connection(connection_id) if connection_id else None


def enabled_connections_for(client_id: str) -> list[dict[str, Any]]:
    return [cast("dict[str, Any]", c) for c in store.list_all()
            if client_id in (c.get("enabled_clients") or [])]


def cached_connection(connection_id: str) -> dict[str, Any] | None:
    return _config_cache.get(("id", get_settings().table_name, connection_id),
                             lambda: get_connection(connection_id))


def cached_connection_by_name(name: str) -> dict[str, Any] | None:
    return _config_cache.get(("name", get_settings().table_name, name),
                             lambda: get_connection_by_name(name))


def known_connection_by_name(name: str, client_id: str | None = None) -> dict[str, Any] | None:
    """The connection record this container has cached under ``name`` (or among ``client_id``'s
    enabled connections, which ``/authorize`` caches), without a read: ``None`` when it has
    none."""
    table_name = get_settings().table_name
    record = _config_cache.peek(("name", table_name, name))
    if record is None and client_id:
        enabled = _config_cache.peek(("enabled", table_name, client_id)) or []
        record = next((c for c in enabled if c.get("name") == name), None)
    return record


def cached_enabled_connections_for(client_id: str) -> list[dict[str, Any]]:
    return _config_cache.get(("enabled", get_settings().table_name, client_id),
                             lambda: enabled_connections_for(client_id))


def forget_cached_connections() -> None:
    _config_cache.clear()


def plain(record: Connection | None) -> dict[str, Any] | None:
    """The record as the callers below type it: the login paths and logout still annotate a
    connection as a plain dict (which it is at run time). No copy, no conversion: only the static
    type changes."""
    return cast("dict[str, Any] | None", record)


def connection_secret(connection: Mapping[str, Any]) -> str | None:
    """The upstream client secret (cached by ``chalicelib.secrets``); only the login flow calls
    this."""
    if not connection.get("client_secret_set"):
        return None
    return secret_store().get(connection_secret_name(get_settings().secret_prefix,
                                                     connection["id"]))
