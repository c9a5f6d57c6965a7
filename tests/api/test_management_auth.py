"""SPEC §2.1: client-credentials tokens and Bearer authentication on every management route."""
from __future__ import annotations

import base64
import json
import time

import pytest

from tests.conftest import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, Api, get_token, token_with_scopes


def _error(response, status, code):
    assert response.status_code == status, response.body
    body = json.loads(response.body)
    assert body["statusCode"] == status
    assert body["errorCode"] == code
    assert set(body) == {"statusCode", "error", "message", "errorCode"}
    return body


def test_client_credentials_token_shape(client):
    response = get_token(client)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = json.loads(response.body)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    assert "create:connections" in body["scope"].split()
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"


def test_token_accepts_json_body_and_basic_auth(client):
    payload = json.dumps({"grant_type": "client_credentials", "client_id": ADMIN_CLIENT_ID,
                          "client_secret": ADMIN_CLIENT_SECRET,
                          "audience": "http://127.0.0.1:8000/api/v2/"})
    response = client.http.post("/oauth/token", body=payload,
                                headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.body
    basic = base64.b64encode(f"{ADMIN_CLIENT_ID}:{ADMIN_CLIENT_SECRET}".encode()).decode()
    response = client.http.post(
        "/oauth/token",
        body="grant_type=client_credentials&audience=http%3A%2F%2F127.0.0.1%3A8000%2Fapi%2Fv2%2F",
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "Authorization": f"Basic {basic}"})
    assert response.status_code == 200, response.body


@pytest.mark.parametrize("secret", ["wrong", "", ADMIN_CLIENT_SECRET + "x"])
def test_wrong_client_secret_is_invalid_client(client, secret):
    response = get_token(client, client_secret=secret)
    assert response.status_code == 401
    assert json.loads(response.body)["error"] == "invalid_client"


def test_unknown_client_is_invalid_client(client):
    response = get_token(client, client_id="nobody")
    assert response.status_code == 401
    assert json.loads(response.body)["error"] == "invalid_client"


def test_audience_without_grant_is_denied(client):
    response = get_token(client, audience="https://other.example/api")
    assert response.status_code == 403
    assert json.loads(response.body)["error"] == "access_denied"


def test_scope_not_granted_is_invalid_scope(client):
    response = get_token(client, scope="read:connections delete:everything")
    assert response.status_code == 400
    assert json.loads(response.body)["error"] == "invalid_scope"


def test_unsupported_grant_type(client):
    response = client.http.post("/oauth/token", body="grant_type=password",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert json.loads(response.body)["error"] == "unsupported_grant_type"


ROUTES = [
    ("GET", "/api/v2/connections"),
    ("POST", "/api/v2/connections"),
    ("GET", "/api/v2/connections/con_0000000000000000"),
    ("PATCH", "/api/v2/connections/con_0000000000000000"),
    ("DELETE", "/api/v2/connections/con_0000000000000000"),
    ("GET", "/api/v2/connections/con_0000000000000000/clients"),
    ("PATCH", "/api/v2/connections/con_0000000000000000/clients"),
    ("GET", "/api/v2/clients"),
    ("POST", "/api/v2/clients"),
    ("GET", "/api/v2/clients/abc"),
    ("PATCH", "/api/v2/clients/abc"),
    ("DELETE", "/api/v2/clients/abc"),
    ("POST", "/api/v2/clients/abc/rotate-secret"),
    ("GET", "/api/v2/client-grants"),
    ("POST", "/api/v2/client-grants"),
    ("DELETE", "/api/v2/client-grants/cgr_x"),
    ("GET", "/api/v2/keys/signing"),
    ("POST", "/api/v2/keys/signing/rotate"),
]


def _forge(claims: dict, header: dict | None = None) -> str:
    """A JWT signed by a key that is not the broker's."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "attacker"}, private=True)
    return jwt.encode(header or {"alg": "RS256", "typ": "at+jwt", "kid": "attacker"}, claims, key)


def _claims(**overrides):
    now = int(time.time())
    claims = {"iss": "http://127.0.0.1:8000/", "aud": "http://127.0.0.1:8000/api/v2/",
              "sub": f"{ADMIN_CLIENT_ID}@clients", "azp": ADMIN_CLIENT_ID, "iat": now,
              "exp": now + 3600, "scope": "read:connections create:connections"}
    claims.update(overrides)
    return claims


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_needs_a_token(client, method, path):
    api = Api(client, "")
    response = api.call(method, path, body={} if method in ("POST", "PATCH") else None, token=None)
    _error(response, 401, "invalid_token")


def _signed_by_broker(claims: dict, typ: str = "at+jwt") -> str:
    from chalicelib.keys import sign_jwt

    return sign_jwt(claims, typ=typ)


@pytest.mark.parametrize("make_token", [
    pytest.param(lambda: "not-a-jwt", id="garbage"),
    pytest.param(lambda: _forge(_claims()), id="forged-signature"),
    pytest.param(lambda: _signed_by_broker(_claims(exp=int(time.time()) - 5)), id="expired"),
    pytest.param(lambda: _signed_by_broker(_claims(aud="https://other.example/api")),
                 id="wrong-audience"),
    pytest.param(lambda: _signed_by_broker(_claims(iss="https://evil.example/")), id="wrong-issuer"),
    pytest.param(lambda: _signed_by_broker(_claims(), typ="JWT"), id="not-an-access-token"),
    pytest.param(lambda: _alg_none(_claims()), id="alg-none"),
    pytest.param(lambda: _signed_by_broker(_claims(azp="deleted-client")), id="unknown-client"),
])
def test_bad_tokens_are_401(client, make_token):
    # a token is minted inside the test client so settings/env are in place
    get_token(client)
    api = Api(client, make_token())
    _error(api.call("GET", "/api/v2/connections"), 401, "invalid_token")


def _alg_none(claims: dict) -> str:
    def enc(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    from chalicelib.keys import current_key

    return f"{enc({'alg': 'none', 'typ': 'at+jwt', 'kid': current_key().kid})}.{enc(claims)}."


def test_tampered_token_is_401(client, admin_token):
    header, payload, signature = admin_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] += " delete:everything"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    api = Api(client, f"{header}.{forged}.{signature}")
    _error(api.call("GET", "/api/v2/connections"), 401, "invalid_token")


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/api/v2/connections", None),
    ("POST", "/api/v2/connections", {"name": "x", "strategy": "oidc", "options": {}}),
    ("DELETE", "/api/v2/connections/con_0000000000000000", None),
    ("GET", "/api/v2/clients", None),
    ("POST", "/api/v2/client-grants", {"client_id": "x", "audience": "y", "scope": []}),
    ("GET", "/api/v2/keys/signing", None),
    ("POST", "/api/v2/keys/signing/rotate", None),
])
def test_token_without_the_scope_is_403(client, method, path, body):
    token = token_with_scopes(client, "read:users")
    response = Api(client, token).call(method, path, body=body)
    body = _error(response, 403, "insufficient_scope")
    assert body["error"] == "Forbidden"


def test_patch_options_needs_update_options_scope(client, api):
    created = api.call("POST", "/api/v2/connections", body={
        "name": "scope-check", "strategy": "oidc",
        "options": {"client_id": "c", "issuer": "http://127.0.0.1:9/",
                    "authorization_endpoint": "http://127.0.0.1:9/auth",
                    "jwks_uri": "http://127.0.0.1:9/jwks"}})
    assert created.status_code == 201, created.data
    token = token_with_scopes(client, "update:connections")
    limited = Api(client, token)
    response = limited.call("PATCH", f"/api/v2/connections/{created.data['id']}",
                            body={"options": {"client_id": "d", "issuer": "http://127.0.0.1:9/",
                                              "authorization_endpoint": "http://127.0.0.1:9/a",
                                              "jwks_uri": "http://127.0.0.1:9/j"}})
    _error(response, 403, "insufficient_scope")
    ok = limited.call("PATCH", f"/api/v2/connections/{created.data['id']}",
                      body={"display_name": "Scope Check"})
    assert ok.status_code == 200
    assert "options" not in ok.data  # no read:connections_options: no options, as on a GET
    api.call("DELETE", f"/api/v2/connections/{created.data['id']}")


def test_options_hidden_without_read_options_scope(client, api):
    created = api.call("POST", "/api/v2/connections", body={
        "name": "hidden-options", "strategy": "oidc",
        "options": {"client_id": "c", "issuer": "http://127.0.0.1:9/",
                    "authorization_endpoint": "http://127.0.0.1:9/auth",
                    "jwks_uri": "http://127.0.0.1:9/jwks"}})
    token = token_with_scopes(client, "read:connections")
    reader = Api(client, token)
    one = reader.call("GET", f"/api/v2/connections/{created.data['id']}")
    assert one.status_code == 200 and "options" not in one.data
    listed = reader.call("GET", "/api/v2/connections?name=hidden-options")
    assert listed.data and "options" not in listed.data[0]
    full = api.call("GET", f"/api/v2/connections/{created.data['id']}")
    assert full.data["options"]["client_id"] == "c"
    api.call("DELETE", f"/api/v2/connections/{created.data['id']}")


def test_deleted_client_tokens_stop_working(client, api):
    created = api.call("POST", "/api/v2/clients", body={"name": "machine",
                                                         "app_type": "non_interactive"})
    assert created.status_code == 201, created.data
    grant = api.call("POST", "/api/v2/client-grants", body={
        "client_id": created.data["client_id"], "audience": "http://127.0.0.1:8000/api/v2/",
        "scope": ["read:clients"]})
    assert grant.status_code == 201, grant.data
    response = get_token(client, created.data["client_id"], created.data["client_secret"])
    assert response.status_code == 200, response.body
    machine = Api(client, json.loads(response.body)["access_token"])
    assert machine.call("GET", "/api/v2/clients").status_code == 200
    assert api.call("DELETE", f"/api/v2/clients/{created.data['client_id']}").status_code == 204
    _error(machine.call("GET", "/api/v2/clients"), 401, "invalid_token")
