"""SPEC §9: log events read back through the Management API, as Auth0's log routes answer —
``GET /api/v2/logs`` (search and checkpoint paging, the q subset), ``GET /api/v2/logs/{id}`` and
``GET /api/v2/users/{id}/logs``.

The table is shared with every other test: each test writes its events under its own client_id
and user ids, in the past (the broker's clock moved back while they are written), and looks only
at those.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

import pytest

from chalicelib import audit
from tests.conftest import token_with_scopes

MINUTE, DAY = 60, 86400


@pytest.fixture()
def events(fixed_clock):
    """``events.put(type, seconds_ago, **fields)`` stores an event as the broker's flows do
    (audit.record), dated that long before the test's now."""

    class Events:
        now = fixed_clock.now()
        client_id = "logs-test-" + secrets.token_hex(6)

        def put(self, type_: str, seconds_ago: float, **fields) -> dict:
            fields.setdefault("client_id", self.client_id)
            fixed_clock.set(self.now - seconds_ago)
            try:
                entry = audit.event(type_, **fields)
                audit.record(entry)
            finally:
                fixed_clock.set(self.now)
            return entry

        def user(self) -> str:
            return f"oidc|logs-conn|{secrets.token_hex(6)}"

    return Events()


def get(api, path: str, token: str | None = "default", **params):
    query = f"?{urlencode(params)}" if params else ""
    return api.call("GET", path + query, token=token)


def ids(items) -> list[str]:
    return [item["log_id"] for item in items]


def day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d")


def assert_bad_query(response, *words: str):
    assert response.status_code == 400, response.data
    assert response.data["errorCode"] == "invalid_query_string", response.data
    assert set(response.data) == {"statusCode", "error", "message", "errorCode"}
    for word in words:
        assert word in response.data["message"], response.data


# --- search: filters, order, paging ---------------------------------------------------------------

def test_search_filters_by_client_type_connection_and_user(api, events):
    alice, bob = events.user(), events.user()
    login = events.put("s", 50, connection="corp", user_id=alice, user_name="alice")
    failed = events.put("f", 40, connection="corp", user_id=bob, details={"check": "nonce"})
    other_connection = events.put("s", 30, connection="partners", user_id=bob)
    exchange = events.put("seacft", 20, connection="corp", user_id=alice)

    everything = get(api, "/api/v2/logs", q=f"client_id:{events.client_id}")
    assert everything.status_code == 200, everything.data
    assert ids(everything.data) == ids([exchange, other_connection, failed, login])  # newest first
    assert everything.data[-1] == login  # the stored event, as built

    def found(q: str) -> list[str]:
        response = get(api, "/api/v2/logs", q=q)
        assert response.status_code == 200, response.data
        return ids(response.data)

    mine = f'client_id:"{events.client_id}"'
    assert found(f"{mine} AND type:f") == [failed["log_id"]]
    assert found(f"{mine} connection:corp") == ids([exchange, failed, login])  # space is AND
    assert found(f'{mine} AND connection:corp AND user_id:"{alice}"') == ids([exchange, login])
    assert found(f'user_id:"{bob}"') == ids([other_connection, failed])
    assert found(f"{mine} AND type:s AND type:f") == []
    assert found(f"{mine} AND type:slo") == []
    # auth0-python 6.x sends q as search=
    response = get(api, "/api/v2/logs", search=f"{mine} AND type:seacft")
    assert ids(response.data) == [exchange["log_id"]]


def test_search_by_date(api, events):
    three = events.put("s", 3 * DAY)
    two = events.put("s", 2 * DAY)
    one = events.put("f", 1 * DAY)
    mine = f"client_id:{events.client_id}"
    d3, d2, d1 = day(events.now - 3 * DAY), day(events.now - 2 * DAY), day(events.now - DAY)

    def found(clause: str) -> list[str]:
        response = get(api, "/api/v2/logs", q=f"{mine} AND {clause}")
        assert response.status_code == 200, response.data
        return ids(response.data)

    assert found(f"date:[{d3} TO {d2}]") == ids([two, three])  # a day as the upper end: all of it
    assert found(f"date:{{{d3} TO {d1}}}") == ids([two])  # braces leave the ends out
    assert found(f"date:[* TO {d3}]") == ids([three])
    # (an open upper end reads today too, where the rest of a full run writes thousands of
    # events: a search examines at most log_query.MAX_SCANNED; tests/unit/test_log_query.py
    # covers the open end's parsing)
    assert found(f"date:[{d2} TO {d1}]") == ids([one, two])
    assert found(f"date:{d1}") == ids([one])
    assert found(f"date:[{d1} TO {d3}]") == []
    moment = datetime.fromtimestamp(events.now - 2 * DAY, tz=timezone.utc)
    exact = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert found(f"date:[{exact} TO {exact}]") == ids([two])
    assert found(f"date:[{d3} TO *] AND date:[* TO {d2}]") == ids([two, three])  # intersection
    assert found(f"date:[{d3} TO {d1}] AND type:f") == ids([one])


def test_offset_paging_totals_and_sort(api, events):
    # Twenty days back, and the search bounded to those days: oldest first from the start of the
    # retention would otherwise cross today's partition, where a full run writes more events
    # than one search examines (log_query.MAX_SCANNED).
    ago = 20 * DAY
    put = [events.put("s", ago + 100 - n) for n in range(5)]  # oldest first
    newest = ids(reversed(put))
    first, last = day(events.now - ago - 100), day(events.now - ago - 96)
    q = f"client_id:{events.client_id} AND date:[{first} TO {last}]"

    pages = [get(api, "/api/v2/logs", q=q, page=n, per_page=2) for n in range(4)]
    assert [ids(p.data) for p in pages] == [newest[0:2], newest[2:4], newest[4:5], []]

    totals = get(api, "/api/v2/logs", q=q, page=1, per_page=2, include_totals="true")
    assert totals.status_code == 200, totals.data
    assert totals.data == {"start": 2, "limit": 2, "length": 2, "total": 5,
                           "logs": totals.data["logs"]}
    assert ids(totals.data["logs"]) == newest[2:4]

    oldest_first = get(api, "/api/v2/logs", q=q, sort="date:1", per_page=3)
    assert ids(oldest_first.data) == ids(put[:3])
    explicit = get(api, "/api/v2/logs", q=q, sort="date:-1")
    assert ids(explicit.data) == newest
    assert get(api, "/api/v2/logs", q=q, include_totals="false").data == explicit.data


def test_fields_select_properties(api, events):
    entry = events.put("f", 10, connection="corp")
    q = f"client_id:{events.client_id}"
    only = get(api, "/api/v2/logs", q=q, fields="log_id,type")
    assert only.data == [{"log_id": entry["log_id"], "type": "f"}]
    without = get(api, "/api/v2/logs", q=q, fields="details,user_agent,ip",
                  include_fields="false")
    assert without.data[0]["log_id"] == entry["log_id"] and "details" not in without.data[0]
    assert_bad_query(get(api, "/api/v2/logs", q=q, fields="log_id,pk"), "pk")


def test_whole_unfiltered_search_is_newest_first(api, events):
    put = [events.put("s", 3), events.put("s", 2)]
    response = get(api, "/api/v2/logs", include_totals="true", per_page=100)
    assert response.status_code == 200
    listed = ids(response.data["logs"])
    assert listed == sorted(listed, reverse=True)
    assert response.data["total"] >= response.data["length"] == len(listed)
    mine = [i for i in listed if i in ids(put)]
    assert mine == ids(reversed(put)) or len(listed) == 100  # the page may hold only newer ones


# --- checkpoint paging --------------------------------------------------------------------------

def next_call(response) -> str:
    link = response.headers["Link"]
    assert link.startswith("<http://127.0.0.1:8000/api/v2/logs?") and link.endswith('>; rel="next"')
    return link[len("<http://127.0.0.1:8000"):-len('>; rel="next"')]


def test_checkpoint_paging_returns_what_follows_oldest_first(api, events):
    first, second, third = (events.put("s", 300), events.put("f", 299), events.put("s", 298))
    response = get(api, "/api/v2/logs", **{"from": first["log_id"], "take": 2})
    assert response.status_code == 200, response.data
    seen: list[str] = []
    for _ in range(500):
        assert len(response.data) <= 2
        page = ids(response.data)
        assert page == sorted(page) and all(i > first["log_id"] for i in page)
        assert not seen or not page or page[0] > seen[-1]
        seen += page
        if third["log_id"] in seen:
            break
        response = api.call("GET", next_call(response))
        assert response.status_code == 200, response.data
    mine = [i for i in seen if i in (second["log_id"], third["log_id"])]
    assert mine == [second["log_id"], third["log_id"]]
    assert first["log_id"] not in seen


def test_checkpoint_with_nothing_newer_names_the_same_call(api, events):
    future = "900" + f"{int(events.now * 1000) + 10 * DAY * 1000:016d}" + "0" * 37
    response = get(api, "/api/v2/logs", **{"from": future, "take": 10})
    assert response.status_code == 200 and response.data == []
    assert next_call(response) == f"/api/v2/logs?from={future}&take=10"


def test_checkpoint_ignores_search_paging_but_refuses_q(api, events):
    first, second = events.put("s", 200), events.put("s", 199)
    sdk_defaults = {"from": first["log_id"], "take": 100, "page": 0, "per_page": 50,
                    "include_totals": "true", "sort": "date:-1"}
    response = get(api, "/api/v2/logs", **sdk_defaults)
    assert response.status_code == 200 and isinstance(response.data, list)
    assert second["log_id"] in ids(response.data)
    assert_bad_query(get(api, "/api/v2/logs", **{"from": first["log_id"], "q": "type:s"}), "q")
    assert_bad_query(get(api, "/api/v2/logs", take=5, search="type:s"), "q")


def test_take_alone_starts_at_the_oldest_kept_event(api, events):
    events.put("s", 10)
    response = get(api, "/api/v2/logs", take=5)
    assert response.status_code == 200 and 1 <= len(response.data) <= 5
    assert ids(response.data) == sorted(ids(response.data))
    assert next_call(response) == f"/api/v2/logs?from={response.data[-1]['log_id']}&take=5"


@pytest.mark.parametrize("params,named", [
    ({"take": "0"}, "take"), ({"take": "101"}, "take"), ({"take": "x"}, "take"),
    ({"from": "123"}, "from"), ({"from": ""}, "from"), ({"from": "900" + "9" * 53}, "from"),
])
def test_checkpoint_parameters_are_checked(api, params, named):
    assert_bad_query(get(api, "/api/v2/logs", **params), named)


# --- refused searches ---------------------------------------------------------------------------

@pytest.mark.parametrize("q,named", [
    ("type:s OR type:f", "OR"),
    ("NOT type:s", "NOT"),
    ("ip:1.2.3.4", "ip:1.2.3.4"),
    ("type:s*", "s*"),
    ("(type:s)", "(type:s)"),
    ('user_id:"unterminated', '"unterminated'),
    ("type:s AND", "AND"),
    ("date:[2026-12-01 TO tomorrow]", "tomorrow"),
    ("date:yesterday", "yesterday"),
    ("description:Failed", "description"),
    ("x" * 1100, "xxxx"),
])
def test_unsupported_q_is_a_400_naming_the_part(api, q, named):
    assert_bad_query(get(api, "/api/v2/logs", q=q), named, "unsupported part of q")


@pytest.mark.parametrize("params,named", [
    ({"per_page": "0"}, "per_page"), ({"per_page": "101"}, "per_page"),
    ({"page": "-1"}, "page"), ({"page": "10", "per_page": "100"}, "1000"),
    ({"page": "20"}, "1000"), ({"sort": "type:1"}, "sort"), ({"include_totals": "yes"},
                                                                "include_totals"),
    ({"q": "type:s", "search": "type:f"}, "search"), ({"unknown": "1"}, "unknown"),
])
def test_search_parameters_are_checked(api, params, named):
    assert_bad_query(get(api, "/api/v2/logs", **params), named)


def test_the_last_reachable_page_is_answered(api):
    response = get(api, "/api/v2/logs", page=9, per_page=100, q="client_id:no-such-client")
    assert response.status_code == 200 and response.data == []


# --- one event ----------------------------------------------------------------------------------

def test_get_one_event_by_id(api, events):
    entry = events.put("fertft", 5, connection="corp", user_id=events.user(),
                       details={"error": "invalid_grant", "refresh_token": "rt-value-123",
                                "note": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"})
    response = get(api, f"/api/v2/logs/{entry['log_id']}")
    assert response.status_code == 200, response.data
    assert response.data == entry
    assert response.data["details"]["error"] == "invalid_grant"
    text = str(response.data)
    assert "rt-value-123" not in text and "eyJhbGciOiJSUzI1NiJ9" not in text


@pytest.mark.parametrize("log_id", [
    "900" + "0" * 53,  # well formed, never written
    "900" + "9" * 53,  # past year 9999: no partition to look in
    "not-a-log-id",
    "900123",
])
def test_unknown_or_malformed_log_id_is_a_404(api, log_id):
    response = get(api, f"/api/v2/logs/{quote(log_id)}")
    assert response.status_code == 404, response.data
    assert response.data == {"statusCode": 404, "error": "Not Found",
                             "message": "The log event does not exist.",
                             "errorCode": "inexistent_log"}


# --- a user's events ----------------------------------------------------------------------------

def user_logs(user_id: str) -> str:
    return f"/api/v2/users/{quote(user_id, safe='')}/logs"


def test_a_users_events_newest_first_with_paging(api, events):
    alice, bob = events.user(), events.user()
    put = [events.put("s", 60 - n, user_id=alice) for n in range(3)]
    events.put("s", 30, user_id=bob)
    newest = ids(reversed(put))

    response = get(api, user_logs(alice))
    assert response.status_code == 200, response.data
    assert ids(response.data) == newest
    assert response.data[0] == put[-1]
    assert ids(get(api, user_logs(alice), page=1, per_page=2).data) == newest[2:]
    totals = get(api, user_logs(alice), per_page=2, include_totals="true")
    assert totals.data["total"] == 3 and totals.data["length"] == 2
    assert ids(totals.data["logs"]) == newest[:2]
    assert ids(get(api, user_logs(alice), sort="date:1").data) == ids(put)
    assert get(api, user_logs(events.user())).data == []  # no such user: no events
    assert_bad_query(get(api, user_logs(alice), q="type:s"), "q")
    assert_bad_query(get(api, user_logs(alice), per_page="101"), "per_page")
    assert_bad_query(get(api, user_logs(alice), sort="date"), "sort")


def test_a_user_id_longer_than_any_is_a_404(api):
    response = get(api, user_logs("oidc|x|" + "a" * 1100))
    assert response.status_code == 404 and response.data["errorCode"] == "inexistent_user"


# --- scopes -------------------------------------------------------------------------------------

def test_scopes(client, api, events):
    alice = events.user()
    entry = events.put("s", 5, user_id=alice)
    logs_users = token_with_scopes(client, "read:logs_users")
    logs = token_with_scopes(client, "read:logs")
    other = token_with_scopes(client, "read:users read:clients")

    for token in (logs_users, other):
        for path in ("/api/v2/logs", f"/api/v2/logs/{entry['log_id']}"):
            denied = get(api, path, token=token)
            assert denied.status_code == 403, (path, denied.data)
            assert denied.data["errorCode"] == "insufficient_scope"
    denied = get(api, user_logs(alice), token=other)
    assert denied.status_code == 403 and denied.data["errorCode"] == "insufficient_scope"
    assert get(api, "/api/v2/logs", token=None).status_code == 401

    for token in (logs_users, logs):  # read:logs reads every event, a user's too
        assert ids(get(api, user_logs(alice), token=token).data) == [entry["log_id"]]
    assert get(api, f"/api/v2/logs/{entry['log_id']}", token=logs).data == entry
