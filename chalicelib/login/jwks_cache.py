"""Cached JWKS documents of upstream IdPs (SPEC §3.3 step 4, §8).

- A fetched key set is served for :data:`TTL_SECONDS` (1 hour).
- On an unknown ``kid`` the caller asks :meth:`JwksCache.refresh_for_unknown_kid`, which refetches at
  most once per :data:`MIN_REFETCH_SECONDS` (60 s) per URI, so a stream of forged ``kid`` values cannot
  turn the broker into a request amplifier against the IdP.
- When a refresh fails, the last good copy keeps serving for up to :data:`MAX_STALE_SECONDS` (24 h)
  and the failure is logged (never the key material); a login never fails only because a refresh did.
- A document must be a JSON object with a ``keys`` list. Keys that fail to import, of unknown type,
  or symmetric (``kty: oct``) are skipped: a public document can never hold a verification secret.
  Private parts an IdP publishes by mistake are dropped. The 128 KB size cap comes from
  :func:`chalicelib.netguard.safe_get`.
- Entries are keyed by the ``jwks_uri`` of a configured connection, never by request input, and the
  unknown-``kid`` refetch replaces only its own URI's entry: a flood of forged ``kid`` values for one
  connection cannot evict or refetch another's keys (SPEC §8). At most :data:`MAX_URIS` URIs are
  kept (URIs of connections since changed or deleted would otherwise stay for the container's
  life); past that the entry fetched longest ago gives way.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from joserfc.jwk import JWKRegistry, KeySet

from chalicelib.clock import now as wall_clock
from chalicelib.netguard import OutboundError, OutboundRefused, safe_get

__all__ = [
    "MAX_STALE_SECONDS",
    "MAX_URIS",
    "MIN_REFETCH_SECONDS",
    "TTL_SECONDS",
    "JwksCache",
    "JwksError",
    "JwksUnavailable",
    "jwks_cache",
    "parse_jwks",
]

log = logging.getLogger("chalicelib.login.jwks")

TTL_SECONDS = 3600
MIN_REFETCH_SECONDS = 60
MAX_STALE_SECONDS = 24 * 3600
MAX_URIS = 512
_ASYMMETRIC_KTY = frozenset({"RSA", "EC", "OKP"})


class JwksError(Exception):
    """A JWKS document could not be fetched or is not a valid key set (admin-readable message)."""


class JwksUnavailable(JwksError):
    """No usable key set for a URI: the fetch failed and no good copy younger than 24 h exists.

    A dependency failure, not a bad token: callers answer ``temporarily_unavailable``.
    """


def _host(uri: str) -> str:
    try:
        return urlsplit(uri).hostname or "?"
    except ValueError:
        return "?"


def parse_jwks(doc: Any, *, source: str = "?") -> KeySet:
    """Validate a JWKS document and import its usable public keys (see module docstring)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError(f"JWKS from {source} is not a JSON object with a 'keys' list")
    keys = []
    for index, data in enumerate(doc["keys"]):
        kty = data.get("kty") if isinstance(data, dict) else None
        if kty not in _ASYMMETRIC_KTY:
            # oct keys are never usable for verification; unknown types cannot be used either.
            log.warning("JWKS from %s: key #%d skipped (kty %r not usable)", source, index,
                        kty if isinstance(kty, str) and len(kty) <= 10 else "?")
            continue
        try:
            key = JWKRegistry.import_key(data)
            if key.is_private:
                log.warning("JWKS from %s: key #%d publishes private parts; they are dropped",
                            source, index)
                key = JWKRegistry.import_key(key.as_dict(private=False))
        except Exception as e:  # any malformed key is skipped, never fatal
            log.warning("JWKS from %s: key #%d (kty %s) skipped: import failed (%s)",
                        source, index, kty, type(e).__name__)
            continue
        keys.append(key)
    if not keys:
        raise JwksError(f"JWKS from {source} has no usable public key")
    return KeySet(keys)


def _describe(exc: BaseException) -> str:
    """A log-safe description of a fetch failure (our own messages name only host and reason)."""
    if isinstance(exc, (JwksError, OutboundError, OutboundRefused)):
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return type(exc).__name__


@dataclass
class _Entry:
    key_set: KeySet | None = None
    fetched_at: float | None = None  # last successful fetch
    attempted_at: float | None = None  # last fetch attempt, successful or not


NO_COPY_RETRY_SECONDS = 5


class JwksCache:
    def __init__(
        self,
        fetch: Callable[[str], dict] | None = None,
        clock: Callable[[], float] = wall_clock,
        *,
        allow_loopback: bool | None = None,
        ttl: float = TTL_SECONDS,
        min_refetch: float = MIN_REFETCH_SECONDS,
        max_stale: float = MAX_STALE_SECONDS,
        max_uris: int = MAX_URIS,
    ) -> None:
        """``fetch(uri) -> dict`` defaults to :func:`safe_get` + JSON; ``allow_loopback`` (for the
        default fetch) defaults to the settings' ``BROKER_ALLOW_INSECURE_LOOPBACK``, read per fetch."""
        self._fetch = fetch or self._default_fetch
        self._clock = clock
        self._allow_loopback = allow_loopback
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._max_stale = max_stale
        self._max_uris = max_uris
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # ------------------------------------------------------------------ public

    def key_set(self, jwks_uri: str) -> KeySet:
        """The key set for ``jwks_uri``: cached for an hour, then refetched; a failed refetch serves
        the last good copy (≤ 24 h old). Raises :class:`JwksUnavailable` when there is none."""
        now = self._clock()
        entry = self._entries.get(jwks_uri)
        if entry is not None and self._fresh(entry, now):
            return entry.key_set  # type: ignore[return-value]
        with self._lock_for(jwks_uri):
            entry = self._entry(jwks_uri)
            now = self._clock()
            if self._fresh(entry, now):
                return entry.key_set  # type: ignore[return-value]
            # Expired (or never fetched): refetch, but not more than once a minute after a failure
            # while a good copy still serves; with no copy at all, every login would fail, so
            # retry sooner (NO_COPY_RETRY_SECONDS) to recover quickly once the IdP is back.
            wait = self._min_refetch if entry.key_set is not None else min(
                self._min_refetch, NO_COPY_RETRY_SECONDS)
            if entry.attempted_at is None or now - entry.attempted_at >= wait:
                self._refresh(jwks_uri, entry, now)
            return self._usable(jwks_uri, entry, self._clock())

    def refresh_for_unknown_kid(self, jwks_uri: str) -> bool:
        """Refetch ``jwks_uri`` unless it was fetched (or tried) less than a minute ago.

        Returns True when a new key set was fetched. A failure is logged and the old copy kept."""
        with self._lock_for(jwks_uri):
            entry = self._entry(jwks_uri)
            now = self._clock()
            if entry.attempted_at is not None and now - entry.attempted_at < self._min_refetch:
                return False
            return self._refresh(jwks_uri, entry, now)

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()

    # ------------------------------------------------------------------ internals

    def _fresh(self, entry: _Entry, now: float) -> bool:
        return (
            entry.key_set is not None
            and entry.fetched_at is not None
            and 0 <= now - entry.fetched_at < self._ttl
        )

    def _usable(self, jwks_uri: str, entry: _Entry, now: float) -> KeySet:
        if (
            entry.key_set is not None
            and entry.fetched_at is not None
            and now - entry.fetched_at < self._max_stale
        ):
            return entry.key_set
        raise JwksUnavailable(f"no usable JWKS for {_host(jwks_uri)} (fetch failed, no recent good copy)")

    def _refresh(self, jwks_uri: str, entry: _Entry, now: float) -> bool:
        """Fetch and install a new key set; on failure log and keep the old one. Caller holds the lock."""
        entry.attempted_at = now
        try:
            key_set = parse_jwks(self._fetch(jwks_uri), source=_host(jwks_uri))
        except Exception as e:  # any failure keeps the last good copy
            if entry.key_set is not None and entry.fetched_at is not None:
                age = int(now - entry.fetched_at)
                log.warning("JWKS refresh for %s failed (%s); serving the last good copy (%d s old)",
                            _host(jwks_uri), _describe(e), age)
            else:
                log.warning("JWKS fetch for %s failed (%s); no good copy to serve",
                            _host(jwks_uri), _describe(e))
            return False
        entry.key_set = key_set
        entry.fetched_at = now
        return True

    def _entry(self, jwks_uri: str) -> _Entry:
        with self._guard:
            entry = self._entries.get(jwks_uri)
            if entry is None:
                while len(self._entries) >= self._max_uris:
                    oldest = min(self._entries, key=lambda uri: self._entries[uri].attempted_at or 0.0)
                    del self._entries[oldest]
                    self._locks.pop(oldest, None)
                entry = self._entries[jwks_uri] = _Entry()
            return entry

    def _lock_for(self, jwks_uri: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(jwks_uri)
            if lock is None:
                lock = self._locks[jwks_uri] = threading.Lock()
            return lock

    def _default_fetch(self, jwks_uri: str) -> dict:
        allow_loopback = self._allow_loopback
        if allow_loopback is None:
            from chalicelib.settings import get_settings

            allow_loopback = get_settings().allow_insecure_loopback
        response = safe_get(jwks_uri, allow_loopback=allow_loopback,
                            headers={"Accept": "application/json, application/jwk-set+json"})
        if response.status_code != 200:
            raise JwksError(f"JWKS endpoint {_host(jwks_uri)} answered HTTP {response.status_code}")
        try:
            doc = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise JwksError(f"JWKS from {_host(jwks_uri)} is not JSON") from None
        if not isinstance(doc, dict):
            raise JwksError(f"JWKS from {_host(jwks_uri)} is not a JSON object")
        return doc


_singleton: JwksCache | None = None
_singleton_lock = threading.Lock()


def jwks_cache() -> JwksCache:
    """The process-wide cache (one per Lambda container)."""
    global _singleton
    if _singleton is None:
        with _singleton_lock:
            if _singleton is None:
                _singleton = JwksCache()
    return _singleton
