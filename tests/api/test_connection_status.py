"""SPEC §2.4 GET /api/v2/connections/{id}/status: the discovery, issuer and JWKS checks run now,
against a scriptable IdP on 127.0.0.1; 200 when they pass, else Auth0's 404 naming the check."""
from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import token_with_scopes
from tests.support.fake_idp import rsa_key


class ScriptedIdp:
    """Serves ``self.discovery`` and ``self.jwks`` (``None``: HTTP 500) on 127.0.0.1."""

    def __init__(self):
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                body = {"/.well-known/openid-configuration": idp.discovery,
                        "/jwks": idp.jwks}.get(self.path.split("?")[0], "missing")
                status = 404 if body == "missing" else 500 if body is None else 200
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.discovery = {
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"]}
        self.jwks = {"keys": [rsa_key("k1").as_dict(private=False)]}
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture()
def idp():
    with ScriptedIdp() as running:
        yield running


@pytest.fixture()
def connection(api, idp):
    created = api.call("POST", "/api/v2/connections", body={
        "name": f"status-{uuid.uuid4().hex[:6]}", "strategy": "oidc",
        "options": {"type": "back_channel", "discovery_url": idp.issuer, "client_id": "broker",
                    "client_secret": "s3cret-value"}})
    assert created.status_code == 201, created.data
    yield created.data
    api.call("DELETE", f"/api/v2/connections/{created.data['id']}")


def _status(api, connection, **kwargs):
    return api.call("GET", f"/api/v2/connections/{connection['id']}/status", **kwargs)


def test_online(api, connection):
    answer = _status(api, connection)
    assert answer.status_code == 200, answer.data
    assert answer.data["checks"] == {"discovery": "ok", "issuer": "ok", "jwks": "ok"}


def _fails(api, connection, check: str, needle: str) -> None:
    answer = _status(api, connection)
    assert answer.status_code == 404, answer.data
    assert answer.data["errorCode"] == f"{check}_check_failed", answer.data
    assert answer.data["statusCode"] == 404 and answer.data["error"] == "Not Found"
    assert f"The connection's {check} check failed" in answer.data["message"]
    assert needle in answer.data["message"], answer.data
    assert "s3cret-value" not in json.dumps(answer.data)


def test_discovery_down(api, idp, connection):
    idp.discovery = None
    _fails(api, connection, "discovery", "HTTP 500")


def test_discovery_unreachable(api, idp, connection):
    idp.server.shutdown()
    idp.server.server_close()
    _fails(api, connection, "discovery", "127.0.0.1")


def test_discovery_document_announcing_another_issuer(api, idp, connection):
    idp.discovery = {**idp.discovery, "issuer": "https://evil.example"}
    _fails(api, connection, "discovery", "does not match")


def test_issuer_changed_since_the_connection_was_made(api, idp, connection):
    # The document is self-consistent, but no longer at the issuer the connection trusts.
    stored = connection["options"]["issuer"]
    api.call("PATCH", f"/api/v2/connections/{connection['id']}", body={"options": {
        **{k: v for k, v in connection["options"].items()
           if k not in ("callback_url", "oidc_metadata")},
        "issuer": stored + "/tenant", "client_secret": "s3cret-value"}})
    assert _status(api, connection).data["errorCode"] == "issuer_check_failed"
    _fails(api, connection, "issuer", "/tenant")


def test_jwks_unreachable(api, idp, connection):
    idp.jwks = None
    _fails(api, connection, "jwks", "HTTP 500")


def test_jwks_empty(api, idp, connection):
    idp.jwks = {"keys": []}
    _fails(api, connection, "jwks", "no usable public key")


def test_jwks_with_only_a_symmetric_key(api, idp, connection):
    idp.jwks = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}
    _fails(api, connection, "jwks", "no usable public key")


def test_unknown_connection_and_scope(client, api, connection):
    missing = api.call("GET", "/api/v2/connections/con_doesnotexist/status")
    assert missing.status_code == 404 and missing.data["errorCode"] == "inexistent_connection"
    other = token_with_scopes(client, "read:clients")
    assert _status(api, connection, token=other).status_code == 403
