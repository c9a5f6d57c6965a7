"""SPEC §5 + §6 end to end: Universal Logout as Okta would drive it.

alice signs in with headless Chromium to two applications through one broker session (the second
sign-in is SSO: the browser never goes back to the IdP). The upstream is the real oidc-provider,
signing ID tokens with an RSA key this test generated. Acting as that IdP, the test then sends a
Global Token Revocation signed with the same key; the broker (scripts/run_local.py, whose logout
worker delivers from SQS) notifies both applications' back-channel logout endpoints
(tests/support/bcl_receiver.py validates every logout token), their refresh tokens die and a silent
authorization needs a new upstream login.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from tests.e2e.harness import HTTP_TIMEOUT, Broker, Management, RelyingParty, http_session, pkce_pair
from tests.e2e.test_browser_login import browser_login, token_request, verify_id_token
from tests.support.bcl_receiver import EVENT, BclReceiver
from tests.support.fake_idp import mint
from tests.support.idp import IdpProcess, default_idp_config, start_idp

pytestmark = pytest.mark.e2e

SCOPE = "openid profile email offline_access"
DELIVERY_WAIT_SECONDS = 20
GTR_TYP = "global-token-revocation+jwt"


@pytest.fixture(scope="module")
def idp_key() -> RSAKey:
    """The upstream IdP's ID-token signing key: generated here, so the test can sign as the IdP."""
    return RSAKey.generate_key(2048, parameters={"kid": "ul-" + secrets.token_hex(6), "use": "sig",
                                                 "alg": "RS256"}, auto_kid=False)


@pytest.fixture(scope="module")
def keyed_idp(broker: Broker, idp_key: RSAKey) -> Iterator[IdpProcess]:
    config = default_idp_config()  # the universe fixture registers its connection's callback URL
    config["jwks"] = {"keys": [idp_key.as_dict(private=True)]}
    with start_idp(config, max_seconds=900) as running:
        discovery = http_session().get(running.discovery_url, timeout=HTTP_TIMEOUT).json()
        published = http_session().get(discovery["jwks_uri"], timeout=HTTP_TIMEOUT).json()
        assert [k["kid"] for k in published["keys"]] == [idp_key.kid], published
        yield running


@pytest.fixture(scope="module")
def broker_jwks(broker: Broker) -> dict:
    response = http_session().get(broker.url(".well-known/jwks.json"), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture()
def universe(management: Management, keyed_idp: IdpProcess, rp_app: RelyingParty, broker: Broker,
             broker_jwks: dict) -> Iterator[dict[str, Any]]:
    """Two applications with back-channel logout receivers, one connection to the keyed IdP."""
    suffix = uuid.uuid4().hex[:6]
    apps, receivers = [], []
    try:
        for name in ("one", "two"):
            app = management.call("POST", "api/v2/clients", {
                "name": f"ul-{name}-{suffix}", "app_type": "regular_web",
                "callbacks": [rp_app.callback_url]}, expect=201)
            receiver = BclReceiver(app["client_id"], broker.issuer, broker_jwks).start()
            receivers.append(receiver)
            management.call("PATCH", f"api/v2/clients/{app['client_id']}", {
                "oidc_logout": {"backchannel_logout_urls": [receiver.url]}}, expect=200)
            apps.append(app)
        connection = management.call("POST", "api/v2/connections", {
            "name": f"ul-{suffix}", "strategy": "oidc",
            "enabled_clients": [app["client_id"] for app in apps],
            "options": {"type": "front_channel", "discovery_url": keyed_idp.issuer,
                        "client_id": "broker-client"}}, expect=201)
        assert connection["options"]["issuer"] == keyed_idp.issuer, connection
        keyed_idp.register_redirect_uri(broker.url("login/callback/" + connection["name"]))
        yield {"apps": apps, "receivers": receivers, "connection": connection}
    finally:
        for receiver in receivers:
            receiver.stop()


def redeem(broker: Broker, app: dict, rp_app: RelyingParty, code: str, verifier: str,
           nonce: str) -> tuple[dict, dict]:
    tokens = token_request(broker, app, {"grant_type": "authorization_code", "code": code,
                                         "redirect_uri": rp_app.callback_url,
                                         "code_verifier": verifier})
    assert tokens.get("refresh_token"), tokens
    claims = verify_id_token(tokens["id_token"], broker.url(".well-known/jwks.json"), broker.issuer,
                             app["client_id"], nonce)
    return tokens, claims


def idp_requests(page: Any, idp: IdpProcess, since: int) -> list[tuple[str, str]]:
    return [(m, u) for m, u in page.e2e_requests[since:] if u.startswith(idp.issuer + "/")]


def wait_for_deliveries(receivers: list[BclReceiver]) -> None:
    """Until every receiver accepted a logout token; bounded (the worker polls about every 0.5 s)."""
    deadline = time.monotonic() + DELIVERY_WAIT_SECONDS
    while not all(rp.accepted for rp in receivers):
        if time.monotonic() >= deadline:
            raise AssertionError(f"no back-channel logout within {DELIVERY_WAIT_SECONDS}s: "
                                 f"{[rp.deliveries for rp in receivers]}")
        time.sleep(0.1)


def refresh_status(broker: Broker, app: dict, refresh_token: str) -> tuple[int, dict]:
    response = http_session().post(broker.url("oauth/token"), timeout=HTTP_TIMEOUT, data={
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": app["client_id"], "client_secret": app["client_secret"]})
    return response.status_code, response.json()


def userinfo_status(broker: Broker, access_token: str) -> int:
    return http_session().get(broker.url("userinfo"), timeout=HTTP_TIMEOUT,
                              headers={"Authorization": f"Bearer {access_token}"}).status_code


def test_universal_logout_reaches_every_application(page, broker: Broker, keyed_idp: IdpProcess,
                                                    rp_app: RelyingParty, idp_key: RSAKey,
                                                    universe: dict[str, Any]):
    first, second = universe["apps"]
    connection = universe["connection"]

    # 1. alice signs in to the first application at the IdP.
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    verifier, challenge = pkce_pair()
    login_url = rp_app.authorize_url(broker, first, connection["name"], state, nonce, challenge, scope=SCOPE)
    params, _ = browser_login(page, login_url, keyed_idp, rp_app, state, "ul-first")
    first_tokens, first_claims = redeem(broker, first, rp_app, params["code"], verifier, nonce)
    user_id = f"oidc|{connection['name']}|alice"
    assert first_claims["sub"] == user_id

    # 2. ... and to the second one through the broker session: the IdP is not visited.
    state2, nonce2 = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    verifier2, challenge2 = pkce_pair()
    before = len(page.e2e_requests)
    page.goto(rp_app.authorize_url(broker, second, connection["name"], state2, nonce2, challenge2,
                                   scope=SCOPE))
    page.wait_for_url(re.compile("^" + re.escape(rp_app.callback_url) + r"\?"))
    params2, _ = rp_app.callback_for(state2)
    assert "code" in params2, params2
    assert idp_requests(page, keyed_idp, before) == []
    assert page.locator("#login").count() == 0  # no IdP login form on screen either
    second_tokens, second_claims = redeem(broker, second, rp_app, params2["code"], verifier2, nonce2)
    assert second_claims["sub"] == user_id
    assert second_claims["sid"] == first_claims["sid"]
    for app, tokens in ((first, first_tokens), (second, second_tokens)):
        assert refresh_status(broker, app, tokens["refresh_token"])[0] == 200
    assert all(rp.deliveries == [] for rp in universe["receivers"])

    # 3. The IdP revokes alice, signing with its own ID-token key.
    endpoint = broker.url(f"oauth/global-token-revocation/connection/{connection['name']}")
    now = int(time.time())
    token = mint({"iss": connection["options"]["issuer"], "sub": "broker-client", "aud": endpoint,
                  "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex},
                 idp_key, alg="RS256", header={"typ": GTR_TYP})
    response = http_session().post(endpoint, timeout=HTTP_TIMEOUT, headers={
        "Authorization": f"Bearer {token}"}, json={
        "sub_id": {"format": "iss_sub", "iss": keyed_idp.issuer, "sub": "alice"}})
    assert response.status_code == 204, response.text

    # 4. Both applications are told, with logout tokens they can validate.
    wait_for_deliveries(universe["receivers"])
    for rp, app, claims in zip(universe["receivers"], (first, second), (first_claims, second_claims),
                               strict=True):
        assert len(rp.deliveries) == 1, rp.deliveries
        [delivery] = rp.deliveries
        assert delivery.error is None and delivery.status == 200, delivery
        assert delivery.header["typ"] == "logout+jwt"
        logout = delivery.claims
        assert logout["iss"] == broker.issuer and logout["aud"] == app["client_id"]
        assert logout["sub"] == user_id and logout["sid"] == claims["sid"]
        assert 0 < logout["exp"] - logout["iat"] <= 120 and logout["jti"]
        assert logout["events"] == {EVENT: {}} and "nonce" not in logout

    # 5. Their tokens are dead ...
    for app, tokens in ((first, first_tokens), (second, second_tokens)):
        status, body = refresh_status(broker, app, tokens["refresh_token"])
        assert status == 400 and body.get("error") == "invalid_grant", (status, body)
        assert userinfo_status(broker, tokens["access_token"]) == 401

    # 6. ... and the browser's broker session too: a silent authorization needs a new login.
    before = len(page.e2e_requests)
    params3 = rp_app.silent_authorization(page, broker, first, connection["name"], scope=SCOPE)
    assert params3.get("error") == "login_required", params3
    assert "code" not in params3
    assert idp_requests(page, keyed_idp, before) == []
