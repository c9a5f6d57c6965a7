"""Client authentication at the token endpoint (RFC 6749 §2.3.1).

A client throttled for its failed authentications (SPEC §8) is a ``limit_wc`` log event (§9),
once per client and failure window in a container: the refused requests that follow in that
window add none, so a flood of them writes no more than it reads."""
from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from chalicelib import audit, clock
from chalicelib.errors import OAuthError
from chalicelib.settings import get_settings


@dataclass(frozen=True)
class AuthenticatedClient:
    client_id: str
    record: dict[str, Any] | None  # store.clients.Client; None for the bootstrap admin client
    method: str

    @property
    def grant_types(self) -> list[str]:
        if self.record is None:
            return ["client_credentials"]
        grant_types: list[str] = self.record.get("grant_types", [])
        return grant_types


THROTTLED = "too_many_requests"  # the OAuth error of a throttled client


def presented_client_id(form: Mapping[str, Any], authorization: str | None) -> str | None:
    """The client_id a request names (HTTP Basic or the body), for a log event about it; never
    raises, never returns the secret."""
    try:
        basic = _basic_credentials(authorization)
    except OAuthError:
        basic = None
    client_id = basic[0] if basic else form.get("client_id")
    return client_id if isinstance(client_id, str) and client_id else None


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client(basic=True) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _invalid_client(basic=True)
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return unquote_plus(client_id), unquote_plus(secret)


def _invalid_client(basic: bool) -> OAuthError:
    headers = {"WWW-Authenticate": 'Basic realm="broker"'} if basic else {}
    return OAuthError("invalid_client", "Client authentication failed", 401, headers)


def authenticate_client(form: dict[str, Any], authorization: str | None) -> AuthenticatedClient:
    basic = _basic_credentials(authorization)
    body_id, body_secret = form.get("client_id"), form.get("client_secret")
    if basic and body_secret is not None:
        raise OAuthError("invalid_request", "Use only one client authentication method")
    if basic:
        client_id, secret, method = basic[0], basic[1], "client_secret_basic"
        if body_id is not None and body_id != client_id:
            raise OAuthError("invalid_request", "client_id does not match the authenticated client")
    elif body_secret is not None:
        client_id, secret, method = body_id or "", body_secret, "client_secret_post"
    else:
        client_id, secret, method = body_id or "", None, "none"
    if not client_id or len(client_id) > 128:
        raise _invalid_client(basic=bool(basic))
    settings = get_settings()
    if settings.admin_client_id and hmac.compare_digest(client_id.encode(),
                                                        settings.admin_client_id.encode()):
        return _authenticate_admin(client_id, secret, method, bool(basic))
    from chalicelib.registry.clients import cached_client, get_client, secret_matches

    # The per-container client cache (SPEC §8: dropped by every administrator's write here, 30 s
    # elsewhere) answers a request whose credentials match it. Anything else is decided on a fresh
    # read: a secret rotated in another container works at once, and every failure is counted on,
    # and throttled by, the client's current item. A client with failures in this window (seen
    # here) is read fresh even with matching credentials, so while it is throttled a correct
    # secret gets the same 429 as a wrong one, as before: the throttle gives no guessing oracle.
    cached = cached_client(client_id)
    if (cached is not None and _accepts(cached, secret, method, secret_matches)
            and not _failed_recently(client_id)):
        _refuse_if_throttled(cached, client_id=client_id)
        return AuthenticatedClient(client_id, cached, method)
    record = get_client(client_id)
    if record is None:
        raise _invalid_client(basic=bool(basic))
    registered = record.get("token_endpoint_auth_method", "client_secret_post")
    if registered == "none":
        if secret is not None:
            raise _invalid_client(basic=bool(basic))
        return AuthenticatedClient(client_id, record, "none")
    if _failures_in_window(record):
        _remember_failure(client_id)
    _refuse_if_throttled(record, client_id=client_id)
    if method != registered or not secret_matches(secret or "", record.get("client_secret_hash")):
        _record_failure(client_id)
        raise _invalid_client(basic=bool(basic))
    return AuthenticatedClient(client_id, record, method)


def _accepts(record: Mapping[str, Any], secret: str | None, method: str,
             secret_matches: Callable[[str, str | None], bool]) -> bool:
    """The credentials authenticate this client record (its registered method, its secret)."""
    registered = record.get("token_endpoint_auth_method", "client_secret_post")
    if registered == "none":
        return secret is None
    return method == registered and secret_matches(secret or "", record.get("client_secret_hash"))


# SPEC §8: repeated failed client authentications for one client_id are slowed down. The counter
# lives on the client's own item (read fresh for every failure), in fixed windows, so a success
# costs nothing extra.
FAILURE_LIMIT = 10
FAILURE_WINDOW_SECONDS = 60


def _window(now: float) -> int:
    return int(now // FAILURE_WINDOW_SECONDS)


# Clients that failed authentication in this container, by the window of the failure: while it
# lasts they are read fresh even with matching credentials. Only existing clients get here (a
# failure is recorded after the client was read), so random names cannot bloat it.
_failures_seen: dict[str, int] = {}
MAX_FAILURES_SEEN = 1024


def _failures_in_window(record: Mapping[str, Any]) -> bool:
    from chalicelib.store.throttles import failures_in

    return failures_in(record, _window(clock.now())) > 0


def _remember_failure(client_id: str, window: int | None = None) -> None:
    window = _window(clock.now()) if window is None else window
    if len(_failures_seen) >= MAX_FAILURES_SEEN:
        for stale in [c for c, w in _failures_seen.items() if w != window]:
            del _failures_seen[stale]
        if len(_failures_seen) >= MAX_FAILURES_SEEN:
            _failures_seen.clear()
    _failures_seen[client_id] = window


def _failed_recently(client_id: str) -> bool:
    return _failures_seen.get(client_id) == _window(clock.now())


def _refuse_if_throttled(record: Mapping[str, Any] | None, now: float | None = None, *,
                         client_id: str) -> None:
    from chalicelib.store.throttles import failures_in

    now = clock.now() if now is None else now
    failures = failures_in(record, _window(now))
    if failures >= FAILURE_LIMIT:
        _throttle_event(client_id, record, failures, _window(now))
        retry_after = FAILURE_WINDOW_SECONDS - int(now % FAILURE_WINDOW_SECONDS)
        raise OAuthError(THROTTLED,
                         "Too many failed authentication attempts; try again later", 429,
                         {"Retry-After": str(max(retry_after, 1))})


# Clients whose throttling this container has logged, by window (bounded like _failures_seen).
_throttles_logged: dict[str, int] = {}


def _throttle_event(client_id: str, record: Mapping[str, Any] | None, failures: int,
                    window: int) -> None:
    """``limit_wc``, once per client and window here."""
    if _throttles_logged.get(client_id) == window:
        return
    if len(_throttles_logged) >= MAX_FAILURES_SEEN:
        _throttles_logged.clear()
    _throttles_logged[client_id] = window
    client = record if record is not None and record.get("client_id") == client_id else None
    audit.record(audit.event("limit_wc", client=client, client_id=client_id,
                             details={"failures": failures, "limit": FAILURE_LIMIT,
                                      "window_seconds": FAILURE_WINDOW_SECONDS}))


def _record_failure(client_id: str, now: float | None = None, *, admin: bool = False) -> None:
    """Count a failure on the client's item, or on the bootstrap admin client's own counter."""

    from chalicelib.store import throttles

    window = _window(clock.now() if now is None else now)
    if admin:
        throttles.count_admin_failure(client_id, window)
    else:
        _remember_failure(client_id, window)
        throttles.count_client_failure(client_id, window)


def _authenticate_admin(client_id: str, secret: str | None, method: str,
                        basic: bool) -> AuthenticatedClient:
    from chalicelib.secrets import SecretNotFound, secret_store
    from chalicelib.store.throttles import admin_counter

    if secret is None:
        raise _invalid_client(basic)
    _refuse_if_throttled(admin_counter(client_id), client_id=client_id)
    try:
        expected = secret_store().get(get_settings().admin_secret_name)
    except SecretNotFound:
        raise _invalid_client(basic) from None
    if not hmac.compare_digest(secret.encode(), expected.encode()):
        _record_failure(client_id, admin=True)
        raise _invalid_client(basic)
    return AuthenticatedClient(client_id, None, method)
