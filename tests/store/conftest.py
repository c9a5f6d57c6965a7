"""The store suite runs on every backend: DynamoDB (moto's server, provisioned from infra/ by the
shared fixtures) and ``store.memory.MemoryTable``. Each test gets a fresh table object of its
backend, installed with ``dynamo.install`` and the previous one put back afterwards."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.store import dynamo

PARALLEL = 20
BACKENDS = ("dynamodb", "memory")


def pytest_generate_tests(metafunc):
    """Every test runs once per backend; a module may name fewer in its own ``BACKENDS``."""
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", getattr(metafunc.module, "BACKENDS", BACKENDS),
                             indirect=True)


@pytest.fixture(autouse=True)
def backend(request) -> str:
    """Which backend this run of the test writes through (``table()`` answers it)."""
    if request.param == "dynamodb":
        request.getfixturevalue("aws_endpoint")
        fresh = dynamo.Table()
    else:
        from chalicelib.store.memory import MemoryTable

        fresh = MemoryTable()
    previous = dynamo.install(fresh)
    yield request.param
    dynamo.install(previous)


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
def small_pages(backend):
    """Queries answer two items a page, so paging code runs without megabytes of data (DynamoDB;
    the memory backend has no pages)."""
    if backend != "dynamodb":
        yield
        return
    from chalicelib import aws

    events = aws.client("dynamodb").meta.events

    def limit(params, **_kwargs):
        params.setdefault("Limit", 2)

    events.register("provide-client-params.dynamodb.Query", limit)
    yield
    events.unregister("provide-client-params.dynamodb.Query", limit)
