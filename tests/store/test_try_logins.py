"""store/try_logins.py: the admin console's Try tickets, flows and results."""
from __future__ import annotations

import time

import pytest

from chalicelib.store import try_logins
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.store.try_logins import TryFlow, TryResult
from chalicelib.tokens import digest, random_token
from tests.store.conftest import PARALLEL, race

BROWSER = digest("binding")


def test_a_ticket_is_put_once_and_consumed_once():
    now, ticket = int(time.time()), random_token(32)
    try_logins.put_ticket(ticket, "con_1", now + 300)
    with pytest.raises(ConditionFailed):
        try_logins.put_ticket(ticket, "con_2", now + 300)
    results = race(lambda: try_logins.consume_ticket(ticket, now))
    assert results.count("con_1") == 1 and results.count(None) == PARALLEL - 1, results


def test_an_expired_ticket_is_not_returned():
    now, ticket = int(time.time()), random_token(32)
    try_logins.put_ticket(ticket, "con_1", now + 300)
    assert try_logins.consume_ticket(ticket, now + 300) is None
    assert try_logins.consume_ticket(random_token(32), now) is None
    assert try_logins.consume_ticket(ticket, now) == "con_1"


def _flow(**overrides) -> TryFlow:
    return TryFlow(**{"kind": "try", "client_id": "broker-try-connection",
                      "browser_digest": BROWSER, "verifier": random_token(48),
                      "connection_name": "okta", **overrides})


def test_a_flow_is_consumed_once_by_its_browser_and_kind():
    now, state = int(time.time()), random_token(32)
    flow = _flow()
    try_logins.put_flow(state, flow, now + 600)
    with pytest.raises(ConditionFailed):
        try_logins.put_flow(state, _flow(), now + 600)
    assert try_logins.consume_flow(state, digest("another browser"), "try", now) is None
    assert try_logins.consume_flow(state, BROWSER, "demo", now) is None
    assert try_logins.consume_flow(state, BROWSER, "try", now + 600) is None   # expired
    results = race(lambda: try_logins.consume_flow(state, BROWSER, "try", now))
    assert results.count(flow) == 1 and results.count(None) == PARALLEL - 1, results


def test_a_flow_without_a_connection_and_its_repr_hides_the_verifier():
    now, state = int(time.time()), random_token(32)
    flow = _flow(kind="demo", connection_name=None)
    try_logins.put_flow(state, flow, now + 600)
    assert try_logins.consume_flow(state, BROWSER, "demo", now) == flow
    assert flow.verifier not in repr(flow)


def test_a_result_is_read_until_it_expires():
    now, result_id = int(time.time()), random_token(32)
    result = TryResult(kind="try", browser_digest=BROWSER, result='{"ok":true}')
    try_logins.put_result(result_id, result, now + 900)
    with pytest.raises(ConditionFailed):
        try_logins.put_result(result_id, result, now + 900)
    assert try_logins.get_result(result_id, now + 899) == result
    assert try_logins.get_result(result_id, now + 900) is None
    assert try_logins.get_result(random_token(32), now) is None
