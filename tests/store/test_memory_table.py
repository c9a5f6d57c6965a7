"""What only the memory backend has: it refuses loudly what it cannot evaluate, reads the broker's
clock, declares the indexes infra/ defines, and its conflict hook. (Its DynamoDB semantics are
tests/store/test_conformance.py's, shared with the DynamoDB backend.)"""
from __future__ import annotations

import time

import pytest

from chalicelib import clock
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.store.memory import MemoryTable
from tests.store.conftest import race

BACKENDS = ("memory",)


@pytest.fixture()
def memory():
    return MemoryTable(clock=lambda: 1000.0, sleep=lambda _seconds: None)


@pytest.mark.parametrize("condition", [
    "size(a) > :v", "contains(a, :v)", "a BETWEEN :v AND :v", "a IN (:v)", "a.b[1] = :v",
    "a[0] = :v", "attribute_type(a, :v)", "a = :v AND", "a = :v)", "a ! :v", "a",
])
def test_a_condition_it_cannot_evaluate_raises_value_error(memory, condition):
    with pytest.raises(ValueError):
        memory.put({"pk": "p", "sk": "s"}, condition=condition, values={":v": "x"})
    assert memory.dump() == []


@pytest.mark.parametrize("expression", [
    "SET a = list_append(a, :v)", "SET a.b[0] = :v", "SET a = :v + :v + :v", "ADD a b",
    "SET a = :v, ", "UPSERT a = :v", "SET a :v", "REMOVE :v",
])
def test_an_update_it_cannot_evaluate_raises_value_error(memory, expression):
    with pytest.raises(ValueError):
        memory.update("p", "s", expression, values={":v": 1})
    assert memory.dump() == []


def test_the_default_clock_is_the_broker_clock():
    table = MemoryTable()
    fixed = clock.FixedClock(1000)
    previous = clock.install(fixed)
    try:
        table.put({"pk": "p", "sk": "s", "ttl": 1010})
        assert table.get("p", "s") is not None
        fixed.advance(10)
        assert table.get("p", "s") is None
        assert table.dump() == [{"pk": "p", "sk": "s", "ttl": 1010}]   # TTL deletion lags
    finally:
        clock.install(previous)


def test_the_indexes_are_those_infra_defines():
    from scripts.provision import load_template

    resources = load_template()["Resources"].values()
    (broker_table,) = [r for r in resources if r["Type"] == "AWS::DynamoDB::Table"]
    defined = {}
    for index in broker_table["Properties"]["GlobalSecondaryIndexes"]:
        keys = {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]}
        assert index["Projection"]["ProjectionType"] == "KEYS_ONLY"
        defined[index["IndexName"]] = (keys["HASH"], keys.get("RANGE"))
    assert MemoryTable.indexes == defined


def test_conflict_next_cancels_that_many_transactions(memory):
    memory.conflict_next(2)
    for _ in range(2):
        with pytest.raises(ConditionFailed) as caught:
            memory.transact([{"Put": {"Item": {"pk": "p", "sk": "s"}}}])
        assert caught.value.lost_race and caught.value.reasons == ["TransactionConflict"]
    assert memory.dump() == []
    memory.transact([{"Put": {"Item": {"pk": "p", "sk": "s"}}}])
    assert memory.dump() == [{"pk": "p", "sk": "s"}]


class _SlowReads(MemoryTable):
    """Widens the window between a condition's read of an item and the write that follows it,
    so that only the lock keeps the two one step (the race is not waiting for time to pass)."""

    def _stored(self, key):
        found = super()._stored(key)
        time.sleep(0.001)
        return found


def test_the_lock_makes_each_conditional_write_one_step():
    memory = _SlowReads(clock=lambda: 1000.0)
    assert race(lambda: memory.put_new({"pk": "new", "sk": "s"})).count(None) == 1
    memory.put({"pk": "used", "sk": "s"})
    consumed = race(lambda: memory.delete("used", "s", condition="attribute_exists(pk)",
                                          return_old=True))
    assert sum(isinstance(r, dict) for r in consumed) == 1, consumed
    once = {"Update": {"Key": {"pk": "new", "sk": "s"}, "UpdateExpression": "SET used = :t",
                       "ConditionExpression": "attribute_not_exists(used)",
                       "ExpressionAttributeValues": {":t": True}}}
    assert race(lambda: memory.transact([once])).count(None) == 1
