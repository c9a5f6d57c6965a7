"""Fault injection for the resilience tests (SPEC §8).

- :class:`AwsFaults`: failures on the app's own boto3 clients (``chalicelib.aws.client``) through
  botocore's event system. ``before-call`` numbers the calls of each operation; ``before-send``
  (once per attempt, retries included) fails the chosen ones: unreachable endpoint, read timeout,
  a throttling answer (400 ``ProvisionedThroughputExceededException`` / ``ThrottlingException``)
  or a 500. Nothing reaches moto for a failed attempt.
- :class:`FaultyIdp`: the scriptable fake IdP whose endpoints can answer 500, a 502 HTML page,
  non-JSON, hang (until released, bounded) or drop the connection.
- :func:`snapshot` / :func:`diff`: the whole table read with a client of our own (never faulted),
  to prove a failed step left nothing behind.
- Flow helpers over Chalice's test client (authorize, IdP answer, callback, token, userinfo).
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from urllib.parse import urlencode, urlsplit

from tests.support import fake_idp as fake_idp_module
from tests.support.fake_idp import FakeIdp, Recorded, mint
from tests.support.flow import (
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
    token_request,
)

APP_CALLBACK = "https://app.example.com/callback"
BROKER_ISSUER = "http://127.0.0.1:8000/"
SERVICES = ("dynamodb", "secretsmanager", "sqs")
FAULT_KINDS = ("unreachable", "throttle", "server_error", "timeout")
TRACEBACK_MARKERS = ("Traceback", 'File "')


# --------------------------------------------------------------------------- AWS faults

class _Raw:
    """What botocore's AWSResponse reads a body from."""

    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_kwargs):
        yield self._body


_THROTTLE_CODE = {"dynamodb": "ProvisionedThroughputExceededException",
                  "secretsmanager": "ThrottlingException", "sqs": "ThrottlingException"}


@dataclass
class Rule:
    service: str
    operation: str  # "*" for any call of the service
    first: int  # 1-based number of the first call to fail, counted from when the rule was added
    count: int | None  # how many calls fail (None: every call from ``first`` on)
    kind: str
    attempts: int | None  # fail only the first N attempts of a call (None: all of them)
    base: int = 0  # calls of the operation seen before the rule was added

    def matches(self, service: str, operation: str, numbers: dict[str, int]) -> bool:
        if self.service != service or self.operation not in ("*", operation):
            return False
        relative = numbers[self.operation] - self.base
        if relative < self.first:
            return False
        return self.count is None or relative < self.first + self.count


class AwsFaults:
    """``with AwsFaults() as faults: faults.fail("dynamodb", "TransactWriteItems") ...``"""

    def __init__(self):
        self.rules: list[Rule] = []
        self.calls: Counter = Counter()  # (service, operation) -> API calls seen
        self.sequence: list[tuple[str, str]] = []  # every API call, in order
        # Indexes in ``sequence`` of log event writes (a PutItem of a ``LOGS#`` item): best
        # effort by contract (SPEC §9), so failing one changes no answer.
        self.log_writes: set[int] = set()
        self.attempts = 0  # attempts that reached before-send
        self.injected = 0  # attempts failed on purpose
        self._local = threading.local()
        self._lock = threading.Lock()
        self._uid = f"resilience-faults-{id(self)}"

    # lifecycle
    def __enter__(self) -> AwsFaults:
        from chalicelib import aws

        for service in SERVICES:
            events = aws.client(service).meta.events
            events.register("before-call", self._before_call, unique_id=self._uid + "-call")
            events.register("before-send", self._before_send, unique_id=self._uid + "-send")
        return self

    def __exit__(self, *exc) -> None:
        from chalicelib import aws

        for service in SERVICES:
            events = aws.client(service).meta.events
            events.unregister("before-call", unique_id=self._uid + "-call")
            events.unregister("before-send", unique_id=self._uid + "-send")

    # scripting
    def fail(self, service: str, operation: str = "*", *, nth: int = 1, count: int | None = 1,
             kind: str = "unreachable", attempts: int | None = None) -> Rule:
        with self._lock:
            rule = Rule(service, operation, nth, count, kind, attempts,
                        base=self.calls[(service, operation)])
            self.rules.append(rule)
        return rule

    def outage(self, service: str, kind: str = "unreachable") -> Rule:
        """Every call of ``service`` fails until :meth:`heal`."""
        return self.fail(service, "*", nth=1, count=None, kind=kind)

    def heal(self) -> None:
        with self._lock:
            self.rules.clear()

    def calls_of(self, service: str) -> list[str]:
        return [op for s, op in self.sequence if s == service]

    # botocore handlers
    def _before_call(self, model, **_kwargs) -> None:
        service = model.service_model.service_name
        operation = model.name
        with self._lock:
            self.calls[(service, operation)] += 1
            self.calls[(service, "*")] += 1
            numbers = {operation: self.calls[(service, operation)], "*": self.calls[(service, "*")]}
            index = len(self.sequence)
            self.sequence.append((service, operation))
            rule = next((r for r in self.rules if r.matches(service, operation, numbers)), None)
        self._local.current = (service, operation, rule, [0], index)

    def _before_send(self, request, **_kwargs):
        from botocore.awsrequest import AWSResponse
        from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

        current = getattr(self._local, "current", None)
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        with self._lock:
            self.attempts += 1
            if current is not None and current[1] == "PutItem" and b'"LOGS#' in body:
                self.log_writes.add(current[4])
        if current is None or current[2] is None:
            return None
        service, operation, rule, tried, _ = current
        tried[0] += 1
        if rule.attempts is not None and tried[0] > rule.attempts:
            return None
        with self._lock:
            self.injected += 1
        if rule.kind == "unreachable":
            raise EndpointConnectionError(endpoint_url=request.url)
        if rule.kind == "timeout":
            raise ReadTimeoutError(endpoint_url=request.url)
        if rule.kind == "throttle":
            status, code = 400, _THROTTLE_CODE[service]
        elif rule.kind == "server_error":
            status, code = 500, "InternalServerError"
        else:
            raise AssertionError(f"unknown fault kind {rule.kind}")
        body = json.dumps({"__type": code, "message": "injected by the resilience tests"}).encode()
        return AWSResponse(request.url, status,
                           {"Content-Type": "application/x-amz-json-1.0",
                            "x-amzn-RequestId": "injected"}, _Raw(body))


class Sequence(list):
    """The AWS calls of a run, in order; ``log_writes``: the indexes of its log event writes."""
    log_writes: frozenset[int] = frozenset()


def record_calls(run) -> Sequence:
    """The AWS calls ``run()`` makes, in order."""
    with AwsFaults() as recorder:
        run()
    sequence = Sequence(recorder.sequence)
    sequence.log_writes = frozenset(recorder.log_writes)
    return sequence


def numbered(sequence: list[tuple[str, str]]) -> list[tuple[str, str, int]]:
    """``[(service, operation, nth occurrence)]`` for a recorded sequence."""
    seen: Counter = Counter()
    result = []
    for service, operation in sequence:
        seen[(service, operation)] += 1
        result.append((service, operation, seen[(service, operation)]))
    return result


def cold_caches() -> None:
    """Forget every warm-container cache that hides an AWS call (config, secrets, queue URLs)."""
    from chalicelib.logout import backchannel
    from chalicelib.registry.clients import forget_cached_clients
    from chalicelib.registry.connections import forget_cached_connections
    from chalicelib.registry.resource_servers import forget_cached_resource_servers
    from chalicelib.registry.tenant import forget_cached_tenant_settings
    from chalicelib.secrets import secret_store

    forget_cached_connections()
    forget_cached_clients()
    forget_cached_resource_servers()
    forget_cached_tenant_settings()
    secret_store().forget()
    backchannel._queue_urls.clear()


# --------------------------------------------------------------------------- storage snapshots

def _raw_dynamodb():
    """A client of our own: the app's clients carry the faults, this one never does."""
    import boto3

    return boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


def snapshot() -> dict[tuple[str, str], dict]:
    """Every item of the table but log events (``LOGS#``): a refused request records its failure
    there on purpose, and that is no change of state."""
    from chalicelib.settings import get_settings
    from chalicelib.store.dynamo import from_dynamo

    db = _raw_dynamodb()
    items: dict[tuple[str, str], dict] = {}
    # Filtered at the server (a legacy ScanFilter: the embedded endpoint then neither copies nor
    # answers the thousands of log events a full run writes); checked again below.
    kwargs = {"TableName": get_settings().table_name, "ConsistentRead": True,
              "ScanFilter": {"pk": {"ComparisonOperator": "NOT_CONTAINS",
                                    "AttributeValueList": [{"S": "LOGS#"}]}}}
    for _ in range(10_000):
        page = db.scan(**kwargs)
        for raw in page.get("Items", []):
            item = from_dynamo(raw)
            if not item["pk"].startswith("LOGS#"):
                items[(item["pk"], item["sk"])] = item
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return items


@dataclass
class Diff:
    added: dict
    removed: dict
    changed: dict

    def kinds(self, which: str) -> set[str]:
        """The key prefixes (``TX``, ``SESSION``, ``USERS`` ...) of added/removed/changed items."""
        return {pk.split("#", 1)[0] for pk, _ in getattr(self, which)}

    def __str__(self) -> str:
        return (f"added={sorted(self.added)[:10]} removed={sorted(self.removed)[:10]} "
                f"changed={sorted(self.changed)[:10]}")


def diff(before: dict, after: dict) -> Diff:
    added = {k: v for k, v in after.items() if k not in before}
    removed = {k: v for k, v in before.items() if k not in after}
    changed = {k: (before[k], v) for k, v in after.items() if k in before and before[k] != v}
    return Diff(added, removed, changed)


# --------------------------------------------------------------------------- a misbehaving IdP

SLOW_LIMIT_SECONDS = 10.0  # a hanging endpoint answers after this at the latest (bounded)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        import sys

        # A hanging endpoint answers after the broker gave up: the broken pipe is expected.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FaultyIdp(FakeIdp):
    """:class:`FakeIdp` plus ``faults[path] = "500" | "502html" | "notjson" | "slow" | "drop"``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.faults: dict[str, str] = {}
        self.release = threading.Event()

    def __enter__(self) -> FaultyIdp:
        base = fake_idp_module._handler(self)
        idp = self

        class Handler(base):
            def _handle(self, method: str) -> None:
                path = urlsplit(self.path).path
                mode = idp.faults.get(path)
                if mode is None:
                    return super()._handle(method)
                idp.requests.append(Recorded(method, path, {}, {}, {}))
                if mode == "slow":
                    idp.release.wait(SLOW_LIMIT_SECONDS)
                    return super()._handle(method)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if mode == "drop":
                    self.close_connection = True
                    return None
                status, content_type, body = {
                    "500": (500, "application/json", b'{"error":"server_error"}'),
                    "502html": (502, "text/html", b"<html><h1>502 Bad Gateway</h1></html>"),
                    "notjson": (200, "text/html", b"<html>maintenance</html>"),
                }[mode]
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        super().__exit__(*exc)


# --------------------------------------------------------------------------- flows

def claims(jwt: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))


@dataclass
class Started:
    browser: Browser
    response: object  # the /authorize response
    verifier: str


def authorize(client, app: dict, connection: dict, browser: Browser | None = None,
              scope: str = "openid profile email offline_access", **extra) -> Started:
    browser = browser or Browser(client)
    verifier, challenge = pkce_pair()
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code", scope=scope,
        state="app-state", nonce="app-nonce", code_challenge=challenge,
        code_challenge_method="S256", connection=connection["name"], **extra))
    return Started(browser, response, verifier)


def upstream_answer(started: Started) -> tuple[str, dict]:
    """The IdP's answer to the broker's redirect: (method, params) for ``/login/callback``."""
    assert started.response.status_code == 302, started.response.body
    return idp_login(started.response.headers["Location"])


def callback(started: Started, answer: tuple[str, dict]):
    return deliver_callback(started.browser, answer[0], answer[1])


def code_of(response) -> str:
    assert response.status_code == 303, response.body
    params = location_params(response)
    assert "code" in params, params
    return params["code"]


def exchange(client, app: dict, code: str, verifier: str):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP_CALLBACK,
            "code_verifier": verifier, "client_id": app["client_id"]}
    if app.get("client_secret"):
        form["client_secret"] = app["client_secret"]
    return token_request(client, form)


def refresh(client, app: dict, refresh_token: str):
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": app["client_id"]}
    if app.get("client_secret"):
        form["client_secret"] = app["client_secret"]
    return token_request(client, form)


def userinfo(client, access_token: str):
    response = client.http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    response.data = json.loads(response.body) if response.body else None
    return response


def login(client, app: dict, connection: dict, **kwargs) -> dict:
    """A whole login and code exchange; returns the token response."""
    started = authorize(client, app, connection, **kwargs)
    code = code_of(callback(started, upstream_answer(started)))
    tokens = exchange(client, app, code, started.verifier)
    assert tokens.status_code == 200, tokens.data
    return tokens.data


def assert_no_internals(response) -> None:
    body = response.body if isinstance(response.body, (bytes, str)) else b""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, text[:500]
    assert response.status_code != 500, text[:500]


def assert_oauth_unavailable(response) -> None:
    assert_no_internals(response)
    assert response.status_code == 503, response.body
    body = json.loads(response.body)
    assert body["error"] == "temporarily_unavailable", body
    assert response.headers.get("Cache-Control") == "no-store"


def assert_app_redirect(response, error: str = "temporarily_unavailable", status=(302, 303)):
    """The browser goes back to the application with ``error`` (its redirect_uri was validated)."""
    assert_no_internals(response)
    assert response.status_code in status, response.body
    location = response.headers["Location"]
    assert location.startswith(APP_CALLBACK + "?"), location
    params = location_params(response)
    assert params.get("error") == error, params
    assert params.get("state") == "app-state", params
    assert "code" not in params
    return params


def assert_unavailable_page(response) -> None:
    assert_no_internals(response)
    assert response.status_code == 503, response.body
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.monotonic()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.monotonic() - self.start


def form_body(fields: dict) -> str:
    return urlencode(fields)


GTR_PATH = "/oauth/global-token-revocation/connection/"


def gtr_jwt(idp: FakeIdp, connection: dict, **overrides) -> str:
    """A valid Global Token Revocation JWT from ``idp`` for ``connection`` (SPEC §5)."""
    import uuid

    now = int(time.time())
    claims_ = {"iss": idp.issuer, "sub": idp.client_id,
               "aud": BROKER_ISSUER + GTR_PATH.lstrip("/") + connection["name"],
               "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex, **overrides}
    return mint(claims_, idp.signing_key, header={"typ": "global-token-revocation+jwt"})


def gtr(client, connection: dict, token: str | None, body) -> object:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.http.post(GTR_PATH + connection["name"], headers=headers, body=raw)
