"""The store suite runs against the table the shared fixtures provision (moto's DynamoDB)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

PARALLEL = 20


@pytest.fixture(autouse=True)
def _table(aws_endpoint):
    yield


def race(call, count: int = PARALLEL) -> list:
    """Run ``call`` in ``count`` threads at once; the results (or exceptions) in a list."""
    def attempt(_):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the losers' exceptions are the result
            return exc

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(attempt, range(count), timeout=120))


@pytest.fixture()
def small_pages():
    """Queries answer two items a page, so paging code runs without megabytes of data."""
    from chalicelib import aws

    events = aws.client("dynamodb").meta.events

    def limit(params, **_kwargs):
        params.setdefault("Limit", 2)

    events.register("provide-client-params.dynamodb.Query", limit)
    yield
    events.unregister("provide-client-params.dynamodb.Query", limit)
