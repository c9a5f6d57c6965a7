"""Reading log events back (SPEC §9): the subset of Auth0's log search syntax the broker answers,
and the two ways of paging through events that Auth0's ``GET /api/v2/logs`` offers.

``q`` (Auth0's Lucene syntax; auth0-python 6.x sends it as ``search``): ``field:value`` clauses
joined by ``AND`` or by a space (both mean AND, as in Auth0's log search), on ``type``,
``user_id``, ``client_id`` and ``connection`` (exact, case-sensitive matches; a value with spaces
or special characters is quoted, ``\\"`` and ``\\\\`` escaped inside quotes), and ``date`` (a
day ``2026-12-01``, or a range ``[A TO B]``, ``{A TO B}`` or a mix, each end a day, an ISO 8601
time or ``*``; a day as an inclusive upper end means the whole day). Anything else (OR, NOT,
wildcards, other fields) is refused with a 400 that names the part, never silently ignored.

Search paging (``page``/``per_page``) walks events newest first (``sort=date:1``: oldest first)
and reaches the first :data:`MAX_RESULTS` matches, as Auth0's does. Filters are applied while
the events stream in from the day partitions (``user_id`` reads the user's own index instead, a
``date`` range only its days), and a request examines at most :data:`MAX_SCANNED` events, so a
rare match far back may need a narrower ``date`` range. A search that stops there answers what
it found (Auth0's answer has no field to say more) and logs a warning line for the operator:
the query, the order, how many events it examined and the span of time they cover
(docs/OPERATIONS.md). Checkpoint paging (``from``/``take``) returns every event after a log id,
oldest first, by log id.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from chalicelib.errors import InvalidQueryString
from chalicelib.store import log_events
from chalicelib.store.log_events import LAST_MS, LogEvent

log = logging.getLogger(__name__)

FIELDS = ("type", "user_id", "client_id", "connection")
MAX_QUERY = 1024
MAX_CLAUSES = 10
MAX_VALUE = 1024  # bytes of UTF-8: a user_id becomes part of an index key (at most 2048 bytes)
MAX_RESULTS = 1000  # Auth0: "you may paginate only through 1,000 search results"
MAX_SCANNED = 5000  # events examined by one request
_SPECIAL = set('"()[]{}^~*?\\:')
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class LogQuery:
    """Exact matches on event fields, and an inclusive window of event times (epoch ms)."""
    equals: tuple[tuple[str, str], ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None

    @property
    def user_id(self) -> str | None:
        return next((value for field, value in self.equals if field == "user_id"), None)

    def matches(self, event: LogEvent) -> bool:
        if any(event.get(field) != value for field, value in self.equals):
            return False
        at = _event_ms(event)
        return ((self.since_ms is None or at >= self.since_ms)
                and (self.until_ms is None or at <= self.until_ms))

    def is_empty(self) -> bool:
        return (self.since_ms is not None and self.until_ms is not None
                and self.since_ms > self.until_ms)


def fits(value: str) -> bool:
    """Whether ``value`` can be searched for (not empty, at most :data:`MAX_VALUE` bytes)."""
    return 0 < len(value.encode("utf-8", "surrogatepass")) <= MAX_VALUE


def _event_ms(event: LogEvent) -> int:
    return int(event["log_id"][3:19])


def _error(part: str) -> InvalidQueryString:
    shown = part.strip()[:80] or "(empty)"
    return InvalidQueryString(
        f"Query validation error: unsupported part of q: '{shown}'. Supported: type:, user_id:, "
        f"client_id:, connection: (exact values, quoted when they hold spaces or special "
        f"characters) and date:[A TO B], joined by AND.")


# --- the q parser ----------------------------------------------------------------------------------

def parse(q: str) -> LogQuery:
    """``type:f AND client_id:"abc" date:[2026-12-01 TO *]`` → a :class:`LogQuery`."""
    if len(q) > MAX_QUERY:
        raise _error(q[:80])
    equals: list[tuple[str, str]] = []
    since: int | None = None
    until: int | None = None
    position, clauses, expect_clause = 0, 0, True
    while True:
        position = _skip_space(q, position)
        if position == len(q):
            if expect_clause:  # empty, or ends with AND
                raise _error(q[-20:])
            return LogQuery(tuple(equals), since, until)
        if q.startswith("AND", position) and _ends_word(q, position + 3):
            if expect_clause:  # leading AND, or AND AND
                raise _error(q[position:])
            position, expect_clause = position + 3, True
            continue
        start = position
        field, position = _field(q, position)
        if field == "date":
            (low, high), position = _date_value(q, position)
            # Several date clauses: their intersection.
            since = low if since is None else since if low is None else max(since, low)
            until = high if until is None else until if high is None else min(until, high)
        else:
            value, position = _value(q, position)
            equals.append((field, value))
        if position < len(q) and not q[position].isspace():
            raise _error(q[start:])
        clauses += 1
        if clauses > MAX_CLAUSES:
            raise InvalidQueryString(f"Query validation error: at most {MAX_CLAUSES} clauses "
                                     "in q")
        expect_clause = False


def _skip_space(q: str, position: int) -> int:
    while position < len(q) and q[position].isspace():
        position += 1
    return position


def _ends_word(q: str, position: int) -> bool:
    return position == len(q) or q[position].isspace()


def _field(q: str, position: int) -> tuple[str, int]:
    colon = q.find(":", position)
    name = q[position:colon] if colon != -1 else ""
    if name not in (*FIELDS, "date"):
        end = position
        while end < len(q) and not q[end].isspace():
            end += 1
        raise _error(q[position:end])
    return name, colon + 1


def _value(q: str, position: int) -> tuple[str, int]:
    """A quoted string (``\\"`` and ``\\\\`` escapes) or a bare word without special
    characters; never empty."""
    if position < len(q) and q[position] == '"':
        chars: list[str] = []
        index = position + 1
        while index < len(q):
            char = q[index]
            if char == "\\" and index + 1 < len(q):
                chars.append(q[index + 1])
                index += 2
                continue
            if char == '"':
                value = "".join(chars)
                if not fits(value):
                    raise _error(q[position:index + 1])
                return value, index + 1
            chars.append(char)
            index += 1
        raise _error(q[position:])  # unterminated quote
    end = position
    while end < len(q) and not q[end].isspace():
        end += 1
    value = q[position:end]
    if (not fits(value) or value[0] in "+-!"
            or any(c in _SPECIAL for c in value)):
        raise _error(q[position:end] or q[max(0, position - 20):position])
    return value, end


def _date_value(q: str, position: int) -> tuple[tuple[int | None, int | None], int]:
    """``[A TO B]`` / ``{A TO B}`` (either bracket at either end) or a single day; returns the
    inclusive window in epoch ms (``None``: open)."""
    if position < len(q) and q[position] in "[{":
        close = min((i for i in (q.find("]", position), q.find("}", position)) if i != -1),
                    default=-1)
        if close == -1:
            raise _error(q[position:])
        inner = q[position + 1:close].split()
        if len(inner) != 3 or inner[1] != "TO":
            raise _error(q[position:close + 1])
        low = _moment(inner[0], q[position:close + 1])
        high = _moment(inner[2], q[position:close + 1])
        since = None
        if low is not None:  # a day as an exclusive lower end: after the whole day
            since = low[0] if q[position] == "[" else low[1] + 1
        until = None
        if high is not None:  # a day as an exclusive upper end: before the day starts
            until = high[1] if q[close] == "]" else high[0] - 1
        return (since, until), close + 1
    end = position
    while end < len(q) and not q[end].isspace():
        end += 1
    text = q[position:end]
    day = _moment(text, text) if len(text) == 10 else None
    if day is None:
        raise _error(f"date:{text}")
    return day, end


def _moment(text: str, part: str) -> tuple[int, int] | None:
    """``*`` → None; a day → its first and last millisecond; an ISO 8601 time → that
    millisecond twice (a time without an offset is UTC)."""
    if text == "*":
        return None
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            start = max(int(day.timestamp() * 1000), 0)
            return start, min(start + _DAY_MS - 1, LAST_MS)
        if len(text) > 40 or "T" not in text:
            raise ValueError(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _error(part) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    # No event is older than 1970 or newer than year 9999 (an offset can reach past either).
    at = min(max(int(moment.timestamp() * 1000), 0), LAST_MS)
    return at, at


# --- finding events --------------------------------------------------------------------------------

def _bound_id(ms: int, *, high: bool) -> str:
    """The smallest (or largest) log id of a millisecond."""
    return f"900{max(ms, 0):016d}" + ("9" if high else "0") * 37


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def _candidates(query: LogQuery, days: list[str], *, newest_first: bool,
                page_size: int) -> Iterator[LogEvent]:
    """The events that may match, in order: the user's index for ``user_id``, else the day
    partitions (only those of the ``date`` window)."""
    if query.user_id is not None:
        events: Iterable[LogEvent] = log_events.of_user(query.user_id, page_size=page_size)
        if newest_first:
            yield from events
        else:  # the index reads newest first: gather (bounded), then turn around
            gathered = [e for _, e in zip(range(MAX_SCANNED), events, strict=False)]
            yield from reversed(gathered)
        return
    if query.since_ms is not None:
        days = [d for d in days if d >= _day(query.since_ms)]
    if query.until_ms is not None:
        days = [d for d in days if d <= _day(query.until_ms)]
    if not days:
        return
    if newest_first:
        before = (None if query.until_ms is None or query.until_ms >= LAST_MS
                  else _bound_id(query.until_ms + 1, high=False))
        yield from log_events.newest_first(days, before=before, page_size=page_size)
    else:
        oldest = int(datetime.strptime(days[-1], "%Y-%m-%d").replace(
            tzinfo=timezone.utc).timestamp() * 1000)
        since = oldest if query.since_ms is None else max(oldest, query.since_ms)
        yield from log_events.oldest_first_after(days, _bound_id(since - 1, high=True),
                                                 page_size=page_size)


def _past_window(query: LogQuery, event: LogEvent, newest_first: bool) -> bool:
    """Whether the events still to come are all outside the ``date`` window."""
    at = _event_ms(event)
    if newest_first:
        return query.since_ms is not None and at < query.since_ms
    return query.until_ms is not None and at > query.until_ms


def search(query: LogQuery, days: list[str], *, start: int, count: int, newest_first: bool = True,
           with_total: bool = False) -> tuple[list[LogEvent], int | None]:
    """The matching events ``start`` to ``start + count`` (within the first
    :data:`MAX_RESULTS`), and with ``with_total`` how many match (at most MAX_RESULTS).
    ``days``: the partitions that may hold live events, newest first."""
    end = min(start + count, MAX_RESULTS)
    wanted = MAX_RESULTS if with_total else end
    found: list[LogEvent] = []
    matched = 0
    if not query.is_empty():
        # DynamoDB page sizes: just enough without a filter; with one, big pages (fewer round
        # trips for the same events examined), but 100 for a user's index (one batch read each).
        page_size = (100 if query.user_id else 1000) if query.equals else min(wanted + 1, 1000)
        events = _candidates(query, days, newest_first=newest_first, page_size=page_size)
        scanned = 0
        first: LogEvent | None = None
        last: LogEvent | None = None
        # zip takes the bound first: no event (and no page) is read past it.
        for _, event in zip(range(MAX_SCANNED), events, strict=False):
            scanned, last = scanned + 1, event
            if first is None:
                first = event
            if _past_window(query, event, newest_first):
                break
            if not query.matches(event):
                continue
            if start <= matched < end:
                found.append(event)
            matched += 1
            if matched >= wanted:
                break
        else:
            if scanned == MAX_SCANNED and first is not None and last is not None:
                _warn_bound_reached(query, newest_first, matched, first, last)
    return found, (matched if with_total else None)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"))


def _warn_bound_reached(query: LogQuery, newest_first: bool, matched: int, first: LogEvent,
                        last: LogEvent) -> None:
    """One warning line: the search examined :data:`MAX_SCANNED` events and stopped, so any
    other events of the searched days were not examined and may match (when there were exactly
    that many, none was left: finding out would cost one more read). It names the query, the
    order and the span of time it did examine, never an event's contents."""
    span = sorted((_event_ms(first), _event_ms(last)))
    examined = [_iso(span[0]), _iso(span[1])]
    log.warning(
        "log search stopped at its bound of %d events examined (from %s to %s): events beyond "
        "them, if any, were not searched; narrow q with user_id: or a date: range", MAX_SCANNED,
        *examined,
        extra={"log_search": {
            "query": [f"{field}:{value}" for field, value in query.equals],
            "date_from": _iso(query.since_ms), "date_to": _iso(query.until_ms),
            "sort": "date:-1" if newest_first else "date:1",
            "scanned": MAX_SCANNED, "matched": matched, "examined": examined,
        }})


def after_checkpoint(checkpoint: str | None, days: list[str], take: int) -> list[LogEvent]:
    """Up to ``take`` events after the log id ``checkpoint`` (or from the oldest kept one),
    oldest first (Auth0's checkpoint paging)."""
    if checkpoint is None:
        checkpoint = _bound_id(int(datetime.strptime(days[-1], "%Y-%m-%d").replace(
            tzinfo=timezone.utc).timestamp() * 1000) - 1, high=True)
    events = log_events.oldest_first_after(days, checkpoint, page_size=take)
    return [event for _, event in zip(range(take), events, strict=False)]
