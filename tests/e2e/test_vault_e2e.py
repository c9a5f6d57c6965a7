"""SPEC §10 + §11 end to end with the real IdP, in Chromium (issue 18, item 5).

The upstream is panva's oidc-provider (tests/idp/server.mjs) with refresh tokens that rotate on
every use (reusing a spent one revokes the whole grant there) and its ``backchannelLogout``
feature; its client registration for the broker carries the connection's
``options.backchannel_logout_url`` and ``backchannel_logout_session_required``. The connection
keeps upstream tokens (``token_storage: vault``) and lets the application exchange them.

1. alice signs in to the application in Chromium through the broker and the IdP (the broker asks
   for ``offline_access`` with ``prompt=consent``, so the IdP issues a refresh token); the
   broker's callback seals the upstream tokens in the vault.
2. + 3. The IdP's access tokens live 55 s, under the broker's 60 s refresh margin: each RFC 8693
   exchange of the application's broker access token refreshes upstream first (one refresh grant
   at the IdP each time, the second one with the rotated refresh token) and answers a new upstream
   access token that the IdP's userinfo accepts. Once the IdP's policy gives access tokens an hour,
   one more exchange refreshes and the next answers the stored token unchanged, with no IdP call.
   No sleeping: the "expiry" is the IdP's token lifetime against the broker's margin.
4. alice signs out at the IdP (its end_session page, in the same browser). The IdP POSTs a logout
   token to the broker; the broker ends the session the login created (``sid``): the application's
   back-channel logout receiver (tests/support/bcl_receiver.py, which validates every logout token)
   hears of it, the application's broker access token dies with the session's online grant
   (userinfo 401, the exchange refuses it as a subject token) and a silent authorization answers
   ``login_required`` without visiting the IdP.

The flow's steps are printed (``-s``), never a token.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import HTTP_TIMEOUT, Broker, Management, RelyingParty, http_session, pkce_pair
from tests.e2e.test_browser_login import (
    browser_login,
    token_request,
    upstream_authorize_params,
    verify_id_token,
)
from tests.support.bcl_receiver import EVENT, BclReceiver
from tests.support.idp import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    IdpProcess,
    default_idp_config,
    start_idp,
)

pytestmark = pytest.mark.e2e

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
APP_SCOPE = "openid profile email"  # no offline_access: the application's grant is an online one
UPSTREAM_SCOPE = "openid profile email offline_access"
SHORT_TTL = 55  # the IdP's access tokens at first: under the broker's 60 s refresh margin
LONG_TTL = 3600
DELIVERY_WAIT_SECONDS = 60  # the broker's logout worker polls SQS about every 0.5 s
IDP_LOG_WAIT_SECONDS = 10
REFRESH_GRANT = "test-idp: event grant.success refresh_token"
CODE_GRANT = "test-idp: event grant.success authorization_code"


def say(text: str) -> None:
    print(f"[vault-e2e] {text}", flush=True)


@pytest.fixture(scope="module")
def broker_jwks(broker: Broker) -> dict:
    response = http_session().get(broker.url(".well-known/jwks.json"), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def connection_name() -> str:
    return f"vault-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def idp(broker: Broker, connection_name: str) -> Iterator[IdpProcess]:
    """This module's IdP (it replaces the session's shared one here, so a failure report shows
    its log): the broker's client registered with the connection's callback URL and its
    back-channel logout URL, short-lived access tokens, refresh tokens that rotate."""
    config = default_idp_config(
        redirect_uris=[broker.url(f"login/callback/{connection_name}")],
        backchannel_logout_uri=broker.url(f"login/backchannel-logout/{connection_name}"),
        backchannel_logout_session_required=True)
    config.update(allow_loopback_fetch=True,  # the logout POST goes to the broker on loopback
                  ttl={"AccessToken": SHORT_TTL},
                  provider_config={"rotateRefreshToken": True})
    with start_idp(config, max_seconds=900) as running:
        yield running


@pytest.fixture(scope="module")
def vault(management: Management, broker: Broker, rp_app: RelyingParty, idp: IdpProcess,
          broker_jwks: dict, connection_name: str) -> Iterator[dict[str, Any]]:
    """The application (with a back-channel logout receiver) and the vault connection."""
    app = management.call("POST", "api/v2/clients", {
        "name": f"{connection_name}-app", "app_type": "regular_web",
        "callbacks": [rp_app.callback_url]}, expect=201)
    receiver = BclReceiver(app["client_id"], broker.issuer, broker_jwks).start()
    try:
        management.call("PATCH", f"api/v2/clients/{app['client_id']}", {
            "oidc_logout": {"backchannel_logout_urls": [receiver.url]}}, expect=200)
        connection = management.call("POST", "api/v2/connections", {
            "name": connection_name, "strategy": "oidc", "enabled_clients": [app["client_id"]],
            "options": {
                "type": "back_channel", "discovery_url": idp.issuer,
                "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": UPSTREAM_SCOPE,
                # oidc-provider grants offline_access only with prompt=consent.
                "upstream_params": {"prompt": {"value": "consent"}},
                "token_storage": "vault",
                "token_exchange_clients": [app["client_id"]],
            }}, expect=201)
        options = connection["options"]
        # What the administrator registered at the IdP is what the broker shows.
        [registered] = idp.config["clients"]
        assert options["callback_url"] in registered["redirect_uris"], options
        assert options["backchannel_logout_url"] == registered["backchannel_logout_uri"], options
        assert options["token_storage"] == "vault", options
        yield {"app": app, "receiver": receiver, "connection": connection,
               "user_id": f"oidc|{connection_name}|alice"}
    finally:
        receiver.stop()


# ---- helpers -------------------------------------------------------------------------------------


def exchange(broker: Broker, app: dict, connection: dict, subject_token: str):
    """RFC 8693: the application's broker access token for the upstream access token,
    the application authenticating the way it was registered."""
    form = {"grant_type": GRANT, "subject_token": subject_token, "subject_token_type": ACCESS,
            "requested_token_type": ACCESS, "resource": f"urn:connection:{connection['name']}"}
    auth = None
    if app["token_endpoint_auth_method"] == "client_secret_basic":
        auth = (app["client_id"], app["client_secret"])
    else:
        form.update(client_id=app["client_id"], client_secret=app["client_secret"])
    return http_session().post(broker.url("oauth/token"), timeout=HTTP_TIMEOUT, data=form,
                               auth=auth)


def exchanged(broker: Broker, app: dict, connection: dict, subject_token: str) -> dict:
    response = exchange(broker, app, connection, subject_token)
    assert response.status_code == 200, response.text
    assert response.headers.get("Cache-Control") == "no-store"
    body = response.json()
    assert body["issued_token_type"] == ACCESS and body["token_type"] == "Bearer", set(body)
    assert body["access_token"] != subject_token
    return body


def idp_userinfo(idp: IdpProcess, access_token: str) -> tuple[int, dict]:
    """The IdP's own verdict on an upstream access token."""
    endpoint = http_session().get(idp.discovery_url, timeout=HTTP_TIMEOUT).json()["userinfo_endpoint"]
    response = http_session().get(endpoint, timeout=HTTP_TIMEOUT,
                                  headers={"Authorization": f"Bearer {access_token}"})
    return response.status_code, (response.json() if response.status_code == 200 else {})


def idp_events(idp: IdpProcess, text: str) -> int:
    return sum(1 for line in idp.log().splitlines() if line.strip() == text)


def idp_refreshes(idp: IdpProcess) -> int:
    return idp_events(idp, REFRESH_GRANT)


def idp_logged(idp: IdpProcess, text: str, count: int) -> int:
    """How often the IdP logged ``text`` once it logged it ``count`` times: its stderr reaches
    us through a reader thread, a moment after the HTTP answer that followed the line."""
    deadline = time.monotonic() + IDP_LOG_WAIT_SECONDS
    while idp_events(idp, text) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return idp_events(idp, text)


def idp_trouble(idp: IdpProcess) -> list[str]:
    """A refused grant (a spent refresh token presented again, ...) or a revoked grant."""
    return [line for line in idp.log().splitlines()
            if "event grant.error" in line or "event grant.revoked" in line]


def set_idp_ttl(idp: IdpProcess, **seconds: int) -> None:
    response = http_session().post(f"{idp.issuer}/test/ttl", timeout=HTTP_TIMEOUT,
                                   data={k: str(v) for k, v in seconds.items()})
    assert response.status_code == 204, response.status_code


def connection_events(management: Management, connection: dict) -> list[dict]:
    """The connection's log events, oldest first."""
    response = management.http.get(management.broker.url("api/v2/logs"), timeout=HTTP_TIMEOUT,
                                   params={"q": f"connection:{connection['name']}",
                                           "per_page": "100"})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()))


def describe(event: dict) -> str:
    details = event.get("details") or {}
    shown = {k: details[k] for k in ("direction", "upstream", "source", "sessions", "identified_by",
                                     "check") if k in details}
    return f"{event['type']} {shown}" if shown else event["type"]


def idp_requests(page: Any, idp: IdpProcess, since: int) -> list[tuple[str, str]]:
    return [(m, u) for m, u in page.e2e_requests[since:] if u.startswith(idp.issuer + "/")]


def wait_for_delivery(receiver: BclReceiver) -> None:
    """Until the application accepted a logout token; bounded."""
    deadline = time.monotonic() + DELIVERY_WAIT_SECONDS
    while not receiver.accepted:
        if time.monotonic() >= deadline:
            raise AssertionError(f"no back-channel logout reached the application within "
                                 f"{DELIVERY_WAIT_SECONDS}s: {receiver.deliveries}")
        time.sleep(0.1)


# ---- the flow ------------------------------------------------------------------------------------


def test_vault_exchange_refresh_and_upstream_logout(page, broker: Broker, idp: IdpProcess,
                                                    rp_app: RelyingParty, management: Management,
                                                    vault: dict[str, Any]):
    from playwright.sync_api import expect

    app, connection, receiver = vault["app"], vault["connection"], vault["receiver"]
    user_id = vault["user_id"]
    say(f"connection {connection['name']}: back_channel, token_storage=vault, "
        f"token_exchange_clients=[the application]; IdP client registered with "
        f"backchannel_logout_uri={connection['options']['backchannel_logout_url']} "
        f"(backchannel_logout_session_required); IdP access tokens live {SHORT_TTL} s, refresh "
        f"tokens rotate on every use")

    # 1. alice signs in through Chromium; the broker vaults what the IdP's token endpoint answered.
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    verifier, challenge = pkce_pair()
    login_url = rp_app.authorize_url(broker, app, connection["name"], state, nonce, challenge,
                                     scope=APP_SCOPE)
    params, _ = browser_login(page, login_url, idp, rp_app, state, "vault")
    upstream = upstream_authorize_params(page, idp)
    assert "offline_access" in upstream["scope"].split() and upstream["prompt"] == "consent", upstream
    assert upstream["redirect_uri"] == connection["options"]["callback_url"]
    assert idp_logged(idp, CODE_GRANT, 1) == 1
    tokens = token_request(broker, app, {"grant_type": "authorization_code", "code": params["code"],
                                         "redirect_uri": rp_app.callback_url,
                                         "code_verifier": verifier})
    claims = verify_id_token(tokens["id_token"], broker.url(".well-known/jwks.json"), broker.issuer,
                             app["client_id"], nonce)
    assert claims["sub"] == user_id and claims.get("sid"), claims
    assert "refresh_token" not in tokens  # an online grant: nothing of it survives the logout
    broker_access = tokens["access_token"]
    say(f"1. Chromium login at oidc-provider as alice: upstream scope '{upstream['scope']}', "
        f"prompt={upstream['prompt']}; the broker redeemed the upstream code (1 authorization_code "
        f"grant at the IdP) and the application got broker tokens for {user_id} (an online "
        f"grant: the application asked for no offline_access)")
    assert idp_refreshes(idp) == 0

    # 2. The exchange answers an upstream access token the IdP accepts. The one stored at login
    # expires within the broker's 60 s margin: it is refreshed upstream first.
    first = exchanged(broker, app, connection, broker_access)
    assert 0 < first["expires_in"] <= SHORT_TTL, first["expires_in"]
    assert idp_logged(idp, REFRESH_GRANT, 1) == 1
    status, info = idp_userinfo(idp, first["access_token"])
    assert status == 200 and info["sub"] == "alice", (status, info)
    say(f"2. token exchange #1 (resource urn:connection:{connection['name']}): 200, "
        f"issued_token_type access_token, expires_in {first['expires_in']} s; the stored upstream "
        f"token expires within 60 s, so the broker refreshed it first (IdP refresh grants: "
        f"{idp_refreshes(idp)}); the IdP's userinfo accepts the answer (sub {info['sub']})")

    # 3. The answer expires within the margin too: the next exchange refreshes again, presenting
    # the refresh token the IdP rotated (the spent one would revoke the grant at the IdP).
    second = exchanged(broker, app, connection, broker_access)
    assert second["access_token"] != first["access_token"]
    assert idp_logged(idp, REFRESH_GRANT, 2) == 2
    status, info = idp_userinfo(idp, second["access_token"])
    assert status == 200 and info["sub"] == "alice", (status, info)
    assert idp_trouble(idp) == []
    say(f"3. token exchange #2: a different upstream access token (IdP refresh grants: "
        f"{idp_refreshes(idp)}, with the rotated refresh token; no refused or revoked grant at "
        f"the IdP); the IdP accepts it")
    set_idp_ttl(idp, AccessToken=LONG_TTL)
    third = exchanged(broker, app, connection, broker_access)
    assert third["access_token"] not in (first["access_token"], second["access_token"])
    assert SHORT_TTL < third["expires_in"] <= LONG_TTL, third["expires_in"]
    assert idp_logged(idp, REFRESH_GRANT, 3) == 3
    fourth = exchanged(broker, app, connection, broker_access)
    assert fourth["access_token"] == third["access_token"]  # a refresh would have answered another
    assert idp_refreshes(idp) == 3
    assert idp_userinfo(idp, fourth["access_token"])[0] == 200
    assert idp_trouble(idp) == []
    exchanges = [describe(e) for e in connection_events(management, connection)
                 if e["type"] in ("stx", "ftx")]
    assert exchanges == [describe({"type": "stx", "details": {
        "direction": "upstream_access_token", "upstream": how}})
        for how in ("refreshed", "refreshed", "refreshed", "stored")], exchanges
    say(f"3. the IdP's access tokens now live {LONG_TTL} s: exchange #3 refreshed a third time "
        f"(expires_in {third['expires_in']} s), exchange #4 answered the same stored token with no "
        f"IdP call (IdP refresh grants: {idp_refreshes(idp)}); broker log events: {exchanges}")

    # 4. alice signs out at the IdP, in the same browser.
    discovery = http_session().get(idp.discovery_url, timeout=HTTP_TIMEOUT).json()
    assert discovery.get("backchannel_logout_supported") is True, discovery
    assert receiver.deliveries == []
    page.goto(discovery["end_session_endpoint"])
    page.click("#logout-yes")
    expect(page.locator("#signed-out")).to_be_visible()
    # oidc-provider POSTs the logout token before it renders that page.
    assert idp_logged(idp, f"test-idp: event backchannel.success {DEFAULT_CLIENT_ID}", 1) == 1, \
        idp.log()[-3000:]
    say("4. Chromium: end_session at oidc-provider, 'Yes, sign me out': the IdP POSTed a logout "
        "token (sid + sub) to the broker's back-channel logout URL and got 2xx")

    wait_for_delivery(receiver)
    [delivery] = receiver.deliveries
    assert delivery.status == 200 and delivery.error is None, delivery
    logout = delivery.claims
    assert delivery.header["typ"] == "logout+jwt"
    assert logout["iss"] == broker.issuer and logout["aud"] == app["client_id"]
    assert logout["sub"] == user_id and logout["sid"] == claims["sid"]
    assert logout["events"] == {EVENT: {}} and "nonce" not in logout
    say("4. the application's back-channel logout receiver got a valid logout_token from the "
        "broker (typ logout+jwt, sub = alice's broker user id, sid = the session of step 1)")

    # The broker session and its online grant are over.
    response = http_session().get(broker.url("userinfo"), timeout=HTTP_TIMEOUT,
                                  headers={"Authorization": f"Bearer {broker_access}"})
    assert response.status_code == 401, response.text
    refused = exchange(broker, app, connection, broker_access)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text
    before = len(page.e2e_requests)
    silent = rp_app.silent_authorization(page, broker, app, connection["name"], scope=APP_SCOPE)
    assert silent.get("error") == "login_required" and "code" not in silent, silent
    assert idp_requests(page, idp, before) == []
    logouts = [e for e in connection_events(management, connection) if e["type"] in ("slo", "flo")]
    assert [describe(e) for e in logouts] == [describe({"type": "slo", "details": {
        "source": "upstream_backchannel_logout", "sessions": 1, "identified_by": "sid+sub"}})], \
        [describe(e) for e in logouts]
    assert logouts[0]["user_id"] == user_id
    say(f"4. broker: {describe(logouts[0])}; the application's access token gets 401 at "
        f"userinfo, the exchange refuses it (invalid_grant); /authorize prompt=none answers "
        f"login_required without visiting the IdP")
    say(f"broker log events of the connection, oldest first: "
        f"{[describe(e) for e in connection_events(management, connection)]}")
