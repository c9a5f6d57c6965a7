"""The one place that creates boto3 clients: short timeouts, bounded retries, created on first use.

boto3 is imported lazily: it is the heaviest import on the cold path and some requests never
touch AWS. ``AWS_ENDPOINT_URL`` (honoured by botocore itself) points everything at the local
embedded endpoint during ``make run`` and the tests.

Deadlines (SPEC §8): one AWS call takes at most ``MAX_ATTEMPTS × (CONNECT_TIMEOUT + READ_TIMEOUT)``
plus botocore's jittered backoff between attempts (standard mode: ≤ 2^(n-1) s before attempt n+1,
plus at most 5 s more when the service sends ``x-amz-retry-after``). A request runs several calls,
so each request also gets a *budget* (:func:`request_deadline`, set by the HTTP middleware in
``chalicelib/api/oauth.py``): once it is spent no new AWS attempt starts (:class:`DeadlineExceeded`,
which the store maps to 503) and upstream HTTP calls (``chalicelib/netguard.py``) are cut to what is
left. Worst case of a request: budget + one attempt + one backoff, see :func:`worst_case_request`.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

_lock = threading.Lock()
_clients: dict[tuple, object] = {}

CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
MAX_ATTEMPTS = 3  # the first try and two retries
RETRY_AFTER_MAX_EXTRA = 5.0  # botocore honours x-amz-retry-after up to 5 s beyond its own delay
API_GATEWAY_TIMEOUT = 29.0
REQUEST_BUDGET = 15.0  # seconds of outbound work one HTTP request may start


def _config():
    from botocore.config import Config

    # SPEC §8: AWS calls get short connect/read timeouts and bounded, jittered retries.
    return Config(
        # A fixed User-Agent (botocore appends its version): botocore otherwise builds and
        # sanitises a ~35-part one twice per call (~0.1 ms of CPU per call, a few % of a warm
        # token request); AWS needs nothing from it.
        user_agent="identity-broker",
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        # total_max_attempts counts the first try; botocore's "max_attempts" counts retries only
        # (max_attempts=3 meant four attempts).
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=32,
    )


def worst_case_call() -> float:
    """Seconds one AWS call can take when every attempt times out and every backoff is maximal."""
    backoffs = sum(2 ** (n - 1) + RETRY_AFTER_MAX_EXTRA for n in range(1, MAX_ATTEMPTS))
    return MAX_ATTEMPTS * (CONNECT_TIMEOUT + READ_TIMEOUT) + backoffs


def worst_case_request(budget: float = REQUEST_BUDGET) -> float:
    """A request starts no new attempt after its budget: the last one may still run its timeouts
    and the backoff before it (the refusal comes at the next attempt)."""
    last_backoff = 2 ** (MAX_ATTEMPTS - 2) + RETRY_AFTER_MAX_EXTRA
    return budget + (CONNECT_TIMEOUT + READ_TIMEOUT) + last_backoff


# --------------------------------------------------------------------------- request deadline

_local = threading.local()
_clock = time.monotonic  # tests replace it to simulate slow attempts without waiting


DeadlineExceeded: type | None = None  # a BotoCoreError subclass (botocore is imported lazily)


def _deadline_exceeded_class() -> type:
    global DeadlineExceeded
    if DeadlineExceeded is None:
        from botocore.exceptions import BotoCoreError

        class _DeadlineExceeded(BotoCoreError):
            """The request's time budget is spent: no new AWS attempt starts. A BotoCoreError,
            so every caller's outage handling (503) applies; botocore does not retry it."""

            fmt = "The request's deadline passed before the call could be made"

        DeadlineExceeded = _DeadlineExceeded
    return DeadlineExceeded


def remaining() -> float | None:
    """Seconds left in this thread's request budget (None: no budget set)."""
    deadline = getattr(_local, "deadline", None)
    return None if deadline is None else deadline - _clock()


@contextlib.contextmanager
def request_deadline(seconds: float = REQUEST_BUDGET) -> Iterator[None]:
    """Bound the outbound work of the code inside (one request). Nested budgets only shrink."""
    previous = getattr(_local, "deadline", None)
    deadline = _clock() + seconds
    _local.deadline = deadline if previous is None else min(previous, deadline)
    try:
        yield
    finally:
        _local.deadline = previous


def _refuse_after_deadline(**_kwargs) -> None:
    left = remaining()
    if left is not None and left <= 0:
        raise _deadline_exceeded_class()()


def client(service: str):
    """A cached client for ``service``; a new one when the endpoint or region changes (tests)."""
    key = (
        service,
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"),
    )
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            import boto3

            _deadline_exceeded_class()
            session = boto3.session.Session()
            # Checked before every attempt (retries included): a spent budget ends the call.
            session.events.register("before-send", _refuse_after_deadline,
                                    unique_id="broker-request-deadline")
            found = session.client(service, config=_config(), region_name=key[2] or "us-east-1")
            _clients[key] = found
    return found


def reset_clients() -> None:
    with _lock:
        _clients.clear()
