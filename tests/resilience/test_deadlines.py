"""SPEC §8 deadlines: every outbound call has an explicit timeout, and a request ends well before
API Gateway's 29 s even when every dependency is slow and every retry fires.

The worst case is computed from the clients' real configuration, then *simulated*: a fake clock
(``chalicelib.aws._clock``) jumps by connect + read timeout on every AWS attempt and by botocore's
largest backoff between attempts, so nothing waits.
"""
from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest

from chalicelib import aws, clock, netguard
from chalicelib.errors import ServiceUnavailable
from tests.resilience.helpers import (
    AwsFaults,
    Stopwatch,
    assert_app_redirect,
    assert_oauth_unavailable,
    authorize,
    callback,
    code_of,
    exchange,
    upstream_answer,
)

ROOT = Path(__file__).resolve().parents[2]
API_GATEWAY = 29.0
MARGIN = 3.0  # "well before": room for the work between calls and a slow cold start


# --------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("service", ["dynamodb", "secretsmanager", "sqs"])
def test_aws_clients_have_short_timeouts_and_bounded_retries(aws_endpoint, service):
    config = aws.client(service).meta.config
    assert 0 < config.connect_timeout <= 2
    assert 0 < config.read_timeout <= 5
    assert config.retries["mode"] == "standard"  # jittered exponential backoff
    attempts = config.retries.get("total_max_attempts") or config.retries["max_attempts"]
    assert 1 <= attempts <= 3
    # Worst case of one call: every attempt hits both timeouts, every backoff is the largest
    # botocore may choose (standard mode: 2^(n-1) s, plus up to 5 s on x-amz-retry-after).
    backoffs = sum(min(2 ** (n - 1), 20) + aws.RETRY_AFTER_MAX_EXTRA for n in range(1, attempts))
    one_call = attempts * (config.connect_timeout + config.read_timeout) + backoffs
    assert one_call == pytest.approx(aws.worst_case_call())
    assert one_call < API_GATEWAY - MARGIN, one_call


def test_a_request_budget_keeps_the_worst_case_under_api_gateway():
    worst = aws.worst_case_request()
    assert worst == pytest.approx(aws.REQUEST_BUDGET + aws.CONNECT_TIMEOUT + aws.READ_TIMEOUT
                                  + 2 ** (aws.MAX_ATTEMPTS - 2) + aws.RETRY_AFTER_MAX_EXTRA)
    assert worst < API_GATEWAY - MARGIN, worst
    # The Lambda itself is given less than API Gateway's limit, and more than the worst case.
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage in ("dev", "prod"):
        timeout = config["stages"][stage]["lambda_timeout"]
        assert worst < timeout < API_GATEWAY + 1, (stage, timeout)
        worker = config["stages"][stage]["lambda_functions"]["deliver_backchannel_logout"]
        from chalicelib.logout import backchannel

        assert backchannel.HANDLE_BUDGET_SECONDS + aws.CONNECT_TIMEOUT + aws.READ_TIMEOUT <= (
            worker["lambda_timeout"] + 1)


def test_upstream_http_defaults_and_caps():
    """connect ≤ 3 s, whole exchange ≤ 10 s; callers may ask for less, never more."""
    assert netguard.CONNECT_TIMEOUT <= 3
    assert netguard.TOTAL_TIMEOUT <= 10
    assert netguard.READ_TIMEOUT <= netguard.TOTAL_TIMEOUT
    import inspect

    for function in (netguard.safe_get, netguard.safe_post_form):
        parameters = inspect.signature(function).parameters
        for name in ("connect_timeout", "read_timeout", "total_timeout"):
            assert parameters[name].default is None  # None: the module's bound, read per call


def test_a_caller_cannot_exceed_the_upstream_bounds(monkeypatch, world):
    seen = []
    original = netguard._Guard

    def spy(**kwargs):
        seen.append((kwargs["connect_timeout"], kwargs["deadline"] - time.monotonic()))
        return original(**kwargs)

    monkeypatch.setattr(netguard, "_Guard", spy)
    idp = world["idp"]
    response = netguard.safe_get(idp.base_url + "/jwks", allow_loopback=True,
                                 connect_timeout=60, read_timeout=60, total_timeout=60)
    assert response.status_code == 200
    connect, total = seen[-1]
    assert connect <= 3 and total <= 10.01


def test_only_the_two_doors_reach_the_network():
    """Outbound HTTP goes through netguard (its bounds), AWS through chalicelib.aws (its config):
    no other module of what ships imports an HTTP client or builds a boto3 client."""
    offenders = []
    for path in [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]:
        relative = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                if root in ("requests", "urllib3", "httpx", "aiohttp") and relative != (
                        "chalicelib/netguard.py"):
                    offenders.append(f"{relative}: imports {name}")
                if name in ("http.client", "urllib.request") and relative != "chalicelib/netguard.py":
                    offenders.append(f"{relative}: imports {name}")
                if root in ("boto3", "botocore") and relative not in (
                        "chalicelib/aws.py",) and not name.startswith(("botocore.exceptions",
                                                                        "boto3.dynamodb.types")):
                    offenders.append(f"{relative}: imports {name}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                    node.func.attr in ("client", "resource")) and isinstance(
                    node.func.value, ast.Name) and node.func.value.id in ("boto3", "session"):
                if relative != "chalicelib/aws.py":
                    offenders.append(f"{relative}: builds a boto3 client")
    assert offenders == []


# --------------------------------------------------------------------------- the budget at work

def test_every_http_request_runs_under_a_budget(mclient, world, idp):
    """The middleware sets the budget for every route (observed from inside the AWS calls)."""
    seen: list[float | None] = []

    def observe(**_kwargs):
        seen.append(aws.remaining())

    events = aws.client("dynamodb").meta.events
    events.register("before-call", observe, unique_id="budget-observer")
    try:
        started = authorize(mclient, world["web"], world["back"])
        code_of(callback(started, upstream_answer(started)))
        mclient.http.get("/api/v2/clients", headers={"Authorization": "Bearer x"})
    finally:
        events.unregister("before-call", unique_id="budget-observer")
    assert seen and all(left is not None and 0 < left <= aws.REQUEST_BUDGET for left in seen)
    assert aws.remaining() is None  # and nothing leaks out of the request


def test_a_spent_budget_refuses_new_aws_attempts(aws_endpoint):
    from chalicelib.store.dynamo import table

    with aws.request_deadline(0):
        with pytest.raises(ServiceUnavailable):
            table().get("NOTHING", "NOTHING")
    assert table().get("NOTHING", "NOTHING") is None


def test_a_spent_budget_cuts_upstream_calls(world):
    idp = world["idp"]
    with aws.request_deadline(0), Stopwatch() as watch:
        with pytest.raises(netguard.OutboundError, match="timed out"):
            netguard.safe_get(idp.base_url + "/jwks", allow_loopback=True)
    assert watch.elapsed < 0.5


def test_the_budget_shortens_a_hanging_upstream_call(world, idp):
    idp.faults["/token"] = "slow"
    try:
        with aws.request_deadline(0.4), Stopwatch() as watch:
            with pytest.raises(netguard.OutboundError):
                netguard.safe_post_form(idp.base_url + "/token", {"a": "b"}, allow_loopback=True)
    finally:
        idp.release.set()
    assert watch.elapsed < 2.0, watch.elapsed


class SlowAws:
    """Every AWS attempt 'takes' connect + read timeout on a fake clock and the first
    ``failing`` attempts of each call time out; backoffs take their largest value."""

    def __init__(self, monkeypatch, failing: int):
        from botocore.retries import standard

        self.now = 1_000_000.0
        self.failing = failing
        self.attempts = 0
        self._per_call = 0
        slow = self

        class FakeMonotonic(clock.Clock):
            """Wall time as it is; the monotonic reading request budgets use is this fake's."""

            def now(self) -> float:
                return time.time()

            def monotonic(self) -> float:
                return slow.now

        # the broker's clock for this test (monkeypatch puts the real one back afterwards)
        monkeypatch.setattr(clock, "_current", FakeMonotonic())

        def largest_backoff(backoff, context):
            self.now += min(2 ** (context.attempt_number - 1), 20) + aws.RETRY_AFTER_MAX_EXTRA
            return 0

        monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", largest_backoff)

    def before_call(self, **_kwargs):
        self._per_call = 0

    def before_send(self, request, **_kwargs):
        from botocore.exceptions import ReadTimeoutError

        self.attempts += 1
        self._per_call += 1
        self.now += aws.CONNECT_TIMEOUT + aws.READ_TIMEOUT
        if self._per_call <= self.failing:
            raise ReadTimeoutError(endpoint_url=request.url)
        return None

    def __enter__(self):
        for service in ("dynamodb", "secretsmanager", "sqs"):
            events = aws.client(service).meta.events
            events.register("before-call", self.before_call, unique_id="slow-aws-call")
            # Registered after chalicelib.aws's own deadline check, so that check runs first.
            events.register("before-send", self.before_send, unique_id="slow-aws-send")
        self.start = self.now
        return self

    def __exit__(self, *exc):
        for service in ("dynamodb", "secretsmanager", "sqs"):
            events = aws.client(service).meta.events
            events.unregister("before-call", unique_id="slow-aws-call")
            events.unregister("before-send", unique_id="slow-aws-send")

    @property
    def elapsed(self) -> float:
        return self.now - self.start


@pytest.mark.parametrize("failing", [2, 3])
def test_token_request_when_every_retry_fires(mclient, world, idp, monkeypatch, failing):
    """failing=2: each call succeeds on its last attempt (slow, not down); failing=3: every call
    fails after all its attempts. Either way the request ends within the computed worst case."""
    started = authorize(mclient, world["web"], world["back"])
    code = code_of(callback(started, upstream_answer(started)))
    with SlowAws(monkeypatch, failing) as slow, Stopwatch() as watch:
        response = exchange(mclient, world["web"], code, started.verifier)
    assert_oauth_unavailable(response)
    assert slow.elapsed <= aws.worst_case_request() + 0.01, slow.elapsed
    assert slow.elapsed < API_GATEWAY - MARGIN
    assert watch.elapsed < 5  # and, for real, no time passed
    monkeypatch.undo()
    assert exchange(mclient, world["web"], code, started.verifier).status_code == 200


def test_callback_when_every_retry_fires(mclient, world, idp, monkeypatch):
    started = authorize(mclient, world["web"], world["info"])
    answer = upstream_answer(started)
    with SlowAws(monkeypatch, failing=2) as slow:
        response = callback(started, answer)
    assert slow.elapsed <= aws.worst_case_request() + 0.01, slow.elapsed
    if response.status_code == 503:  # the transaction itself could not be read in time
        assert slow.attempts <= aws.MAX_ATTEMPTS + 1
    else:
        assert_app_redirect(response, status=(303,))


def test_a_throttled_call_with_real_backoff(mapi, world, monkeypatch):
    """Without the tests' backoff patch: a DynamoDB outage answered with throttling errors costs
    at most MAX_ATTEMPTS attempts and botocore's real jittered sleeps (≤ 1 s + 2 s)."""
    monkeypatch.undo()  # real backoff for this one test
    mapi.call("GET", "/api/v2/clients")  # warm the management token's signing keys
    with AwsFaults() as faults, Stopwatch() as watch:
        faults.outage("dynamodb", kind="throttle")
        response = mapi.call("GET", f"/api/v2/clients/{world['web']['client_id']}")
    assert response.status_code == 503, response.body
    assert 1 <= faults.injected <= aws.MAX_ATTEMPTS
    assert faults.calls[("dynamodb", "*")] == 1  # one call, its retries are attempts
    assert watch.elapsed < sum(2 ** (n - 1) for n in range(1, aws.MAX_ATTEMPTS)) + 2.0
