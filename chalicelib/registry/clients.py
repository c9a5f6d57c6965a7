"""Applications (OAuth clients, SPEC §2.3) as the login paths and the token endpoint read them.

``/authorize``, the callback and the token endpoint read an application through a 30 s
per-container cache. The token endpoint trusts the cached record only when the presented
credentials match it; otherwise a fresh read decides, so a newly rotated secret works at once
and every failed attempt is counted and throttled on fresh data (provider/client_auth.py). Every
write in ``management/clients`` drops the cache in its own container (:func:`forget_cached_clients`,
SPEC §8); other warm containers expire it within :data:`CONFIG_CACHE_SECONDS`, so there the
previous secret, or a deleted client's client-credentials grant, can still pass for up to that
long. A deleted client's codes and refresh tokens fail at once everywhere: deleting it revokes
its grants, and every redemption checks its grant inside its own transaction.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets as pysecrets
from typing import Any, cast

from chalicelib.settings import get_settings
from chalicelib.store import clients as store
from chalicelib.store.clients import Client
from chalicelib.ttl_cache import TtlCache

CONFIG_CACHE_SECONDS = 30
_client_cache = TtlCache(CONFIG_CACHE_SECONDS)


def get_client(client_id: str) -> dict[str, Any] | None:
    return plain(store.get(client_id))


def cached_client(client_id: str) -> dict[str, Any] | None:
    return _client_cache.get((get_settings().table_name, client_id), lambda: get_client(client_id))


def forget_cached_clients() -> None:
    _client_cache.clear()


def plain(record: Client | None) -> dict[str, Any] | None:
    """The record as the callers below type it: the login paths, back-channel logout and the
    token endpoint still annotate an application as a plain dict (which it is at run time). No
    copy, no conversion: only the static type changes. The record's fields: ``store.clients.Client``."""
    return cast("dict[str, Any] | None", record)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """Salted SHA-256. Client secrets are 384-bit random values, so a slow KDF adds nothing: there
    is no dictionary to attack, and a fast hash keeps client authentication cheap on Lambda."""
    salt = salt or pysecrets.token_bytes(16)
    digest = hashlib.sha256(salt + secret.encode()).hexdigest()
    return f"sha256${salt.hex()}${digest}"


def secret_matches(secret: str, stored: str | None) -> bool:
    if not stored or not isinstance(secret, str):
        return False
    try:
        _, salt_hex, _ = stored.split("$")
        expected = hash_secret(secret, bytes.fromhex(salt_hex))
    except ValueError:
        return False
    return hmac.compare_digest(expected, stored)
