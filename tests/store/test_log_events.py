"""Log events in the store (SPEC §9): day partitions, newest first, checkpoint paging, a user's
events through the index, expiry, and riding in a transaction — on both backends."""
from __future__ import annotations

import secrets
import time

import pytest

from chalicelib import clock
from chalicelib.errors import ServiceUnavailable
from chalicelib.store import dynamo, log_events
from chalicelib.store.unit_of_work import UnitOfWork, Write

DAY = 86400


@pytest.fixture()
def now():
    """The broker's clock fixed at a random moment three to eight years back: the day partitions
    around it hold this test's events alone (a full run fills today's with thousands, which
    every listing below would page through)."""
    fixed = clock.FixedClock(int(time.time()) - (1000 + secrets.randbelow(2000)) * DAY)
    previous = clock.install(fixed)
    yield fixed
    clock.install(previous)


def _event(at: float, type_: str = "s", user_id: str | None = None, **extra) -> log_events.LogEvent:
    entry: dict = {"log_id": log_events.new_log_id(int(at * 1000)), "date": "x", "type": type_,
                   "description": "d", "details": {}, **extra}
    if user_id:
        entry["user_id"] = user_id
    return entry  # type: ignore[return-value]


def _only(ids, listed) -> list[str]:
    """The listed ids among ``ids`` (another test may have drawn a nearby moment), in listed
    order."""
    wanted = set(ids)
    return [e["log_id"] for e in listed if e["log_id"] in wanted]


def test_log_ids_sort_by_time_and_name_their_day():
    first = log_events.new_log_id(1_700_000_000_000)
    later = log_events.new_log_id(1_700_000_000_001)
    assert len(first) == 56 and first.isdigit() and first < later
    assert log_events.day_of(first) == "2023-11-14"
    assert log_events.is_log_id(first)
    assert not log_events.is_log_id(first[:-1]) and not log_events.is_log_id("x" * 56)
    assert not log_events.is_log_id("900" + "9" * 53)  # past year 9999: no day to read


def test_newest_first_across_days_and_before(now):
    base = now.now()
    events = [_event(base - 2 * DAY), _event(base - DAY), _event(base - 10), _event(base - 5)]
    for e in events:
        log_events.put(e, int(base) + 30 * DAY)
    days = log_events.days_back(base, 30)
    ids = [e["log_id"] for e in events]
    listed = _only(ids, log_events.newest_first(days, page_size=2))
    assert listed == sorted(ids, reverse=True)
    older = _only(ids, log_events.newest_first(days, before=ids[2]))
    assert older == [ids[1], ids[0]]
    assert "pk" not in log_events.get(ids[0]) and log_events.get(ids[0])["log_id"] == ids[0]
    assert log_events.get("9" * 56) is None and log_events.get("nope") is None


def test_checkpoint_lists_newer_events_oldest_first(now):
    base = now.now()
    events = [_event(base - DAY - 1), _event(base - DAY), _event(base - 3), _event(base - 2)]
    for e in events:
        log_events.put(e, int(base) + 30 * DAY)
    ids = [e["log_id"] for e in events]
    days = log_events.days_back(base, 30)
    assert _only(ids, log_events.oldest_first_after(days, ids[0], page_size=1)) == ids[1:]
    assert _only(ids, log_events.oldest_first_after(days, ids[-1])) == []


def test_a_users_events_newest_first_through_the_index(now):
    base = now.now()
    user = f"oidc|{secrets.token_hex(8)}"
    mine = [_event(base - 30, user_id=user), _event(base - 20, user_id=user),
            _event(base - 10, user_id=user)]
    for e in [*mine, _event(base - 15, user_id="oidc|b"), _event(base - 5)]:
        log_events.put(e, int(base) + 30 * DAY)
    found = [e["log_id"] for e in log_events.of_user(user, page_size=2)]
    assert found == [e["log_id"] for e in reversed(mine)]
    assert list(log_events.of_user(f"oidc|{secrets.token_hex(8)}")) == []


def test_expired_events_are_gone(now):
    base = now.now()
    old = _event(base - 40 * DAY)
    log_events.put(old, int(base) - 1)
    assert log_events.get(old["log_id"]) is None
    assert _only([old["log_id"]], log_events.newest_first(log_events.days_back(base, 45))) == []


def test_a_rider_commits_with_the_transaction(now):
    base = now.now()
    entry = _event(base)
    seen = []
    work = UnitOfWork([Write.put({"pk": "RIDE", "sk": entry["log_id"]})])
    work.ride(log_events.put_operation(entry, int(base) + DAY), seen.append)
    work.commit()
    assert seen == [True]
    assert log_events.get(entry["log_id"])["type"] == "s"
    assert dynamo.table().get("RIDE", entry["log_id"]) is not None


def test_a_rider_is_dropped_when_it_alone_cannot_be_written(now):
    """A log item too large for DynamoDB (400 KB) fails the transaction: it is sent again
    without the rider, and the request's own writes land."""
    base = now.now()
    entry = _event(base, details={"big": "x" * 410_000})
    seen = []
    work = UnitOfWork([Write.put({"pk": "RIDE", "sk": entry["log_id"]})])
    work.ride(log_events.put_operation(entry, int(base) + DAY), seen.append)
    work.commit()
    assert seen == [False]
    assert log_events.get(entry["log_id"]) is None
    assert dynamo.table().get("RIDE", entry["log_id"]) is not None


def test_a_failed_commit_runs_no_rider(now):
    base = now.now()
    entry = _event(base)
    dynamo.table().put({"pk": "RIDE", "sk": entry["log_id"]})
    seen = []
    work = UnitOfWork([Write.put_if_absent({"pk": "RIDE", "sk": entry["log_id"]})])
    work.ride(log_events.put_operation(entry, int(base) + DAY), seen.append)
    with pytest.raises(dynamo.ConditionFailed) as failed:
        work.commit()
    assert seen == [] and log_events.get(entry["log_id"]) is None
    assert failed.value.reasons == ["ConditionalCheckFailed"]  # one per write, riders left out


def test_a_rider_must_be_unconditional():
    with pytest.raises(TypeError):
        UnitOfWork().ride(Write.put_if_absent({"pk": "A", "sk": "B"}), print)
    assert ServiceUnavailable  # the error a dropped rider answers to
