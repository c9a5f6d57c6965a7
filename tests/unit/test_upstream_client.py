"""authlib as the broker's client toward upstream IdPs (chalicelib/login/upstream.py), on
netguard's transport: every request of the OAuth2Session goes through netguard's rules, client
authentication is what each connection asks for, and the error mapping is the broker's."""
from __future__ import annotations

import base64
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote_plus

import pytest

from chalicelib import netguard
from chalicelib.login import upstream
from chalicelib.login.upstream import UpstreamError

ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"  # shape only: the exchange does not validate it


@pytest.fixture(autouse=True)
def loopback_settings(monkeypatch):
    monkeypatch.setenv("BROKER_STAGE", "local")
    monkeypatch.setenv("BROKER_ISSUER", "http://127.0.0.1:8000/")
    monkeypatch.setenv("BROKER_ALLOW_INSECURE_LOOPBACK", "true")


class Upstream:
    """A loopback IdP: records each request, answers with the scripted (status, headers, body)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answer = (200, {}, {"id_token": ID_TOKEN, "access_token": "at", "token_type": "Bearer"})
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                recorder.requests.append({"method": self.command, "path": self.path,
                                          "headers": dict(self.headers),
                                          "form": dict(parse_qsl(body, keep_blank_values=True))})
                status, headers, payload = recorder.answer
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _reply  # noqa: N815 - http.server's naming

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp():
    server = Upstream()
    yield server
    server.close()


def connection(base: str, method: str = "client_secret_post", client_id: str = "broker-client") -> dict:
    return {"id": "con_test", "name": "test-idp", "options": {
        "type": "back_channel", "client_id": client_id, "issuer": base,
        "token_endpoint": base + "/token", "userinfo_endpoint": base + "/userinfo",
        "token_endpoint_auth_method": method}}


def exchange(conn: dict, secret: str | None = "s3cret", verifier: str | None = None, **kwargs) -> dict:
    return upstream.exchange_code(conn, "the-code", verifier, secret,
                                  "http://127.0.0.1:8000/login/callback/test-idp", **kwargs)


# ------------------------------------------------------------------ the transport is netguard's


def test_every_scheme_of_the_session_goes_through_netguard():
    session = upstream.upstream_session(connection("https://idp.example"), client_secret="s")
    assert type(session).__module__.startswith("authlib.")
    for url in ("https://idp.example/token", "http://127.0.0.1/token"):
        assert isinstance(session.get_adapter(url), netguard.SessionAdapter)
    assert session.trust_env is False


@pytest.fixture
def no_network(monkeypatch):
    attempts: list = []

    def deny(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", deny)
    monkeypatch.setattr(socket.socket, "connect_ex", deny)
    monkeypatch.setattr(socket, "create_connection", deny)
    monkeypatch.setattr(socket, "getaddrinfo", deny)
    return attempts


@pytest.mark.parametrize("ip", ["10.0.0.5", "169.254.169.254", "::ffff:192.168.1.1"])
def test_an_authlib_call_to_a_private_address_is_refused_before_any_socket(no_network, ip):
    resolved = []

    def resolver(host, port):
        resolved.append(host)
        return [ip]

    conn = connection("https://idp.example")
    session = upstream.upstream_session(conn, client_secret="s", resolver=resolver)
    with pytest.raises(netguard.OutboundRefused, match=f"^address {ip} of idp.example is "):
        session.fetch_token("https://idp.example/token", grant_type="authorization_code", code="c")
    # Through the broker's functions the refusal is an unavailable IdP, as before.
    with pytest.raises(UpstreamError) as info:
        exchange(conn, resolver=resolver)
    assert info.value.error == "temporarily_unavailable"
    with pytest.raises(UpstreamError) as info:
        upstream.fetch_userinfo(conn, "at", resolver=resolver)
    assert info.value.error == "temporarily_unavailable"
    assert resolved == ["idp.example"] * 3
    assert no_network == []


def test_a_redirect_from_the_token_endpoint_is_not_followed(idp):
    idp.answer = (302, {"Location": idp.base + "/elsewhere"}, b"")
    with pytest.raises(UpstreamError) as info:
        exchange(connection(idp.base))
    assert info.value.error == "temporarily_unavailable"
    assert [r["path"] for r in idp.requests] == ["/token"]


def test_only_get_and_form_post_leave(idp):
    session = upstream.upstream_session(connection(idp.base), access_token="at")
    with pytest.raises(netguard.OutboundRefused, match="only GET and form POST"):
        session.put(idp.base + "/token", data="x")
    with pytest.raises(netguard.OutboundRefused, match="only GET and form POST"):
        session.post(idp.base + "/token", json={"a": "b"})
    assert idp.requests == []


# ------------------------------------------------------------------ client authentication


def test_client_secret_post(idp):
    tokens = exchange(connection(idp.base), verifier="v" * 43)
    assert tokens["id_token"] == ID_TOKEN
    [request] = idp.requests
    assert request["method"] == "POST" and request["path"] == "/token"
    assert "Authorization" not in request["headers"]
    assert request["form"] == {
        "grant_type": "authorization_code", "code": "the-code",
        "redirect_uri": "http://127.0.0.1:8000/login/callback/test-idp",
        "code_verifier": "v" * 43, "client_id": "broker-client", "client_secret": "s3cret"}


def test_client_secret_post_without_a_secret_sends_no_empty_secret(idp):
    exchange(connection(idp.base), secret=None)
    [request] = idp.requests
    assert request["form"]["client_id"] == "broker-client"
    assert "client_secret" not in request["form"] and "code_verifier" not in request["form"]


@pytest.mark.parametrize(("client_id", "secret"), [
    ("id:with%colon+plus", "sec:ret%25+é/ü 秘密"),
    ("ascii-client", "plain-secret"),
])
def test_client_secret_basic_form_urlencodes_both_parts(idp, client_id, secret):
    """RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined by ':' and Base64ed."""
    exchange(connection(idp.base, "client_secret_basic", client_id), secret=secret)
    [request] = idp.requests
    scheme, _, encoded = request["headers"]["Authorization"].partition(" ")
    assert scheme == "Basic"
    raw = base64.b64decode(encoded).decode("ascii")  # every byte was percent-encoded
    assert raw.count(":") == 1
    sent_id, sent_secret = raw.split(":")
    assert (unquote_plus(sent_id), unquote_plus(sent_secret)) == (client_id, secret)
    assert "client_secret" not in request["form"] and "client_id" not in request["form"]


def test_the_redirect_uri_sent_is_the_one_given(idp):
    upstream.exchange_code(connection(idp.base), "c", None, "s",
                           "http://127.0.0.1:8000/login/callback/other-name")
    assert idp.requests[0]["form"]["redirect_uri"] == "http://127.0.0.1:8000/login/callback/other-name"


def test_userinfo_with_a_bearer_header(idp):
    idp.answer = (200, {}, {"sub": "alice"})
    assert upstream.fetch_userinfo(connection(idp.base), "the-access-token") == {"sub": "alice"}
    [request] = idp.requests
    assert (request["method"], request["path"]) == ("GET", "/userinfo")
    assert request["headers"]["Authorization"] == "Bearer the-access-token"


# ------------------------------------------------------------------ error mapping


UNAVAILABLE = "The identity provider's token endpoint is unavailable"
REFUSED = "The identity provider refused the authorization code"


@pytest.mark.parametrize(("status", "body", "error", "description"), [
    (503, {"error": "x"}, "temporarily_unavailable", UNAVAILABLE),
    (429, b"slow down", "temporarily_unavailable", UNAVAILABLE),
    (400, {"error": "invalid_grant"}, "access_denied", REFUSED),
    (200, {"error": "invalid_grant"}, "access_denied", REFUSED),
    (200, b"<html>", "access_denied", REFUSED),
    (200, {"access_token": "at", "token_type": "Bearer"}, "access_denied",
     "The identity provider returned no ID token"),
    (200, {"id_token": ID_TOKEN, "access_token": "at", "token_type": "MAC"}, "access_denied",
     "The identity provider returned an unsupported token type"),
])
def test_token_endpoint_answers_map_to_the_brokers_errors(idp, status, body, error, description):
    idp.answer = (status, {}, body)
    with pytest.raises(UpstreamError) as info:
        exchange(connection(idp.base))
    assert (info.value.error, info.value.description) == (error, description)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(("status", "body", "error"), [
    (500, {}, "temporarily_unavailable"), (429, {}, "temporarily_unavailable"),
    (401, {"error": "invalid_token"}, "access_denied"), (200, b"[1]", "access_denied"),
])
def test_userinfo_answers_map_to_the_brokers_errors(idp, status, body, error):
    idp.answer = (status, {}, body)
    with pytest.raises(UpstreamError) as info:
        upstream.fetch_userinfo(connection(idp.base), "at")
    assert info.value.error == error


def test_nothing_listening_is_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UpstreamError) as info:
        exchange(connection(f"http://127.0.0.1:{port}"))
    assert info.value.error == "temporarily_unavailable"


def test_an_unknown_client_authentication_method_is_a_server_error():
    with pytest.raises(UpstreamError) as info:
        exchange(connection("https://idp.example", "client_secret_jwt"))
    assert info.value.error == "server_error"
