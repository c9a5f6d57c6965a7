"""chalicelib/management/log_query.py: the q subset of Auth0's log search (what it accepts, what
it refuses and how), and the search and checkpoint paging over a fresh in-memory table (exact
counts: nothing else writes there)."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from chalicelib import clock
from chalicelib.errors import InvalidQueryString
from chalicelib.management import log_query
from chalicelib.management.log_query import LogQuery, parse
from chalicelib.store import dynamo, log_events

DAY_MS = 86_400_000


def ms(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


# --- the parser: what it accepts ----------------------------------------------------------------

@pytest.mark.parametrize("q,equals", [
    ("type:s", [("type", "s")]),
    ("type:s AND client_id:abc", [("type", "s"), ("client_id", "abc")]),
    ("type:s client_id:abc", [("type", "s"), ("client_id", "abc")]),  # a space is AND too
    ("  type:s\tAND\nconnection:corp  ", [("type", "s"), ("connection", "corp")]),
    ('user_id:"oidc|corp|abc"', [("user_id", "oidc|corp|abc")]),
    ("user_id:oidc|corp|abc", [("user_id", "oidc|corp|abc")]),
    ('user_id:"oidc|corp|a:b (c)"', [("user_id", "oidc|corp|a:b (c)")]),
    (r'connection:"say \"hi\" \\ there"', [("connection", 'say "hi" \\ there')]),
    ('client_id:"AND"', [("client_id", "AND")]),
    ("connection:ANDROID", [("connection", "ANDROID")]),
    ("type:s AND type:f", [("type", "s"), ("type", "f")]),
])
def test_accepted_matches(q, equals):
    query = parse(q)
    assert list(query.equals) == equals
    assert query.since_ms is None and query.until_ms is None


@pytest.mark.parametrize("clause,since,until", [
    ("date:[2026-12-01 TO 2026-12-03]", "2026-12-01T00:00:00", "2026-12-03T23:59:59.999"),
    ("date:{2026-12-01 TO 2026-12-03}", "2026-12-02T00:00:00", "2026-12-02T23:59:59.999"),
    ("date:[2026-12-01 TO 2026-12-03}", "2026-12-01T00:00:00", "2026-12-02T23:59:59.999"),
    ("date:[* TO 2026-12-03]", None, "2026-12-03T23:59:59.999"),
    ("date:[2026-12-01 TO *]", "2026-12-01T00:00:00", None),
    ("date:[* TO *]", None, None),
    ("date:2026-12-01", "2026-12-01T00:00:00", "2026-12-01T23:59:59.999"),
    ("date:[2026-12-01T10:00:00Z TO 2026-12-01T11:30:00.250Z]",
     "2026-12-01T10:00:00", "2026-12-01T11:30:00.250"),
    ("date:{2026-12-01T10:00:00Z TO 2026-12-01T11:00:00Z}",
     "2026-12-01T10:00:00.001", "2026-12-01T10:59:59.999"),
    ("date:[2026-12-01T10:00:00+02:00 TO *]", "2026-12-01T08:00:00", None),
    ("date:[2026-12-01T10:00:00 TO *]", "2026-12-01T10:00:00", None),  # no offset: UTC
    ("date:[ 2026-12-01  TO  2026-12-03 ]", "2026-12-01T00:00:00", "2026-12-03T23:59:59.999"),
    # several ranges: their intersection
    ("date:[2026-12-01 TO 2026-12-05] AND date:[2026-12-03 TO *] date:[* TO 2026-12-04]",
     "2026-12-03T00:00:00", "2026-12-04T23:59:59.999"),
])
def test_accepted_dates(clause, since, until):
    query = parse(f"type:s AND {clause}")
    assert query.equals == (("type", "s"),)
    assert query.since_ms == (None if since is None else ms(since))
    assert query.until_ms == (None if until is None else ms(until))


def test_dates_beyond_what_events_can_have_are_clamped():
    query = parse("date:[0001-01-01T00:00:00+05:00 TO 9999-12-31T23:59:59-05:00]")
    assert query.since_ms == 0 and query.until_ms == log_events.LAST_MS


def test_an_empty_window_matches_nothing():
    assert parse("date:[2026-12-03 TO 2026-12-01]").is_empty()
    assert not parse("date:[2026-12-01 TO 2026-12-01]").is_empty()


# --- the parser: what it refuses ---------------------------------------------------------------

@pytest.mark.parametrize("q,named", [
    ("type:s OR type:f", "OR"),
    ("type:s || type:f", "||"),
    ("NOT type:f", "NOT"),
    ("type:s AND NOT type:f", "NOT"),
    ("-type:f", "-type:f"),
    ("type:-f", "-f"),
    ("type:+f", "+f"),
    ("type:!f", "!f"),
    ("(type:s)", "(type:s)"),
    ("type:(s f)", "(s"),
    ("type:s*", "s*"),
    ("type:s?", "s?"),
    ("type:s~", "s~"),
    ("type:s^2", "s^2"),
    ("user_id:oidc|a:b", "oidc|a:b"),
    ('user_id:"unterminated', '"unterminated'),
    ('user_id:""', '""'),
    ('type:"s"x', 'type:"s"x'),
    ("type:", "type:"),
    ("type", "type"),
    ("Type:s", "Type:s"),
    ("ip:1.2.3.4", "ip:1.2.3.4"),
    ("user_name:alice", "user_name:alice"),
    ("details.check:nonce", "details.check:nonce"),
    ("s", "s"),
    ("and type:s", "and"),
    ("AND type:s", "AND type:s"),
    ("type:s AND", "AND"),
    ("type:s AND AND type:f", "AND type:f"),
    ("type:s and type:f", "and"),
    ("date:[2026-12-01 TO]", "[2026-12-01 TO]"),
    ("date:[2026-12-01 2026-12-03]", "[2026-12-01 2026-12-03]"),
    ("date:[2026-12-01 to 2026-12-03]", "to"),
    ("date:[2026-12-01 TO 2026-12-03", "[2026-12-01 TO 2026-12-03"),
    ("date:[2026-13-01 TO *]", "2026-13-01"),
    ("date:[2026-12-1 TO *]", "2026-12-1"),
    ("date:[yesterday TO *]", "yesterday"),
    ("date:[1733011200000 TO *]", "1733011200000"),
    ("date:[2026-12-01T25:00:00Z TO *]", "2026-12-01T25:00:00Z"),
    ("date:2026-12", "2026-12"),
    ("date:2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z"),
    ("date:[2026-12-01 TO 2026-12-03]x", "date:[2026-12-01 TO 2026-12-03]x"),
])
def test_refused_with_the_part_named(q, named):
    with pytest.raises(InvalidQueryString) as refused:
        parse(q)
    assert refused.value.status == 400 and refused.value.error_code == "invalid_query_string"
    message = refused.value.message
    assert message.startswith("Query validation error: unsupported part of q: '")
    shown = message.split("q: '", 1)[1].split("'. Supported", 1)[0]
    assert named in shown and len(shown) <= 80, message


def test_size_limits():
    with pytest.raises(InvalidQueryString):
        parse("type:s " * 200)  # longer than MAX_QUERY
    parse(" AND ".join(["type:s"] * log_query.MAX_CLAUSES))
    with pytest.raises(InvalidQueryString, match="at most 10 clauses"):
        parse(" AND ".join(["type:s"] * (log_query.MAX_CLAUSES + 1)))
    parse(f'user_id:"{"é" * (log_query.MAX_VALUE // 2)}"')
    with pytest.raises(InvalidQueryString):  # bytes count: a value becomes an index key
        parse(f'user_id:"{"é" * (log_query.MAX_VALUE // 2 + 1)}"')
    assert not log_query.fits("") and log_query.fits("x")


def test_log_ids_past_year_9999_are_not_log_ids():
    assert log_events.is_log_id(log_events.new_log_id(log_events.LAST_MS))
    assert not log_events.is_log_id("900" + f"{log_events.LAST_MS + 1:016d}" + "0" * 37)
    assert not log_events.is_log_id("901" + "0" * 53)


def test_what_a_log_id_is_and_the_last_moment_are_the_stores():
    """One definition each (chalicelib/store/log_events.py): the search's date bounds and the
    routes' log id check cannot drift from the partitions the store writes."""
    assert not hasattr(log_query, "is_log_id")
    assert not hasattr(log_query, "MAX_MS")
    assert parse("date:[* TO 9999-12-31]").until_ms == log_events.LAST_MS


def test_matches():
    event = {"log_id": log_events.new_log_id(ms("2026-12-02T12:00:00")), "type": "f",
             "client_id": "app", "connection": "corp", "user_id": "oidc|corp|a"}
    assert parse('type:f client_id:app connection:corp user_id:"oidc|corp|a"').matches(event)
    assert not parse("type:s").matches(event)
    assert not parse("type:F").matches(event)  # case-sensitive
    assert not parse("connection:cor").matches(event)  # exact, not a prefix
    assert parse("date:2026-12-02").matches(event)
    assert not parse("date:2026-12-01").matches(event)
    assert parse("date:[2026-12-02T12:00:00Z TO 2026-12-02T12:00:00Z]").matches(event)
    assert not parse("date:{2026-12-02T12:00:00Z TO *]").matches(event)
    assert LogQuery().matches(event)
    assert not parse("client_id:app").matches({**event, "client_id": None})


# --- finding events: a fresh in-memory table -----------------------------------------------------

@pytest.fixture()
def store():
    """An empty in-memory table and a stopped clock (both the table's and the broker's)."""
    from chalicelib.store.memory import MemoryTable

    fixed = clock.FixedClock(int(time.time()))
    previous_clock = clock.install(fixed)
    previous_table = dynamo.install(MemoryTable(clock=fixed.now))

    class Store:
        now = fixed.now()
        days = log_events.days_back(fixed.now(), 30)

        def put(self, seconds_ago: float, type_: str = "s", **fields) -> str:
            at_ms = int((self.now - seconds_ago) * 1000)
            event = {"log_id": log_events.new_log_id(at_ms), "date": "-", "type": type_,
                     "description": "-", "details": {}, **fields}
            log_events.put(event, int(self.now) + 30 * 86400)  # type: ignore[arg-type]
            return event["log_id"]

    yield Store()
    dynamo.install(previous_table)
    clock.install(previous_clock)


def found(store, q: str = "", **options) -> list[str]:
    query = parse(q) if q else LogQuery()
    options.setdefault("start", 0)
    options.setdefault("count", 100)
    events, _ = log_query.search(query, store.days, **options)
    return [e["log_id"] for e in events]


def test_search_newest_first_across_days_and_oldest_first(store):
    put = [store.put(s) for s in (20 * 86400, 3 * 86400, 3600, 60, 1)]
    assert found(store) == put[::-1]
    assert found(store, newest_first=False) == put
    assert found(store, start=1, count=2) == put[::-1][1:3]
    assert found(store, start=1, count=2, newest_first=False) == put[1:3]
    assert found(store, start=5, count=2) == []


def test_search_keeps_only_retained_days(store):
    store.put(31 * 86400 + 3600)  # older than the oldest partition read
    kept = store.put(60)
    assert found(store) == [kept]


def test_search_filters_and_date_window(store):
    a = store.put(4 * 86400, "s", client_id="x")
    b = store.put(3 * 86400, "f", client_id="x")
    c = store.put(2 * 86400, "s", client_id="y")
    d = store.put(1 * 86400, "s", client_id="x")
    day = datetime.fromtimestamp(store.now - 3 * 86400, tz=timezone.utc).strftime("%Y-%m-%d")
    assert found(store, "client_id:x") == [d, b, a]
    assert found(store, "client_id:x AND type:s") == [d, a]
    assert found(store, f"date:{day}") == [b]
    assert found(store, f"date:[{day} TO *]") == [d, c, b]
    assert found(store, f"date:[{day} TO *]", newest_first=False) == [b, c, d]
    assert found(store, f"date:[* TO {day}]") == [b, a]
    assert found(store, f"date:[* TO {day}]", newest_first=False) == [a, b]
    assert found(store, "date:[2026-12-03 TO 2026-12-01]") == []


def test_search_by_user_reads_the_users_events(store):
    mine = [store.put(s, user_id="oidc|c|me") for s in (5 * 86400, 7200, 60)]
    store.put(30, user_id="oidc|c|other")
    store.put(20)
    assert found(store, 'user_id:"oidc|c|me"') == mine[::-1]
    assert found(store, 'user_id:"oidc|c|me"', newest_first=False) == mine
    assert found(store, 'user_id:"oidc|c|me" AND date:[* TO *]', start=1, count=1) == [mine[1]]
    day = datetime.fromtimestamp(store.now - 5 * 86400, tz=timezone.utc).strftime("%Y-%m-%d")
    assert found(store, f'user_id:"oidc|c|me" AND date:{day}') == [mine[0]]
    assert found(store, 'user_id:"oidc|c|nobody"') == []


def test_totals_count_matches_up_to_the_reachable_thousand(store, monkeypatch):
    monkeypatch.setattr(log_query, "MAX_RESULTS", 7)
    for n in range(10):
        store.put(100 - n, client_id="x" if n % 2 else "y")
    events, total = log_query.search(parse("client_id:x"), store.days, start=0, count=2,
                                     with_total=True)
    assert len(events) == 2 and total == 5
    events, total = log_query.search(LogQuery(), store.days, start=6, count=5, with_total=True)
    assert len(events) == 1 and total == 7  # the window and the count stop at MAX_RESULTS
    assert log_query.search(LogQuery(), store.days, start=0, count=2)[1] is None


def test_a_search_examines_a_bounded_number_of_events(store, monkeypatch):
    monkeypatch.setattr(log_query, "MAX_SCANNED", 6)
    wanted = store.put(100, client_id="rare")
    for n in range(8):
        store.put(50 - n, client_id="common")
    assert found(store, "client_id:rare") == []  # 6 newer events examined, then it stops
    monkeypatch.setattr(log_query, "MAX_SCANNED", 9)
    assert found(store, "client_id:rare") == [wanted]


def bound_warnings(caplog) -> list[dict]:
    """The search's warning lines, as chalicelib/logs.py writes them (one JSON object each)."""
    from chalicelib.logs import JsonLineFormatter

    formatter = JsonLineFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records
            if r.name == log_query.__name__ and r.levelname == "WARNING"]


def test_a_search_stopped_by_its_bound_says_so_in_a_warning_line(store, monkeypatch, caplog):
    monkeypatch.setattr(log_query, "MAX_SCANNED", 6)
    rare = store.put(100, client_id="rare", user_id="oidc|c|somebody")
    common = [store.put(50 - n, client_id="common", user_id=f"oidc|c|user{n}")
              for n in range(8)]
    caplog.set_level("WARNING", logger=log_query.__name__)
    assert found(store, "client_id:rare AND date:[2020-01-01 TO *]") == []
    (line,) = bound_warnings(caplog)
    assert line["level"] == "WARNING" and line["logger"] == "chalicelib.management.log_query"
    assert "6 events" in line["message"]
    examined = [int(log_id[3:19]) for log_id in common[2:]]  # the newest six
    assert line["log_search"] == {
        "query": ["client_id:rare"], "date_from": "2020-01-01T00:00:00.000Z", "date_to": None,
        "sort": "date:-1", "scanned": 6, "matched": 0,
        "examined": [log_query._iso(min(examined)), log_query._iso(max(examined))]}
    assert "oidc|c|" not in json.dumps(line)  # nothing of the events examined
    # Oldest first: the rare event is found at once, but the six examined are not all there are.
    caplog.clear()
    assert found(store, "client_id:rare", newest_first=False) == [rare]
    (line,) = bound_warnings(caplog)
    assert line["log_search"]["sort"] == "date:1" and line["log_search"]["matched"] == 1


@pytest.mark.parametrize(("q", "options"), [
    ("client_id:common", {"count": 3}),  # found what it wanted before the bound
    ("client_id:rare", {}),  # the bound is larger than the events there are
    ("", {"count": 5}),  # every event matches: 5 wanted, 5 examined
])
def test_a_search_that_finishes_logs_no_warning(store, monkeypatch, caplog, q, options):
    monkeypatch.setattr(log_query, "MAX_SCANNED", 10 if q == "client_id:rare" else 6)
    store.put(100, client_id="rare")
    for n in range(8):
        store.put(50 - n, client_id="common")
    caplog.set_level("WARNING", logger=log_query.__name__)
    found(store, q, **options)
    assert bound_warnings(caplog) == []


def test_a_search_stopped_by_its_date_window_logs_no_warning(store, monkeypatch, caplog):
    monkeypatch.setattr(log_query, "MAX_SCANNED", 3)
    wanted = store.put(70, client_id="x")
    for seconds_ago in (60, 80, 90, 100):
        store.put(seconds_ago, client_id="y")

    def since(seconds_ago: int) -> str:
        return datetime.fromtimestamp(store.now - seconds_ago, tz=timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")

    caplog.set_level("WARNING", logger=log_query.__name__)
    # The third event examined is older than the window: the search is done, at the bound.
    assert found(store, f"client_id:x AND date:[{since(75)} TO *]") == [wanted]
    assert bound_warnings(caplog) == []
    # The same three examined in a wider window: stopped by the bound.
    assert found(store, f"client_id:x AND date:[{since(200)} TO *]") == [wanted]
    assert len(bound_warnings(caplog)) == 1


def test_checkpoint_returns_what_follows_oldest_first(store):
    put = [store.put(s) for s in (10 * 86400, 86400, 60, 1)]
    assert [e["log_id"] for e in log_query.after_checkpoint(put[0], store.days, 2)] == put[1:3]
    assert [e["log_id"] for e in log_query.after_checkpoint(put[2], store.days, 50)] == put[3:]
    assert log_query.after_checkpoint(put[3], store.days, 50) == []
    assert [e["log_id"] for e in log_query.after_checkpoint(None, store.days, 3)] == put[:3]


def test_a_date_window_reads_only_its_days_and_stops_past_it(store, monkeypatch):
    """The window is work saved, not only a filter: partitions outside it are not read, and the
    stream stops at the first event past it."""
    read_days: list[list[str]] = []
    consumed: list[str] = []
    newest_first, of_user = log_events.newest_first, log_events.of_user

    def spy_days(days, **options):
        read_days.append(list(days))
        return newest_first(days, **options)

    def spy_user(user_id, **options):
        for event in of_user(user_id, **options):
            consumed.append(event["log_id"])
            yield event

    monkeypatch.setattr(log_events, "newest_first", spy_days)
    monkeypatch.setattr(log_events, "of_user", spy_user)
    recent = store.put(3600, user_id="oidc|c|me")
    for n in range(5):
        store.put(5 * 86400 + n, user_id="oidc|c|me")
    since = datetime.fromtimestamp(store.now - 2 * 86400, tz=timezone.utc).strftime("%Y-%m-%d")

    assert found(store, f"date:[{since} TO *]") == [recent]
    assert read_days and all(d >= since for d in read_days[-1])
    assert found(store, f'user_id:"oidc|c|me" AND date:[{since} TO *]') == [recent]
    assert len(consumed) == 2  # the match, then the first event older than the window
