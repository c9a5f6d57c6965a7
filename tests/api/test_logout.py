"""SPEC §4 logout: ``/oidc/logout`` (OIDC RP-Initiated Logout 1.0) and ``/v2/logout`` (Auth0),
with real logins through oidc-provider. Also home of the login helpers the other logout,
revocation, session and back-channel tests import."""
from __future__ import annotations

import base64
import json
import time
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

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
SIGNED_OUT = "https://app.example.com/signed-out"
OTHER_SIGNED_OUT = "https://other.example.com/bye"


# --- shared helpers ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def idp():
    with start_idp(default_idp_config(redirect_uris=[CALLBACK])) as running:
        yield running


def claims_of(jwt: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))


def new_app(api, name: str, app_type: str = "regular_web", **fields) -> dict:
    response = api.call("POST", "/api/v2/clients", body={
        "name": name, "app_type": app_type, "callbacks": [APP_CALLBACK], **fields})
    assert response.status_code == 201, response.data
    return response.data


def new_connection(api, idp, prefix: str, enabled: list[str]) -> dict:
    """A back-channel (code flow) connection to the test IdP, enabled for ``enabled``."""
    response = api.call("POST", "/api/v2/connections", body={
        "name": f"{prefix}-{uuid.uuid4().hex[:8]}", "strategy": "oidc", "enabled_clients": enabled,
        "options": {"type": "back_channel", "discovery_url": idp.issuer,
                    "client_id": "broker-client", "client_secret": "broker-secret",
                    "token_endpoint_auth_method": "client_secret_basic"}})
    assert response.status_code == 201, response.data
    idp.register_redirect_uri(callback_url(response.data["name"]))
    return response.data


@pytest.fixture()
def apps(api, idp):
    """Two confidential apps and a SPA on one back-channel (code flow) connection."""
    web = new_app(api, "web", allowed_logout_urls=[SIGNED_OUT])
    other = new_app(api, "other", allowed_logout_urls=[OTHER_SIGNED_OUT])
    spa = new_app(api, "spa", app_type="spa")
    connection = new_connection(api, idp, "corp",
                                [web["client_id"], other["client_id"], spa["client_id"]])
    yield {"web": web, "other": other, "spa": spa, "connection": connection, "idp": idp}
    api.call("DELETE", f"/api/v2/connections/{connection['id']}")
    for app in (web, other, spa):
        api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


def sign_in(client, app, connection, *, scope="openid profile email", browser=None,
            username="alice"):
    """Log in (or SSO when the browser holds a live session) and redeem the code."""
    browser = browser or Browser(client)
    verifier, challenge = pkce_pair()
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope=scope, state="st", nonce="n-" + uuid.uuid4().hex, code_challenge=challenge,
        code_challenge_method="S256", connection=connection["name"]))
    assert response.status_code == 302, response.body
    if not response.headers["Location"].startswith(APP_CALLBACK):
        method, params = idp_login(response.headers["Location"], username)
        response = deliver_callback(browser, method, params)
        assert response.status_code == 303, response.body
    result = location_params(response)
    assert "code" in result, result
    form = {"grant_type": "authorization_code", "code": result["code"],
            "redirect_uri": APP_CALLBACK, "code_verifier": verifier,
            "client_id": app["client_id"]}
    if app.get("client_secret"):
        form["client_secret"] = app["client_secret"]
    tokens = token_request(client, form)
    assert tokens.status_code == 200, tokens.data
    return browser, tokens.data


def refresh(client, app, refresh_token):
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": app["client_id"]}
    if app.get("client_secret"):
        form["client_secret"] = app["client_secret"]
    return token_request(client, form)


def userinfo_status(client, access_token) -> int:
    return client.http.get("/userinfo",
                           headers={"Authorization": f"Bearer {access_token}"}).status_code


def silent_authorize(client, app, connection, cookie_value: str | None) -> dict:
    """prompt=none with exactly this session cookie: the SSO check."""
    headers = {"Cookie": f"broker_session={cookie_value}"} if cookie_value else {}
    response = client.http.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", state="silent", connection=connection["name"], prompt="none",
        code_challenge=pkce_pair()[1], code_challenge_method="S256"), headers=headers)
    assert response.status_code == 302, response.body
    return location_params(response)


def set_cookies(response) -> list[str]:
    raw = response.headers.get("Set-Cookie") or response.headers.get("set-cookie")
    return raw if isinstance(raw, list) else ([raw] if raw else [])


def assert_cookie_cleared(response):
    cleared = [c for c in set_cookies(response) if c.startswith("broker_session=")]
    assert cleared and "Max-Age=0" in cleared[0], set_cookies(response)


def logout_path(path="/oidc/logout", **params) -> str:
    return path + ("?" + urlencode(params) if params else "")


# --- /oidc/logout --------------------------------------------------------------------------------

def confirmation_form(response) -> tuple[str, dict[str, str]]:
    """The action and fields of the "Do you want to sign out?" page's form."""
    from html.parser import HTMLParser

    found: dict = {"action": None, "fields": {}}

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attributes = dict(attrs)
            if tag == "form":
                assert attributes.get("method") == "post"
                found["action"] = attributes["action"]
            if tag == "input" and attributes.get("type") == "hidden":
                found["fields"][attributes["name"]] = attributes.get("value") or ""

    assert response.status_code == 200, response.body
    Parser().feed(response.body.decode())
    assert found["action"], response.body
    return found["action"], found["fields"]


def confirm(browser, response):
    """Press "Sign out" on the confirmation page."""
    action, fields = confirmation_form(response)
    assert action.endswith("/oidc/logout")
    return browser.post_form("/oidc/logout", fields)


def confirmed_logout(browser, **params):
    """``/oidc/logout`` without id_token_hint from a browser with a session: asked, confirmed."""
    return confirm(browser, browser.get(logout_path(**params)))


def test_rp_logout_without_hint_asks_then_ends_the_session_and_redirects_with_state(client, apps):
    web, conn = apps["web"], apps["connection"]
    browser, tokens = sign_in(client, web, conn)
    old_cookie = browser.cookies["broker_session"]
    assert "code" in silent_authorize(client, web, conn, old_cookie)
    asked = browser.get(logout_path(client_id=web["client_id"],
                                    post_logout_redirect_uri=SIGNED_OUT, state="bye-state",
                                    ui_locales="de", logout_hint="alice"))
    # No id_token_hint: RP-Initiated Logout §2 says ask. Nothing is ended before the answer.
    assert "Do you want to sign out?" in asked.body.decode()
    assert not set_cookies(asked)
    assert "code" in silent_authorize(client, web, conn, old_cookie)
    assert userinfo_status(client, tokens["access_token"]) == 200

    response = confirm(browser, asked)
    assert response.status_code == 302
    assert response.headers["Location"] == SIGNED_OUT + "?state=bye-state"
    assert response.headers["Cache-Control"] == "no-store"
    assert_cookie_cleared(response)
    assert "broker_session" not in browser.cookies
    # The old cookie no longer skips the IdP, the access token is refused.
    assert silent_authorize(client, web, conn, old_cookie)["error"] == "login_required"
    assert userinfo_status(client, tokens["access_token"]) == 401


def test_rp_logout_with_hint_and_cookie_of_the_same_user_does_not_ask(client, apps):
    web, conn = apps["web"], apps["connection"]
    browser, tokens = sign_in(client, web, conn)
    old_cookie = browser.cookies["broker_session"]
    response = browser.get(logout_path(id_token_hint=tokens["id_token"],
                                       post_logout_redirect_uri=SIGNED_OUT, state="s"))
    assert response.status_code == 302
    assert response.headers["Location"] == SIGNED_OUT + "?state=s"
    assert_cookie_cleared(response)
    assert silent_authorize(client, web, conn, old_cookie)["error"] == "login_required"


def test_confirmation_page_is_strict_escaped_and_translated(client, apps):
    web = apps["web"]
    browser, _ = sign_in(client, web, apps["connection"])
    evil_state = '"><script>alert(1)</script>'
    response = browser.get(logout_path(client_id=web["client_id"], post_logout_redirect_uri=SIGNED_OUT,
                                       state=evil_state, ui_locales="fr-CA en"))
    body = response.body.decode()
    assert "<script" not in body
    assert "Voulez-vous vous déconnecter ?" in body and 'lang="fr"' in body
    assert "web demande à vous déconnecter." in body
    assert response.headers["Cache-Control"] == "no-store"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp
    # The form may post to the broker and be followed by the redirect to the app's logout URL.
    form_action = next(d for d in csp.split(";") if d.strip().startswith("form-action")).split()
    assert form_action[1] == "'self'" and "https://app.example.com" in form_action
    _, fields = confirmation_form(response)
    assert fields["state"] == evil_state  # carried back as it came, escaped in the HTML
    assert set(fields) == {"client_id", "post_logout_redirect_uri", "state", "logout_confirm"}
    english = browser.get(logout_path(), headers={"Accept-Language": "en-GB,fr;q=0.5"})
    assert "Do you want to sign out?" in english.body.decode()


def test_wrong_or_foreign_confirmation_ends_nothing(client, apps):
    """Logout CSRF: a page on another site can make the browser GET or POST /oidc/logout with the
    cookie, but it cannot produce the confirmation token, which is bound to the session cookie."""
    web, conn = apps["web"], apps["connection"]
    browser, tokens = sign_in(client, web, conn)
    cookie = browser.cookies["broker_session"]
    intruder, _ = sign_in(client, web, conn)  # another browser, another session
    _, intruder_fields = confirmation_form(intruder.get(logout_path()))
    _, own_fields = confirmation_form(browser.get(logout_path()))
    attempts = [
        ("post", {"logout_confirm": "x" * 43}),
        ("post", {"logout_confirm": ""}),
        ("post", {"logout_confirm": intruder_fields["logout_confirm"]}),  # another browser's
        ("post", {"logout_confirm": own_fields["logout_confirm"] + "A"}),
        ("get", {"logout_confirm": own_fields["logout_confirm"]}),  # a confirmation only by POST
    ]
    for method, fields in attempts:
        if method == "post":
            response = browser.post_form("/oidc/logout", fields)
        else:
            response = browser.get(logout_path(**fields))
        assert "Do you want to sign out?" in response.body.decode(), (method, fields)
        assert not set_cookies(response)
        assert "code" in silent_authorize(client, web, conn, cookie), (method, fields)
    assert userinfo_status(client, tokens["access_token"]) == 200
    # Repeated confirmation parameter: refused like any repeated parameter.
    repeated = browser.post_form("/oidc/logout", [("logout_confirm", own_fields["logout_confirm"])] * 2)
    assert repeated.status_code == 400
    assert "code" in silent_authorize(client, web, conn, cookie)


def test_hint_of_another_user_with_a_live_cookie_asks(client, apps):
    from chalicelib.keys import sign_jwt

    web, conn = apps["web"], apps["connection"]
    browser, tokens = sign_in(client, web, conn)
    claims = claims_of(tokens["id_token"])
    someone_else = sign_jwt({**claims, "sub": "oidc|elsewhere|mallory", "sid": "nope"}, typ="JWT")
    asked = browser.get(logout_path(id_token_hint=someone_else))
    assert "Do you want to sign out?" in asked.body.decode()
    assert "code" in silent_authorize(client, web, conn, browser.cookies["broker_session"])
    signed_out = confirm(browser, asked)
    assert "You are signed out" in signed_out.body.decode()
    assert_cookie_cleared(signed_out)


def test_no_session_no_hint_is_the_signed_out_page_without_asking(client, apps):
    response = client.http.get("/oidc/logout")
    assert response.status_code == 200
    assert "You are signed out" in response.body.decode()


def test_rp_logout_with_only_an_id_token_hint_ends_the_hinted_session(client, apps):
    web, conn = apps["web"], apps["connection"]
    browser, tokens = sign_in(client, web, conn)
    # Another browser (or the application's server) presents the ID token: no cookie.
    response = client.http.get(logout_path(id_token_hint=tokens["id_token"],
                                           post_logout_redirect_uri=SIGNED_OUT))
    assert response.status_code == 302
    assert response.headers["Location"] == SIGNED_OUT  # no state sent, none echoed
    old_cookie = browser.cookies["broker_session"]
    assert silent_authorize(client, web, conn, old_cookie)["error"] == "login_required"
    assert userinfo_status(client, tokens["access_token"]) == 401


def test_expired_id_token_hint_is_accepted(client, apps):
    from chalicelib.keys import sign_jwt

    web, conn = apps["web"], apps["connection"]
    browser, tokens = sign_in(client, web, conn)
    claims = claims_of(tokens["id_token"])
    past = int(time.time()) - 7200
    expired = sign_jwt({**claims, "iat": past - 3600, "exp": past}, typ="JWT")
    response = client.http.get(logout_path(id_token_hint=expired, state="s"))
    assert response.status_code == 200  # no redirect asked: the signed-out page
    assert silent_authorize(client, web, conn,
                            browser.cookies["broker_session"])["error"] == "login_required"


def test_hint_of_another_user_does_not_end_a_session_it_does_not_own(client, apps):
    from chalicelib.keys import sign_jwt

    web, conn = apps["web"], apps["connection"]
    browser, tokens = sign_in(client, web, conn)
    claims = claims_of(tokens["id_token"])
    mismatched = sign_jwt({**claims, "sub": "oidc|elsewhere|mallory"}, typ="JWT")
    response = client.http.get(logout_path(id_token_hint=mismatched))
    assert response.status_code == 200
    assert "code" in silent_authorize(client, web, conn, browser.cookies["broker_session"])


def test_signed_out_page_without_parameters(client, apps):
    browser, _ = sign_in(client, apps["web"], apps["connection"])
    old_cookie = browser.cookies["broker_session"]
    response = confirm(browser, browser.get("/oidc/logout"))
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "You are signed out" in response.body.decode()
    assert response.headers["Content-Type"].startswith("text/html")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert_cookie_cleared(response)
    assert silent_authorize(client, apps["web"], apps["connection"],
                            old_cookie)["error"] == "login_required"


def test_logout_by_form_post(client, apps):
    web = apps["web"]
    browser, _ = sign_in(client, web, apps["connection"])
    asked = browser.post_form("/oidc/logout", {"client_id": web["client_id"],
                                               "post_logout_redirect_uri": SIGNED_OUT,
                                               "state": "p"})
    response = confirm(browser, asked)
    assert response.status_code == 302
    assert response.headers["Location"] == SIGNED_OUT + "?state=p"
    assert_cookie_cleared(response)


@pytest.mark.parametrize("redirect", [
    "https://evil.example.com/",
    SIGNED_OUT + "/",                # not an exact match
    SIGNED_OUT + "?next=x",
    OTHER_SIGNED_OUT,                # registered, but for another application
])
def test_unregistered_post_logout_redirect_uri_is_an_error_page(client, apps, redirect):
    web, conn = apps["web"], apps["connection"]
    browser, _ = sign_in(client, web, conn)
    response = browser.get(logout_path(client_id=web["client_id"],
                                       post_logout_redirect_uri=redirect, state="x"))
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert not set_cookies(response)
    # Nothing was ended.
    assert "code" in silent_authorize(client, web, conn, browser.cookies["broker_session"])


def test_post_logout_redirect_uri_needs_a_client(client, apps):
    response = client.http.get(logout_path(post_logout_redirect_uri=SIGNED_OUT))
    assert response.status_code == 400 and "Location" not in response.headers
    unknown = client.http.get(logout_path(client_id="no-such-client",
                                          post_logout_redirect_uri=SIGNED_OUT))
    assert unknown.status_code == 400 and "Location" not in unknown.headers


def _forged_hints(tokens) -> dict[str, str]:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    from chalicelib.keys import sign_jwt

    claims = claims_of(tokens["id_token"])
    header = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[0] + "=="))
    attacker = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    head, body, sig = tokens["id_token"].split(".")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    tampered_body = base64.urlsafe_b64encode(json.dumps(
        {**claims, "sub": "oidc|x|mallory"}).encode()).rstrip(b"=").decode()
    return {
        "attacker_key_same_kid": jwt.encode(header, claims, attacker, algorithms=["RS256"]),
        "tampered_claims": f"{head}.{tampered_body}.{sig}",
        "alg_none": f"{none_header}.{body}.",
        "wrong_issuer": sign_jwt({**claims, "iss": "https://evil.example.com/"}, typ="JWT"),
        "access_token_not_id_token": tokens["access_token"],
        "garbage": "not-a-jwt",
    }


@pytest.mark.parametrize("kind", ["attacker_key_same_kid", "tampered_claims", "alg_none",
                                  "wrong_issuer", "access_token_not_id_token", "garbage"])
def test_forged_id_token_hint_is_refused(client, apps, kind):
    web, conn = apps["web"], apps["connection"]
    browser, tokens = sign_in(client, web, conn)
    hint = _forged_hints(tokens)[kind]
    response = browser.get(logout_path(id_token_hint=hint, post_logout_redirect_uri=SIGNED_OUT))
    assert response.status_code == 400, kind
    assert "Location" not in response.headers
    assert "code" in silent_authorize(client, web, conn, browser.cookies["broker_session"])
    assert userinfo_status(client, tokens["access_token"]) == 200


def test_client_id_must_match_the_hints_audience(client, apps):
    web, other, conn = apps["web"], apps["other"], apps["connection"]
    browser, tokens = sign_in(client, web, conn)
    response = browser.get(logout_path(id_token_hint=tokens["id_token"],
                                       client_id=other["client_id"],
                                       post_logout_redirect_uri=OTHER_SIGNED_OUT))
    assert response.status_code == 400 and "Location" not in response.headers


def test_repeated_parameter_is_refused(client, apps):
    response = client.http.get("/oidc/logout?client_id=a&client_id=b")
    assert response.status_code == 400


def test_logout_revokes_online_grants_but_offline_refresh_tokens_survive(client, api, apps):
    web, other, conn = apps["web"], apps["other"], apps["connection"]
    browser, web_tokens = sign_in(client, web, conn)  # online: no offline_access
    _, other_tokens = sign_in(client, other, conn, browser=browser,
                              scope="openid offline_access")  # SSO, offline
    assert "refresh_token" not in web_tokens and "refresh_token" in other_tokens
    response = confirmed_logout(browser, client_id=web["client_id"],
                                post_logout_redirect_uri=SIGNED_OUT)
    assert response.status_code == 302
    assert userinfo_status(client, web_tokens["access_token"]) == 401
    # Offline access (offline_access) survives a plain logout, as Keycloak's offline sessions do.
    refreshed = refresh(client, other, other_tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.data
    user_id = claims_of(web_tokens["id_token"])["sub"]
    deleted = api.call("DELETE", f"/api/v2/users/{user_id.replace('|', '%7C')}/sessions")
    assert deleted.status_code == 204
    after = refresh(client, other, other_tokens["refresh_token"])
    assert after.status_code == 400 and after.data["error"] == "invalid_grant"
    assert userinfo_status(client, refreshed.data["access_token"]) == 401


# --- /v2/logout -----------------------------------------------------------------------------------

def test_auth0_logout_redirects_to_allowed_return_to(client, apps):
    web, conn = apps["web"], apps["connection"]
    browser, tokens = sign_in(client, web, conn)
    old_cookie = browser.cookies["broker_session"]
    response = browser.get(logout_path("/v2/logout", client_id=web["client_id"],
                                       returnTo=SIGNED_OUT))
    assert response.status_code == 302 and response.headers["Location"] == SIGNED_OUT
    assert_cookie_cleared(response)
    assert silent_authorize(client, web, conn, old_cookie)["error"] == "login_required"
    assert userinfo_status(client, tokens["access_token"]) == 401


def test_auth0_logout_defaults_to_first_allowed_url_and_page_without_client(client, apps):
    web = apps["web"]
    response = client.http.get(logout_path("/v2/logout", client_id=web["client_id"]))
    assert response.status_code == 302 and response.headers["Location"] == SIGNED_OUT
    page = client.http.get("/v2/logout")
    assert page.status_code == 200 and "You are signed out" in page.body.decode()


@pytest.mark.parametrize("params", [
    {"returnTo": SIGNED_OUT},                                  # no client_id: refused
    {"returnTo": "https://evil.example.com/", "client_id": "web"},
    {"returnTo": OTHER_SIGNED_OUT, "client_id": "web"},        # another app's URL
    {"returnTo": SIGNED_OUT, "client_id": "unknown-client"},
])
def test_auth0_logout_refuses_unlisted_return_to(client, apps, params):
    web, conn = apps["web"], apps["connection"]
    browser, _ = sign_in(client, web, conn)
    if params.get("client_id") == "web":
        params = {**params, "client_id": web["client_id"]}
    response = browser.get(logout_path("/v2/logout", **params))
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "code" in silent_authorize(client, web, conn, browser.cookies["broker_session"])


def _set_upstream_id_token(sid: str, value: str | None) -> None:
    from chalicelib.store import sessions as session_records
    from chalicelib.store.dynamo import table

    # A session as stored before sealing: the hint in clear, or none (no sealed one either).
    if value is None:
        table().update(*session_records.key(sid),
                       "REMOVE upstream_id_token, upstream_id_token_sealed")
    else:
        table().update(*session_records.key(sid),
                       "SET upstream_id_token = :t REMOVE upstream_id_token_sealed",
                       values={":t": value})


@pytest.mark.parametrize("stored_hint", ["upstream.id.token", None])
def test_auth0_federated_logout_continues_upstream(client, apps, stored_hint):
    web, conn, idp = apps["web"], apps["connection"], apps["idp"]
    browser, tokens = sign_in(client, web, conn)
    _set_upstream_id_token(claims_of(tokens["id_token"])["sid"], stored_hint)
    response = browser.get(logout_path("/v2/logout", client_id=web["client_id"],
                                       returnTo=SIGNED_OUT) + "&federated")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    discovered = conn["options"]["end_session_endpoint"]
    assert discovered.startswith(idp.issuer)
    assert f"{location.scheme}://{location.netloc}{location.path}" == discovered
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["client_id"] == "broker-client"
    assert query["post_logout_redirect_uri"] == SIGNED_OUT
    if stored_hint:
        assert query["id_token_hint"] == stored_hint
    else:
        assert "id_token_hint" not in query
    assert_cookie_cleared(response)
    assert userinfo_status(client, tokens["access_token"]) == 401


def test_auth0_federated_logout_without_end_session_endpoint_goes_to_return_to(client, apps):
    from chalicelib.management.connections import forget_cached_connections
    from chalicelib.store.connections import PK
    from chalicelib.store.dynamo import table

    web, conn = apps["web"], apps["connection"]
    browser, _ = sign_in(client, web, conn)
    table().update(PK, conn["id"], "REMOVE #o.end_session_endpoint", names={"#o": "options"})
    forget_cached_connections()
    response = browser.get(logout_path("/v2/logout", client_id=web["client_id"],
                                       returnTo=SIGNED_OUT, federated=""))
    assert response.status_code == 302 and response.headers["Location"] == SIGNED_OUT


def test_logged_out_session_is_gone_from_the_management_api(client, api, apps):
    web, conn = apps["web"], apps["connection"]
    browser, tokens = sign_in(client, web, conn)
    sid = claims_of(tokens["id_token"])["sid"]
    assert api.call("GET", f"/api/v2/sessions/{sid}").status_code == 200
    browser.get(logout_path("/v2/logout"))
    gone = api.call("GET", f"/api/v2/sessions/{sid}")
    assert gone.status_code == 404 and gone.data["errorCode"] == "inexistent_session"
