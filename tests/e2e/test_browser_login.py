"""SPEC §3–4 end to end: headless Chromium signs alice in through the broker and the real upstream IdP
(front and back channel); the application redeems the code, checks the ID token against the broker's
JWKS, refreshes and calls /userinfo. The last test is a standard OpenID Connect client library (authlib)
configured only from the broker's discovery document."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.e2e.harness import (
    ARTIFACTS,
    HTTP_TIMEOUT,
    Broker,
    Management,
    RelyingParty,
    Setup,
    http_session,
    pkce_pair,
)
from tests.support.idp import IdpProcess

pytestmark = pytest.mark.e2e

SCOPE = "openid profile email offline_access"


def browser_login(page: Any, authorize_url: str, idp: IdpProcess, rp_app: RelyingParty, state: str,
                  shots: str) -> tuple[dict[str, str], str]:
    """Open ``authorize_url``, sign in as alice at the IdP, land on the application's "Signed in"."""
    from playwright.sync_api import expect

    page.goto(authorize_url)
    page.wait_for_selector("#login")
    assert page.url.startswith(idp.issuer + "/"), page.url
    page.screenshot(path=str(ARTIFACTS / f"{shots}-idp-login.png"), full_page=True)
    page.fill("#login", "alice")
    page.click("#submit")
    page.wait_for_url(re.compile("^" + re.escape(rp_app.callback_url) + r"\?"))
    expect(page.get_by_text("Signed in")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / f"{shots}-app-signed-in.png"), full_page=True)
    params, url = rp_app.callback_for(state)
    assert "error" not in params, params
    return params, url


def upstream_authorize_params(page: Any, idp: IdpProcess) -> dict[str, str]:
    """The query of the first request the browser made to the IdP's authorization endpoint."""
    endpoint = http_session().get(idp.discovery_url, timeout=HTTP_TIMEOUT).json()["authorization_endpoint"]
    for method, url in page.e2e_requests:
        if method == "GET" and url.split("?")[0] == endpoint:
            return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    raise AssertionError(f"no request to the IdP's authorization endpoint: {page.e2e_requests}")


def verify_id_token(id_token: str, jwks_uri: str, issuer: str, client_id: str, nonce: str) -> dict:
    """Signature against the broker's published JWKS, then iss, aud, exp, iat and nonce."""
    keys = KeySet.import_key_set(http_session().get(jwks_uri, timeout=HTTP_TIMEOUT).json())
    token = jwt.decode(id_token, keys, algorithms=["RS256"])
    assert token.header["alg"] == "RS256"
    registry = jwt.JWTClaimsRegistry(
        leeway=60,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    registry.validate(token.claims)
    return token.claims


def token_request(broker: Broker, client: dict, form: dict) -> dict:
    """POST /oauth/token, authenticating the way the client was registered."""
    http = http_session()
    form = dict(form)
    auth = None
    if client["token_endpoint_auth_method"] == "client_secret_basic":
        auth = (client["client_id"], client["client_secret"])
    else:
        form.update(client_id=client["client_id"], client_secret=client["client_secret"])
    response = http.post(broker.url("oauth/token"), data=form, auth=auth, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.headers.get("Cache-Control") == "no-store"
    return response.json()


@pytest.mark.parametrize("channel", ["front", "back"])
def test_browser_login_code_refresh_userinfo(page, broker: Broker, idp: IdpProcess, rp_app: RelyingParty,
                                             setup: Setup, channel: str):
    client, connection = setup.client, setup.connections[channel]
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    verifier, challenge = pkce_pair()
    authorize_url = broker.url("authorize") + "?" + urlencode({
        "client_id": client["client_id"],
        "redirect_uri": rp_app.callback_url,
        "response_type": "code",
        "scope": SCOPE,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "connection": connection["name"],
    })

    params, _ = browser_login(page, authorize_url, idp, rp_app, state, f"{channel}-channel")
    assert params["state"] == state
    assert params["iss"] == broker.issuer  # RFC 9207

    # The browser really took the channel's path (SPEC §3.2): what the broker asked the IdP for, and
    # how the IdP's answer reached the connection's own callback URL (RFC 9700 §4.4).
    upstream = upstream_authorize_params(page, idp)
    assert upstream["client_id"] == "broker-client"
    own_callback = broker.url("login/callback/" + connection["name"])
    assert upstream["redirect_uri"] == own_callback
    callbacks = {method for method, url in page.e2e_requests if url.split("?")[0] == own_callback}
    if channel == "front":
        assert (upstream["response_type"], upstream.get("response_mode")) == ("id_token", "form_post")
        assert callbacks == {"POST"}
    else:
        assert upstream["response_type"] == "code"
        assert upstream.get("code_challenge_method") == "S256" and upstream.get("code_challenge")
        assert callbacks == {"GET"}

    tokens = token_request(broker, client, {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": rp_app.callback_url,
        "code_verifier": verifier,
    })
    assert tokens["token_type"].lower() == "bearer"
    assert tokens.get("refresh_token"), tokens
    claims = verify_id_token(tokens["id_token"], broker.url(".well-known/jwks.json"), broker.issuer,
                             client["client_id"], nonce)
    user_id = f"oidc|{connection['name']}|alice"
    assert claims["sub"] == user_id
    assert claims["email"] == "alice@example.com"
    assert {"sid", "auth_time", "at_hash"} <= set(claims)

    refreshed = token_request(broker, client, {"grant_type": "refresh_token",
                                               "refresh_token": tokens["refresh_token"]})
    assert refreshed["access_token"] and refreshed["access_token"] != tokens["access_token"]

    info = http_session().get(broker.url("userinfo"), timeout=HTTP_TIMEOUT,
                              headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert info.status_code == 200, info.text
    assert info.json()["sub"] == user_id
    assert info.json()["email"] == "alice@example.com"

    # The code was single use.
    replay = http_session().post(broker.url("oauth/token"), timeout=HTTP_TIMEOUT, data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": rp_app.callback_url,
        "code_verifier": verifier, "client_id": client["client_id"],
        "client_secret": client["client_secret"]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text


def test_standard_oidc_client_from_discovery(page, broker: Broker, idp: IdpProcess, rp_app: RelyingParty,
                                             setup: Setup):
    """authlib's requests client, configured from /.well-known/openid-configuration and nothing else."""
    from authlib.common.security import generate_token
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oidc.discovery import OpenIDProviderMetadata

    discovery = http_session().get(broker.url(".well-known/openid-configuration"), timeout=HTTP_TIMEOUT)
    assert discovery.status_code == 200, discovery.text
    metadata = OpenIDProviderMetadata(discovery.json())
    metadata.validate()
    assert metadata["issuer"] == broker.issuer
    assert "S256" in metadata["code_challenge_methods_supported"]
    assert metadata.get("authorization_response_iss_parameter_supported") is True

    client = setup.client
    auth_methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    assert client["token_endpoint_auth_method"] in auth_methods
    oauth = OAuth2Session(
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        scope=SCOPE,
        redirect_uri=rp_app.callback_url,
        code_challenge_method="S256",
        token_endpoint_auth_method=client["token_endpoint_auth_method"],
    )
    oauth.trust_env = False
    try:
        verifier, nonce = generate_token(48), generate_token(20)
        authorize_url, state = oauth.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce,
            connection=setup.connections["back"]["name"],
        )
        params, callback_url = browser_login(page, authorize_url, idp, rp_app, state, "oidc-client")
        assert params["iss"] == metadata["issuer"]

        token = oauth.fetch_token(metadata["token_endpoint"], authorization_response=callback_url,
                                  state=state, code_verifier=verifier, timeout=HTTP_TIMEOUT)
        claims = verify_id_token(token["id_token"], metadata["jwks_uri"], metadata["issuer"],
                                 client["client_id"], nonce)
        assert claims["sub"] == f"oidc|{setup.connections['back']['name']}|alice"

        info = oauth.get(metadata["userinfo_endpoint"], timeout=HTTP_TIMEOUT)
        assert info.status_code == 200, info.text
        assert info.json()["sub"] == claims["sub"]

        refreshed = oauth.refresh_token(metadata["token_endpoint"], timeout=HTTP_TIMEOUT)
        assert refreshed["access_token"] != token["access_token"]
        again = oauth.get(metadata["userinfo_endpoint"], timeout=HTTP_TIMEOUT)
        assert again.status_code == 200 and again.json()["email"] == "alice@example.com", again.text
    finally:
        oauth.close()


def test_rp_logout_without_hint_asks_in_the_browser(page, broker: Broker, idp: IdpProcess,
                                                   rp_app: RelyingParty, setup: Setup,
                                                   management: Management):
    """/oidc/logout without id_token_hint shows "Do you want to sign out?" (RP-Initiated Logout §2);
    the session ends only on "Sign out", and the form's redirect to the application passes the CSP."""
    from playwright.sync_api import expect

    client, connection = setup.client, setup.connections["front"]
    management.call("PATCH", f"api/v2/clients/{client['client_id']}",
                    {"allowed_logout_urls": [rp_app.callback_url]}, expect=200)

    def authorize_url(state: str, **extra: str) -> str:
        return broker.url("authorize") + "?" + urlencode({
            "client_id": client["client_id"], "redirect_uri": rp_app.callback_url, "response_type": "code",
            "scope": "openid", "state": state, "nonce": secrets.token_urlsafe(8),
            "code_challenge": pkce_pair()[1], "code_challenge_method": "S256",
            "connection": connection["name"], **extra})

    state = secrets.token_urlsafe(12)
    browser_login(page, authorize_url(state), idp, rp_app, state, "logout-confirm")
    logout_state = secrets.token_urlsafe(12)
    page.goto(broker.url("oidc/logout") + "?" + urlencode({
        "client_id": client["client_id"], "post_logout_redirect_uri": rp_app.callback_url,
        "state": logout_state}))
    expect(page.get_by_role("heading", name="Do you want to sign out?")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "logout-confirm.png"), full_page=True)

    # Not yet signed out: prompt=none still gets a code through the broker session.
    silent = secrets.token_urlsafe(12)
    probe = page.context.new_page()
    probe.goto(authorize_url(silent, prompt="none"))
    assert "code" in rp_app.callback_for(silent)[0]
    probe.close()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile("^" + re.escape(rp_app.callback_url) + r"\?"))
    assert rp_app.callback_for(logout_state)[0] == {"state": logout_state}

    after = secrets.token_urlsafe(12)
    page.goto(authorize_url(after, prompt="none"))
    assert rp_app.callback_for(after)[0]["error"] == "login_required"


def test_form_post_response_mode_in_the_browser(page, broker: Broker, idp: IdpProcess, rp_app: RelyingParty,
                                                setup: Setup):
    """response_mode=form_post: Chromium runs the broker's auto-submit page under its CSP (one
    script by hash, form-action the application's origin) and POSTs the code to the application."""
    client, connection = setup.client, setup.connections["back"]
    state = secrets.token_urlsafe(16)
    verifier, challenge = pkce_pair()
    authorize_url = broker.url("authorize") + "?" + urlencode({
        "client_id": client["client_id"], "redirect_uri": rp_app.callback_url, "response_type": "code",
        "response_mode": "form_post", "scope": "openid", "state": state,
        "nonce": secrets.token_urlsafe(8), "code_challenge": challenge, "code_challenge_method": "S256",
        "connection": connection["name"], "prompt": "login"})
    page.goto(authorize_url)
    page.wait_for_selector("#login")
    page.fill("#login", "alice")
    page.click("#submit")
    page.wait_for_url(rp_app.callback_url)  # a POST: no query
    expect_text = page.get_by_text("Signed in")
    from playwright.sync_api import expect

    expect(expect_text).to_be_visible()
    params, _ = rp_app.callback_for(state)
    index = rp_app.callbacks.index(params)
    assert rp_app.methods[index] == "POST"
    assert params["iss"] == broker.issuer and params["state"] == state
    tokens = token_request(broker, client, {"grant_type": "authorization_code", "code": params["code"],
                                            "redirect_uri": rp_app.callback_url, "code_verifier": verifier})
    assert tokens["id_token"]
