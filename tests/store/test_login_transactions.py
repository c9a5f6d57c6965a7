"""store/login_transactions.py: created once, consumed once by the browser that started it."""
from __future__ import annotations

import time

import pytest

from chalicelib.store import login_transactions
from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.store.login_transactions import LoginTransaction
from chalicelib.tokens import digest, random_token
from tests.store.conftest import PARALLEL, race

BROWSER = digest("binding")


def _tx(now: int, **overrides) -> LoginTransaction:
    values = {"connection_id": "con_1", "client_id": "client_a",
              "redirect_uri": "https://app.example.com/cb", "response_mode": "query",
              "scope": "openid", "upstream_nonce": "n", "browser_digest": BROWSER,
              "created_at": now, "state": "app-state", "code_challenge": "c" * 43,
              "code_challenge_method": "S256", "max_age": 0, **overrides}
    return LoginTransaction(**values)


def test_round_trip_keeps_every_field_and_stores_no_state():
    now, state = int(time.time()), random_token(32)
    tx = _tx(now, audience="https://api.example.com/", extra={"k": "v"})
    login_transactions.put_new(state, tx, now + 600)
    stored = table().get(*login_transactions.key(state))
    assert state not in str(stored) and stored["ttl"] == now + 600
    assert "nonce" not in stored   # None fields are not stored
    assert login_transactions.consume(state, BROWSER, now) == tx


def test_a_second_put_under_the_same_state_is_refused():
    now, state = int(time.time()), random_token(32)
    login_transactions.put_new(state, _tx(now), now + 600)
    with pytest.raises(ConditionFailed):
        login_transactions.put_new(state, _tx(now, client_id="client_b"), now + 600)
    assert login_transactions.consume(state, BROWSER, now).client_id == "client_a"


def test_consumed_once_by_exactly_one_of_twenty():
    now, state = int(time.time()), random_token(32)
    tx = _tx(now)
    login_transactions.put_new(state, tx, now + 600)
    results = race(lambda: login_transactions.consume(state, BROWSER, now))
    assert results.count(tx) == 1 and results.count(None) == PARALLEL - 1, results
    assert table().get(*login_transactions.key(state)) is None


def test_another_browser_neither_gets_nor_consumes_it():
    now, state = int(time.time()), random_token(32)
    login_transactions.put_new(state, _tx(now), now + 600)
    assert login_transactions.consume(state, digest("another browser"), now) is None
    assert login_transactions.consume(state, BROWSER, now) is not None


def test_an_expired_transaction_is_not_returned():
    now, state = int(time.time()), random_token(32)
    login_transactions.put_new(state, _tx(now), now + 600)
    assert login_transactions.consume(state, BROWSER, now + 600) is None
    assert login_transactions.consume(state, BROWSER, now + 599) is not None


def test_unknown_state():
    assert login_transactions.consume(random_token(32), BROWSER, int(time.time())) is None


def test_an_expired_leftover_does_not_block_a_new_put():
    now, state = int(time.time()), random_token(32)
    login_transactions.put_new(state, _tx(now - 700), now - 100)   # expired, not yet deleted
    login_transactions.put_new(state, _tx(now), now + 600)
    assert login_transactions.consume(state, BROWSER, now).created_at == now
