"""SPEC §3–4 through the Lambda handler with a real upstream IdP (oidc-provider on loopback)."""
from __future__ import annotations

import base64
import json
import uuid

import pytest

from tests.support.flow import (
    CALLBACK,
    callback_url,
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
    token_request,
)
from tests.support.idp import default_idp_config, start_idp

APP_CALLBACK = "https://app.example.com/callback"


@pytest.fixture(scope="module")
def idp():
    config = default_idp_config(redirect_uris=[CALLBACK])
    config["accounts"]["bob"] = {"sub": "bob", "email": "bob@corp.example", "name": "Bob"}
    with start_idp(config) as running:
        yield running


def _claims(jwt: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))


@pytest.fixture()
def setup(api, idp):
    """A confidential app and a SPA, a front-channel and a back-channel connection."""
    suffix = uuid.uuid4().hex[:6]
    web = api.call("POST", "/api/v2/clients", body={
        "name": "web", "app_type": "regular_web", "callbacks": [APP_CALLBACK]}).data
    spa = api.call("POST", "/api/v2/clients", body={
        "name": "spa", "app_type": "spa", "callbacks": [APP_CALLBACK]}).data
    enabled = [web["client_id"], spa["client_id"]]
    front = api.call("POST", "/api/v2/connections", body={
        "name": f"front-{suffix}", "strategy": "oidc", "enabled_clients": enabled,
        "options": {"type": "front_channel", "discovery_url": idp.issuer,
                    "client_id": "broker-client"}})
    assert front.status_code == 201, front.data
    back = api.call("POST", "/api/v2/connections", body={
        "name": f"back-{suffix}", "strategy": "oidc", "enabled_clients": enabled,
        "options": {"type": "back_channel", "discovery_url": idp.issuer,
                    "client_id": "broker-client", "client_secret": "broker-secret",
                    "token_endpoint_auth_method": "client_secret_basic",
                    "domain_aliases": ["corp.example"]}})
    assert back.status_code == 201, back.data
    for connection in (front.data, back.data):
        idp.register_redirect_uri(callback_url(connection["name"]))
    yield {"web": web, "spa": spa, "front": front.data, "back": back.data}
    for connection in (front.data, back.data):
        api.call("DELETE", f"/api/v2/connections/{connection['id']}")


def _login(client, app, connection, *, username="alice", scope="openid profile email",
           browser=None, **extra):
    browser = browser or Browser(client)
    verifier, challenge = pkce_pair()
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope=scope, state="app-state", nonce="app-nonce", code_challenge=challenge,
        code_challenge_method="S256", connection=connection["name"] if connection else None,
        **extra))
    assert response.status_code == 302, response.body
    upstream = response.headers["Location"]
    method, params = idp_login(upstream, username)
    callback = deliver_callback(browser, method, params)
    assert callback.status_code == 303, callback.body
    result = location_params(callback)
    assert "error" not in result, result
    return browser, result, verifier


def _exchange(client, app, code, verifier):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP_CALLBACK,
            "code_verifier": verifier, "client_id": app["client_id"]}
    if app.get("client_secret"):
        form["client_secret"] = app["client_secret"]
    return token_request(client, form)


@pytest.mark.parametrize("channel", ["front", "back"])
def test_full_login_code_exchange_refresh_userinfo(client, setup, channel):
    app = setup["web"]
    browser, result, verifier = _login(client, app, setup[channel],
                                       scope="openid profile email offline_access")
    assert result["state"] == "app-state"
    assert result["iss"] == "http://127.0.0.1:8000/"
    tokens = _exchange(client, app, result["code"], verifier)
    assert tokens.status_code == 200, tokens.data
    assert tokens.headers["Cache-Control"] == "no-store"
    id_claims = _claims(tokens.data["id_token"])
    assert id_claims["sub"] == f"oidc|{setup[channel]['name']}|alice"
    assert id_claims["aud"] == app["client_id"]
    assert id_claims["nonce"] == "app-nonce"
    assert id_claims["email"] == "alice@example.com"
    assert {"sid", "auth_time", "at_hash"} <= set(id_claims)
    access = tokens.data["access_token"]
    header = json.loads(base64.urlsafe_b64decode(access.split(".")[0] + "=="))
    assert header["typ"] == "at+jwt"
    info = client.http.get("/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert info.status_code == 200, info.body
    assert json.loads(info.body)["email"] == "alice@example.com"
    refreshed = token_request(client, {"grant_type": "refresh_token",
                                       "refresh_token": tokens.data["refresh_token"],
                                       "client_id": app["client_id"],
                                       "client_secret": app["client_secret"]})
    assert refreshed.status_code == 200, refreshed.data
    assert "access_token" in refreshed.data


def test_spa_rotation_and_reuse_detection(client, setup):
    app = setup["spa"]
    _, result, verifier = _login(client, app, setup["back"], scope="openid offline_access")
    tokens = _exchange(client, app, result["code"], verifier)
    assert tokens.status_code == 200, tokens.data
    first = tokens.data["refresh_token"]
    rotated = token_request(client, {"grant_type": "refresh_token", "refresh_token": first,
                                     "client_id": app["client_id"]})
    assert rotated.status_code == 200, rotated.data
    second = rotated.data["refresh_token"]
    assert second != first
    reuse = token_request(client, {"grant_type": "refresh_token", "refresh_token": first,
                                   "client_id": app["client_id"]})
    assert reuse.status_code == 400 and reuse.data["error"] == "invalid_grant"
    # the whole family is revoked: the newest token and the access tokens die too
    after = token_request(client, {"grant_type": "refresh_token", "refresh_token": second,
                                   "client_id": app["client_id"]})
    assert after.status_code == 400 and after.data["error"] == "invalid_grant"
    info = client.http.get("/userinfo", headers={
        "Authorization": f"Bearer {rotated.data['access_token']}"})
    assert info.status_code == 401


def test_code_replay_revokes_tokens(client, setup):
    app = setup["web"]
    _, result, verifier = _login(client, app, setup["back"], scope="openid offline_access")
    first = _exchange(client, app, result["code"], verifier)
    assert first.status_code == 200
    second = _exchange(client, app, result["code"], verifier)
    assert second.status_code == 400 and second.data["error"] == "invalid_grant"
    info = client.http.get("/userinfo", headers={
        "Authorization": f"Bearer {first.data['access_token']}"})
    assert info.status_code == 401
    refresh = token_request(client, {"grant_type": "refresh_token",
                                     "refresh_token": first.data["refresh_token"],
                                     "client_id": app["client_id"],
                                     "client_secret": app["client_secret"]})
    assert refresh.status_code == 400


def test_sso_reuses_the_broker_session(client, setup):
    app = setup["web"]
    browser, result, verifier = _login(client, app, setup["back"])
    assert _exchange(client, app, result["code"], verifier).status_code == 200
    verifier2, challenge2 = pkce_pair()
    again = browser.get(authorize_path(
        client_id=setup["spa"]["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", state="s2", code_challenge=challenge2, code_challenge_method="S256",
        connection=setup["back"]["name"], prompt="none"))
    assert again.status_code == 302
    params = location_params(again)
    assert "code" in params and params["state"] == "s2"
    tokens = _exchange(client, setup["spa"], params["code"], verifier2)
    assert tokens.status_code == 200, tokens.data
    # prompt=login goes upstream again, prompt=none without a session is login_required
    forced = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", connection=setup["back"]["name"], prompt="login"))
    assert forced.headers["Location"].startswith("http://127.0.0.1:")
    assert "prompt=login" in forced.headers["Location"]
    fresh = Browser(client).get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", state="s3", connection=setup["back"]["name"], prompt="none"))
    assert location_params(fresh)["error"] == "login_required"


def test_home_realm_discovery_by_login_hint(client, setup):
    app = setup["web"]
    browser = Browser(client)
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", login_hint="bob@corp.example"))
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "response_type=code" in location  # the back-channel connection owns corp.example


def test_deleting_a_client_revokes_its_tokens(client, api, setup):
    app = api.call("POST", "/api/v2/clients", body={
        "name": "doomed", "callbacks": [APP_CALLBACK]}).data
    api.call("PATCH", f"/api/v2/connections/{setup['back']['id']}/clients",
             body=[{"client_id": app["client_id"], "status": True}])
    _, result, verifier = _login(client, app, setup["back"], scope="openid offline_access")
    tokens = _exchange(client, app, result["code"], verifier)
    assert tokens.status_code == 200
    access = tokens.data["access_token"]
    assert client.http.get("/userinfo", headers={"Authorization": f"Bearer {access}"}
                           ).status_code == 200
    assert api.call("DELETE", f"/api/v2/clients/{app['client_id']}").status_code == 204
    assert client.http.get("/userinfo", headers={"Authorization": f"Bearer {access}"}
                           ).status_code == 401
