"""The one place that creates boto3 clients: short timeouts, bounded retries, created on first use.
The store's DynamoDB calls go through :class:`DynamoJson` on the DynamoDB client (same events,
retries, endpoint and credentials; a fraction of botocore's CPU: see the section at the end).

boto3 is imported lazily: it is the heaviest import on the cold path and some requests never
touch AWS. ``AWS_ENDPOINT_URL`` (honoured by botocore itself) points everything at the local
embedded endpoint during ``make run`` and the tests.

Deadlines (SPEC §8): one AWS call takes at most ``MAX_ATTEMPTS × (CONNECT_TIMEOUT + READ_TIMEOUT)``
plus botocore's jittered backoff between attempts (standard mode: ≤ 2^(n-1) s before attempt n+1,
plus at most 5 s more when the service sends ``x-amz-retry-after``). A request runs several calls,
so each request also gets a *budget* (:func:`request_deadline`, set by the HTTP middleware in
``chalicelib/api/request_deadline.py``): once it is spent no new AWS attempt starts
(:class:`DeadlineExceeded`, which the store maps to 503) and upstream HTTP calls
(``chalicelib/netguard.py``) are cut to what is left. Worst case of a request: budget + one
attempt + one backoff, see :func:`worst_case_request`.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from chalicelib import clock

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
    return None if deadline is None else deadline - clock.monotonic()


@contextlib.contextmanager
def request_deadline(seconds: float = REQUEST_BUDGET) -> Iterator[None]:
    """Bound the outbound work of the code inside (one request). Nested budgets only shrink."""
    previous = getattr(_local, "deadline", None)
    deadline = clock.monotonic() + seconds
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
            factory: Any = session.client  # boto3's stubs type it per service name literal
            found = factory(service, config=_config(), region_name=key[2] or "us-east-1")
            _attach_json_caller(service, found)
            _clients[key] = found
    return found


def reset_clients() -> None:
    with _lock:
        _clients.clear()
        _json_clients.clear()


# --------------------------------------------------------------------------- lean DynamoDB calls
#
# botocore spends ~2 ms of CPU on one DynamoDB call (parameter validation, serialisation through
# the service model, endpoint rules, a SigV4 signer that rebuilds its key, ~10 event hooks,
# http.client/urllib3 and email-header parsing, shape-driven response parsing): 70% of a warm
# refresh grant. DynamoDB speaks plain JSON (the ``x-amz-json-1.0`` protocol) and the store
# builds well-formed typed JSON itself, so :class:`DynamoJson` sends the store's calls directly:
# the same JSON body, SigV4 with a signing key kept per day, one kept-alive connection per thread.
#
# Everything around the HTTP exchange stays botocore's, through the very client's event emitter,
# so the behaviour (and every test hook on ``client.meta.events``) is unchanged:
# ``provide-client-params`` and ``before-parameter-build`` (the ClientRequestToken of a
# TransactWriteItems, which makes botocore's retry of a committed transaction idempotent),
# ``before-call`` (recursion-detection header; a handler may answer instead), ``before-send``
# once per attempt (the request deadline above; test fault injection), ``needs-retry`` after each
# attempt (botocore's standard retry policy with the client's own attempt limit, retry quota,
# jittered backoff and DynamoDB's CRC32 check), ``after-call``/``after-call-error``. Errors come
# back as botocore's do: ``ClientError`` with botocore's JSON error parse, connection failures as
# ``EndpointConnectionError``/``ConnectTimeoutError``/``ReadTimeoutError``/``ConnectionClosedError``.
# The endpoint is botocore's own resolution (``AWS_ENDPOINT_URL`` in tests and ``make run``), once
# per operation; credentials are the client's credential object (refreshable, session token).
# A client this does not fit (another retry mode or signature version, proxies) keeps botocore.

JSON_OPERATIONS = {
    "get_item": "GetItem", "put_item": "PutItem", "update_item": "UpdateItem",
    "delete_item": "DeleteItem", "transact_write_items": "TransactWriteItems",
    "query": "Query", "batch_get_item": "BatchGetItem",
}
_SIGNING_EXCLUDED = frozenset({
    "baggage", "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "traceparent", "tracestate", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "x-amzn-trace-id"})  # botocore.auth.SIGNED_HEADERS_BLACKLIST
_MAX_HEADERS = 100
_MAX_LINE = 65536

_json_clients: dict[int, tuple[object, DynamoJson | None]] = {}


def dynamodb_json() -> DynamoJson | None:
    """The lean caller of the current DynamoDB client (:func:`client`), or None when that
    client's configuration needs botocore's own path."""
    found = client("dynamodb")
    entry = _json_clients.get(id(found))
    return entry[1] if entry is not None and entry[0] is found else None


def _attach_json_caller(service: str, found) -> None:
    if service == "dynamodb":
        try:
            caller = DynamoJson.fitting(found)
        except (AttributeError, KeyError, TypeError) as exc:  # botocore's insides moved
            _log_giving_up(exc)
            caller = None
        _json_clients[id(found)] = (found, caller)


def give_up_dynamodb_json(caller: DynamoJson, exc: BaseException) -> None:
    """The lean caller met a botocore it does not know (Lambda's runtime brings its own boto3,
    and the lean path reads a few of botocore's private attributes): this container goes back
    to botocore's own path for good, and says so once in the log."""
    with _lock:
        for key, (owner, kept) in list(_json_clients.items()):
            if kept is caller:
                _json_clients[key] = (owner, None)
    _log_giving_up(exc)


def _log_giving_up(exc: BaseException) -> None:
    import logging

    logging.getLogger(__name__).error(
        "lean DynamoDB caller disabled, botocore's own path used instead: %s: %s",
        type(exc).__name__, str(exc)[:200])


def _json_default(value):
    """Binary attribute values travel base64-encoded in the JSON protocol (as botocore sends them)."""
    import base64

    raw = getattr(value, "value", value)  # boto3's Binary wrapper
    if isinstance(raw, (bytes, bytearray)):
        return base64.b64encode(raw).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class _Request:
    """What ``before-send`` handlers see of an attempt (botocore's AWSPreparedRequest's fields)."""

    __slots__ = ("method", "url", "headers", "body", "stream_output")

    def __init__(self, url: str, headers: dict, body: bytes):
        self.method = "POST"
        self.url = url
        self.headers = headers
        self.body = body
        self.stream_output = False


class _Response:
    """An HTTP answer as botocore's retry handlers and ``after-call`` hooks read it (``AWSResponse``
    fields); ``headers`` has lower-case names."""

    __slots__ = ("url", "status_code", "headers", "content", "raw")

    def __init__(self, url: str, status: int, headers: dict, content: bytes):
        self.url = url
        self.status_code = status
        self.headers = headers
        self.content = content
        self.raw = None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Connection:
    """One kept-alive HTTP/1.1 connection to the endpoint (HTTPS with certificate and host name
    checks as botocore does them, or plain HTTP for a local endpoint)."""

    def __init__(self, url: str, host: str, port: int, tls: Any):
        self.url, self.host, self.port, self.tls = url, host, port, tls
        self.sock: Any = None
        self.reader: Any = None

    def close(self) -> None:
        sock, self.sock, self.reader = self.sock, None, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _usable(self) -> bool:
        """A kept connection the server has closed (or sent something on) is not reused
        (urllib3's ``is_connection_dropped``)."""
        import select

        try:
            return not select.select([self.sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def _connect(self, url: str, connect_timeout: float, read_timeout: float) -> None:
        import socket

        from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, SSLError

        try:
            sock = socket.create_connection((self.host, self.port), timeout=connect_timeout)
        except TimeoutError:
            raise ConnectTimeoutError(endpoint_url=url) from None
        except OSError as exc:
            raise EndpointConnectionError(endpoint_url=url, error=exc) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except TimeoutError:
            sock.close()
            raise ConnectTimeoutError(endpoint_url=url) from None
        except OSError as exc:
            sock.close()
            raise SSLError(endpoint_url=url, error=exc) from None
        sock.settimeout(read_timeout)
        self.sock = sock
        self.reader = sock.makefile("rb")

    def exchange(self, url: str, head: bytes, body: bytes, connect_timeout: float,
                 read_timeout: float) -> tuple[int, dict, bytes]:
        from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

        if self.sock is not None and not self._usable():
            self.close()
        if self.sock is None:
            self._connect(url, connect_timeout, read_timeout)
        try:
            self.sock.sendall(head + body)
            status, headers, content, keep = self._read_response()
        except TimeoutError:
            self.close()
            raise ReadTimeoutError(endpoint_url=url) from None
        except (OSError, ValueError) as exc:
            self.close()
            raise ConnectionClosedError(endpoint_url=url, error=exc) from None
        if not keep:
            self.close()
        return status, headers, content

    def _read_response(self) -> tuple[int, dict, bytes, bool]:
        reader = self.reader
        while True:
            line = reader.readline(_MAX_LINE)
            if not line:
                raise ConnectionResetError("the connection closed before an answer")
            version, _, rest = line.partition(b" ")
            status = int(rest[:3])
            if not version.startswith(b"HTTP/1.") or not 100 <= status <= 599:
                raise ValueError("not an HTTP/1.x status line")
            headers: dict[str, str] = {}
            while True:
                line = reader.readline(_MAX_LINE)
                if line in (b"\r\n", b"\n"):
                    break
                if not line or len(headers) >= _MAX_HEADERS or not line.endswith(b"\n"):
                    raise ValueError("malformed or oversized response headers")
                name, sep, value = line.partition(b":")
                if not sep:
                    raise ValueError("malformed response header")
                headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
            if status >= 200:
                break  # 1xx: an interim answer, the real one follows
        keep = version != b"HTTP/1.0" and headers.get("connection", "").lower() != "close"
        if headers.get("transfer-encoding", "").lower() == "chunked":
            content = self._read_chunked(reader)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            content = reader.read(length)
            if len(content) != length:
                raise ConnectionResetError("the connection closed inside the answer")
        else:
            content, keep = reader.read(), False
        return status, headers, content, keep

    @staticmethod
    def _read_chunked(reader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(reader.readline(_MAX_LINE).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while reader.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            chunk = reader.read(size)
            if len(chunk) != size or reader.readline(_MAX_LINE) not in (b"\r\n", b"\n"):
                raise ConnectionResetError("the connection closed inside a chunk")
            parts.append(chunk)


class DynamoJson:
    """The store's DynamoDB calls, on ``client``'s configuration and events (see above)."""

    def __init__(self, found):
        meta = found.meta
        self.client = found
        self.events = meta.events
        self.service_model = meta.service_model
        self.service_id = self.service_model.service_id.hyphenize()
        metadata = self.service_model.metadata
        self.target_prefix = metadata["targetPrefix"]
        self.content_type = f"application/x-amz-json-{metadata['jsonVersion']}"
        self.region = meta.region_name  # the signing region
        self.signing_name = self.service_model.signing_name
        config = meta.config
        self.connect_timeout = config.connect_timeout
        self.read_timeout = config.read_timeout
        self.user_agent = (config.user_agent or "botocore").encode("latin-1")
        self._signer = found._request_signer
        self._verify = found._endpoint.http_session._verify
        self._operations: dict[str, tuple] = {}
        self._endpoints: dict[str, tuple] = {}
        self._keys: tuple[tuple, bytes] | None = None
        self._local = threading.local()
        self._tls = None

    @classmethod
    def fitting(cls, found) -> DynamoJson | None:
        """A caller for ``found``, or None when its configuration asks for what only botocore
        does (other retry modes or signers, proxies, client certificates)."""
        config = found.meta.config
        session = getattr(found._endpoint, "http_session", None)
        # Proxies come from the config or HTTP(S)_PROXY (botocore resolves both into this).
        proxies = getattr(getattr(session, "_proxy_config", None), "_proxies", None)
        if ((config.retries or {}).get("mode") != "standard"
                or config.signature_version not in (None, "v4")
                or proxies or getattr(session, "_cert_file", None)
                or not hasattr(session, "_verify")
                or found.meta.service_model.protocol != "json"
                or urlsplit_scheme(found.meta.endpoint_url) not in ("http", "https")):
            return None
        return cls(found)

    # ----------------------------------------------------------------------------- the call
    def call(self, method: str, params: dict) -> dict:
        name = JSON_OPERATIONS[method]
        model, events = self._operation(name)
        context = {"client_region": self.client.meta.region_name,
                   "client_config": self.client.meta.config,
                   "has_streaming_input": False, "auth_type": model.resolved_auth_type,
                   "unsigned_payload": False, "auth_options": self.service_model.metadata.get(
                       "auth")}
        emit = self.events.emit
        params = _first(emit(events[0], params=params, model=model, context=context), params)
        emit(events[1], params=params, model=model, context=context)
        url, endpoint_headers, host = self._endpoint(name, model, params, context)
        request_dict = {"url_path": "/", "query_string": "", "method": "POST", "url": url,
                        "headers": {"X-Amz-Target": f"{self.target_prefix}.{name}",
                                    "Content-Type": self.content_type, **endpoint_headers},
                        "body": b"", "context": context}
        _handler, answer = self.events.emit_until_response(
            events[2], model=model, params=request_dict, request_signer=self._signer,
            context=context)
        try:
            if answer is not None:
                http, parsed = answer
            else:
                request_dict["body"] = json.dumps(params, separators=(",", ":"),
                                                  default=_json_default).encode()
                http, parsed = self._attempts(model, events, request_dict, host)
        except Exception as exc:
            emit(events[5], exception=exc, context=context)
            raise
        emit(events[6], http_response=http, parsed=parsed, model=model, context=context)
        if http.status_code >= 300:
            from botocore.exceptions import ClientError

            raise ClientError(parsed, name)
        return parsed

    def _attempts(self, model, events, request_dict: dict, host: str):
        attempts = 1
        while True:
            response, caught = None, None
            try:
                response = self._attempt(model, events, request_dict, host)
            except Exception as exc:  # noqa: BLE001 - botocore hands every failure to needs-retry
                caught = exc
            delay = _first(self.events.emit(
                events[4], response=response, endpoint=self.client._endpoint, operation=model,
                attempts=attempts, caught_exception=caught, request_dict=request_dict), None)
            if delay is None or delay is False:
                break
            time.sleep(delay)
            attempts += 1
        if caught is not None:
            raise caught
        assert response is not None
        metadata = response[1].get("ResponseMetadata")
        if metadata is not None:
            metadata["RetryAttempts"] = attempts - 1
        return response

    def _attempt(self, model, events, request_dict: dict, host: str):
        body = request_dict["body"]
        headers = self._signed_headers(request_dict["headers"], host, body)
        request = _Request(request_dict["url"], headers, body)
        http = _first(self.events.emit(events[3], request=request), None)
        if http is None:
            http = self._send(request, host)
        return http, self._parse(http)

    # ----------------------------------------------------------------------------- pieces
    def _operation(self, name: str) -> tuple:
        found = self._operations.get(name)
        if found is None:
            model = self.service_model.operation_model(name)
            suffix = f"{self.service_id}.{name}"
            found = (model, tuple(f"{event}.{suffix}" for event in (
                "provide-client-params", "before-parameter-build", "before-call", "before-send",
                "needs-retry", "after-call-error", "after-call")))
            self._operations[name] = found
        return found

    def _endpoint(self, name: str, model, params: dict, context: dict) -> tuple[str, dict, str]:
        """botocore's endpoint resolution, once per operation: DynamoDB's rules depend on the
        region, the configuration and the credentials' account, not on the call."""
        found = self._endpoints.get(name)
        if found is None:
            url, headers, properties = self.client._resolve_endpoint_ruleset(model, params,
                                                                            dict(context))
            scheme, netloc = urlsplit_scheme(url), _netloc(url)
            if (properties or {}).get("authSchemes"):
                scheme_props = properties["authSchemes"][0]
                if scheme_props.get("name") not in (None, "sigv4"):
                    raise RuntimeError(f"unexpected auth scheme for DynamoDB: {scheme_props}")
                self.region = scheme_props.get("signingRegion", self.region)  # signing only
                self.signing_name = scheme_props.get("signingName", self.signing_name)
            found = (url, dict(headers or {}), _canonical_host(scheme, netloc))
            self._endpoints[name] = found
        return found

    def _signing_key(self, secret: str, day: str) -> bytes:
        """SigV4's derived key changes once a day (or with the secret): kept, not rebuilt."""
        cache_key = (secret, day, self.region, self.signing_name)
        if self._keys is not None and self._keys[0] == cache_key:
            return self._keys[1]
        key = ("AWS4" + secret).encode()
        for part in (day, self.region, self.signing_name, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._keys = (cache_key, key)
        return key

    def _signed_headers(self, extra: dict, host: str, body: bytes) -> dict:
        """Signature Version 4, as botocore's SigV4Auth signs a POST to ``/`` (every header but
        the unsigned ones; tests/unit/test_aws_client_json.py compares the two)."""
        from botocore.exceptions import NoCredentialsError

        credentials = self._signer._credentials
        if credentials is None:
            raise NoCredentialsError()
        frozen = credentials.get_frozen_credentials()
        stamp = _sigv4_stamp()
        day = stamp[:8]
        headers = dict(extra)
        headers["X-Amz-Date"] = stamp
        if frozen.token:
            headers["X-Amz-Security-Token"] = frozen.token
        signed = {"host": host}
        for key, value in headers.items():
            lower = key.lower()
            if lower not in _SIGNING_EXCLUDED:
                signed[lower] = " ".join(str(value).split())
        names = sorted(signed)
        signed_names = ";".join(names)
        canonical = "POST\n/\n\n" + "".join(f"{n}:{signed[n]}\n" for n in names) + (
            f"\n{signed_names}\n{hashlib.sha256(body).hexdigest()}")
        scope = f"{day}/{self.region}/{self.signing_name}/aws4_request"
        to_sign = (f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n"
                   f"{hashlib.sha256(canonical.encode()).hexdigest()}")
        signature = hmac.new(self._signing_key(frozen.secret_key, day), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}")
        return headers

    def _connection(self, url: str) -> _Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.url != url:
            if connection is not None:
                connection.close()
            from urllib.parse import urlsplit

            parts = urlsplit(url)
            tls = self._tls_context() if parts.scheme == "https" else None
            connection = _Connection(url, parts.hostname or "", parts.port or (443 if tls else 80),
                                     tls)
            self._local.connection = connection
        return connection

    def _tls_context(self):
        if self._tls is None:
            import ssl

            verify = self._verify
            if verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = ssl.create_default_context(
                    cafile=verify if isinstance(verify, str) else _default_ca_bundle())
            self._tls = context
        return self._tls

    def _send(self, request: _Request, host: str) -> _Response:
        lines = [b"POST / HTTP/1.1", b"Host: " + host.encode("latin-1"),
                 b"User-Agent: " + self.user_agent, b"Accept-Encoding: identity",
                 b"Content-Length: " + str(len(request.body)).encode()]
        for key, value in request.headers.items():
            lines.append(f"{key}: {value}".encode("latin-1"))
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        status, headers, content = self._connection(request.url).exchange(
            request.url, head, request.body, self.connect_timeout, self.read_timeout)
        return _Response(request.url, status, headers, content)

    @staticmethod
    def _parse(http) -> dict:
        """The parsed answer as botocore's JSON parser gives it (error codes and messages,
        modeled error members such as ``CancellationReasons``, ``ResponseMetadata``)."""
        status = http.status_code
        content = http.content
        headers = http.headers
        if status < 301:
            try:
                parsed = json.loads(content) if content else {}
            except ValueError:
                from botocore.parsers import ResponseParserError

                raise ResponseParserError("DynamoDB answered with invalid JSON") from None
        elif status >= 500 and (not content or content.strip().startswith(b"<html>")):
            from http import HTTPStatus

            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = ""
            parsed = {"Error": {"Code": str(status), "Message": phrase}}
        else:
            try:
                body = json.loads(content) if content else {}
            except ValueError:
                body = {"message": content.decode("utf-8", "replace")}
            if not isinstance(body, dict):
                body = {}
            code = body.get("__type", str(status))
            code = code.split(":", 1)[0].rsplit("#", 1)[-1]
            parsed = {key: value for key, value in body.items()
                      if key not in ("__type", "message", "Message")}
            parsed["Error"] = {"Message": body.get("message", body.get("Message", "")),
                               "Code": code}
        metadata = {"HTTPStatusCode": status, "HTTPHeaders": dict(headers), "RetryAttempts": 0}
        request_id = headers.get("x-amzn-requestid")
        if request_id is not None:
            metadata["RequestId"] = request_id
        parsed["ResponseMetadata"] = metadata
        return parsed


def _sigv4_stamp() -> str:
    """SigV4's X-Amz-Date: the real UTC time (AWS refuses a request signed 5 minutes off)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _first(responses, default):
    """botocore.hooks.first_non_none_response."""
    for _handler, response in responses:
        if response is not None:
            return response
    return default


def urlsplit_scheme(url: str | None) -> str:
    return (url or "").partition("://")[0].lower()


def _netloc(url: str) -> str:
    return url.partition("://")[2].split("/", 1)[0]


def _canonical_host(scheme: str, netloc: str) -> str:
    """The Host header and its signed value: the port only when it is not the default."""
    netloc = netloc.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    if default and netloc.endswith(default):
        netloc = netloc[: -len(default)]
    return netloc


def _default_ca_bundle() -> str | None:
    from botocore.httpsession import get_cert_path

    return get_cert_path(True)
