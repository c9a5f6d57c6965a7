"""SPEC §3.1–3.2: ``GET /authorize`` — what is refused (and how), and what goes upstream."""
from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.support.fake_idp import connection_body
from tests.support.flow import (
    callback_url,
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
)

APP_CALLBACK = "https://app.example.com/callback"
BROKER_ISSUER = "http://127.0.0.1:8000/"


@pytest.fixture()
def setup(api, idp):
    suffix = uuid.uuid4().hex[:6]
    web = api.call("POST", "/api/v2/clients", body={
        "name": "web", "app_type": "regular_web",
        "callbacks": [APP_CALLBACK, "https://app.example.com/other?x=1"]}).data
    spa = api.call("POST", "/api/v2/clients", body={
        "name": "spa", "app_type": "spa", "callbacks": [APP_CALLBACK]}).data
    lonely = api.call("POST", "/api/v2/clients", body={
        "name": "lonely", "app_type": "regular_web", "callbacks": [APP_CALLBACK]}).data
    enabled = [web["client_id"], spa["client_id"]]
    bodies = {
        "front": connection_body(idp, f"front-{suffix}", channel="front", enabled_clients=enabled,
                                 upstream_params={"domain_hint": {"value": "corp.example"},
                                                  "login_hint": {"alias": "login_hint"},
                                                  "ui_locales": {"alias": "ui_locales"}}),
        "back": connection_body(idp, f"back-{suffix}", channel="back", enabled_clients=enabled,
                                upstream_params={"acr_values": {"value": "urn:mfa"},
                                                 "app_prompt": {"alias": "prompt"}},
                                attribute_map={"mapping_mode": "basic_profile",
                                               "userinfo_scope": "phone"}),
    }
    created = {}
    for key, body in bodies.items():
        response = api.call("POST", "/api/v2/connections", body=body)
        assert response.status_code == 201, response.data
        created[key] = response.data
    yield {"web": web, "spa": spa, "lonely": lonely, **created}
    for connection in created.values():
        api.call("DELETE", f"/api/v2/connections/{connection['id']}")
    for app in (web, spa, lonely):
        api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


def _params(app, conn=None, **overrides):
    verifier, challenge = pkce_pair()
    params = {"client_id": app["client_id"], "redirect_uri": APP_CALLBACK,
              "response_type": "code", "scope": "openid profile email", "state": "app-state",
              "nonce": "app-nonce", "code_challenge": challenge,
              "code_challenge_method": "S256",
              "connection": conn["name"] if conn else None}
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def _query(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query, keep_blank_values=True)


def assert_error_page(response):
    assert response.status_code == 400, response.body
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")


def assert_app_error(response, error, state="app-state"):
    assert response.status_code == 302, response.body
    location = response.headers["Location"]
    assert location.startswith(APP_CALLBACK + "?"), location
    params = location_params(response)
    assert params["error"] == error, params
    assert params.get("state") == state
    assert params["iss"] == BROKER_ISSUER
    assert params.get("error_description")
    assert "code" not in params
    return params


# --------------------------------------------------------------------------- no redirect at all

@pytest.mark.parametrize("redirect_uri", [
    None,
    "",
    "https://evil.example/callback",
    "https://app.example.com/call",            # prefix of a registered one
    "https://app.example.com/callback/",       # trailing slash variant
    "https://app.example.com/callback/evil",   # registered one as a prefix
    "https://app.example.com/callback?x=1",    # extra query
    "https://APP.example.com/callback",        # case variant of the host
    "http://app.example.com/callback",         # other scheme
    "https://app.example.com/callback#frag",
    "https://app.example.com/other",           # registered one without its query
])
def test_unregistered_redirect_uri_gives_error_page(client, setup, redirect_uri):
    params = _params(setup["web"], setup["front"], redirect_uri=redirect_uri)
    if redirect_uri is None:
        params.pop("redirect_uri", None)
    assert_error_page(client.http.get(authorize_path(**params)))


@pytest.mark.parametrize("client_id", [None, "", "no-such-client"])
def test_unknown_client_gives_error_page(client, setup, client_id):
    params = _params(setup["web"], setup["front"], client_id=client_id)
    if client_id is None:
        params.pop("client_id", None)
    assert_error_page(client.http.get(authorize_path(**params)))


def test_repeated_client_id_or_redirect_uri_gives_error_page(client, setup):
    for name in ("client_id", "redirect_uri"):
        params = _params(setup["web"], setup["front"])
        query = urlencode(params) + "&" + urlencode({name: params[name]})
        assert_error_page(client.http.get("/authorize?" + query))


def test_error_page_even_with_bad_response_type(client, setup):
    """The client/redirect_uri checks come first: nothing is reflected to an unknown URI."""
    params = _params(setup["web"], setup["front"], response_type="token",
                     redirect_uri="https://evil.example/cb")
    assert_error_page(client.http.get(authorize_path(**params)))


def test_registered_redirect_uri_with_query_is_kept(client, setup):
    params = _params(setup["web"], setup["front"], response_type="token",
                     redirect_uri="https://app.example.com/other?x=1")
    response = client.http.get(authorize_path(**params))
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("https://app.example.com/other?x=1&")
    assert location_params(response)["error"] == "unsupported_response_type"


# --------------------------------------------------------------------------- errors to the app

@pytest.mark.parametrize("overrides,error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "id_token"}, "unsupported_response_type"),
    ({"response_type": "code id_token"}, "unsupported_response_type"),
    ({"response_type": None}, "unsupported_response_type"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": "S512"}, "invalid_request"),
    ({"code_challenge": "too-short"}, "invalid_request"),
    ({"code_challenge": "A" * 42 + "="}, "invalid_request"),
    ({"code_challenge": "A" * 44}, "invalid_request"),
    ({"code_challenge": None, "code_challenge_method": "S256"}, "invalid_request"),
    ({"prompt": "bogus"}, "invalid_request"),
    ({"prompt": "none login"}, "invalid_request"),
    ({"max_age": "-1"}, "invalid_request"),
    ({"connection": "no-such-connection"}, "invalid_request"),
    ({"audience": "http://127.0.0.1:8000/api/v2/"}, "invalid_request"),
    ({"response_mode": "fragment"}, "invalid_request"),
    ({"scope": "bogus"}, "invalid_scope"),
])
def test_errors_go_back_to_the_app(client, setup, overrides, error):
    response = client.http.get(authorize_path(**_params(setup["web"], setup["front"],
                                                        **overrides)))
    assert_app_error(response, error)


def test_public_client_needs_pkce(client, setup):
    params = _params(setup["spa"], setup["front"], code_challenge=None,
                     code_challenge_method=None)
    assert_app_error(client.http.get(authorize_path(**params)), "invalid_request")


def test_confidential_client_may_skip_pkce(client, setup):
    params = _params(setup["web"], setup["front"], code_challenge=None,
                     code_challenge_method=None)
    response = client.http.get(authorize_path(**params))
    assert response.status_code == 302
    assert response.headers["Location"].startswith(setup["front"]["options"]["issuer"])


def test_error_without_state_has_no_state(client, setup):
    params = _params(setup["web"], setup["front"], response_type="token", state=None)
    response = client.http.get(authorize_path(**params))
    assert_app_error(response, "unsupported_response_type", state=None)
    assert "state" not in location_params(response)


def test_connection_not_enabled_for_the_client(client, setup):
    params = _params(setup["lonely"], setup["front"])
    assert_app_error(client.http.get(authorize_path(**params)), "invalid_request")


def test_prompt_none_without_session(client, setup):
    response = client.http.get(authorize_path(**_params(setup["web"], setup["back"],
                                                        prompt="none")))
    assert_app_error(response, "login_required")


@pytest.mark.parametrize("name", ["scope", "state", "response_type", "code_challenge",
                                  "nonce", "connection", "prompt", "audience"])
def test_repeated_parameter(client, setup, name):
    params = _params(setup["web"], setup["front"], prompt="login", audience="https://api.example")
    query = urlencode(params) + "&" + urlencode({name: params[name]})
    response = client.http.get("/authorize?" + query)
    assert_app_error(response, "invalid_request")


# --------------------------------------------------------------------------- the upstream request

def test_front_channel_upstream_request(client, setup, idp):
    browser = Browser(client)
    response = browser.get(authorize_path(**_params(
        setup["web"], setup["front"], login_hint="alice@corp.example", ui_locales="fr")))
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(f"{idp.issuer}/authorize?")
    query = _query(location)
    assert all(len(values) == 1 for values in query.values()), query
    q = {k: v[0] for k, v in query.items()}
    assert q["client_id"] == "broker-client"
    # Each connection has its own redirect URI (RFC 9700 §4.4 mix-up defence).
    assert q["redirect_uri"] == callback_url(setup["front"]["name"]) == (
        "http://127.0.0.1:8000/login/callback/" + setup["front"]["name"])
    assert q["response_type"] == "id_token"
    assert q["response_mode"] == "form_post"
    assert q["scope"].split() == ["openid", "profile", "email"]
    assert len(q["state"]) >= 22 and q["state"] != "app-state"
    assert len(q["nonce"]) >= 22 and q["nonce"] != "app-nonce"
    assert "code_challenge" not in q and "code_challenge_method" not in q
    # upstream_params: a static value and aliases of the application's parameters
    assert q["domain_hint"] == "corp.example"
    assert q["login_hint"] == "alice@corp.example"
    assert q["ui_locales"] == "fr"


def test_back_channel_upstream_request(client, setup, idp):
    response = Browser(client).get(authorize_path(**_params(
        setup["web"], setup["back"], prompt="login")))
    assert response.status_code == 302
    query = _query(response.headers["Location"])
    assert all(len(values) == 1 for values in query.values()), query
    q = {k: v[0] for k, v in query.items()}
    assert q["client_id"] == "broker-client"
    assert q["redirect_uri"] == callback_url(setup["back"]["name"])
    assert q["response_type"] == "code"
    assert "response_mode" not in q
    # userinfo_scope adds its scopes to the connection's
    assert q["scope"].split() == ["openid", "profile", "email", "phone"]
    assert len(q["state"]) >= 22 and len(q["nonce"]) >= 22
    # pkce "auto" and S256 in discovery: S256 with a fresh challenge (not the application's)
    assert q["code_challenge_method"] == "S256"
    assert len(q["code_challenge"]) == 43
    assert q["acr_values"] == "urn:mfa"
    assert q["app_prompt"] == "login"
    assert q["prompt"] == "login"


def test_upstream_state_and_nonce_are_random(client, setup):
    seen_states, seen_nonces = set(), set()
    for _ in range(5):
        app_params = _params(setup["web"], setup["back"])
        response = Browser(client).get(authorize_path(**app_params))
        q = {k: v[0] for k, v in _query(response.headers["Location"]).items()}
        seen_states.add(q["state"])
        seen_nonces.add(q["nonce"])
        assert q["code_challenge"] != app_params["code_challenge"]
    assert len(seen_states) == 5 and len(seen_nonces) == 5


@pytest.mark.parametrize("name", ["client_id", "redirect_uri", "response_type", "response_mode",
                                  "scope", "state", "nonce", "code_challenge",
                                  "code_challenge_method"])
def test_protected_params_cannot_be_configured(api, setup, idp, name):
    body = connection_body(idp, f"bad-{uuid.uuid4().hex[:6]}", channel="back",
                           enabled_clients=[setup["web"]["client_id"]],
                           upstream_params={name: {"value": "attacker"}})
    response = api.call("POST", "/api/v2/connections", body=body)
    assert response.status_code == 400, response.data
    patch = api.call("PATCH", f"/api/v2/connections/{setup['back']['id']}", body={
        "options": {**body["options"], "upstream_params": {name: {"alias": "login_hint"}}}})
    assert patch.status_code == 400, patch.data


def test_application_parameters_do_not_override_protected_ones(client, setup, idp):
    """Aliases only copy the application's values into their own names."""
    response = Browser(client).get(authorize_path(**_params(
        setup["web"], setup["front"], login_hint="x", response_mode="query")))
    q = {k: v[0] for k, v in _query(response.headers["Location"]).items()}
    assert q["response_mode"] == "form_post"
    assert q["redirect_uri"] == callback_url(setup["front"]["name"])
    assert q["client_id"] == "broker-client"


# The binding cookie's attributes and freshness: tests/api/test_cookies.py.


# --------------------------------------------------------------------------- transaction expiry



def test_callback_after_ten_minutes_fails(client, api, setup, idp, fixed_clock):
    start = fixed_clock.now()
    browser = Browser(client)
    response = browser.get(authorize_path(**_params(setup["web"], setup["front"])))
    method, params = idp_login(response.headers["Location"])
    fixed_clock.set(start + 601)
    late = deliver_callback(browser, method, params)
    assert late.status_code == 400, late.body
    assert "Location" not in late.headers
    user_id = f"oidc%7C{setup['front']['name']}%7Calice"
    assert api.call("GET", f"/api/v2/users/{user_id}").status_code == 404


def test_callback_within_ten_minutes_works(client, setup, idp, fixed_clock):
    # the ID token must still be valid at the shifted time
    idp.id_token = lambda i, ctx: i.mint(i.claims(ctx, exp=int(time.time()) + 3600))
    start = time.time()
    browser = Browser(client)
    response = browser.get(authorize_path(**_params(setup["web"], setup["front"])))
    method, params = idp_login(response.headers["Location"])
    fixed_clock.set(start + 590)
    done = deliver_callback(browser, method, params)
    assert done.status_code == 303, done.body
    assert "code" in location_params(done)
