"""Mix-up defence (RFC 9700 §4.4, SPEC §3.3 step 1): each connection has its own redirect URI,
and an honest IdP's code read at the wrong place never reaches any token endpoint.

Two fake IdPs run at once: H, honest (exact redirect URI matching, PKCE and client checks at its
token endpoint, no RFC 9207 ``iss``), and E, the attacker's, which records every request its
token endpoint receives. The attack: a victim starts a login at E; E sends the victim on to H
with H's client_id and the victim's E state (and the PKCE challenge of a login the attacker
started at H, to inject the code there later). With one shared redirect URI, the broker would
post H's code (and the victim's verifier) to E's token endpoint.
"""
from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from chalicelib.login.jwks_cache import jwks_cache
from tests.support.fake_idp import FakeIdp, connection_body
from tests.support.flow import (
    CALLBACK,
    Browser,
    authorize_path,
    callback_url,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
)

APP_CALLBACK = "https://app.example.com/callback"
BROKER_ISSUER = "http://127.0.0.1:8000/"


@pytest.fixture()
def idps():
    jwks_cache().clear()
    with FakeIdp(client_id="h-client", client_secret="h-secret") as honest, \
            FakeIdp(client_id="e-client", client_secret="e-secret") as evil:
        yield honest, evil
    jwks_cache().clear()


@pytest.fixture()
def setup(api, idps):
    honest, evil = idps
    suffix = uuid.uuid4().hex[:6]
    web = api.call("POST", "/api/v2/clients", body={
        "name": "mixup-web", "app_type": "regular_web", "callbacks": [APP_CALLBACK]}).data
    enabled = [web["client_id"]]
    bodies = {
        "h": connection_body(honest, f"honest-{suffix}", channel="back", enabled_clients=enabled),
        "h_front": connection_body(honest, f"honest-front-{suffix}", channel="front",
                                   enabled_clients=enabled),
        "e": connection_body(evil, f"evil-{suffix}", channel="back", enabled_clients=enabled),
    }
    created = {}
    for key, body in bodies.items():
        response = api.call("POST", "/api/v2/connections", body=body)
        assert response.status_code == 201, response.data
        created[key] = response.data
    # H is a real IdP: exact redirect URIs, registered for its connections (and, for the legacy
    # case, Auth0's shared callback), and a token endpoint that checks everything.
    honest.redirect_uris = [callback_url(created["h"]["name"]),
                            callback_url(created["h_front"]["name"]), CALLBACK]
    honest.strict = True
    yield {"web": web, **created}
    for connection in created.values():
        api.call("DELETE", f"/api/v2/connections/{connection['id']}")


def start(client, app, connection, browser=None):
    browser = browser or Browser(client)
    _, challenge = pkce_pair()
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid email", state="app-state", code_challenge=challenge,
        code_challenge_method="S256", connection=connection["name"]))
    assert response.status_code == 302, response.body
    location = response.headers["Location"]
    return browser, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def send_victim_to_honest(honest, victim_upstream, attacker_upstream, redirect_uri):
    """What the attacker's IdP does with the victim's browser: on to H with H's client_id, the
    victim's E state and the attacker's own H login's PKCE challenge and nonce. Returns H's
    answer (a requests response, redirects not followed)."""
    params = {"client_id": honest.client_id, "response_type": "code", "scope": "openid email",
              "redirect_uri": redirect_uri, "state": victim_upstream["state"],
              "nonce": attacker_upstream["nonce"],
              "code_challenge": attacker_upstream["code_challenge"],
              "code_challenge_method": "S256"}
    return requests.get(f"{honest.base_url}/authorize?" + urlencode(params),
                        allow_redirects=False, timeout=10)


def answer_of(response) -> tuple[str, dict]:
    location = response.headers["Location"]
    parts = urlsplit(location)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def assert_app_error(response, description: str | None = None) -> dict:
    assert response.status_code == 303, response.body
    assert response.headers["Location"].startswith(APP_CALLBACK + "?")
    params = location_params(response)
    assert params["error"] == "access_denied", params
    assert params["state"] == "app-state" and params["iss"] == BROKER_ISSUER
    assert "code" not in params
    if description:
        assert description in params["error_description"], params
    return params


def attacker_injects_leaked_codes(client, setup, evil, attacker, attacker_upstream):
    """The attacker's payoff: whatever code E's token endpoint learned, injected into the
    attacker's own H login. Nothing may have leaked, and no such login may complete."""
    leaked = [r.form.get("code") for r in evil.requests_to("/token")]
    assert leaked == [], "an honest IdP's code reached the attacker's token endpoint"
    for code in leaked or ["no-code-leaked"]:
        response = deliver_callback(attacker, "GET", {"code": code,
                                                      "state": attacker_upstream["state"]},
                                    path=f"/login/callback/{setup['h']['name']}")
        assert "code" not in location_params(response)
        assert "broker_session" not in attacker.cookies


def test_honest_code_at_the_evil_connections_callback_is_never_issued(client, setup, idps):
    """(a) The attacker keeps the broker's redirect_uri (E's own callback): H matches redirect
    URIs exactly (RFC 9700 §2.1), so no code is issued for it, and nothing is sent anywhere."""
    honest, evil = idps
    attacker, attacker_upstream = start(client, setup["web"], setup["h"])
    victim, victim_upstream = start(client, setup["web"], setup["e"])
    assert victim_upstream["redirect_uri"] == callback_url(setup["e"]["name"])
    answer = send_victim_to_honest(honest, victim_upstream, attacker_upstream,
                                   victim_upstream["redirect_uri"])
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert honest.codes == {}
    assert evil.requests_to("/token") == [] and honest.requests_to("/token") == []
    attacker_injects_leaked_codes(client, setup, evil, attacker, attacker_upstream)


def test_honest_code_at_its_own_callback_with_the_evil_state_is_refused(client, setup, idps):
    """(b) H redirects to its own connection's callback; the state names E's login: refused,
    the error goes to the application and no token endpoint hears of the code."""
    honest, evil = idps
    attacker, attacker_upstream = start(client, setup["web"], setup["h"])
    victim, victim_upstream = start(client, setup["web"], setup["e"])
    answer = send_victim_to_honest(honest, victim_upstream, attacker_upstream,
                                   callback_url(setup["h"]["name"]))
    path, params = answer_of(answer)
    assert path == f"/login/callback/{setup['h']['name']}" and "code" in params
    response = deliver_callback(victim, "GET", params, path=path)
    assert_app_error(response, "mix-up")
    assert "broker_session" not in victim.cookies
    assert evil.requests_to("/token") == [] and honest.requests_to("/token") == []
    # The victim's login was consumed: the same answer again is a dead end, not a retry.
    assert deliver_callback(victim, "GET", params, path=path).status_code == 400
    attacker_injects_leaked_codes(client, setup, evil, attacker, attacker_upstream)


def test_honest_code_at_the_shared_callback_without_iss_is_refused(client, setup, idps):
    """(c) H also has Auth0's shared callback registered: a code there must carry iss (RFC
    9207); H sends none, so it is refused before any token endpoint is called."""
    honest, evil = idps
    attacker, attacker_upstream = start(client, setup["web"], setup["h"])
    victim, victim_upstream = start(client, setup["web"], setup["e"])
    answer = send_victim_to_honest(honest, victim_upstream, attacker_upstream, CALLBACK)
    path, params = answer_of(answer)
    assert path == "/login/callback" and "code" in params and "iss" not in params
    response = deliver_callback(victim, "GET", params, path=path)
    assert_app_error(response, "shared callback")
    assert evil.requests_to("/token") == [] and honest.requests_to("/token") == []
    attacker_injects_leaked_codes(client, setup, evil, attacker, attacker_upstream)


def test_unknown_connection_in_the_callback_path_goes_back_to_the_application(client, setup,
                                                                             idps):
    honest, evil = idps
    victim, victim_upstream = start(client, setup["web"], setup["e"])
    response = deliver_callback(victim, "GET", {"code": "whatever",
                                                "state": victim_upstream["state"]},
                                path="/login/callback/no-such-connection")
    assert_app_error(response, "mix-up")
    assert evil.requests_to("/token") == [] and honest.requests_to("/token") == []


def test_wrong_iss_at_the_connections_own_callback_is_refused(client, setup, idps):
    honest, _ = idps
    honest.callback_extra = {"iss": "https://someone-else.example"}
    browser, upstream = start(client, setup["web"], setup["h"])
    _, params = idp_login(f"{honest.base_url}/authorize?" + urlencode(upstream))
    assert_app_error(deliver_callback(browser, "GET", params), "another issuer")
    assert honest.requests_to("/token") == []


# --------------------------------------------------------------------------- accepted answers

def test_per_connection_callback_accepts_a_code_without_iss(client, setup, idps):
    honest, _ = idps
    browser, upstream = start(client, setup["web"], setup["h"])
    assert upstream["redirect_uri"] == callback_url(setup["h"]["name"])
    _, params = idp_login(f"{honest.base_url}/authorize?" + urlencode(upstream))
    assert params.path == f"/login/callback/{setup['h']['name']}" and "iss" not in params
    response = deliver_callback(browser, "GET", params)
    assert "code" in location_params(response), location_params(response)
    token = honest.requests_to("/token")[-1]
    # RFC 6749 §4.1.3: the exchange repeats the redirect_uri of the authorization request.
    assert token.form["redirect_uri"] == callback_url(setup["h"]["name"])


def test_shared_callback_accepts_a_code_with_the_right_iss(client, setup, idps):
    honest, _ = idps
    honest.callback_extra = {"iss": honest.issuer}
    browser, upstream = start(client, setup["web"], setup["h"])
    _, params = idp_login(f"{honest.base_url}/authorize?" + urlencode(upstream))
    response = deliver_callback(browser, "GET", params, path="/login/callback")
    assert "code" in location_params(response), location_params(response)


def test_shared_callback_accepts_a_front_channel_answer(client, setup, idps):
    honest, _ = idps
    browser, upstream = start(client, setup["web"], setup["h_front"])
    assert upstream["redirect_uri"] == callback_url(setup["h_front"]["name"])
    method, params = idp_login(f"{honest.base_url}/authorize?" + urlencode(upstream))
    assert method == "POST" and "id_token" in params
    response = deliver_callback(browser, method, params, path="/login/callback")
    assert "code" in location_params(response), location_params(response)
