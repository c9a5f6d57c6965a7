"""The discovery check and netguard against real loopback servers.

Every server listens on 127.0.0.1 (port 0) in a thread and is shut down at the
end of its test. Host names other than localhost go through an injected
resolver that maps them to loopback, so nothing ever leaves the machine.
"""

from __future__ import annotations

import datetime
import functools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.management.upstream_discovery import (
    MAX_DISCOVERY_BYTES,
    DiscoveryError,
    discovery_document_url,
    fetch_discovery,
)
from chalicelib.netguard import (
    OutboundError,
    OutboundRefused,
    ResponseTooLarge,
    SafeResponse,
    safe_get,
    safe_post_form,
)

WELL_KNOWN = "/.well-known/openid-configuration"

# --------------------------------------------------------------------------- loopback servers


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # client went away early: expected here
        pass


class LoopbackServer:
    """An HTTP server on 127.0.0.1; ``routes`` maps a path to ``handler(request)``."""

    def __init__(self, tls_context: ssl.SSLContext | None = None):
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.hits: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _dispatch(self):
                server.hits.append((self.command, self.path))
                route = server.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    send(self, 404, b"not found", content_type="text/plain")
                else:
                    route(self)

            do_GET = _dispatch
            do_POST = _dispatch

            def log_message(self, *args):
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02})
        self.thread.daemon = True
        self.thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=2)


@pytest.fixture
def servers():
    started: list[LoopbackServer] = []

    def start(**kwargs) -> LoopbackServer:
        srv = LoopbackServer(**kwargs)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.close()


@pytest.fixture
def idp(servers):
    return servers()


def send(
    request, status: int, body: bytes = b"", *, content_type="application/json", headers=(), length=True
):
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    if length:
        request.send_header("Content-Length", str(len(body)))
    for name, value in headers:
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(body)


def serve_json(obj, status: int = 200):
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return lambda request: send(request, status, body)


def redirect(location: str, status: int = 302):
    return lambda request: send(request, status, headers=[("Location", location)])


def document(issuer: str, /, **overrides) -> dict:
    base = issuer.rstrip("/")
    doc = {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "userinfo_endpoint": f"{base}/userinfo",
        "end_session_endpoint": f"{base}/logout",
        "response_types_supported": ["code", "id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def discover(url, **kwargs):
    kwargs.setdefault("allow_loopback", True)
    kwargs.setdefault("require_token_endpoint", True)
    return fetch_discovery(url, **kwargs)


def fast(**timeouts):
    return functools.partial(safe_get, **timeouts)


# --------------------------------------------------------------------------- URL forms


EX = "https://idp.example.com"
AUTH0 = "https://tenant.auth0.com"


@pytest.mark.parametrize(
    ("given", "document_url", "issuer"),
    [
        (EX, EX + WELL_KNOWN, EX),
        (AUTH0 + "/", AUTH0 + WELL_KNOWN, AUTH0),
        (EX + WELL_KNOWN, EX + WELL_KNOWN, EX),
        (AUTH0 + WELL_KNOWN, AUTH0 + WELL_KNOWN, AUTH0),
        (EX + "/realms/x", EX + "/realms/x" + WELL_KNOWN, EX + "/realms/x"),
        (EX + "/realms/x/" + WELL_KNOWN[1:], EX + "/realms/x" + WELL_KNOWN, EX + "/realms/x"),
        ("  " + EX + ":8443/  ", EX + ":8443" + WELL_KNOWN, EX + ":8443"),
    ],
)
def test_discovery_document_url(given, document_url, issuer):
    assert discovery_document_url(given) == (document_url, issuer)


@pytest.mark.parametrize(
    "given",
    [
        "",
        "idp.example.com",
        "/relative",
        "ftp://idp.example.com",
        "https://idp.example.com/?a=b",
        "https://x#f",
    ],
)
def test_discovery_document_url_rejects(given):
    with pytest.raises(DiscoveryError):
        discovery_document_url(given)


# --------------------------------------------------------------------------- success


def test_base_url_form(idp):
    idp.routes[WELL_KNOWN] = serve_json(document(idp.url()))
    doc = discover(idp.url())
    assert doc["issuer"] == idp.url()
    assert doc["jwks_uri"] == idp.url() + "/.well-known/jwks.json"
    assert idp.hits == [("GET", WELL_KNOWN)]


def test_full_url_form(idp):
    idp.routes[WELL_KNOWN] = serve_json(document(idp.url()))
    assert discover(idp.url() + WELL_KNOWN)["issuer"] == idp.url()


@pytest.mark.parametrize("given_suffix", ["/", "", WELL_KNOWN])
def test_issuer_with_trailing_slash_like_auth0(idp, given_suffix):
    idp.routes[WELL_KNOWN] = serve_json(document(idp.url() + "/"))
    assert discover(idp.url() + given_suffix)["issuer"] == idp.url() + "/"


def test_issuer_with_path(idp):
    issuer = idp.url() + "/realms/acme"
    idp.routes["/realms/acme" + WELL_KNOWN] = serve_json(document(issuer))
    assert discover(issuer + "/")["issuer"] == issuer


def test_token_endpoint_optional_when_not_required(idp):
    idp.routes[WELL_KNOWN] = serve_json(document(idp.url(), token_endpoint=None))
    assert "token_endpoint" not in discover(idp.url(), require_token_endpoint=False)


def test_localhost_name_allowed_for_loopback(idp):
    idp.routes[WELL_KNOWN] = serve_json(document(idp.url("localhost")))
    resolve = lambda host, port: ["127.0.0.1"]  # noqa: E731
    assert discover(idp.url("localhost"), resolver=resolve)["issuer"] == idp.url("localhost")


def test_document_of_exactly_128_kb_accepted(idp):
    doc = document(idp.url(), padding="")
    doc["padding"] = "x" * (MAX_DISCOVERY_BYTES - len(json.dumps(doc).encode()))
    body = json.dumps(doc).encode()
    assert len(body) == MAX_DISCOVERY_BYTES
    idp.routes[WELL_KNOWN] = serve_json(body)
    assert discover(idp.url())["issuer"] == idp.url()


# --------------------------------------------------------------------------- document failures


def test_http_404(idp):
    with pytest.raises(DiscoveryError) as info:
        discover(idp.url())
    assert str(info.value) == f"discovery document at {idp.url()}{WELL_KNOWN} returned HTTP 404"
    assert "not found" not in str(info.value)


def test_http_500_body_not_echoed(idp):
    idp.routes[WELL_KNOWN] = lambda r: send(r, 500, b"secret stack trace", content_type="text/plain")
    with pytest.raises(DiscoveryError) as info:
        discover(idp.url())
    assert str(info.value).endswith("returned HTTP 500")
    assert "secret" not in str(info.value)


def test_not_json(idp):
    idp.routes[WELL_KNOWN] = lambda r: send(r, 200, b"<html>secret</html>", content_type="text/html")
    with pytest.raises(DiscoveryError) as info:
        discover(idp.url())
    assert str(info.value) == "discovery document is not valid JSON"


def test_json_array(idp):
    idp.routes[WELL_KNOWN] = serve_json([document(idp.url())])
    with pytest.raises(DiscoveryError, match="^discovery document is not a JSON object$"):
        discover(idp.url())


def test_issuer_mismatch(idp):
    idp.routes[WELL_KNOWN] = serve_json(document("https://evil.example.com"))
    with pytest.raises(DiscoveryError) as info:
        discover(idp.url())
    assert str(info.value) == (
        f"discovery issuer 'https://evil.example.com' does not match '{idp.url()}' "
        "(OpenID Connect Discovery 4.3)"
    )


@pytest.mark.parametrize("issuer_suffix", ["//", "/other", "/.well-known/openid-configuration"])
def test_issuer_only_one_trailing_slash_forgiven(idp, issuer_suffix):
    idp.routes[WELL_KNOWN] = serve_json(document(idp.url() + issuer_suffix))
    with pytest.raises(DiscoveryError, match="does not match"):
        discover(idp.url())


def test_long_issuer_is_excerpted(idp):
    idp.routes[WELL_KNOWN] = serve_json(document("https://x.example/" + "a" * 5000))
    with pytest.raises(DiscoveryError) as info:
        discover(idp.url())
    assert "does not match" in str(info.value)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    "field", ["issuer", "authorization_endpoint", "jwks_uri", "response_types_supported", "token_endpoint"]
)
def test_missing_field(idp, field):
    idp.routes[WELL_KNOWN] = serve_json(document(idp.url(), **{field: None}))
    with pytest.raises(DiscoveryError) as info:
        discover(idp.url(), require_token_endpoint=True)
    assert str(info.value) == f"discovery document is missing {field}"


def test_issuer_not_a_string(idp):
    idp.routes[WELL_KNOWN] = serve_json(document(idp.url(), issuer=["x"]))
    with pytest.raises(DiscoveryError, match="issuer is not a string"):
        discover(idp.url())


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("jwks_uri", "http://idp.example.com/jwks", "must use https"),
        ("jwks_uri", "https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("token_endpoint", "https://10.0.0.5/token", "private"),
        ("authorization_endpoint", "https://user:pw@idp.example.com/authorize", "user name or password"),
        ("userinfo_endpoint", "file:///etc/passwd", "scheme"),
        ("end_session_endpoint", "javascript:alert(1)", "scheme"),
        ("jwks_uri", 42, "is not a string"),
    ],
)
def test_endpoint_urls_checked(idp, field, value, expected):
    idp.routes[WELL_KNOWN] = serve_json(document(idp.url(), **{field: value}))
    with pytest.raises(DiscoveryError) as info:
        discover(idp.url())
    assert field in str(info.value)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("jwks_uri", "expected"),
    [("https://127.0.0.1/jwks", "loopback"), ("http://localhost:8080/jwks", "must use https")],
)
def test_loopback_endpoints_refused_when_loopback_not_allowed(jwks_uri, expected):
    issuer = "https://idp.example.com"
    calls = []

    def fake_fetch(url, **kwargs):
        calls.append((url, kwargs))
        body = json.dumps(document(issuer, jwks_uri=jwks_uri)).encode()
        return SafeResponse(status_code=200, headers={}, content=body, url=url)

    with pytest.raises(DiscoveryError) as info:
        discover(issuer, allow_loopback=False, fetch=fake_fetch)
    assert str(info.value).startswith("discovery document jwks_uri ")
    assert expected in str(info.value)
    assert calls == [
        (issuer + WELL_KNOWN, {"allow_loopback": False, "resolver": None, "max_bytes": MAX_DISCOVERY_BYTES})
    ]
    # the same document is fine for local development
    assert discover(issuer, allow_loopback=True, fetch=fake_fetch)["jwks_uri"] == jwks_uri


@pytest.mark.parametrize("declare_length", [True, False])
def test_oversize_document(idp, declare_length):
    chunk = b" " * 8192
    sent = []

    def huge(request):
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        if declare_length:
            request.send_header("Content-Length", str(200 * 1024))
        request.end_headers()
        request.wfile.write(b"{")
        for _ in range(25):  # 200 KB, streamed
            request.wfile.write(chunk)
            sent.append(len(chunk))

    idp.routes[WELL_KNOWN] = huge
    with pytest.raises(DiscoveryError) as info:
        discover(idp.url())
    assert str(info.value) == "discovery document is larger than 128 KB"


def test_oversize_just_over_the_limit(idp):
    doc = document(idp.url(), padding="")
    doc["padding"] = "x" * (MAX_DISCOVERY_BYTES + 1 - len(json.dumps(doc).encode()))
    body = json.dumps(doc).encode()
    idp.routes[WELL_KNOWN] = lambda r: send(r, 200, body, length=False)  # no Content-Length: read to close
    with pytest.raises(DiscoveryError, match="^discovery document is larger than 128 KB$"):
        discover(idp.url())


# --------------------------------------------------------------------------- redirects


def test_same_host_redirect_followed(idp):
    idp.routes[WELL_KNOWN] = redirect("/moved/openid-configuration")
    idp.routes["/moved/openid-configuration"] = serve_json(document(idp.url()))
    assert discover(idp.url())["issuer"] == idp.url()
    assert idp.hits == [("GET", WELL_KNOWN), ("GET", "/moved/openid-configuration")]


def test_redirect_to_other_port_refused(servers):
    idp, other = servers(), servers()
    other.routes[WELL_KNOWN] = serve_json(document(idp.url()))
    idp.routes[WELL_KNOWN] = redirect(other.url("localhost") + WELL_KNOWN)
    with pytest.raises(DiscoveryError) as info:
        discover(idp.url())
    assert str(info.value).startswith("redirect to another host refused")
    assert other.hits == []


def test_redirect_to_other_hostname_refused_before_resolving(idp):
    resolved = []

    def resolve(host, port):
        resolved.append(host)
        return {"idp.test": ["127.0.0.1"], "other.test": ["127.0.0.2"]}[host]

    idp.routes[WELL_KNOWN] = redirect(f"http://other.test:{idp.port}{WELL_KNOWN}")
    with pytest.raises(DiscoveryError, match="^redirect to another host refused"):
        discover(idp.url("localhost"), resolver=lambda h, p: ["127.0.0.1"])
    with pytest.raises(OutboundRefused, match="^redirect to another host refused"):
        safe_get(idp.url() + WELL_KNOWN, allow_loopback=True, resolver=resolve)
    assert "other.test" not in resolved


@pytest.mark.parametrize(
    "location",
    [
        "//localhost:{port}/x",
        "https://127.0.0.1:{port}/x",
        "http://127.0.0.2:{port}/x",
        "http://[::1]:{port}/x",
    ],
)
def test_redirect_to_other_origin_variants_refused(idp, location):
    idp.routes["/start"] = redirect(location.format(port=idp.port))
    with pytest.raises(OutboundRefused, match="another host"):
        safe_get(idp.url() + "/start", allow_loopback=True)
    assert idp.hits == [("GET", "/start")]


def test_too_many_redirects(idp):
    for i in range(5):
        idp.routes[f"/r{i}"] = redirect(f"/r{i + 1}", status=307 if i % 2 else 301)
    idp.routes["/r5"] = serve_json({})
    with pytest.raises(OutboundRefused, match="too many redirects"):
        safe_get(idp.url() + "/r0", allow_loopback=True, max_redirects=3)
    assert [path for _, path in idp.hits] == ["/r0", "/r1", "/r2", "/r3"]
    response = safe_get(idp.url() + "/r0", allow_loopback=True, max_redirects=5)
    assert response.url == idp.url() + "/r5"
    assert response.status_code == 200


def test_redirect_loop_in_discovery(idp):
    idp.routes[WELL_KNOWN] = redirect(WELL_KNOWN)
    with pytest.raises(DiscoveryError, match="too many redirects"):
        discover(idp.url())


# --------------------------------------------------------------------------- timeouts and connection errors


def test_slow_server_times_out(idp):
    def slow(request):
        time.sleep(1.0)
        send(request, 200, json.dumps(document(idp.url())).encode())

    idp.routes[WELL_KNOWN] = slow
    started = time.monotonic()
    with pytest.raises(DiscoveryError) as info:
        discover(idp.url(), fetch=fast(read_timeout=0.3, total_timeout=0.6))
    assert time.monotonic() - started < 0.9
    assert str(info.value) == "could not read from 127.0.0.1: timed out"


def test_slow_drip_bounded_by_total_timeout(idp):
    def drip(request):
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.end_headers()
        for _ in range(40):
            request.wfile.write(b" ")
            request.wfile.flush()
            time.sleep(0.05)

    idp.routes["/drip"] = drip
    started = time.monotonic()
    with pytest.raises(OutboundError, match="timed out"):
        safe_get(idp.url() + "/drip", allow_loopback=True, read_timeout=0.3, total_timeout=0.5)
    assert time.monotonic() - started < 1.0


def test_slow_headers_bounded_by_total_timeout(idp):
    def trickle_headers(request):
        request.wfile.write(b"HTTP/1.0 200 OK\r\n")
        for i in range(40):
            request.wfile.write(f"X-Slow-{i}: x\r\n".encode())
            request.wfile.flush()
            time.sleep(0.05)
        request.wfile.write(b"\r\n{}")

    idp.routes["/slow-headers"] = trickle_headers
    started = time.monotonic()
    with pytest.raises(OutboundError) as info:
        safe_get(idp.url() + "/slow-headers", allow_loopback=True, read_timeout=0.3, total_timeout=0.5)
    assert str(info.value) == "could not read from 127.0.0.1: timed out"
    assert time.monotonic() - started < 1.0


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(DiscoveryError) as info:
        discover(f"http://127.0.0.1:{port}")
    assert str(info.value) == "could not connect to 127.0.0.1: connection refused"


def test_plain_http_server_spoken_to_in_tls(idp):
    with pytest.raises(DiscoveryError, match="^could not connect to 127.0.0.1: TLS"):
        discover(f"https://127.0.0.1:{idp.port}")


# --------------------------------------------------------------------------- loopback policy


def test_loopback_refused_when_not_allowed(idp, monkeypatch):
    idp.routes[WELL_KNOWN] = serve_json(document(idp.url()))
    connects = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda self, a: (connects.append(a), real_connect(self, a)))

    with pytest.raises(DiscoveryError, match="must use https"):
        discover(idp.url(), allow_loopback=False)
    with pytest.raises(DiscoveryError, match="^address 127.0.0.1 is loopback: refused$"):
        discover(f"https://127.0.0.1:{idp.port}", allow_loopback=False)
    with pytest.raises(DiscoveryError, match="^address 127.0.0.1 of idp.test is loopback: refused$"):
        discover(f"https://idp.test:{idp.port}", allow_loopback=False, resolver=lambda h, p: ["127.0.0.1"])
    assert connects == []
    assert idp.hits == []


def test_private_address_message(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", lambda self, a: pytest.fail(f"connect to {a}"))
    with pytest.raises(DiscoveryError) as info:
        discover("https://idp.example", allow_loopback=False, resolver=lambda h, p: ["10.0.0.5"])
    assert str(info.value) == "address 10.0.0.5 of idp.example is private: refused"


# ------------------------------------------------------------------- safe_get / safe_post_form details


def test_safe_get_response_object(idp):
    idp.routes["/x"] = lambda r: send(r, 201, b'{"a": 1}', headers=[("X-Thing", "yes")])
    response = safe_get(idp.url() + "/x", allow_loopback=True)
    assert response.status_code == 201
    assert response.content == b'{"a": 1}'
    assert response.headers["x-thing"] == "yes"
    assert response.url == idp.url() + "/x"


def test_safe_get_custom_cap(idp):
    idp.routes["/x"] = lambda r: send(r, 200, b"x" * 2048, length=False)
    with pytest.raises(ResponseTooLarge, match="^response larger than 1 KB$"):
        safe_get(idp.url() + "/x", allow_loopback=True, max_bytes=1024)


def _echo(request):
    length = int(request.headers.get("Content-Length") or 0)
    body = request.rfile.read(length).decode()
    echo = {
        "method": request.command,
        "path": request.path,
        "body": body,
        "content_type": request.headers.get("Content-Type"),
        "authorization": request.headers.get("Authorization"),
    }
    send(request, 200, json.dumps(echo).encode())


def test_safe_post_form(idp):
    idp.routes["/token"] = _echo
    response = safe_post_form(
        idp.url() + "/token",
        {"grant_type": "authorization_code", "code": "abc"},
        auth=("client", "s3cret"),
        headers={"X-Extra": "1"},
        allow_loopback=True,
    )
    echo = json.loads(response.content)
    assert echo["method"] == "POST"
    assert echo["body"] == "grant_type=authorization_code&code=abc"
    assert echo["content_type"] == "application/x-www-form-urlencoded"
    assert echo["authorization"] == "Basic Y2xpZW50OnMzY3JldA=="


@pytest.mark.parametrize(
    ("status", "method", "body"), [(307, "POST", "a=b"), (308, "POST", "a=b"), (302, "GET", "")]
)
def test_safe_post_form_redirects(idp, status, method, body):
    idp.routes["/token"] = redirect("/token2", status=status)
    idp.routes["/token2"] = _echo
    response = safe_post_form(idp.url() + "/token", {"a": "b"}, allow_loopback=True)
    echo = json.loads(response.content)
    assert (echo["method"], echo["body"]) == (method, body)


def test_safe_post_form_refuses_other_host_redirect(servers):
    idp, other = servers(), servers()
    other.routes["/token"] = _echo
    idp.routes["/token"] = redirect(other.url() + "/token", status=307)
    with pytest.raises(OutboundRefused, match="another host"):
        safe_post_form(idp.url() + "/token", {"client_secret": "s"}, allow_loopback=True)
    assert other.hits == []


# ------------------------------------------------------------- TLS: SNI and verification use the name


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netguard test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.test")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("idp.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("pki")
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain_file = directory / "leaf.pem"
    chain_file.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "leaf.key"
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {"ca": str(ca_file), "cert": str(chain_file), "key": str(key_file)}


@pytest.fixture
def tls_idp(servers, pki):
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    context.sni_callback = lambda sslsock, name, ctx: names.append(name)
    srv = servers(tls_context=context)
    srv.sni_names = names
    return srv


def to_loopback(host, port):
    return ["127.0.0.1"]


def test_https_verified_against_the_name_not_the_ip(tls_idp, pki, monkeypatch):
    import requests.adapters

    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", pki["ca"])
    issuer = tls_idp.url("idp.test")
    tls_idp.routes[WELL_KNOWN] = serve_json(document(issuer))
    assert discover(issuer, resolver=to_loopback)["issuer"] == issuer
    assert tls_idp.sni_names == ["idp.test"]


def test_https_untrusted_certificate_refused(tls_idp):
    with pytest.raises(DiscoveryError) as info:
        discover(tls_idp.url("idp.test"), resolver=to_loopback)
    assert str(info.value) == "could not connect to idp.test: TLS certificate verification failed"
    assert tls_idp.hits == []


def test_https_wrong_hostname_refused(tls_idp, pki, monkeypatch):
    import requests.adapters

    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", pki["ca"])
    with pytest.raises(DiscoveryError, match="TLS certificate verification failed"):
        discover(tls_idp.url("other.test"), resolver=to_loopback)
    with pytest.raises(DiscoveryError, match="TLS certificate verification failed"):
        discover(tls_idp.url("127.0.0.1"))
    assert tls_idp.sni_names[0] == "other.test"
    assert tls_idp.hits == []


def test_https_slow_drip_bounded_by_total_timeout(tls_idp, pki, monkeypatch):
    import requests.adapters

    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", pki["ca"])

    def drip(request):
        request.send_response(200)
        request.end_headers()
        for _ in range(40):
            request.wfile.write(b" ")
            request.wfile.flush()
            time.sleep(0.05)

    tls_idp.routes["/drip"] = drip
    started = time.monotonic()
    with pytest.raises(OutboundError, match="^could not read from idp.test: timed out$"):
        safe_get(
            tls_idp.url("idp.test") + "/drip",
            allow_loopback=True,
            resolver=to_loopback,
            read_timeout=0.3,
            total_timeout=0.5,
        )
    assert time.monotonic() - started < 1.0
