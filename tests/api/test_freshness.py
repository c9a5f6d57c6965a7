"""Authentication freshness (SPEC §3.1): ``max_age`` and ``prompt=login`` go upstream, the upstream
``auth_time`` must satisfy them, and the broker's session and ID token carry the upstream login's
``auth_time``, ``acr`` and ``amr``.

One clock for the whole test: the broker's routes and the fake IdP both read a fixed moment, so
every boundary below is exact (no sleeping, no timing)."""
from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from chalicelib.login.jwks_cache import jwks_cache
from tests.support.fake_idp import DROP, FakeIdp, connection_body
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
NOW = int(time.time())  # reset by the idp fixture, which stops the broker's clock at it


@pytest.fixture()
def idp(fixed_clock):
    global NOW
    # A moment fixed per test, not at import (the suite may reach this file minutes after
    # collecting it): the broker's clock stands still at NOW for the whole test.
    NOW = int(fixed_clock.now())
    jwks_cache().clear()
    with FakeIdp() as running:
        running.clock = lambda: NOW
        yield running
    jwks_cache().clear()


@pytest.fixture()
def setup(api, idp):
    web = api.call("POST", "/api/v2/clients", body={
        "name": "fresh-web", "app_type": "regular_web", "callbacks": [APP_CALLBACK]}).data
    created = {}
    for channel in ("back", "front"):
        body = connection_body(idp, f"fresh-{channel}-{uuid.uuid4().hex[:6]}", channel=channel,
                               enabled_clients=[web["client_id"]])
        response = api.call("POST", "/api/v2/connections", body=body)
        assert response.status_code == 201, response.data
        created[channel] = response.data
    yield {"web": web, **created}
    for connection in created.values():
        api.call("DELETE", f"/api/v2/connections/{connection['id']}")


def login(client, setup, browser=None, channel="back", **app_params):
    """/authorize → fake IdP → callback; (browser, callback or /authorize response, verifier,
    upstream /authorize query)."""
    browser = browser or Browser(client)
    verifier, challenge = pkce_pair()
    started = browser.get(authorize_path(
        client_id=setup["web"]["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid email", state="app-state", nonce="app-nonce", code_challenge=challenge,
        code_challenge_method="S256", connection=setup[channel]["name"], **app_params))
    assert started.status_code == 302, started.body
    if started.headers["Location"].startswith(APP_CALLBACK):
        return browser, started, verifier, None  # SSO: no trip upstream
    upstream = location_params(started)
    method, params = idp_login(started.headers["Location"])
    return browser, deliver_callback(browser, method, params), verifier, upstream


def id_token_claims(client, setup, response, verifier) -> dict:
    params = location_params(response)
    assert "code" in params, params
    tokens = token_request(client, {
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": APP_CALLBACK,
        "code_verifier": verifier, "client_id": setup["web"]["client_id"],
        "client_secret": setup["web"]["client_secret"]})
    assert tokens.status_code == 200, tokens.data
    payload = tokens.data["id_token"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def assert_denied(response, words: str) -> None:
    assert response.status_code == 303, response.body
    params = location_params(response)
    assert params["error"] == "access_denied" and "code" not in params, params
    assert words in params["error_description"], params


# --------------------------------------------------------------------------- max_age

def test_max_age_is_forwarded_upstream(client, setup, idp):
    idp.script(auth_time=NOW)
    _, response, _, upstream = login(client, setup, max_age="300")
    assert upstream["max_age"] == "300"
    assert "code" in location_params(response)


@pytest.mark.parametrize("channel", ["back", "front"])
def test_max_age_with_a_stale_upstream_login_is_refused(client, api, setup, idp, channel):
    idp.script(auth_time=NOW - 61)  # max_age=0 allows the 60 s of clock skew, not one more
    browser, response, _, _ = login(client, setup, channel=channel, max_age="0")
    assert_denied(response, "max_age")
    assert "broker_session" not in browser.cookies


def test_max_age_with_a_fresh_upstream_login_carries_its_auth_time(client, setup, idp):
    idp.script(auth_time=NOW - 60)
    _, response, verifier, _ = login(client, setup, max_age="0")
    claims = id_token_claims(client, setup, response, verifier)
    assert claims["auth_time"] == NOW - 60  # the upstream login's time, not the callback's


@pytest.mark.parametrize("auth_time", [DROP, "yesterday", True, None, NOW + 3600])
def test_max_age_without_a_valid_auth_time_is_refused(client, setup, idp, auth_time):
    idp.script(auth_time=auth_time)
    _, response, _, _ = login(client, setup, max_age="3600")
    assert_denied(response, "auth_time (max_age)")


# --------------------------------------------------------------------------- prompt=login

def test_prompt_login_with_an_old_upstream_session_is_refused(client, setup, idp):
    # The IdP replayed its own session from before this login started (minus the skew).
    idp.script(auth_time=NOW - 61)
    _, response, _, upstream = login(client, setup, prompt="login")
    assert upstream["prompt"] == "login"
    assert_denied(response, "prompt=login")


def test_prompt_login_with_a_new_upstream_login_passes(client, setup, idp):
    idp.script(auth_time=NOW - 60)
    _, response, verifier, _ = login(client, setup, prompt="login")
    assert id_token_claims(client, setup, response, verifier)["auth_time"] == NOW - 60


def test_prompt_login_without_auth_time_is_refused(client, setup, idp):
    idp.script(auth_time=DROP)
    _, response, _, _ = login(client, setup, prompt="login")
    assert_denied(response, "auth_time (prompt=login)")


def test_without_max_age_or_prompt_a_missing_auth_time_means_the_callback_time(client, setup,
                                                                               idp):
    idp.script(auth_time=DROP)
    _, response, verifier, _ = login(client, setup)
    assert id_token_claims(client, setup, response, verifier)["auth_time"] == NOW


# --------------------------------------------------------------------------- acr / amr, SSO

def test_acr_and_amr_reach_the_broker_id_token_and_its_sso_reuse(client, setup, idp):
    idp.script(auth_time=NOW - 100, acr="urn:mfa", amr=["pwd", "otp"])
    browser, response, verifier, _ = login(client, setup)
    claims = id_token_claims(client, setup, response, verifier)
    assert (claims["auth_time"], claims["acr"], claims["amr"]) == (NOW - 100, "urn:mfa",
                                                                   ["pwd", "otp"])
    # A second application request in the same browser reuses the session (no trip upstream):
    # its ID token still describes the upstream login.
    _, again, verifier, upstream = login(client, setup, browser=browser)
    assert upstream is None
    claims = id_token_claims(client, setup, again, verifier)
    assert (claims["auth_time"], claims["acr"], claims["amr"]) == (NOW - 100, "urn:mfa",
                                                                   ["pwd", "otp"])


@pytest.mark.parametrize("acr,amr", [
    ("x" * 257, ["pwd"] * 17),
    (42, "pwd"),
    ("", [1, 2]),
    ("urn:\nmfa", ["x" * 65]),
])
def test_malformed_acr_and_amr_are_dropped(client, setup, idp, acr, amr):
    idp.script(acr=acr, amr=amr)
    _, response, verifier, _ = login(client, setup)
    claims = id_token_claims(client, setup, response, verifier)
    assert "acr" not in claims and "amr" not in claims


def test_sso_reuse_measures_max_age_from_the_upstream_login(client, setup, idp):
    """The session keeps the upstream auth_time: a max_age the upstream login no longer meets
    sends the browser upstream again, even though the broker session itself is brand new."""
    idp.script(auth_time=NOW - 1000)
    browser, response, _, _ = login(client, setup)
    assert "code" in location_params(response)
    _, reused, _, upstream = login(client, setup, browser=browser, max_age="2000")
    assert upstream is None and "code" in location_params(reused)  # still fresh enough
    idp.script(auth_time=NOW)
    _, again, _, upstream = login(client, setup, browser=browser, max_age="500")
    assert upstream is not None, "the session was reused although its login is too old"
    assert upstream["prompt"] == "login" and upstream["max_age"] == "500"
    assert "code" in location_params(again)
