"""store/vault.py: the token vault's entries (SPEC §10) on every backend: one per user and
connection, a version that grows with every write, a retention TTL set again on each, and the
refresh lease (of concurrent takers exactly one wins; a refresh writes only while holding it)."""
from __future__ import annotations

import time

import pytest

from chalicelib.store import vault
from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.store.unit_of_work import UnitOfWork, Write
from chalicelib.tokens import random_token
from tests.store.conftest import PARALLEL, race

DAY = 86400


def _ids() -> tuple[str, str]:
    return f"oidc|vault-test|{random_token(9)}", f"con_{random_token(12)}"


def _fields(marker: str = "1", access_expires_at: int | None = None) -> vault.SealedFields:
    """Stand-ins for chalicelib/vault.py's sealed fields: the store never looks inside them."""
    return {"connection": "vault-test", "sealed": f"sealed-{marker}", "nonce": f"nonce-{marker}",
            "data_key": f"blob-{marker}", "key_id": "arn:aws:kms:us-east-1:1:key/k",
            "access_expires_at": access_expires_at}


def _store(user_id: str, connection_id: str, now: int, marker: str = "1",
           ttl: int | None = None, access_expires_at: int | None = None) -> None:
    UnitOfWork([vault.store_operation(user_id, connection_id, _fields(marker, access_expires_at),
                                      now, ttl or now + 30 * DAY)]).commit()


def test_a_login_writes_the_entry_and_each_later_one_bumps_its_version():
    now = int(time.time())
    user_id, connection_id = _ids()
    _store(user_id, connection_id, now, "1", access_expires_at=now + 300)
    first = vault.get(user_id, connection_id, now)
    assert first is not None
    assert (first["pk"], first["sk"]) == (f"VAULT#{user_id}", f"CONN#{connection_id}")
    assert {k: first[k] for k in ("user_id", "connection_id", "connection", "sealed", "nonce",
                                  "data_key", "version", "access_expires_at", "created_at",
                                  "updated_at", "ttl")} == {
        "user_id": user_id, "connection_id": connection_id, "connection": "vault-test",
        "sealed": "sealed-1", "nonce": "nonce-1", "data_key": "blob-1", "version": 1,
        "access_expires_at": now + 300, "created_at": now, "updated_at": now,
        "ttl": now + 30 * DAY}
    # Another login later: new tokens, version 2, the retention counted again from now; an
    # upstream that gave no expires_in this time leaves none behind.
    _store(user_id, connection_id, now + 100, "2", ttl=now + 100 + 7 * DAY)
    second = vault.get(user_id, connection_id, now + 100)
    assert second is not None
    assert (second["sealed"], second["version"], second["ttl"], second["updated_at"]) == (
        "sealed-2", 2, now + 100 + 7 * DAY, now + 100)
    assert "access_expires_at" not in second


def test_an_entry_past_its_retention_is_not_read():
    now = int(time.time())
    user_id, connection_id = _ids()
    _store(user_id, connection_id, now, ttl=now + 60)
    assert vault.get(user_id, connection_id, now + 59) is not None
    assert vault.get(user_id, connection_id, now + 60) is None  # TTL deletion lags
    assert vault.take_lease(user_id, connection_id, "l", now + 60, now + 75) is None


def test_the_entry_rides_in_the_logins_transaction():
    """Both or neither: a condition failing elsewhere in the transaction stores no tokens."""
    now = int(time.time())
    user_id, connection_id = _ids()
    marker = {"pk": f"VAULT-TEST#{random_token(9)}", "sk": "X"}
    table().put(dict(marker))
    refused = UnitOfWork([Write.put_if_absent(dict(marker)),
                          vault.store_operation(user_id, connection_id, _fields(), now,
                                                now + DAY)])
    with pytest.raises(ConditionFailed):
        refused.commit()
    assert vault.get(user_id, connection_id, now) is None


def test_of_concurrent_lease_takers_exactly_one_wins():
    now = int(time.time())
    user_id, connection_id = _ids()
    _store(user_id, connection_id, now)
    leases = [random_token(12) for _ in range(PARALLEL)]
    taken = iter(leases)
    results = race(lambda: vault.take_lease(user_id, connection_id, next(taken), now, now + 15))
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1, results
    assert results.count(None) == PARALLEL - 1
    stored = vault.get(user_id, connection_id, now)
    assert stored is not None and stored["lease"] == winners[0]["lease"]
    assert stored["lease_until"] == now + 15


def test_a_lease_runs_out_and_can_then_be_taken_over():
    now = int(time.time())
    user_id, connection_id = _ids()
    _store(user_id, connection_id, now)
    assert vault.take_lease(user_id, connection_id, "first", now, now + 15) is not None
    assert vault.take_lease(user_id, connection_id, "second", now + 14, now + 29) is None
    assert vault.take_lease(user_id, connection_id, "second", now + 15, now + 30) is not None
    # The first holder, late, lost it: its refresh is refused.
    with pytest.raises(ConditionFailed):
        vault.replace(user_id, connection_id, _fields("late"), "first", now + 16, now + DAY)
    assert vault.get(user_id, connection_id, now + 16)["sealed"] == "sealed-1"


def test_no_lease_on_a_missing_entry():
    now = int(time.time())
    user_id, connection_id = _ids()
    assert vault.take_lease(user_id, connection_id, "l", now, now + 15) is None
    assert vault.get(user_id, connection_id, now) is None  # and taking it created nothing


def test_replace_writes_only_with_the_lease_bumps_the_version_and_releases_it():
    now = int(time.time())
    user_id, connection_id = _ids()
    _store(user_id, connection_id, now)
    assert vault.take_lease(user_id, connection_id, "mine", now, now + 15) is not None
    with pytest.raises(ConditionFailed):
        vault.replace(user_id, connection_id, _fields("forged"), "not-mine", now + 1, now + DAY)
    assert vault.replace(user_id, connection_id, _fields("2", now + 301), "mine", now + 1,
                         now + 1 + 30 * DAY) == 2
    stored = vault.get(user_id, connection_id, now + 1)
    assert (stored["sealed"], stored["version"], stored["access_expires_at"], stored["ttl"],
            stored["created_at"]) == ("sealed-2", 2, now + 301, now + 1 + 30 * DAY, now)
    assert "lease" not in stored and "lease_until" not in stored
    # Released: the same lease writes no more, and the next refresher can take one at once.
    with pytest.raises(ConditionFailed):
        vault.replace(user_id, connection_id, _fields("3"), "mine", now + 2, now + DAY)
    assert vault.take_lease(user_id, connection_id, "next", now + 2, now + 17) is not None


def test_a_login_during_a_refresh_wins_and_the_refresh_is_refused():
    """The login's tokens are the newest: its write drops the lease, so the refresher's
    replace (holding tokens from before) fails instead of overwriting them."""
    now = int(time.time())
    user_id, connection_id = _ids()
    _store(user_id, connection_id, now)
    assert vault.take_lease(user_id, connection_id, "refresher", now, now + 15) is not None
    _store(user_id, connection_id, now + 1, "login")
    with pytest.raises(ConditionFailed):
        vault.replace(user_id, connection_id, _fields("refreshed"), "refresher", now + 2,
                      now + DAY)
    stored = vault.get(user_id, connection_id, now + 2)
    assert (stored["sealed"], stored["version"]) == ("sealed-login", 2)


def test_release_drops_only_the_holders_lease():
    now = int(time.time())
    user_id, connection_id = _ids()
    _store(user_id, connection_id, now)
    assert vault.take_lease(user_id, connection_id, "held", now, now + 15) is not None
    assert vault.release_lease(user_id, connection_id, "other") is False
    assert vault.get(user_id, connection_id, now)["lease"] == "held"
    assert vault.release_lease(user_id, connection_id, "held") is True
    assert "lease" not in vault.get(user_id, connection_id, now)
    assert vault.take_lease(user_id, connection_id, "again", now, now + 15) is not None


def test_a_users_entries_are_listed_and_deleted_one_by_one():
    now = int(time.time())
    user_id, first = _ids()
    second = f"con_{random_token(12)}"
    other_user = f"{user_id}-other"
    _store(user_id, first, now)
    _store(user_id, second, now)
    _store(other_user, first, now)
    assert sorted(e["connection_id"] for e in vault.of_user(user_id)) == sorted([first, second])
    deleted = vault.delete(user_id, first)
    assert deleted is not None and deleted["sealed"] == "sealed-1"
    assert vault.delete(user_id, first) is None
    assert [e["connection_id"] for e in vault.of_user(user_id)] == [second]
    assert [e["connection_id"] for e in vault.of_user(other_user)] == [first]


@pytest.mark.parametrize("user_id,connection_id", [
    ("", "con_1"), ("u", ""), (None, "con_1"), ("u", 7), ("u" * 513, "con_1")])
def test_no_key_from_unusable_ids(user_id, connection_id):
    now = int(time.time())
    assert vault.get(user_id, connection_id, now) is None
    assert vault.take_lease(user_id, connection_id, "l", now, now + 15) is None
    assert vault.release_lease(user_id, connection_id, "l") is False
    assert vault.delete(user_id, connection_id) is None
    with pytest.raises((ValueError, ConditionFailed)):
        vault.store_operation(user_id, connection_id, _fields(), now, now + DAY)
    with pytest.raises(ConditionFailed):
        vault.replace(user_id, connection_id, _fields(), "l", now, now + DAY)
