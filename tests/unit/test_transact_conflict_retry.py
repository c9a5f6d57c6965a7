"""A transaction cancelled only by a concurrent one on the same item (TransactionConflict) wrote
nothing: writes whose conditions do not depend on who wins are sent again; a failed condition,
or a caller that asked for no retry, still gets ConditionFailed at once."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from chalicelib.store.dynamo import ConditionFailed, Table


def _cancelled(*reasons: str) -> ClientError:
    return ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "x"},
                        "CancellationReasons": [{"Code": r} for r in reasons]},
                       "TransactWriteItems")


class _Client:
    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    def transact_write_items(self, **kwargs):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {}


def _table(failures):
    waits: list[float] = []
    table = Table(name="t", sleep=waits.append)
    client = _Client(failures)
    table._client = lambda: client
    return table, client, waits


OPS = [{"Put": {"Item": {"pk": "A", "sk": "A"}}}, {"Put": {"Item": {"pk": "B", "sk": "B"}}}]


def test_a_lost_race_is_sent_again_after_a_short_pause():
    table, client, waits = _table([_cancelled("None", "TransactionConflict")])
    table.transact(OPS, conflict_retries=2)
    assert client.calls == 2
    assert len(waits) == 1 and 0 < waits[0] <= 0.04


def test_retries_are_bounded():
    conflict = _cancelled("TransactionConflict", "None")
    table, client, waits = _table([conflict, conflict, conflict])
    with pytest.raises(ConditionFailed) as caught:
        table.transact(OPS, conflict_retries=2)
    assert caught.value.lost_race
    assert client.calls == 3 and len(waits) == 2


def test_a_failed_condition_is_never_retried():
    table, client, waits = _table([_cancelled("ConditionalCheckFailed", "TransactionConflict")])
    with pytest.raises(ConditionFailed) as caught:
        table.transact(OPS, conflict_retries=2)
    assert not caught.value.lost_race
    assert client.calls == 1 and waits == []


def test_without_retries_a_conflict_is_reported_to_the_caller():
    """Single-use consumption (refresh rotation) decides itself what a lost race means."""
    table, client, _ = _table([_cancelled("None", "TransactionConflict")])
    with pytest.raises(ConditionFailed):
        table.transact(OPS)
    assert client.calls == 1
