"""store/sessions.py: session items, their user refs, the SSO update and the tombstone."""
from __future__ import annotations

import time

import pytest

from chalicelib.store import sessions
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.store.unit_of_work import UnitOfWork
from chalicelib.tokens import random_token
from tests.store.conftest import PARALLEL, race


def _fields(now: int, absolute: int = 3600, idle: int = 600) -> dict:
    return {"cookie_digest": "d" * 43, "auth_time": now, "updated_at": now,
            "expires_at": now + absolute, "idle_expires_at": now + idle}


def _create(user_id: str, now: int, **lifetimes) -> str:
    sid = random_token(18)
    UnitOfWork(sessions.put_operations(sid, _fields(now, **lifetimes), user_id, "con_1",
                                             "client_a", "grant_a")).commit()
    return sid


def _user() -> str:
    return f"oidc|store-test|{random_token(8)}"


def test_a_session_is_created_once():
    now, user_id = int(time.time()), _user()
    sid = _create(user_id, now)
    again = sessions.put_operations(sid, _fields(now), user_id, "con_1", "client_b", "grant_b")
    with pytest.raises(ConditionFailed):
        UnitOfWork(again).commit()
    item = sessions.get(sid, now)
    assert item["clients"] == ["client_a"] and item["grants"] == ["grant_a"]
    assert item["user_id"] == user_id and item["ttl"] == now + 3600


def test_an_expired_session_is_not_returned():
    now = int(time.time())
    sid = _create(_user(), now, absolute=100)
    assert sessions.get(sid, now + 99) is not None
    assert sessions.get(sid, now + 100) is None   # the TTL has not deleted it yet
    assert sessions.get(sid) is not None           # without a time: the table's own clock


def test_unknown_or_malformed_ids_are_not_read():
    assert sessions.get(random_token(18), int(time.time())) is None
    assert sessions.get("", 0) is None
    assert sessions.get("x" * 65, 0) is None
    assert sessions.revoke("x" * 65, 0) is None


def test_touch_records_the_application_and_slides_the_idle_expiry():
    now = int(time.time())
    sid = _create(_user(), now)
    UnitOfWork([sessions.touch_operation(sid, "client_b", "grant_b", now + 900, now + 10)]).commit()
    item = sessions.get(sid, now + 10)
    assert item["clients"] == ["client_a", "client_b"]
    assert item["grants"] == ["grant_a", "grant_b"]
    assert item["idle_expires_at"] == now + 900 and item["updated_at"] == now + 10


def test_touch_fails_on_an_idle_expired_or_revoked_session():
    now = int(time.time())
    sid = _create(_user(), now, absolute=3600, idle=600)
    with pytest.raises(ConditionFailed):   # idle for 600 s
        UnitOfWork([sessions.touch_operation(sid, "c", "g", now + 1200, now + 600)]).commit()
    with pytest.raises(ConditionFailed):   # past its absolute expiry
        UnitOfWork([sessions.touch_operation(sid, "c", "g", now + 4000, now + 3600)]).commit()
    assert sessions.revoke(sid, now) is not None
    with pytest.raises(ConditionFailed):
        UnitOfWork([sessions.touch_operation(sid, "c", "g", now + 300, now + 1)]).commit()
    with pytest.raises(ConditionFailed):   # a session that never existed is not created
        UnitOfWork([sessions.touch_operation(random_token(18), "c", "g", now + 300, now)]).commit()


def test_revoking_has_exactly_one_winner():
    now = int(time.time())
    sid = _create(_user(), now)
    results = race(lambda: sessions.revoke(sid, now))
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1 and results.count(None) == PARALLEL - 1, results
    assert winners[0]["revoked_at"] == now and winners[0]["sid"] == sid
    assert sessions.get(sid, now)["revoked_at"] == now   # the tombstone stays until its TTL


def test_marking_the_end_completed():
    now = int(time.time())
    sid = _create(_user(), now)
    sessions.revoke(sid, now)
    assert sessions.mark_end_completed(sid, now + 1) is True
    assert sessions.get(sid, now)["end_completed_at"] == now + 1
    assert sessions.mark_end_completed(random_token(18), now) is False   # gone: not recreated
    assert sessions.get(random_token(18)) is None


def test_the_sessions_of_a_user_across_pages(small_pages):
    now, user_id = int(time.time()), _user()
    sids = {_create(user_id, now) for _ in range(5)}
    _create(_user(), now)   # another user's
    assert sorted(sessions.sids_of_user(user_id)) == sorted(sids)
    assert list(sessions.sids_of_user(_user())) == []

