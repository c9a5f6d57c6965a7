"""SPEC §4: ``POST /oauth/token`` and ``/userinfo`` against real logins through a fake upstream IdP.

The grants' rules themselves (codes single use and bound to client, redirect_uri and PKCE;
refresh-token rotation, reuse, leeway, lifetimes and client binding) are pinned as functions in
tests/domain/; what stays here is what the HTTP layer adds (client authentication, status codes,
error bodies, token contents at the endpoint)."""
from __future__ import annotations

import base64
import json
import uuid

import pytest

from tests.conftest import get_token
from tests.support.fake_idp import connection_body
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
OTHER_CALLBACK = "https://app.example.com/other"


@pytest.fixture()
def setup(api, idp):
    apps = {}
    for key, app_type in (("web", "regular_web"), ("web2", "regular_web"), ("spa", "spa")):
        created = api.call("POST", "/api/v2/clients", body={
            "name": key, "app_type": app_type, "callbacks": [APP_CALLBACK, OTHER_CALLBACK]})
        assert created.status_code == 201, created.data
        apps[key] = created.data
    body = connection_body(idp, f"back-{uuid.uuid4().hex[:6]}", channel="back",
                           enabled_clients=[a["client_id"] for a in apps.values()])
    connection = api.call("POST", "/api/v2/connections", body=body)
    assert connection.status_code == 201, connection.data
    yield {**apps, "connection": connection.data}
    api.call("DELETE", f"/api/v2/connections/{connection.data['id']}")
    for app in apps.values():
        api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


def login(client, setup, app, *, scope="openid profile email", pkce=True):
    """A full login; returns (code, verifier or None)."""
    verifier, challenge = pkce_pair() if pkce else (None, None)
    browser = Browser(client)
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope=scope, state="s", nonce="n", code_challenge=challenge,
        code_challenge_method="S256" if pkce else None,
        connection=setup["connection"]["name"]))
    assert response.status_code == 302, response.body
    callback = deliver_callback(browser, *idp_login(response.headers["Location"]))
    assert callback.status_code == 303, callback.body
    params = location_params(callback)
    assert "code" in params, params
    return params["code"], verifier


def exchange(client, app, code, verifier=None, redirect_uri=APP_CALLBACK, **extra):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": app["client_id"], **extra}
    if verifier is not None:
        form["code_verifier"] = verifier
    if app.get("client_secret"):
        form["client_secret"] = app["client_secret"]
    return token_request(client, form)


def refresh(client, app, refresh_token, **extra):
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": app["client_id"], **extra}
    if app.get("client_secret"):
        form["client_secret"] = app["client_secret"]
    return token_request(client, form)


def assert_invalid_grant(response):
    assert response.status_code == 400, response.data
    assert response.data["error"] == "invalid_grant", response.data
    assert response.headers["Cache-Control"] == "no-store"


def _claims(jwt: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))


def userinfo(client, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.http.get("/userinfo", headers=headers)


# --------------------------------------------------------------------------- authorization_code

def test_code_of_client_a_redeemed_by_client_b(client, setup):
    code, verifier = login(client, setup, setup["web"])
    assert_invalid_grant(exchange(client, setup["web2"], code, verifier))
    # a public client naming A's client_id cannot redeem it either
    stolen = token_request(client, {"grant_type": "authorization_code", "code": code,
                                    "redirect_uri": APP_CALLBACK, "code_verifier": verifier,
                                    "client_id": setup["web"]["client_id"]})
    assert stolen.status_code == 401 and stolen.data["error"] == "invalid_client"
    assert exchange(client, setup["web"], code, verifier).status_code == 200


# --------------------------------------------------------------------------- refresh_token

def test_scope_narrowing_on_refresh(client, setup):
    app = setup["web"]
    code, verifier = login(client, setup, app, scope="openid profile email offline_access")
    tokens = exchange(client, app, code, verifier)
    assert tokens.status_code == 200, tokens.data
    rt = tokens.data["refresh_token"]
    narrow = refresh(client, app, rt, scope="openid")
    assert narrow.status_code == 200, narrow.data
    assert narrow.data["scope"] == "openid"
    assert "email" not in _claims(narrow.data["id_token"])
    assert _claims(narrow.data["access_token"])["scope"] == "openid"
    info = userinfo(client, narrow.data["access_token"])
    assert info.status_code == 200
    assert "email" not in json.loads(info.body)
    # asking for more than was granted fails; the refresh token is not narrowed for good
    wider = refresh(client, app, rt, scope="openid phone")
    assert wider.status_code == 400 and wider.data["error"] == "invalid_scope"
    full = refresh(client, app, rt)
    assert full.status_code == 200, full.data
    assert set(full.data["scope"].split()) == {"openid", "profile", "email", "offline_access"}
    assert _claims(full.data["id_token"])["email"] == "alice@example.com"


# --------------------------------------------------------------------------- token audiences

def test_user_access_token_refused_by_management_api(client, setup):
    code, verifier = login(client, setup, setup["web"])
    access = exchange(client, setup["web"], code, verifier).data["access_token"]
    for path in ("/api/v2/clients", "/api/v2/connections", "/api/v2/users"):
        response = client.http.get(path, headers={"Authorization": f"Bearer {access}"})
        assert response.status_code == 401, (path, response.body)
        assert json.loads(response.body)["errorCode"] == "invalid_token"


def test_user_id_token_refused_by_management_api_and_userinfo(client, setup):
    code, verifier = login(client, setup, setup["web"])
    id_token = exchange(client, setup["web"], code, verifier).data["id_token"]
    response = client.http.get("/api/v2/clients", headers={"Authorization": f"Bearer {id_token}"})
    assert response.status_code == 401
    assert userinfo(client, id_token).status_code == 401


def test_userinfo_without_token(client, setup):
    response = userinfo(client, None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    malformed = client.http.get("/userinfo", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert malformed.status_code == 401
    assert "WWW-Authenticate" in malformed.headers
    garbage = userinfo(client, "not-a-token")
    assert garbage.status_code == 401
    assert 'error="invalid_token"' in garbage.headers["WWW-Authenticate"]


def test_userinfo_with_management_token(client, setup, admin_token):
    response = userinfo(client, admin_token)
    assert response.status_code == 401, response.body
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_userinfo_with_user_token(client, setup):
    code, verifier = login(client, setup, setup["web"])
    access = exchange(client, setup["web"], code, verifier).data["access_token"]
    response = userinfo(client, access)
    assert response.status_code == 200, response.body
    body = json.loads(response.body)
    assert body["sub"] == f"oidc|{setup['connection']['name']}|alice"
    assert body["email"] == "alice@example.com"


def test_management_token_still_works(client):
    """Control for the 401s above: the admin client's own token is accepted."""
    response = get_token(client)
    token = json.loads(response.body)["access_token"]
    listed = client.http.get("/api/v2/clients", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200


# ------------------------------------------------------------- refresh-token policy per client

@pytest.mark.parametrize("settings", [
    {"rotation_type": "rotating", "expiration_type": "non-expiring"},
    {"expiration_type": "non-expiring"},  # a SPA rotates by default
    {"leeway": 61},
    {"leeway": -1},
])
def test_refresh_settings_that_cannot_hold_are_refused(api, setup, settings):
    app = setup["spa"]
    before = api.call("GET", f"/api/v2/clients/{app['client_id']}").data["refresh_token"]
    response = api.call("PATCH", f"/api/v2/clients/{app['client_id']}", body={"refresh_token": settings})
    assert response.status_code == 400, response.data
    assert response.data["errorCode"] == "invalid_body"
    assert api.call("GET", f"/api/v2/clients/{app['client_id']}").data["refresh_token"] == before


