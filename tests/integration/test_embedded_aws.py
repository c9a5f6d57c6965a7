"""The embedded AWS endpoint keeps DynamoDB transactions all-or-nothing (tests and make run
rely on it exactly as the deployed broker relies on DynamoDB)."""
from __future__ import annotations

import pytest

from chalicelib.store.dynamo import ConditionFailed, table


def test_cancelled_transaction_changes_nothing(aws_endpoint):
    store = table()
    store.put({"pk": "ATOMIC#1", "sk": "A", "value": "before"})
    with pytest.raises(ConditionFailed):
        store.transact([
            {"Put": {"Item": {"pk": "ATOMIC#1", "sk": "A", "value": "after"}}},
            {"Put": {"Item": {"pk": "ATOMIC#1", "sk": "NEW", "value": "new"}}},
            {"Update": {"Key": {"pk": "ATOMIC#1", "sk": "B"}, "UpdateExpression": "SET v = :v",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeValues": {":v": 1}}},
        ])
    assert store.get("ATOMIC#1", "A")["value"] == "before"
    assert store.get("ATOMIC#1", "NEW") is None
    assert store.get("ATOMIC#1", "B") is None


def test_committed_transaction_writes_everything(aws_endpoint):
    store = table()
    store.transact([
        {"Put": {"Item": {"pk": "ATOMIC#2", "sk": "A", "value": 1}}},
        {"Put": {"Item": {"pk": "ATOMIC#2", "sk": "B", "value": 2}}},
    ])
    assert store.get("ATOMIC#2", "A")["value"] == 1
    assert store.get("ATOMIC#2", "B")["value"] == 2
