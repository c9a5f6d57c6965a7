"""Log events (SPEC §9): what an administrator reads in ``GET /api/v2/logs``, Auth0's shape and
codes.

A flow builds an event with :func:`event` and hands it over in one of two ways:

- :func:`ride` — the request commits a transaction anyway (a login, a code exchange, a refresh):
  the event becomes one more write of it, no extra round trip;
- :func:`record` — anything else (every failure, logout, Management API writes): one ``PutItem``,
  best effort.

Either way the event is also one JSON line on the log (logger ``broker.events``, the event under
``log_event``), so a CloudWatch Logs subscription filter can stream events anywhere, and a storage
failure never fails the request. ``details`` carries the failed check or the upstream error code,
never a credential: :func:`clean_details` drops credential-named fields and blanks anything
shaped like a JWT.
"""
from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from chalicelib import clock
from chalicelib.store import log_events
from chalicelib.store.log_events import LogEvent
from chalicelib.store.unit_of_work import UnitOfWork

log = logging.getLogger("broker.events")
_errors = logging.getLogger("chalicelib.audit")

DESCRIPTIONS = {
    "s": "Successful login",
    "f": "Failed login",
    "seacft": "Successful exchange of Authorization Code for Access Token",
    "feacft": "Failed exchange of Authorization Code for Access Token",
    "sertft": "Successful exchange of Refresh Token for Access Token",
    "fertft": "Failed exchange of Refresh Token for Access Token",
    "seccft": "Successful exchange of Access Token for a Client Credentials Grant",
    "feccft": "Failed exchange of Access Token for a Client Credentials Grant",
    "slo": "Successful logout",
    "flo": "Failed logout",
    "sapi": "Success API Operation",
    "fapi": "Failed API Operation",
    "limit_wc": "Too many failed client authentications: the client is throttled",
    "sgtr": "Successful Global Token Revocation",
    "fgtr": "Failed Global Token Revocation",
    "sbcl": "Back-channel logout delivered",
    "fbcl": "Failed back-channel logout delivery",
    "stx": "Successful token exchange (RFC 8693)",
    "ftx": "Failed token exchange (RFC 8693)",
}
TYPES = frozenset(DESCRIPTIONS)

# Field names that may hold a credential: dropped from details wherever they appear.
_SECRET_NAMES = re.compile(
    r"token|secret|password|assertion|cookie|code_verifier|authorization|^code$|^state$|^nonce$"
    r"|private|^key$|credential|session_?id|^sid$",
    re.IGNORECASE,
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*")
MAX_TEXT = 300
MAX_FIELDS = 20
MAX_DEPTH = 3

_request: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "broker_request", default=None)


@contextmanager
def request_scope(**facts: Any) -> Iterator[dict[str, Any]]:
    """What the current request is (``request_id``, ``route``, ``ip``, ``user_agent``): events
    raised while it runs take ``ip`` and ``user_agent`` from it, and write back the
    ``connection``, ``client_id`` and ``user_id`` they name, for the request's own log line."""
    scope = {k: v for k, v in facts.items() if v is not None}
    token = _request.set(scope)
    try:
        yield scope
    finally:
        _request.reset(token)


def current() -> dict[str, Any]:
    """The current request's facts (empty outside a request)."""
    return _request.get() or {}


def _text(value: Any) -> str:
    return _JWT.sub("[redacted]", str(value))[:MAX_TEXT]


def clean_details(details: Mapping[str, Any] | None, depth: int = 0) -> dict[str, Any]:
    """``details`` fit to store and print: no credential-named field, no JWT-shaped text, short
    strings, a bounded size."""
    out: dict[str, Any] = {}
    for key, value in list((details or {}).items())[:MAX_FIELDS]:
        name = str(key)[:64]
        if _SECRET_NAMES.search(name) or value is None:
            continue
        if isinstance(value, bool) or isinstance(value, int):
            out[name] = value
        elif isinstance(value, Mapping):
            if depth + 1 < MAX_DEPTH:
                out[name] = clean_details(value, depth + 1)
        elif isinstance(value, (list, tuple, set, frozenset)):
            out[name] = [_text(v) for v in list(value)[:MAX_FIELDS]]
        else:
            out[name] = _text(value)
    return out


def event(type_: str, *, connection: Mapping[str, Any] | str | None = None,
          client: Mapping[str, Any] | None = None, client_id: str | None = None,
          user_id: str | None = None, user_name: str | None = None,
          details: Mapping[str, Any] | None = None, description: str | None = None) -> LogEvent:
    """An event of Auth0 type ``type_`` (a key of :data:`DESCRIPTIONS`). ``connection``: the
    connection's record (its ``name`` and ``id`` are used) or its name; ``client``: the
    application's record (``client_id`` and ``name``), or just ``client_id``."""
    if type_ not in TYPES:
        raise ValueError(f"unknown log event type {type_!r}")
    at = clock.now()
    request = current()
    record: dict[str, Any] = {
        "log_id": log_events.new_log_id(int(at * 1000)),
        "date": datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "type": type_,
        "description": _text(description) if description else DESCRIPTIONS[type_],
    }
    if isinstance(connection, Mapping):
        if connection.get("name"):
            record["connection"] = str(connection["name"])
        if connection.get("id"):
            record["connection_id"] = str(connection["id"])
    elif connection:
        record["connection"] = _text(connection)
    if record.get("connection"):
        record["strategy"] = "oidc"
        record["strategy_type"] = "enterprise"
    if client is not None:
        if client.get("client_id"):
            record["client_id"] = str(client["client_id"])
        if client.get("name"):
            record["client_name"] = _text(client["name"])
    if client_id and "client_id" not in record:
        record["client_id"] = _text(client_id)
    if user_id:
        record["user_id"] = _text(user_id)
    if user_name:
        record["user_name"] = _text(user_name)
    for field in ("ip", "user_agent", "hostname"):
        if request.get(field):
            record[field] = _text(request[field])
    record["details"] = clean_details(details)
    return record  # type: ignore[return-value]


def _expires_at(at: float) -> int:
    from chalicelib.settings import get_settings

    return int(at) + get_settings().log_retention_days * 86400


def _emit(entry: LogEvent, stored: bool) -> None:
    scope = _request.get()
    if scope is not None:
        for field in ("connection", "client_id", "user_id"):
            if entry.get(field):
                scope.setdefault(field, entry[field])
    log.info("log event %s: %s", entry["type"], entry["description"],
             extra={"log_event": dict(entry), "log_event_stored": stored})
    try:
        from chalicelib import metrics

        metrics.for_event(entry)
    except Exception:  # noqa: BLE001 - metrics never fail a request
        _errors.exception("log event metric failed")


def record(entry: LogEvent) -> None:
    """Store the event (one ``PutItem``) and log it; never raises."""
    stored = True
    try:
        log_events.put(entry, _expires_at(clock.now()))
    except Exception as exc:  # noqa: BLE001 - a log write never fails the request
        stored = False
        _errors.error("log event %s not stored: %s", entry.get("log_id"), type(exc).__name__)
    _emit(entry, stored)


def ride(operations: UnitOfWork, entry: LogEvent) -> None:
    """The event as one more write of ``operations``: stored and logged when it commits."""
    operations.ride(log_events.put_operation(entry, _expires_at(clock.now())),
                    lambda stored: _emit(entry, stored))
