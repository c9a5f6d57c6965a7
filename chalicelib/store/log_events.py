"""Log events (SPEC §9): one item per event, in one partition per UTC day.

``LOGS#{YYYY-MM-DD}`` / ``{log_id}``: a log id is 56 digits, ``900`` + the event's time in
milliseconds (16 digits) + 37 random digits, so ``sk`` order is time order and the id alone names
its partition (:func:`get` is one read). Events of a user also carry ``list_pk`` =
``LOGS_OF#{user_id}`` and ``list_sk`` = the log id, which puts them in the sparse, keys-only
``users`` index (the one that lists a connection's users): a user's events are one index query,
newest first, then one batch read. Items expire with ``ttl`` (the retention,
``BROKER_LOG_RETENTION_DAYS``).

A success that the request already writes in a transaction (a login, a code exchange, a refresh)
carries its event as one more :class:`~chalicelib.store.unit_of_work.Write` of that transaction
(:func:`put_operation`), so it costs no round trip; other events are one ``PutItem`` (:func:`put`).
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, TypedDict, cast

from chalicelib.store.dynamo import table
from chalicelib.store.unit_of_work import Write

PREFIX = "LOGS#"
USER_PREFIX = "LOGS_OF#"
INDEX = "users"
ID_DIGITS = 56
_HIDDEN = ("pk", "sk", "ttl", "list_pk", "list_sk")


class LogEvent(TypedDict, total=False):
    """An event in Auth0's log shape (``GET /api/v2/logs``)."""
    log_id: str
    date: str  # ISO 8601, UTC, milliseconds
    type: str  # Auth0's event code: s, f, seacft, ...
    description: str
    connection: str
    connection_id: str
    client_id: str
    client_name: str
    ip: str
    user_agent: str
    user_id: str
    user_name: str
    strategy: str
    strategy_type: str
    hostname: str
    details: dict[str, Any]


def new_log_id(epoch_ms: int) -> str:
    return f"900{epoch_ms:016d}{secrets.randbelow(10 ** 37):037d}"


LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: a later "time" is no date


def is_log_id(text: str) -> bool:
    return (len(text) == ID_DIGITS and text.isascii() and text.isdigit() and text.startswith("900")
            and int(text[3:19]) <= LAST_MS)


def day_of(log_id: str) -> str:
    """The UTC day (``YYYY-MM-DD``) of the event a log id names."""
    moment = datetime.fromtimestamp(int(log_id[3:19]) / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d")


def days_back(now: float, retention_days: int) -> list[str]:
    """The partitions that can hold live events, newest day first."""
    today = datetime.fromtimestamp(now, tz=timezone.utc)
    return [(today - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(retention_days + 1)]


def _item(event: LogEvent, expires_at: int) -> dict[str, Any]:
    log_id = event["log_id"]
    item: dict[str, Any] = {"pk": PREFIX + day_of(log_id), "sk": log_id, "ttl": expires_at,
                            **event}
    if event.get("user_id"):
        item["list_pk"] = USER_PREFIX + event["user_id"]
        item["list_sk"] = log_id
    return item


def _public(item: dict[str, Any]) -> LogEvent:
    return cast(LogEvent, {k: v for k, v in item.items() if k not in _HIDDEN})


def put_operation(event: LogEvent, expires_at: int) -> Write:
    """The event as one more write of a transaction the request makes anyway."""
    return Write.put(_item(event, expires_at))


def put(event: LogEvent, expires_at: int) -> None:
    table().put(_item(event, expires_at))


def get(log_id: str) -> LogEvent | None:
    if not is_log_id(log_id):
        return None
    item = table().get(PREFIX + day_of(log_id), log_id)
    return _public(item) if item else None


def newest_first(days: Iterable[str], *, before: str | None = None,
                 page_size: int = 100) -> Iterator[LogEvent]:
    """Events of these days (newest day first), newest first; ``before``: only older than that
    log id. The caller stops iterating when it has enough."""
    for day in days:
        if before is not None and day > day_of(before):
            continue
        bound = before if before is not None and day == day_of(before) else None
        for item in table().query(PREFIX + day, before=bound, descending=True,
                                  page_size=page_size):
            yield _public(item)


def oldest_first_after(days: Iterable[str], after: str, *, page_size: int = 100) -> Iterator[LogEvent]:
    """Events newer than the log id ``after``, oldest first (Auth0's checkpoint paging);
    ``days`` newest first as :func:`days_back` gives them."""
    start = day_of(after)
    for day in sorted(d for d in days if d >= start):
        bound = after if day == start else None
        for item in table().query(PREFIX + day, after=bound, page_size=page_size):
            yield _public(item)


def of_user(user_id: str, *, page_size: int = 100) -> Iterator[LogEvent]:
    """A user's events, newest first: the index gives keys, one batch read per page gives the
    events (an event already expired is left out)."""
    refs = table().query_index(INDEX, "list_pk", USER_PREFIX + user_id, descending=True,
                               page_size=page_size)
    while True:
        chunk = [(ref["pk"], ref["sk"]) for _, ref in zip(range(page_size), refs, strict=False)]
        if not chunk:
            return
        found = table().batch_get(chunk)
        for key in chunk:
            if key in found:
                yield _public(found[key])
        if len(chunk) < page_size:
            return
