"""The storage snapshot the fault tests compare before and after a failing request
(helpers.snapshot): it must see every item but log events, or a "nothing changed" check could
never fail."""
from __future__ import annotations

import uuid

from tests.resilience.helpers import diff, snapshot


def test_the_snapshot_sees_writes_and_leaves_log_events_out(aws_endpoint):
    from chalicelib.store.dynamo import table

    before = snapshot()
    mark = uuid.uuid4().hex
    table().put({"pk": f"SNAPSHOT#{mark}", "sk": "ITEM", "value": 1})
    table().put({"pk": f"LOGS#snapshot-{mark}", "sk": "900" + "0" * 53})
    try:
        after = snapshot()
    finally:
        table().delete(f"SNAPSHOT#{mark}", "ITEM")
        table().delete(f"LOGS#snapshot-{mark}", "900" + "0" * 53)

    changes = diff(before, after)
    assert (f"SNAPSHOT#{mark}", "ITEM") in changes.added
    assert not any(pk.startswith("LOGS#") for pk, _ in after)
    assert (f"SNAPSHOT#{mark}", "ITEM") not in snapshot()
