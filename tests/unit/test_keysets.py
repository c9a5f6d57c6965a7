"""The one key-set engine (chalicelib/keysets.py) on its own: a fake secret store, no AWS."""
from __future__ import annotations

import json

import pytest

from chalicelib import clock, keysets
from chalicelib.keys import SigningKey
from chalicelib.management.connection_keys import ConnectionKey
from chalicelib.secrets import SecretExists, SecretNotFound


class FakeStore:
    """What the engine asks of a secret store; counts the reads that reach 'Secrets Manager'."""

    def __init__(self):
        self.values: dict[str, str] = {}
        self.reads = 0

    def get(self, name):
        self.reads += 1
        if name not in self.values:
            raise SecretNotFound(name)
        return self.values[name]

    def create(self, name, value, description=""):
        if name in self.values:
            raise SecretExists(name)
        self.values[name] = value

    def put(self, name, value, description=""):
        self.values[name] = value

    def forget(self, name):
        pass


def new_key(cls, status, algorithm="RS256"):
    return keysets.generate_key(cls, status, algorithm=algorithm, subject=[("CN", "unit")],
                                random_kid=cls is SigningKey)


@pytest.fixture
def fixed_time():
    previous = clock.install(clock.FixedClock(1_800_000_000))
    yield clock._current
    clock.install(previous)


def test_each_kind_keeps_its_stored_format():
    signing = new_key(SigningKey, "current")
    connection = new_key(ConnectionKey, "current", "ES256")
    [stored_signing] = json.loads(keysets.KeySets.encode([signing]))["keys"]
    [stored_connection] = json.loads(keysets.KeySets.encode([connection]))["keys"]
    assert list(stored_signing) == ["kid", "status", "jwk", "cert", "created_at", "current_since",
                                    "revoked_at"]
    assert list(stored_connection) == ["kid", "status", "algorithm", "jwk", "cert", "created_at",
                                       "current_since"]
    parsed = keysets.KeySets(SigningKey).decode("s", keysets.KeySets.encode([signing]))
    assert parsed.keys == [signing] and parsed.keys[0].algorithm == "RS256"
    assert "x5t#S256" not in signing.public_jwk and "x5t#S256" in connection.public_jwk
    assert "d" not in signing.public_jwk and "d" not in connection.public_jwk
    assert connection.kid == connection.public_jwk["kid"] and connection.public_jwk["crv"] == "P-256"
    assert repr(signing).startswith("SigningKey(") and "jwk" not in repr(connection)


def test_rotation_promotes_next_retires_previous_and_keeps_three_revoked(fixed_time):
    current, following, previous = (new_key(SigningKey, s) for s in ("current", "next", "previous"))
    revoked = [new_key(SigningKey, "revoked").public_part().with_status(
        "revoked", revoked_at=f"2026-01-0{i}T00:00:00.000Z") for i in range(1, 5)]
    keys, promoted, new_next = keysets.rotated([current, following, previous, *revoked],
                                               lambda status: new_key(SigningKey, status))
    assert promoted.kid == following.kid and promoted.current_since == "2027-01-15T08:00:00.000Z"
    statuses = {k.kid: k.status for k in keys}
    assert statuses[current.kid] == "previous" and statuses[new_next.kid] == "next"
    assert previous.kid not in statuses and revoked[0].kid not in statuses
    assert [k.kid for k in keys if k.status == "revoked"] == [k.kid for k in revoked[1:]]
    published = keysets.KeySet(keys, {}).published()
    assert [k.status for k in published] == ["current", "next", "previous"]


def test_a_set_without_next_gets_a_new_current():
    only = new_key(ConnectionKey, "current")
    keys, promoted, new_next = keysets.rotated([only], lambda s: new_key(ConnectionKey, s))
    assert promoted.kid not in (only.kid, new_next.kid)
    assert {k.kid: k.status for k in keys} == {only.kid: "previous", promoted.kid: "current",
                                               new_next.kid: "next"}


def test_first_use_creates_once_and_a_lost_race_reads_the_winner():
    store, sets = FakeStore(), keysets.KeySets(ConnectionKey)
    made = sets.ensure("n", store, lambda: [new_key(ConnectionKey, "current")], description="")
    winner = made.keys[0].kid
    again, created = sets.create("n", store, [new_key(ConnectionKey, "current")], description="")
    assert not created and again.keys[0].kid == winner
    assert sets.ensure("n", store, lambda: pytest.fail("no second set"), description="") == again


def test_a_miss_is_remembered_for_miss_seconds_only(fixed_time):
    store, sets = FakeStore(), keysets.KeySets(ConnectionKey, miss_seconds=60)
    assert sets.read("n", store, trust_miss=True) is None
    for _ in range(100):
        assert sets.read("n", store, trust_miss=True) is None
    assert store.reads == 1
    assert sets.read("n", store) is None  # an untrusting read asks again
    assert store.reads == 2
    fixed_time.advance(60)
    assert sets.read("n", store, trust_miss=True) is None
    assert store.reads == 3
    sets.create("n", store, [new_key(ConnectionKey, "current")], description="")
    assert sets.read("n", store, trust_miss=True) is not None  # creating forgets the miss


def test_a_parsed_set_is_reused_until_the_value_changes():
    store, sets = FakeStore(), keysets.KeySets(SigningKey)
    first = sets.ensure("n", store, lambda: [new_key(SigningKey, "current")], description="")
    assert sets.ensure("n", store, list, description="") is first
    sets.rotate("n", store, first, lambda s: new_key(SigningKey, s))
    assert sets.ensure("n", store, list, description="") is not first
