"""SPEC §3.3 through ``/login/callback`` with a scriptable upstream IdP: every bad answer ends
with an error sent to the application and stores nothing (no user, no code, no session)."""
from __future__ import annotations

import json
import time
import uuid
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from chalicelib.login.jwks_cache import jwks_cache
from chalicelib.login.transactions import binding_cookie_name
from tests.support.fake_idp import (
    DROP,
    FakeIdp,
    connection_body,
    ec_key,
    half_hash,
    rsa_key,
    s256,
)
from tests.support.flow import (
    callback_url,
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
    token_request,
)

APP_CALLBACK = "https://app.example.com/callback"
BROKER_ISSUER = "http://127.0.0.1:8000/"


@pytest.fixture()
def other_idp():
    with FakeIdp() as running:
        yield running


@pytest.fixture()
def setup(api, idp):
    suffix = uuid.uuid4().hex[:6]
    web = api.call("POST", "/api/v2/clients", body={
        "name": "web", "app_type": "regular_web", "callbacks": [APP_CALLBACK]}).data
    enabled = [web["client_id"]]
    created = {}
    bodies = {
        "front": connection_body(idp, f"front-{suffix}", channel="front", enabled_clients=enabled),
        "back": connection_body(idp, f"back-{suffix}", channel="back", enabled_clients=enabled,
                                token_endpoint_auth_method="client_secret_basic"),
        "post": connection_body(idp, f"post-{suffix}", channel="back", enabled_clients=enabled,
                                token_endpoint_auth_method="client_secret_post"),
        "info": connection_body(idp, f"info-{suffix}", channel="back", enabled_clients=enabled,
                                attribute_map={"mapping_mode": "basic_profile",
                                               "userinfo_scope": "phone"}),
    }
    for key, body in bodies.items():
        response = api.call("POST", "/api/v2/connections", body=body)
        assert response.status_code == 201, response.data
        created[key] = response.data
    yield {"web": web, **created}
    for connection in created.values():
        api.call("DELETE", f"/api/v2/connections/{connection['id']}")


# --------------------------------------------------------------------------- helpers

def start(client, app, connection, browser=None):
    """/authorize on the broker; returns (browser, upstream authorization URL, app verifier)."""
    browser = browser or Browser(client)
    verifier, challenge = pkce_pair()
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid profile email", state="app-state", nonce="app-nonce",
        code_challenge=challenge, code_challenge_method="S256", connection=connection["name"]))
    assert response.status_code == 302, response.body
    return browser, response.headers["Location"], verifier


def upstream_params(location: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def login(client, app, connection, browser=None):
    """Through the fake IdP; returns (browser, callback response)."""
    browser, location, _ = start(client, app, connection, browser)
    method, params = idp_login(location)
    return browser, deliver_callback(browser, method, params)


def assert_app_error(response, error="access_denied", description=None) -> dict:
    assert response.status_code == 303, response.body
    location = response.headers["Location"]
    assert location.startswith(APP_CALLBACK + "?"), location
    params = location_params(response)
    assert params["error"] == error, params
    assert params["state"] == "app-state"
    assert params["iss"] == BROKER_ISSUER
    assert "code" not in params
    if description is not None:
        assert description in params.get("error_description", ""), params
    return params


def assert_nothing_stored(client, api, app, connection, browser, sub="alice"):
    user_id = quote(f"oidc|{connection['name']}|{sub}", safe="")
    assert api.call("GET", f"/api/v2/users/{user_id}").status_code == 404
    assert "broker_session" not in browser.cookies
    # no session: a silent /authorize in the same browser must ask for a login
    again = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", state="app-state", connection=connection["name"], prompt="none"))
    assert again.status_code == 302
    assert location_params(again)["error"] == "login_required"


def assert_error_page(response):
    assert response.status_code == 400, response.body
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")


def exchange(client, app, code, verifier):
    return token_request(client, {"grant_type": "authorization_code", "code": code,
                                  "redirect_uri": APP_CALLBACK, "code_verifier": verifier,
                                  "client_id": app["client_id"],
                                  "client_secret": app["client_secret"]})


def test_fake_idp_happy_paths(client, api, setup, idp):
    """Sanity: both channels succeed against the fake IdP, so the failures below are real."""
    for channel in ("front", "back", "post"):
        browser, response = login(client, setup["web"], setup[channel])
        assert response.status_code == 303, response.body
        params = location_params(response)
        assert "code" in params and params["state"] == "app-state", params
        user_id = quote(f"oidc|{setup[channel]['name']}|alice", safe="")
        user = api.call("GET", f"/api/v2/users/{user_id}")
        assert user.status_code == 200, user.data
        assert user.data["email"] == "alice@example.com"


# --------------------------------------------------------------------------- front channel

def _now() -> int:
    return int(time.time())


def _tampered(idp, ctx):
    good = idp.mint(idp.claims(ctx)).split(".")
    forged = idp.mint(idp.claims(ctx, sub="mallory")).split(".")
    return ".".join([good[0], forged[1], good[2]])


def _claims(**overrides):
    return lambda idp, ctx: idp.mint(idp.claims(ctx, **overrides))


def _signed(key, alg="RS256", header=None):
    return lambda idp, ctx: idp.mint(idp.claims(ctx), key, alg=alg, header=header)


def _header(alg="RS256", **header):
    return lambda idp, ctx: idp.mint(idp.claims(ctx), alg=alg, header=header)


# attack -> (the check named in error_description, ID token factory)
FRONT_ATTACKS = {
    "bad_signature": ("signature", _tampered),
    "key_not_in_jwks_same_kid": ("signature", _signed(rsa_key("k1"))),
    "key_not_in_jwks_other_kid": ("kid", _signed(rsa_key("evil"))),
    "ec_key_not_in_jwks": ("kid", _signed(ec_key("k1"), alg="ES256")),
    "alg_none": ("alg", _header(alg="none", kid="k1")),
    "hs256_with_public_key": ("alg", _header(alg="HS256")),
    "wrong_iss": ("iss", _claims(iss="https://evil.example")),
    "iss_trailing_slash": ("iss", lambda idp, ctx: idp.mint(idp.claims(ctx, iss=idp.issuer + "/"))),
    "wrong_aud": ("aud", _claims(aud="someone-else")),
    "missing_aud": ("aud", _claims(aud=DROP)),
    "several_aud_without_azp": ("azp", _claims(aud=["broker-client", "someone-else"])),
    "several_aud_wrong_azp": ("azp", _claims(aud=["broker-client", "someone-else"],
                                             azp="someone-else")),
    "missing_sub": ("sub", _claims(sub=DROP)),
    "empty_sub": ("sub", _claims(sub="")),
    "missing_iat": ("iat", _claims(iat=DROP)),
    "missing_exp": ("exp", _claims(exp=DROP)),
    "expired": ("exp", lambda idp, ctx: idp.mint(idp.claims(ctx, iat=_now() - 900,
                                                            exp=_now() - 120))),
    "wrong_nonce": ("nonce", _claims(nonce="attacker-nonce")),
    "app_nonce_instead_of_upstream": ("nonce", _claims(nonce="app-nonce")),
    "missing_nonce": ("nonce", _claims(nonce=DROP)),
    "typ_at_jwt": ("typ", _header(typ="at+jwt")),
    "not_a_jwt": ("format", lambda idp, ctx: "not-a-jwt"),
}


@pytest.mark.parametrize("attack", sorted(FRONT_ATTACKS))
def test_front_channel_id_token_refused(client, api, setup, idp, attack):
    check, idp.id_token = FRONT_ATTACKS[attack]
    browser, response = login(client, setup["web"], setup["front"])
    assert_app_error(response, "access_denied", f"ID token is invalid ({check})")
    assert_nothing_stored(client, api, setup["web"], setup["front"], browser)
    assert_nothing_stored(client, api, setup["web"], setup["front"], browser, sub="mallory")


def test_front_channel_id_token_by_get_refused(client, api, setup, idp):
    browser, location, _ = start(client, setup["web"], setup["front"])
    method, params = idp_login(location)
    assert method == "POST" and "id_token" in params
    response = deliver_callback(browser, "GET", params)
    assert_app_error(response, "access_denied")
    assert_nothing_stored(client, api, setup["web"], setup["front"], browser)


def test_front_channel_without_id_token_refused(client, api, setup, idp):
    browser, location, _ = start(client, setup["web"], setup["front"])
    _, params = idp_login(location)
    params.pop("id_token")
    assert_app_error(deliver_callback(browser, "POST", params))
    assert_nothing_stored(client, api, setup["web"], setup["front"], browser)


# --------------------------------------------------------------------------- accepted cases

def test_rotated_key_is_fetched_once(client, api, setup, idp, monkeypatch):
    browser, response = login(client, setup["web"], setup["front"])
    assert "code" in location_params(response)
    fetches = len(idp.requests_to("/jwks"))
    assert fetches == 1
    # The IdP rotates; a minute later (the refetch rate limit) a token signed with the new kid
    # triggers exactly one refetch and the login succeeds.
    new_key = rsa_key("k2")
    idp.keys, idp.signing_key = [new_key], new_key
    cache = jwks_cache()
    base = time.time()
    monkeypatch.setattr(cache, "_clock", lambda: base + 61)
    _, response = login(client, setup["web"], setup["front"])
    assert response.status_code == 303
    assert "code" in location_params(response), location_params(response)
    assert len(idp.requests_to("/jwks")) == fetches + 1
    # a flood of unknown kids right after does not turn into more fetches
    idp.id_token = lambda i, ctx: i.mint(i.claims(ctx), rsa_key("forged"))
    for _ in range(3):
        _, response = login(client, setup["web"], setup["front"])
        assert_app_error(response)
    assert len(idp.requests_to("/jwks")) == fetches + 1


def test_kid_absent_with_single_key(client, setup, idp):
    idp.id_token = lambda i, ctx: i.mint(i.claims(ctx), header={"kid": DROP})
    _, response = login(client, setup["web"], setup["front"])
    assert response.status_code == 303
    assert "code" in location_params(response)


def test_kid_absent_with_several_keys_refused(client, api, setup, idp):
    idp.keys = [idp.signing_key, rsa_key("k2")]
    idp.id_token = lambda i, ctx: i.mint(i.claims(ctx), header={"kid": DROP})
    browser, response = login(client, setup["web"], setup["front"])
    assert_app_error(response)
    assert_nothing_stored(client, api, setup["web"], setup["front"], browser)


def test_es256_listed_in_discovery_is_accepted(client, setup, idp):
    key = ec_key("ec1")
    idp.keys = [idp.signing_key, key]
    idp.id_token = lambda i, ctx: i.mint(i.claims(ctx), key, alg="ES256")
    _, response = login(client, setup["web"], setup["front"])
    assert "code" in location_params(response), location_params(response)


# --------------------------------------------------------------------------- back channel

def test_back_channel_client_secret_basic_and_pkce(client, setup, idp):
    _, response = login(client, setup["web"], setup["back"])
    assert "code" in location_params(response), location_params(response)
    authorize = idp.requests_to("/authorize")[-1].query
    token = idp.requests_to("/token")[-1]
    assert token.basic_auth() == ("broker-client", "broker-secret")
    assert "client_secret" not in token.form
    assert token.form["grant_type"] == "authorization_code"
    assert token.form["redirect_uri"] == callback_url(setup["back"]["name"])
    assert token.form["code"] in idp.codes
    assert authorize["code_challenge_method"] == "S256"
    assert s256(token.form["code_verifier"]) == authorize["code_challenge"]


def test_back_channel_client_secret_post(client, setup, idp):
    _, response = login(client, setup["web"], setup["post"])
    assert "code" in location_params(response), location_params(response)
    authorize = idp.requests_to("/authorize")[-1].query
    token = idp.requests_to("/token")[-1]
    assert "authorization" not in token.headers
    assert token.form["client_id"] == "broker-client"
    assert token.form["client_secret"] == "broker-secret"
    assert s256(token.form["code_verifier"]) == authorize["code_challenge"]


def test_back_channel_wrong_at_hash(client, api, setup, idp):
    idp.id_token = lambda i, ctx: i.mint(i.claims(ctx, at_hash=half_hash("another-token")))
    browser, response = login(client, setup["web"], setup["back"])
    assert_app_error(response)
    assert_nothing_stored(client, api, setup["web"], setup["back"], browser)


def _token_answer(status, body, content_type="application/json"):
    return lambda idp, form, ctx: (status, body, content_type)


def _without_id_token(idp, form, ctx):
    return 200, {"access_token": "at", "token_type": "Bearer", "expires_in": 60}, \
        "application/json"


TOKEN_FAILURES = {
    "http_400": _token_answer(400, {"error": "invalid_grant"}),
    "http_500": _token_answer(500, {"error": "server_error"}),
    "not_json": _token_answer(200, "<html>oops</html>", "text/html"),
    "json_array": _token_answer(200, "[]"),
    "no_id_token": _without_id_token,
}


@pytest.mark.parametrize("failure", sorted(TOKEN_FAILURES))
def test_back_channel_token_endpoint_failures(client, api, setup, idp, failure):
    idp.token_handler = TOKEN_FAILURES[failure]
    browser, response = login(client, setup["web"], setup["back"])
    # An IdP outage (5xx) is temporarily_unavailable (SPEC §8); a refusal is access_denied.
    assert_app_error(response, "temporarily_unavailable" if failure == "http_500"
                     else "access_denied")
    assert_nothing_stored(client, api, setup["web"], setup["back"], browser)


def test_back_channel_id_token_with_wrong_nonce(client, api, setup, idp):
    idp.script(nonce="something-else")
    browser, response = login(client, setup["web"], setup["back"])
    assert_app_error(response)
    assert_nothing_stored(client, api, setup["web"], setup["back"], browser)


def test_userinfo_is_called_and_its_sub_must_match(client, api, setup, idp):
    _, response = login(client, setup["web"], setup["info"])
    assert "code" in location_params(response), location_params(response)
    calls = idp.requests_to("/userinfo")
    assert len(calls) == 1 and calls[0].headers["authorization"].startswith("Bearer ")
    assert "phone" in idp.requests_to("/authorize")[-1].query["scope"].split()
    user_id = quote(f"oidc|{setup['info']['name']}|alice", safe="")
    assert api.call("DELETE", f"/api/v2/users/{user_id}").status_code == 204

    idp.userinfo = {"sub": "mallory", "email": "mallory@example.com"}
    browser, response = login(client, setup["web"], setup["info"])
    assert_app_error(response)
    assert_nothing_stored(client, api, setup["web"], setup["info"], browser)
    assert_nothing_stored(client, api, setup["web"], setup["info"], browser, sub="mallory")


def test_userinfo_failure_fails_the_login(client, api, setup, idp):
    idp.userinfo_status = 401
    browser, response = login(client, setup["web"], setup["info"])
    assert_app_error(response)
    assert_nothing_stored(client, api, setup["web"], setup["info"], browser)


# --------------------------------------------------------------------------- flow attacks

def test_replayed_state_is_refused(client, api, setup, idp):
    browser, location, verifier = start(client, setup["web"], setup["front"])
    method, params = idp_login(location)
    name = binding_cookie_name(params["state"])
    binding = browser.cookies[name]
    first = deliver_callback(browser, method, params)
    code = location_params(first)["code"]
    assert name not in browser.cookies  # the spent login's binding cookie is expired
    # same browser, binding cookie put back: the state itself is spent
    browser.cookies[name] = binding
    assert_error_page(deliver_callback(browser, method, params))
    assert exchange(client, setup["web"], code, verifier).status_code == 200


def test_replayed_state_after_failure_is_refused(client, api, setup, idp):
    idp.script(nonce="wrong")
    browser, location, _ = start(client, setup["web"], setup["front"])
    method, params = idp_login(location)
    name = binding_cookie_name(params["state"])
    binding = browser.cookies[name]
    assert_app_error(deliver_callback(browser, method, params))
    browser.cookies[name] = binding
    assert_error_page(deliver_callback(browser, method, params))


def test_state_of_another_browser_is_refused(client, api, setup, idp):
    victim, location, _ = start(client, setup["web"], setup["front"])
    method, params = idp_login(location)
    # an attacker's browser without any binding cookie, then one with its own transaction
    assert_error_page(deliver_callback(Browser(client), method, params))
    attacker, _, _ = start(client, setup["web"], setup["front"])
    [(_, own_binding)] = [(k, v) for k, v in attacker.cookies.items()
                                 if k.startswith("broker_tx_")]
    assert_error_page(deliver_callback(attacker, method, params))
    # its own binding value under the victim login's cookie name does not pass either
    attacker.cookies[binding_cookie_name(params["state"])] = own_binding
    assert_error_page(deliver_callback(attacker, method, params))
    assert "broker_session" not in attacker.cookies
    # the rightful browser can still finish
    response = deliver_callback(victim, method, params)
    assert response.status_code == 303
    assert "code" in location_params(response)


def test_unknown_state_is_refused(client, setup, idp):
    browser, location, _ = start(client, setup["web"], setup["front"])
    _, params = idp_login(location)
    params["state"] = params["state"][:-2] + "xx"
    assert_error_page(deliver_callback(browser, "POST", params))
    params.pop("state")
    assert_error_page(deliver_callback(browser, "POST", params))


@pytest.mark.parametrize("channel", ["front", "back"])
def test_iss_parameter_of_another_issuer(client, api, setup, idp, channel):
    idp.callback_extra = {"iss": "https://evil.example"}
    browser, response = login(client, setup["web"], setup[channel])
    assert_app_error(response)
    assert_nothing_stored(client, api, setup["web"], setup[channel], browser)


@pytest.mark.parametrize("channel", ["front", "back"])
def test_iss_parameter_of_the_right_issuer_is_accepted(client, setup, idp, channel):
    idp.callback_extra = {"iss": idp.issuer}
    _, response = login(client, setup["web"], setup[channel])
    assert "code" in location_params(response), location_params(response)


def test_id_token_of_connection_a_delivered_to_connection_b(client, api, setup, idp, other_idp):
    """Two IdPs with the same client_id: A's token (even with B's nonce) is no good for B."""
    body = connection_body(other_idp, f"other-{uuid.uuid4().hex[:6]}", channel="front",
                           enabled_clients=[setup["web"]["client_id"]])
    created = api.call("POST", "/api/v2/connections", body=body)
    assert created.status_code == 201, created.data
    connection_b = created.data
    try:
        browser, location, _ = start(client, setup["web"], connection_b)
        upstream = upstream_params(location)
        token_a = idp.mint(idp.claims({"nonce": upstream["nonce"]}))
        response = deliver_callback(browser, "POST", {"state": upstream["state"],
                                                      "id_token": token_a})
        assert_app_error(response)
        assert_nothing_stored(client, api, setup["web"], connection_b, browser)
        # and A's transaction does not take B's token either
        browser, location, _ = start(client, setup["web"], setup["front"])
        upstream = upstream_params(location)
        token_b = other_idp.mint(other_idp.claims({"nonce": upstream["nonce"]}))
        response = deliver_callback(browser, "POST", {"state": upstream["state"],
                                                      "id_token": token_b})
        assert_app_error(response)
        assert_nothing_stored(client, api, setup["web"], setup["front"], browser)
    finally:
        api.call("DELETE", f"/api/v2/connections/{connection_b['id']}")


@pytest.mark.parametrize("channel", ["front", "back"])
def test_upstream_access_denied_with_description(client, api, setup, idp, channel):
    idp.callback_extra = {"error": "access_denied", "error_description": "User said no"}
    browser, response = login(client, setup["web"], setup[channel])
    assert_app_error(response, "access_denied", "User said no")
    assert_nothing_stored(client, api, setup["web"], setup[channel], browser)
    assert not idp.requests_to("/token")


def test_upstream_login_required_passed_through(client, api, setup, idp):
    idp.callback_extra = {"error": "login_required"}
    browser, response = login(client, setup["web"], setup["back"])
    assert_app_error(response, "login_required")
    assert_nothing_stored(client, api, setup["web"], setup["back"], browser)


@pytest.mark.parametrize("code", ["weird_error", "invalid_client", "server_error"])
def test_unknown_upstream_error_becomes_access_denied(client, api, setup, idp, code):
    idp.callback_extra = {"error": code, "error_description": "details"}
    browser, response = login(client, setup["web"], setup["back"])
    params = assert_app_error(response, "access_denied")
    assert json.dumps(params)  # the description is printable text
    assert_nothing_stored(client, api, setup["web"], setup["back"], browser)


def test_iss_parameter_required_when_the_idp_advertises_it(client, api, setup, idp):
    """RFC 9207 §2.4: an IdP that says it sends iss must send it (code flow)."""
    idp.discovery_extra = {"authorization_response_iss_parameter_supported": True}
    body = connection_body(idp, f"rfc9207-{uuid.uuid4().hex[:6]}", channel="back",
                           enabled_clients=[setup["web"]["client_id"]])
    created = api.call("POST", "/api/v2/connections", body=body)
    assert created.status_code == 201, created.data
    connection = created.data
    try:
        browser, response = login(client, setup["web"], connection)
        assert_app_error(response)
        assert_nothing_stored(client, api, setup["web"], connection, browser)
        assert not idp.requests_to("/token")
        idp.callback_extra = {"iss": idp.issuer}
        _, response = login(client, setup["web"], connection)
        assert "code" in location_params(response), location_params(response)
    finally:
        api.call("DELETE", f"/api/v2/connections/{connection['id']}")


def test_dependency_failure_after_the_transaction_goes_to_the_app(client, api, setup, idp,
                                                                  monkeypatch):
    """SPEC §8: once the redirect_uri is known, an outage is reported to the application."""
    from chalicelib.errors import ApiError
    from chalicelib.store.dynamo import Table

    def unavailable(self, operations, **options):
        raise ApiError("DynamoDB is unavailable", status=503, error_code="temporarily_unavailable")

    monkeypatch.setattr(Table, "transact", unavailable)
    browser, response = login(client, setup["web"], setup["back"])
    assert_app_error(response, "temporarily_unavailable")
    monkeypatch.undo()
    assert_nothing_stored(client, api, setup["web"], setup["back"], browser)


def test_a_login_that_loses_a_race_on_the_user_item_is_written_again(client, api, setup,
                                                                      monkeypatch):
    """Two tabs signing one user in at once: DynamoDB cancels one transaction with
    TransactionConflict (nothing written, no condition failed). That login is written again and
    completes, instead of ending in "could not be recorded"."""
    from chalicelib.store.dynamo import ConditionFailed, Table

    real, conflicts = Table._transact_once, []

    def conflicting_once(self, operations):
        if not conflicts:
            conflicts.append(len(operations))
            raise ConditionFailed(["None", "TransactionConflict"])
        return real(self, operations)

    monkeypatch.setattr(Table, "_transact_once", conflicting_once)
    browser, response = login(client, setup["web"], setup["back"])
    params = location_params(response)
    assert conflicts, "the login's transaction was not reached"
    assert "code" in params, params
    user_id = quote(f"oidc|{setup['back']['name']}|alice", safe="")
    assert api.call("GET", f"/api/v2/users/{user_id}").status_code == 200
    assert "broker_session" in browser.cookies or any("session" in c for c in browser.cookies)
