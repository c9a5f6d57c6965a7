"""chalicelib.aws.DynamoJson, the store's lean DynamoDB caller: the same wire requests, signature,
retries, events and errors as the botocore client it replaces on the hot path.

- SigV4: byte-for-byte botocore's ``SigV4Auth`` for the same request and time.
- Against the suite's moto server: every Table operation goes through it, reads what botocore
  reads, and maps failed conditions, cancelled transactions and refusals as before.
- Retries and faults through botocore's events (as tests/resilience injects them): 5xx, throttling
  and unreachable endpoints are retried within the client's attempt limit, then a 503; a spent
  request budget sends nothing; a TransactWriteItems keeps one ClientRequestToken across attempts.
- The transport, against a scripted local HTTP server: one kept-alive connection, a connection
  the server closed is replaced without a failed attempt, chunked and Connection: close answers,
  a read timeout is botocore's ReadTimeoutError.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time

import pytest

from chalicelib import aws
from chalicelib.errors import ServiceUnavailable
from chalicelib.store import dynamo
from chalicelib.store.dynamo import ConditionFailed

FIXED = dt.datetime(2026, 12, 3, 13, 18, 24, tzinfo=dt.timezone.utc)


@pytest.fixture()
def no_backoff(monkeypatch):
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)


@pytest.fixture()
def lean(aws_endpoint):
    found = aws.dynamodb_json()
    assert found is not None
    return found


class Spy:
    """Counts lean calls and the attempts botocore's events see."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        self.sends: list[dict] = []
        original = aws.DynamoJson.call

        def call(this, method, params):
            self.calls.append(method)
            return original(this, method, params)

        monkeypatch.setattr(aws.DynamoJson, "call", call)


# --------------------------------------------------------------------------- SigV4

@pytest.mark.parametrize("url, token", [
    ("https://dynamodb.eu-west-1.amazonaws.com", "session-token"),
    ("https://dynamodb.eu-west-1.amazonaws.com:443", None),
    ("http://127.0.0.1:5123", "x y  z"),
])
def test_signature_is_botocores(monkeypatch, url, token):
    import botocore.auth
    import botocore.session
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials

    session = botocore.session.get_session()
    client = session.create_client("dynamodb", region_name="eu-west-1", endpoint_url=url,
                                   aws_access_key_id="AKIDEXAMPLE",
                                   aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                   aws_session_token=token,
                                   config=Config(retries={"mode": "standard"}))
    lean = aws.DynamoJson.fitting(client)
    assert lean is not None
    monkeypatch.setattr(aws, "_sigv4_stamp", lambda: FIXED.strftime("%Y%m%dT%H%M%SZ"))
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: FIXED)
    body = json.dumps({"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"S": "b"}}}).encode()
    extra = {"X-Amz-Target": "DynamoDB_20120810.GetItem",
             "Content-Type": "application/x-amz-json-1.0",
             "X-Amzn-Trace-Id": "Root=1-abc"}  # never signed
    host = aws._canonical_host(aws.urlsplit_scheme(url), aws._netloc(url))
    ours = lean._signed_headers(extra, host, body)

    request = AWSRequest(method="POST", url=url + "/", headers=dict(extra), data=body)
    botocore.auth.SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                        token), "dynamodb", "eu-west-1").add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")
    # The derived key is kept, and a new day derives a new one.
    assert lean._signing_key("s", "20261203") is lean._signing_key("s", "20261203")
    assert lean._signing_key("s", "20261204") != lean._signing_key("s", "20261203")


def test_a_client_configured_beyond_the_lean_path_keeps_botocore():
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    legacy = session.create_client("dynamodb", region_name="us-east-1", aws_access_key_id="a",
                                   aws_secret_access_key="b",
                                   config=Config(retries={"mode": "legacy"}))
    proxied = session.create_client("dynamodb", region_name="us-east-1", aws_access_key_id="a",
                                    aws_secret_access_key="b",
                                    config=Config(proxies={"https": "http://127.0.0.1:9"},
                                                  retries={"mode": "standard"}))
    assert aws.DynamoJson.fitting(legacy) is None
    assert aws.DynamoJson.fitting(proxied) is None

    class Fake:
        def get_item(self, **kwargs):
            return {"Item": {"pk": {"S": "fake"}, "sk": {"S": "S"}}}

    table = dynamo.Table("t")
    table._client = lambda: Fake()  # type: ignore[method-assign]
    assert table._json_caller() is None  # a test's fake client is called as it is
    assert table.get("P", "S") == {"pk": "fake", "sk": "S"}


# --------------------------------------------------------------------------- against moto

def _pk(name: str) -> str:
    return f"LEAN#{name}#{os.urandom(4).hex()}"


def test_every_table_operation_goes_through_it_and_reads_what_botocore_reads(
        lean, monkeypatch):
    spy = Spy(monkeypatch)
    table = dynamo.Table()
    pk = _pk("ops")
    item = {"pk": pk, "sk": "A", "n": 3, "f": 0.5, "s": "x", "b": True, "m": {"l": [1, "2"]},
            "ss": {"b", "a"}, "bin": b"\x00\x01"}
    table.put(item)
    table.put_new({"pk": pk, "sk": "B", "n": 1})
    assert table.update(pk, "B", "SET n = n + :one", values={":one": 1})["n"] == 2
    got = table.get(pk, "A")
    raw = aws.client("dynamodb").get_item(TableName=table.name,
                                          Key={"pk": {"S": pk}, "sk": {"S": "A"}},
                                          ConsistentRead=True)["Item"]
    assert got == dynamo.from_dynamo(raw)
    assert got["bin"].value == b"\x00\x01" and got["ss"] == ["a", "b"] and got["f"] == 0.5
    assert [i["sk"] for i in table.query(pk)] == ["A", "B"]
    assert set(table.batch_get([(pk, "A"), (pk, "B"), (pk, "C")])) == {(pk, "A"), (pk, "B")}
    table.transact([{"Put": {"Item": {"pk": pk, "sk": "C"}}},
                    {"Delete": {"Key": {"pk": pk, "sk": "B"}}}])
    assert table.delete(pk, "A", return_old=True)["n"] == 3
    assert [i["sk"] for i in table.query(pk)] == ["C"]
    assert spy.calls == ["put_item", "put_item", "update_item", "get_item", "query",
                         "batch_get_item", "transact_write_items", "delete_item", "query"]


def test_failed_conditions_and_cancelled_transactions_are_lost_races(lean):
    table = dynamo.Table()
    pk = _pk("cond")
    table.put_new({"pk": pk, "sk": "A"})
    with pytest.raises(ConditionFailed) as plain:
        table.put_new({"pk": pk, "sk": "A"})
    assert plain.value.reasons == []
    with pytest.raises(ConditionFailed) as cancelled:
        table.transact([{"Put": {"Item": {"pk": pk, "sk": "B"}}},
                        {"ConditionCheck": {"Key": {"pk": pk, "sk": "A"},
                                            "ConditionExpression": "attribute_not_exists(pk)"}}])
    assert cancelled.value.reasons == ["None", "ConditionalCheckFailed"]
    assert table.get(pk, "B") is None


def test_what_dynamodb_refuses_is_a_503(lean, caplog):
    table = dynamo.Table()
    with pytest.raises(ServiceUnavailable):
        table.update(_pk("bad"), "A", "SET name = :v", values={":v": 1})  # a reserved word
    assert "ValidationException" in caplog.text
    with pytest.raises(ServiceUnavailable):
        dynamo.Table("no-such-table").get("a", "b")
    assert "ResourceNotFoundException" in caplog.text


class Faults:
    """Fails the first ``count`` attempts through ``before-send``, as tests/resilience does."""

    def __init__(self, kind: str, count: int | None):
        self.kind, self.count = kind, count
        self.attempts: list[dict] = []
        self.calls = 0

    def before_call(self, **_kwargs):
        self.calls += 1

    def before_send(self, request, **_kwargs):
        from botocore.awsrequest import AWSResponse
        from botocore.exceptions import EndpointConnectionError

        self.attempts.append({"url": request.url, "body": request.body,
                              "headers": dict(request.headers)})
        if self.count is not None and len(self.attempts) > self.count:
            return None
        if self.kind == "unreachable":
            raise EndpointConnectionError(endpoint_url=request.url)
        status, code = {"throttle": (400, "ProvisionedThroughputExceededException"),
                        "server_error": (500, "InternalServerError")}[self.kind]

        class Raw:
            def stream(self, **_kwargs):
                yield json.dumps({"__type": code, "message": "injected"}).encode()

        return AWSResponse(request.url, status, {"Content-Type": "application/x-amz-json-1.0"},
                           Raw())

    def __enter__(self):
        events = aws.client("dynamodb").meta.events
        events.register("before-call", self.before_call, unique_id="lean-faults-call")
        events.register("before-send", self.before_send, unique_id="lean-faults-send")
        return self

    def __exit__(self, *exc):
        events = aws.client("dynamodb").meta.events
        events.unregister("before-call", unique_id="lean-faults-call")
        events.unregister("before-send", unique_id="lean-faults-send")


@pytest.mark.parametrize("kind", ["unreachable", "throttle", "server_error"])
def test_transient_failures_are_retried_within_the_attempt_limit(lean, no_backoff, kind):
    table = dynamo.Table()
    pk = _pk(kind)
    table.put({"pk": pk, "sk": "A", "v": 1})
    with Faults(kind, count=aws.MAX_ATTEMPTS - 1) as faults:
        assert table.get(pk, "A")["v"] == 1
    assert faults.calls == 1 and len(faults.attempts) == aws.MAX_ATTEMPTS
    with Faults(kind, count=None) as faults, pytest.raises(ServiceUnavailable):
        table.get(pk, "A")
    assert faults.calls == 1 and len(faults.attempts) == aws.MAX_ATTEMPTS


def test_a_retried_transaction_keeps_its_client_request_token(lean, no_backoff):
    table = dynamo.Table()
    pk = _pk("token")
    with Faults("server_error", count=1) as faults:
        table.transact([{"Put": {"Item": {"pk": pk, "sk": "A"}}}])
    tokens = [json.loads(a["body"])["ClientRequestToken"] for a in faults.attempts]
    assert len(tokens) == 2 and tokens[0] == tokens[1] and len(tokens[0]) == 36
    # Each attempt is signed afresh (botocore signs every attempt).
    assert all(a["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
               for a in faults.attempts)
    assert table.get(pk, "A") is not None


def test_a_spent_budget_sends_nothing(lean):
    with Faults("server_error", count=0) as faults:
        with aws.request_deadline(0), pytest.raises(ServiceUnavailable):
            dynamo.Table().get("NOTHING", "NOTHING")
    assert faults.attempts == []  # refused in before-send, before the fault hook (registered later)


def test_a_before_call_answer_is_used_as_the_response(lean):
    from botocore.awsrequest import AWSResponse

    def answer(**_kwargs):
        return AWSResponse("x", 200, {}, None), {"Item": {"pk": {"S": "P"}, "sk": {"S": "S"},
                                                         "v": {"N": "7"}}}

    events = aws.client("dynamodb").meta.events
    events.register("before-call.dynamodb.GetItem", answer, unique_id="lean-answer")
    try:
        assert dynamo.Table().get("P", "S") == {"pk": "P", "sk": "S", "v": 7}
    finally:
        events.unregister("before-call.dynamodb.GetItem", unique_id="lean-answer")


# --------------------------------------------------------------------------- the transport

class ScriptedServer:
    """A loopback HTTP server answering each request with the next scripted raw answer (bytes,
    or "close" to drop the connection after reading, "hang" to never answer, or ("then close",
    bytes) to answer as if keeping the connection and close it right after)."""

    def __init__(self, script: list, tls=None):
        self.script = list(script)
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            if self.tls is not None:
                try:
                    conn.settimeout(5)
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError:
                    conn.close()
                    continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        reader = conn.makefile("rb")
        with conn:
            while self.script:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                self.requests.append(head + reader.read(length))
                answer = self.script.pop(0)
                if answer == "close":
                    return
                if answer == "hang":
                    self.done.wait(5)
                    return
                if isinstance(answer, tuple):
                    conn.sendall(answer[1])
                    return
                conn.sendall(answer)
                if b"Connection: close" in answer:
                    return

    def close(self):
        self.done.set()
        self.sock.close()


def _answer(body: dict, *, chunked: bool = False, close: bool = False) -> bytes:
    payload = json.dumps(body).encode()
    head = [b"HTTP/1.1 200 OK", b"Content-Type: application/x-amz-json-1.0",
            b"x-amzn-RequestId: req-1"]
    if close:
        head.append(b"Connection: close")
    if chunked:
        head.append(b"Transfer-Encoding: chunked")
        half = len(payload) // 2
        data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (payload[:half], payload[half:]))
        return b"\r\n".join(head) + b"\r\n\r\n" + data + b"0\r\n\r\n"
    head.append(b"Content-Length: %d" % len(payload))
    return b"\r\n".join(head) + b"\r\n\r\n" + payload


@pytest.fixture()
def scripted(monkeypatch, aws_endpoint, no_backoff):
    servers = []

    def start(script, tls=None):
        server = ScriptedServer(script, tls)
        servers.append(server)
        scheme = "https" if tls else "http"
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"{scheme}://127.0.0.1:{server.port}")
        return server

    yield start
    for server in servers:
        server.close()


ITEM = {"Item": {"pk": {"S": "P"}, "sk": {"S": "S"}, "v": {"N": "1"}}}


def test_one_kept_alive_connection_and_chunked_answers(scripted):
    server = scripted([_answer(ITEM), _answer(ITEM, chunked=True), _answer(ITEM)])
    table = dynamo.Table("t")
    for _ in range(3):
        assert table.get("P", "S") == {"pk": "P", "sk": "S", "v": 1}
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST / HTTP/1.1\r\n")
    assert b"X-Amz-Target: DynamoDB_20120810.GetItem" in first
    assert b"\r\nHost: 127.0.0.1:%d\r\n" % server.port in first
    assert json.loads(first.split(b"\r\n\r\n", 1)[1]) == {
        "TableName": "t", "Key": {"pk": {"S": "P"}, "sk": {"S": "S"}}, "ConsistentRead": True}


@pytest.mark.parametrize("announced", [True, False])
def test_a_connection_the_server_closed_is_replaced_without_a_failed_attempt(scripted,
                                                                             announced):
    """Announced (Connection: close) or not (an idle keep-alive connection the server dropped,
    seen before reuse as urllib3 sees it)."""
    first = _answer(ITEM, close=True) if announced else ("then close", _answer(ITEM))
    server = scripted([first, _answer(ITEM)])
    faults = Faults("server_error", count=0)
    with faults:
        table = dynamo.Table("t")
        assert table.get("P", "S")["v"] == 1
        time.sleep(0.1)  # the server's FIN arrives
        assert table.get("P", "S")["v"] == 1
    assert server.connections == 2 and len(faults.attempts) == 2  # no retry was needed


def test_a_dropped_or_silent_answer_is_retried_then_a_503(scripted, monkeypatch):
    server = scripted(["close", _answer(ITEM)])
    assert dynamo.Table("t").get("P", "S")["v"] == 1  # ConnectionClosedError, retried
    assert len(server.requests) == 2

    lean = aws.dynamodb_json()
    monkeypatch.setattr(lean, "read_timeout", 0.2)
    scripted(["hang"] * aws.MAX_ATTEMPTS)
    errors = []

    def record(caught_exception=None, **_kwargs):
        if caught_exception is not None:
            errors.append(type(caught_exception).__name__)

    events = aws.client("dynamodb").meta.events
    events.register_first("needs-retry.dynamodb", record, unique_id="lean-errors")
    try:
        with pytest.raises(ServiceUnavailable):
            dynamo.Table("t").get("P", "S")
    finally:
        events.unregister("needs-retry.dynamodb", unique_id="lean-errors")
    assert errors == ["ReadTimeoutError"] * aws.MAX_ATTEMPTS


def test_an_unreachable_endpoint_is_a_503(scripted, monkeypatch):
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there now
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(ServiceUnavailable):
        dynamo.Table("t").get("P", "S")


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 and a server TLS context with it."""
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lean-test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    return str(cert_path), server


def test_https_checks_the_certificate_against_the_configured_bundle(scripted, tmp_path,
                                                                    monkeypatch):
    """HTTPS as on AWS: the certificate is checked (here against AWS_CA_BUNDLE, which botocore
    reads into the client); an untrusted one is botocore's SSLError, then a 503."""
    cert_path, server_tls = _self_signed(tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", cert_path)
    server = scripted([_answer(ITEM), _answer(ITEM)], tls=server_tls)
    table = dynamo.Table("t")
    assert table.get("P", "S")["v"] == 1
    assert table.get("P", "S")["v"] == 1
    assert server.connections == 1
    assert b"\r\nHost: 127.0.0.1:%d\r\n" % server.port in server.requests[0]

    monkeypatch.delenv("AWS_CA_BUNDLE")
    untrusted = scripted([_answer(ITEM)] * aws.MAX_ATTEMPTS, tls=server_tls)
    errors = []

    def record(caught_exception=None, **_kwargs):
        if caught_exception is not None:
            errors.append(type(caught_exception).__name__)

    events = aws.client("dynamodb").meta.events
    events.register_first("needs-retry.dynamodb", record, unique_id="lean-tls-errors")
    try:
        with pytest.raises(ServiceUnavailable):
            dynamo.Table("t").get("P", "S")
    finally:
        events.unregister("needs-retry.dynamodb", unique_id="lean-tls-errors")
    assert errors and set(errors) == {"SSLError"}
    assert untrusted.requests == []


# --------------------------------------------------------------------------- another botocore

def test_a_botocore_the_lean_caller_does_not_know_falls_back_to_botocore(lean, monkeypatch,
                                                                          caplog):
    """Lambda's runtime brings its own boto3: if a private attribute the lean caller reads has
    moved, the call is made by botocore instead (no 5xx), and the container stays on botocore."""
    table = dynamo.Table()
    pk = _pk("fallback")

    def moved(self, *args, **kwargs):
        raise AttributeError("'BaseClient' object has no attribute '_resolve_endpoint_ruleset'")

    monkeypatch.setattr(aws.DynamoJson, "_endpoint", moved)
    try:
        with caplog.at_level("ERROR"):
            table.put({"pk": pk, "sk": "A", "n": 1})
        assert aws.dynamodb_json() is None
        assert table.get(pk, "A")["n"] == 1
        assert "lean DynamoDB caller disabled" in caplog.text
    finally:
        aws.reset_clients()
    assert aws.dynamodb_json() is not None


def test_a_client_the_lean_caller_cannot_read_keeps_botocore(aws_endpoint, monkeypatch):
    def unreadable(found):
        raise AttributeError("'Endpoint' object has no attribute 'http_session'")

    monkeypatch.setattr(aws.DynamoJson, "fitting", staticmethod(unreadable))
    aws.reset_clients()
    try:
        assert aws.dynamodb_json() is None
        pk = _pk("unreadable")
        dynamo.Table().put({"pk": pk, "sk": "A"})
        assert dynamo.Table().get(pk, "A") == {"pk": pk, "sk": "A"}
    finally:
        monkeypatch.undo()
        aws.reset_clients()
