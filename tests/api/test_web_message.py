"""``response_mode=web_message`` (Auth0's silent authentication and popup login, as Auth0's SPA SDK
uses them): the answer, success or error, is a page that posts ``{"type": "authorization_response",
"response": {...}}`` to the parent (hidden iframe) or opener (popup) window, addressed only to the
redirect_uri's origin, which must be one of the application's allowed web origins. The page may be
framed by that origin alone and runs exactly one script, allowed by its hash.

Real logins go through oidc-provider (the session-scoped ``oidc_idp``); the browser side (the
SDK's iframe and popup) is covered end to end in tests/e2e/test_spa_sdk.py."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.api.test_logout import APP_CALLBACK, new_app, new_connection
from tests.support.flow import (
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    pkce_pair,
    token_request,
)

ISSUER = "http://127.0.0.1:8000/"
APP_ORIGIN = "https://app.example.com"
POST_MESSAGE = re.compile(r"^\(window\.opener\|\|window\.parent\)\.postMessage\((\{.*\}),(\"[^\"]*\")\);$")


@pytest.fixture()
def setup(api, oidc_idp):
    """A SPA (public: PKCE), a confidential web app and a back-channel connection for both."""
    spa = new_app(api, "wm-spa", app_type="spa")
    web = new_app(api, "wm-web")
    connection = new_connection(api, oidc_idp, "wm", [spa["client_id"], web["client_id"]])
    yield {"spa": spa, "web": web, "connection": connection, "idp": oidc_idp}
    api.call("DELETE", f"/api/v2/connections/{connection['id']}")
    for app in (spa, web):
        api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


class _Scripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts: list[str] = []
        self.tags: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def message_of(response, origin: str = APP_ORIGIN) -> dict:
    """The ``response`` the page posts, after checking the page is exactly what it must be: one
    script, allowed by its hash, posting an authorization_response to ``origin`` only."""
    assert response.status_code == 200, (response.status_code, response.headers, response.body)
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-store"
    assert "X-Frame-Options" not in response.headers  # would forbid the SPA's own iframe
    page = _Scripts()
    page.feed(response.body.decode())
    [script] = page.scripts
    assert page.tags.count("script") == 1
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert response.headers["Content-Security-Policy"] == (
        f"default-src 'none'; script-src 'sha256-{digest}'; frame-ancestors {origin}; "
        "base-uri 'none'")
    assert "<" not in script and ">" not in script  # no value can end the script element
    found = POST_MESSAGE.match(script)
    assert found, script
    message, target = json.loads(found.group(1)), json.loads(found.group(2))
    assert target == origin  # never "*": only the application's window can read the code
    assert message["type"] == "authorization_response"
    return message["response"]


def authorize(browser, app, connection, redirect_uri=APP_CALLBACK, **params):
    verifier, challenge = pkce_pair()
    query = {"client_id": app["client_id"], "redirect_uri": redirect_uri,
             "response_type": "code", "scope": "openid profile email", "state": "st",
             "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256",
             "connection": connection["name"], "response_mode": "web_message", **params}
    return browser.get(authorize_path(**query)), verifier


def redeem(client, app, code: str, verifier: str):
    tokens = token_request(client, {"grant_type": "authorization_code", "code": code,
                                    "redirect_uri": APP_CALLBACK, "code_verifier": verifier,
                                    "client_id": app["client_id"]})
    assert tokens.status_code == 200, tokens.data
    return tokens.data


def login(client, setup, browser=None, **params):
    """A popup-style login: /authorize → upstream → callback answers with a web message."""
    browser = browser or Browser(client)
    response, verifier = authorize(browser, setup["spa"], setup["connection"], **params)
    assert response.status_code == 302, response.body  # to the IdP, as always
    method, upstream = idp_login(response.headers["Location"])
    return browser, deliver_callback(browser, method, upstream), verifier


def set_cookies(response) -> list[str]:
    raw = response.headers.get("Set-Cookie")
    return raw if isinstance(raw, list) else ([raw] if raw else [])


# --------------------------------------------------------------------------- success


def test_login_then_silent_authentication_post_codes_to_the_app_origin(client, setup):
    odd_state = 'a"b</script><script>alert(1)</script>&\u2028'
    browser, answer, verifier = login(client, setup, state=odd_state)
    response = message_of(answer)
    assert set(response) == {"code", "state", "iss"}
    assert response["state"] == odd_state and response["iss"] == ISSUER
    assert "</script><script>" not in answer.body.decode()
    [session] = [c for c in set_cookies(answer) if c.startswith("broker_session=")]
    assert "SameSite=None" in session and "Secure" in session  # reaches a cross-site iframe
    assert redeem(client, setup["spa"], response["code"], verifier)["id_token"]

    # The SDK's hidden iframe: prompt=none with the live session answers a code at once.
    again, verifier = authorize(browser, setup["spa"], setup["connection"], prompt="none",
                                state="silent")
    silent = message_of(again)
    assert set(silent) == {"code", "state", "iss"} and silent["state"] == "silent"
    assert redeem(client, setup["spa"], silent["code"], verifier)["access_token"]


def test_prompt_none_without_a_session_posts_login_required(client, setup):
    response, _ = authorize(Browser(client), setup["spa"], setup["connection"], prompt="none",
                            state="s1")
    answer = message_of(response)
    assert answer["error"] == "login_required" and answer["state"] == "s1"
    assert answer["error_description"] and "code" not in answer


def test_web_origins_decide_when_set(client, api, setup):
    """``web_origins``, when the application has them, replace its callbacks' origins."""
    spa = setup["spa"]
    path = f"/api/v2/clients/{spa['client_id']}"
    assert api.call("PATCH", path, body={"web_origins": [APP_ORIGIN]}).status_code == 200
    allowed, _ = authorize(Browser(client), spa, setup["connection"], prompt="none")
    assert message_of(allowed)["error"] == "login_required"
    assert api.call("PATCH", path, body={"web_origins": ["https://other.example.com"]}
                    ).status_code == 200
    refused, _ = authorize(Browser(client), spa, setup["connection"], prompt="none")
    assert_refused(refused)


# --------------------------------------------------------------------------- refused


def assert_refused(response):
    assert response.status_code == 400, response.body
    assert "Location" not in response.headers
    body = response.body.decode()
    assert "postMessage" not in body and "authorization_response" not in body
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_an_origin_the_app_does_not_allow_gets_no_code(client, api, setup):
    """A live session would answer a code at once: the refusal comes before anything is issued."""
    browser, answer, _ = login(client, setup)
    assert "code" in message_of(answer)
    spa = setup["spa"]
    assert api.call("PATCH", f"/api/v2/clients/{spa['client_id']}",
                    body={"web_origins": ["https://other.example.com"]}).status_code == 200
    refused, _ = authorize(browser, spa, setup["connection"], prompt="none")
    assert_refused(refused)
    assert not any(c.startswith("broker_tx_") for c in browser.cookies)
    # The session is untouched: the query response mode still answers by SSO.
    plain, _ = authorize(browser, spa, setup["connection"], prompt="none", response_mode="query")
    assert plain.status_code == 302 and "code=" in plain.headers["Location"]


def test_a_custom_scheme_redirect_uri_cannot_use_web_message(client, api, setup):
    native_callback = "com.example.app:/callback"
    native = new_app(api, "wm-native", app_type="native", callbacks=[native_callback])
    try:
        api.call("PATCH", f"/api/v2/connections/{setup['connection']['id']}/clients",
                 body=[{"client_id": native["client_id"], "status": True}])
        response, _ = authorize(Browser(client), native, setup["connection"],
                                redirect_uri=native_callback, prompt="none")
        assert_refused(response)
    finally:
        api.call("DELETE", f"/api/v2/clients/{native['client_id']}")


def test_an_unregistered_redirect_uri_is_still_a_page(client, setup):
    response, _ = authorize(Browser(client), setup["spa"], setup["connection"],
                            redirect_uri=APP_ORIGIN + "/elsewhere")
    assert response.status_code == 400 and "Location" not in response.headers


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("change, error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"prompt": "bogus"}, "invalid_request"),
    ({"connection": "no-such-connection"}, "invalid_request"),
    ({"audience": "https://unknown.example/api"}, "invalid_request"),
    ({"scope": "nothing-known"}, "invalid_scope"),
])
def test_errors_after_the_redirect_uri_is_trusted_are_web_messages(client, setup, change, error):
    verifier, challenge = pkce_pair()
    query = {"client_id": setup["spa"]["client_id"], "redirect_uri": APP_CALLBACK,
             "response_type": "code", "scope": "openid", "state": "err-state",
             "code_challenge": challenge, "code_challenge_method": "S256",
             "connection": setup["connection"]["name"], "response_mode": "web_message", **change}
    answer = message_of(Browser(client).get(authorize_path(**query)))
    assert answer["error"] == error, answer
    assert answer["state"] == "err-state" and answer["iss"] == ISSUER and "code" not in answer


def test_an_outage_at_authorize_is_a_web_message(client, setup, monkeypatch):
    from chalicelib import sessions
    from chalicelib.errors import ApiError

    def unavailable(*args):
        raise ApiError("DynamoDB is unavailable", status=503, error_code="temporarily_unavailable")

    monkeypatch.setattr(sessions, "session_from_cookie", unavailable)
    response, _ = authorize(Browser(client), setup["spa"], setup["connection"], prompt="none",
                            state="down")
    answer = message_of(response)
    assert (answer["error"], answer["state"]) == ("temporarily_unavailable", "down")


def test_an_outage_at_the_callback_is_a_web_message_and_stores_no_session(client, setup,
                                                                          monkeypatch):
    from chalicelib.errors import ApiError
    from chalicelib.store.dynamo import Table

    def unavailable(self, operations, **options):
        raise ApiError("DynamoDB is unavailable", status=503, error_code="temporarily_unavailable")

    monkeypatch.setattr(Table, "transact", unavailable)
    _, answer, _ = login(client, setup, state="cb-down")
    response = message_of(answer)
    assert (response["error"], response["state"]) == ("temporarily_unavailable", "cb-down")
    assert not any(c.startswith("broker_session=") for c in set_cookies(answer))


def test_an_upstream_refusal_is_a_web_message(client, setup):
    browser = Browser(client)
    response, _ = authorize(browser, setup["spa"], setup["connection"], state="refused")
    upstream_state = parse_qs(urlsplit(response.headers["Location"]).query)["state"][0]
    failed = browser.get(f"/login/callback/{setup['connection']['name']}?" + urlencode(
        {"state": upstream_state, "error": "access_denied", "error_description": "User said no",
         "iss": setup["idp"].issuer}))
    answer = message_of(failed)
    assert answer["error"] == "access_denied" and answer["state"] == "refused"
    assert "User said no" in answer["error_description"]


def test_a_repeated_response_mode_is_an_error_by_query(client, setup):
    _, challenge = pkce_pair()
    path = authorize_path(client_id=setup["spa"]["client_id"], redirect_uri=APP_CALLBACK,
                          response_type="code", scope="openid", code_challenge=challenge,
                          code_challenge_method="S256", state=uuid.uuid4().hex)
    response = client.http.get(path + "&response_mode=web_message&response_mode=web_message")
    assert response.status_code == 302
    assert response.headers["Location"].startswith(APP_CALLBACK + "?error=invalid_request")


def test_discovery_lists_web_message(client):
    document = json.loads(client.http.get("/.well-known/openid-configuration").body)
    assert "web_message" in document["response_modes_supported"]
