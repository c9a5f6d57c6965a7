"""Secrets Manager behind a small interface, read through an in-memory cache.

SPEC §7: a warm request makes no Secrets Manager call, so values are cached for
``CACHE_SECONDS`` (≥ 5 min). Values never appear in logs, exceptions or reprs.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from chalicelib import aws
from chalicelib.clock import monotonic as monotonic_clock
from chalicelib.errors import ServiceUnavailable

log = logging.getLogger(__name__)

CACHE_SECONDS = 600


class SecretNotFound(Exception):
    pass


class SecretExists(Exception):
    pass


class _Cached:
    __slots__ = ("value", "expires")

    def __init__(self, value: str, expires: float):
        self.value = value
        self.expires = expires

    def __repr__(self) -> str:  # never show a secret
        return "<cached secret>"


class SecretStore:
    def __init__(self, client_factory: Callable = lambda: aws.client("secretsmanager"),
                 clock: Callable[[], float] = monotonic_clock):
        self._client_factory = client_factory
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self._rereads: dict[str, float] = {}  # name -> when it was last re-read past the cache
        self._reread_lock = threading.Lock()

    def _client(self):
        return self._client_factory()

    def get(self, name: str) -> str:
        """The secret's current value, from the cache when fresh."""
        cached = self._cache.get(name)
        now = self._clock()
        if cached is not None and cached.expires > now:
            return cached.value
        value = self._fetch(name)
        with self._lock:
            self._cache[name] = _Cached(value, now + CACHE_SECONDS)
        return value

    def reread(self, name: str, *, at_most_every: float) -> str:
        """The value fresh from Secrets Manager, past the cache (which then holds it), unless this
        name was re-read less than ``at_most_every`` seconds ago: then the cached value. Callers
        that input controls (an unknown ``kid``) cannot make more than one call per interval;
        concurrent callers wait for the re-read in progress and share its result."""
        with self._reread_lock:
            now = self._clock()
            last = self._rereads.get(name)
            if last is None or not 0 <= now - last < at_most_every:
                self._rereads[name] = now
                value = self._fetch(name)
                self._remember(name, value)
                return value
        return self.get(name)

    def _fetch(self, name: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._client().get_secret_value(SecretId=name)["SecretString"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ResourceNotFoundException", "InvalidRequestException"):
                # InvalidRequestException: the secret is scheduled for deletion.
                raise SecretNotFound(name) from None
            log.error("secrets manager get failed: %s", code)
            raise ServiceUnavailable("A dependency is temporarily unavailable") from None
        except BotoCoreError as exc:
            log.error("secrets manager unreachable: %s", type(exc).__name__)
            raise ServiceUnavailable("A dependency is temporarily unavailable") from None

    def create(self, name: str, value: str, description: str = "") -> None:
        """Create a new secret; :class:`SecretExists` when another writer won the race."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client().create_secret(Name=name, SecretString=value, Description=description)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceExistsException":
                raise SecretExists(name) from None
            log.error("secrets manager create failed: %s", code)
            raise ServiceUnavailable("A dependency is temporarily unavailable") from None
        except BotoCoreError as exc:
            log.error("secrets manager unreachable: %s", type(exc).__name__)
            raise ServiceUnavailable("A dependency is temporarily unavailable") from None
        self._remember(name, value)

    def put(self, name: str, value: str, description: str = "") -> None:
        """Create the secret or store a new version of it (also restores one pending deletion)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            try:
                self.create(name, value, description)
                return
            except SecretExists:
                pass  # it exists: store a new version below
            try:
                self._client().put_secret_value(SecretId=name, SecretString=value)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "InvalidRequestException":
                    raise
                self._client().restore_secret(SecretId=name)
                self._client().put_secret_value(SecretId=name, SecretString=value)
        except ClientError as exc:
            log.error("secrets manager put failed: %s", exc.response.get("Error", {}).get("Code"))
            raise ServiceUnavailable("A dependency is temporarily unavailable") from None
        except BotoCoreError as exc:
            log.error("secrets manager unreachable: %s", type(exc).__name__)
            raise ServiceUnavailable("A dependency is temporarily unavailable") from None
        self._remember(name, value)

    def schedule_deletion(self, name: str, recovery_days: int = 7) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        with self._lock:
            self._cache.pop(name, None)
        try:
            self._client().delete_secret(SecretId=name, RecoveryWindowInDays=recovery_days)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ResourceNotFoundException", "InvalidRequestException"):
                return
            log.error("secrets manager delete failed: %s", code)
            raise ServiceUnavailable("A dependency is temporarily unavailable") from None
        except BotoCoreError as exc:
            log.error("secrets manager unreachable: %s", type(exc).__name__)
            raise ServiceUnavailable("A dependency is temporarily unavailable") from None

    def forget(self, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self._cache.clear()
            else:
                self._cache.pop(name, None)

    def _remember(self, name: str, value: str) -> None:
        with self._lock:
            self._cache[name] = _Cached(value, self._clock() + CACHE_SECONDS)


_store: SecretStore | None = None


def secret_store() -> SecretStore:
    global _store
    if _store is None:
        _store = SecretStore()
    return _store


def connection_secret_name(prefix: str, connection_id: str) -> str:
    return f"{prefix}connections/{connection_id}/client-secret"


def signing_keys_secret_name(prefix: str) -> str:
    return f"{prefix}signing-keys"
