"""store/upstream_sessions.py: which broker sessions an upstream session created (SPEC §11) and
the "ended" marker of one the IdP logged out (its check in a transaction), and
store/replay.py's markers for upstream logout tokens' ``jti``; on every backend."""
from __future__ import annotations

import time

import pytest

from chalicelib.store import replay, sessions, upstream_sessions
from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.store.unit_of_work import UnitOfWork
from chalicelib.tokens import random_token
from tests.store.test_replay import assert_exactly_one_winner, assert_recorded_once


def _connection() -> str:
    return f"con_{random_token(12)}"


def _remember(connection_id: str, upstream_sid: str, user_id: str, expires_at: int) -> str:
    sid = random_token(18)
    UnitOfWork(upstream_sessions.record_operations(connection_id, upstream_sid, sid, user_id,
                                                   expires_at)).commit()
    return sid


@pytest.mark.parametrize("upstream_sid", [None, "", 42, ["a"], {"a": 1}, "x" * 1025])
def test_no_usable_sid_claim_records_nothing(upstream_sid):
    assert upstream_sessions.record_operations("con_1", upstream_sid, "sid", "user", 1) == []
    assert upstream_sessions.broker_sessions("con_1", upstream_sid) == []


def test_each_broker_session_of_an_upstream_session_is_found():
    now, connection_id = int(time.time()), _connection()
    upstream_sid = "08a5019c-17e1-4977-8f42-65a12843ea02"
    first = _remember(connection_id, upstream_sid, "oidc|c|alice", now + 3600)
    second = _remember(connection_id, upstream_sid, "oidc|c|alice", now + 7200)
    _remember(connection_id, "another-upstream-session", "oidc|c|alice", now + 3600)
    _remember(_connection(), upstream_sid, "oidc|other|alice", now + 3600)  # same sid elsewhere
    found = upstream_sessions.broker_sessions(connection_id, upstream_sid)
    assert sorted((ref["sid"], ref["user_id"], ref["ttl"]) for ref in found) == sorted([
        (first, "oidc|c|alice", now + 3600), (second, "oidc|c|alice", now + 7200)])
    # The IdP's sid is only ever a digest in the table.
    for ref in found:
        assert upstream_sid not in str(table().get(ref["pk"], ref["sk"]))


def test_an_entry_expires_with_its_session():
    now, connection_id = int(time.time()), _connection()
    live = _remember(connection_id, "up", "oidc|c|bob", now + 60)
    _remember(connection_id, "up", "oidc|c|bob", now - 1)  # TTL not yet run: still unread
    assert [ref["sid"] for ref in upstream_sessions.broker_sessions(connection_id, "up")] == [live]


def test_the_entry_rides_in_the_logins_transaction():
    """One transaction with the session it indexes: both or neither."""
    now, connection_id, sid = int(time.time()), _connection(), random_token(18)
    fields = {"cookie_digest": "d" * 43, "auth_time": now, "updated_at": now,
              "expires_at": now + 3600, "idle_expires_at": now + 600}
    writes = [*sessions.put_operations(sid, fields, "oidc|c|carol", connection_id, "app", "g"),
              *upstream_sessions.record_operations(connection_id, "up-1", sid, "oidc|c|carol",
                                                   fields["expires_at"])]
    UnitOfWork(writes).commit()
    assert [ref["sid"] for ref in upstream_sessions.broker_sessions(connection_id, "up-1")] == [sid]
    # The same session again: the session's put-if-absent cancels the whole transaction.
    again = [*sessions.put_operations(sid, fields, "oidc|c|carol", connection_id, "app", "g"),
             *upstream_sessions.record_operations(connection_id, "up-2", sid, "oidc|c|carol",
                                                  fields["expires_at"])]
    with pytest.raises(ConditionFailed):
        UnitOfWork(again).commit()
    assert upstream_sessions.broker_sessions(connection_id, "up-2") == []


# --- an upstream session the IdP logged out: the "ended" marker --------------------------------

def test_the_ended_marker_keeps_the_logout_tokens_iat_as_long_as_the_cutoff():
    from chalicelib.store import upstream_cutoff

    now, connection_id, upstream_sid = int(time.time()), _connection(), "up-ended-1"
    live = _remember(connection_id, upstream_sid, "oidc|c|dave", now + 3600)
    assert upstream_sessions.ended(connection_id, upstream_sid) is None
    upstream_sessions.record_ended(connection_id, upstream_sid, now + 0.9)  # whole seconds
    marker = upstream_sessions.ended(connection_id, upstream_sid)
    assert marker is not None
    assert (marker["sk"], marker["iat"], marker["ttl"]) == (
        "ENDED", now, now + upstream_cutoff.KEEP)
    assert marker["pk"] == upstream_sessions.partition(connection_id, upstream_sid)
    assert upstream_sid not in str(table().get(marker["pk"], marker["sk"]))  # a digest only
    # Beside the index entries, never one of them.
    assert [ref["sid"] for ref in upstream_sessions.broker_sessions(connection_id,
                                                                    upstream_sid)] == [live]
    # A later logout of that session moves it on; an earlier one (a late copy) does not.
    upstream_sessions.record_ended(connection_id, upstream_sid, now + 5)
    upstream_sessions.record_ended(connection_id, upstream_sid, now - 100)
    assert upstream_sessions.ended(connection_id, upstream_sid)["iat"] == now + 5
    upstream_sessions.record_ended(connection_id, upstream_sid, now + 5)  # a retry: no error
    assert upstream_sessions.ended(connection_id, upstream_sid)["ttl"] == now + 5 + (
        upstream_cutoff.KEEP)
    assert upstream_sessions.ended(connection_id, "up-ended-2") is None
    assert upstream_sessions.ended(_connection(), upstream_sid) is None


def _exchange_writes(connection_id: str, upstream_sid: object) -> list:
    """An exchange-like transaction: the index entry, then the marker's check."""
    sid = random_token(18)
    return [*upstream_sessions.record_operations(connection_id, upstream_sid, sid, "oidc|c|erin",
                                                 int(time.time()) + 60),
            *upstream_sessions.not_ended_check(connection_id, upstream_sid)]


def test_the_not_ended_check_cancels_the_transaction_of_an_ended_session_only():
    now, connection_id = int(time.time()), _connection()
    UnitOfWork(_exchange_writes(connection_id, "up-a")).commit()  # no marker: holds
    upstream_sessions.record_ended(connection_id, "up-a", now)
    with pytest.raises(ConditionFailed) as caught:
        UnitOfWork(_exchange_writes(connection_id, "up-a")).commit()
    assert caught.value.reasons[1] == "ConditionalCheckFailed"  # the check, in its place
    assert caught.value.reasons[0] != "ConditionalCheckFailed"
    assert len(upstream_sessions.broker_sessions(connection_id, "up-a")) == 1  # nothing written
    # Another upstream session, the same one at another connection: not ended.
    UnitOfWork(_exchange_writes(connection_id, "up-b")).commit()
    UnitOfWork(_exchange_writes(_connection(), "up-a")).commit()


@pytest.mark.parametrize("upstream_sid", [None, "", 42, ["a"], "x" * 1025])
def test_no_usable_sid_claim_checks_nothing(upstream_sid):
    assert upstream_sessions.not_ended_check("con_1", upstream_sid) == []
    assert upstream_sessions.ended("con_1", upstream_sid) is None
    with pytest.raises(ValueError):
        upstream_sessions.record_ended("con_1", upstream_sid, time.time())


# --- the logout token's jti (store/replay.py) -------------------------------------------------

def test_a_logout_token_jti_is_recorded_once_per_connection():
    now, jti = int(time.time()), random_token(16)
    marker, _ = assert_recorded_once(
        lambda: replay.record_logout_jti("con_1", jti, now, now + 361), jti, now + 361)
    assert marker.pk.startswith("LOGOUT_JTI#con_1#") and marker.sk == "LOGOUT_JTI"
    replay.record_logout_jti("con_2", jti, now, now + 361)  # another IdP's token
    replay.record_gtr_jti("con_1", jti, now, now + 361)     # another kind of token


def test_concurrent_copies_of_a_logout_token_have_exactly_one_winner():
    now, jti = int(time.time()), random_token(16)
    assert_exactly_one_winner(lambda: replay.record_logout_jti("con_1", jti, now, now + 361))


def test_a_released_or_expired_logout_marker_frees_the_jti():
    now, jti = int(time.time()), random_token(16)
    replay.release(replay.record_logout_jti("con_1", jti, now, now + 361))
    replay.record_logout_jti("con_1", jti, now, now + 361)
    other = random_token(16)
    replay.record_logout_jti("con_1", other, now - 400, now - 39)  # expired, not yet deleted
    replay.record_logout_jti("con_1", other, now, now + 361)
