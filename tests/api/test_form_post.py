"""``response_mode=form_post`` (OAuth 2.0 Form Post Response Mode, OIDC): the answer to the
application is an auto-submitting form POST to its redirect_uri instead of a redirect with a query,
for success and for errors, after a fresh login, after SSO and on a dependency outage."""
from __future__ import annotations

import base64
import hashlib
import json
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.api import test_logout as flows
from tests.api.test_logout import APP_CALLBACK
from tests.support.flow import Browser, authorize_path, deliver_callback, idp_login, pkce_pair, token_request

idp, apps = flows.idp, flows.apps
ISSUER = "http://127.0.0.1:8000/"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append({"method": attributes.get("method"), "action": attributes.get("action"),
                               "fields": {}})
        if tag == "input" and self.forms:
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value")
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def form_post_of(response) -> dict[str, str]:
    """The fields the page POSTs to the application, after checking the page is what it must be."""
    assert response.status_code == 200, (response.status_code, response.headers, response.body)
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-store"
    page = _Page()
    page.feed(response.body.decode())
    [form] = page.forms
    assert form["method"] == "post" and form["action"] == APP_CALLBACK
    [script] = page.scripts
    csp = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert csp["script-src"] == f"'sha256-{digest}'"  # only this script may run
    assert "form-action" not in csp  # browsers would apply it to the app's own redirects too
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    return form["fields"]


def start(browser, app, connection, **params):
    verifier, challenge = pkce_pair()
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", state=params.pop("state", "st"), nonce="n", code_challenge=challenge,
        code_challenge_method="S256", connection=connection["name"], **params))
    return response, verifier


def test_login_answers_with_a_form_post(client, apps):
    web, connection = apps["web"], apps["connection"]
    browser = Browser(client)
    odd_state = 'a"b<c>&d'
    response, verifier = start(browser, web, connection, response_mode="form_post", state=odd_state)
    assert response.status_code == 302  # to the IdP, as always
    method, params = idp_login(response.headers["Location"])
    answer = deliver_callback(browser, method, params)
    fields = form_post_of(answer)
    assert set(fields) == {"code", "state", "iss"}
    assert fields["state"] == odd_state and fields["iss"] == ISSUER
    assert "broker_session" in browser.cookies  # the session cookie rides on the page
    tokens = token_request(client, {"grant_type": "authorization_code", "code": fields["code"],
                                    "redirect_uri": APP_CALLBACK, "code_verifier": verifier,
                                    "client_id": web["client_id"], "client_secret": web["client_secret"]})
    assert tokens.status_code == 200, tokens.data

    # SSO: the next /authorize in the same browser answers with a form post at once.
    again, _ = start(browser, web, connection, response_mode="form_post", state="second")
    assert set(form_post_of(again)) == {"code", "state", "iss"}
    # And query stays the default.
    plain, _ = start(browser, web, connection, state="third")
    assert plain.status_code == 302 and plain.headers["Location"].startswith(APP_CALLBACK + "?code=")


def test_errors_use_the_form_post_too(client, apps):
    web, connection = apps["web"], apps["connection"]
    response, _ = start(Browser(client), web, connection, response_mode="form_post", prompt="none",
                        state="s1")
    fields = form_post_of(response)
    assert fields["error"] == "login_required" and fields["state"] == "s1" and fields["iss"] == ISSUER
    assert "code" not in fields


def test_unsupported_or_repeated_response_mode_is_an_error_by_query(client, apps):
    web, connection = apps["web"], apps["connection"]
    for extra in ({"response_mode": "fragment"}, {"response_mode": "jwt"}):
        response, _ = start(Browser(client), web, connection, **extra)
        assert response.status_code == 302, extra
        assert response.headers["Location"].startswith(APP_CALLBACK + "?error=invalid_request")
    repeated = client.http.get(authorize_path(client_id=web["client_id"], redirect_uri=APP_CALLBACK,
                                              response_type="code", scope="openid")
                               + "&response_mode=form_post&response_mode=form_post")
    assert repeated.status_code == 302
    assert repeated.headers["Location"].startswith(APP_CALLBACK + "?error=invalid_request")


def test_an_upstream_failure_goes_back_by_form_post(client, apps):
    """The IdP refuses the login: the application hears it in its response mode."""
    web = apps["web"]
    browser = Browser(client)
    response, _ = start(browser, web, apps["connection"], response_mode="form_post")
    upstream_state = parse_qs(urlsplit(response.headers["Location"]).query)["state"][0]
    failed = browser.get("/login/callback?" + urlencode(
        {"state": upstream_state, "error": "access_denied", "error_description": "User said no",
         "iss": apps["idp"].issuer}))
    fields = form_post_of(failed)
    assert fields["error"] == "access_denied" and fields["state"] == "st"
    assert "User said no" in fields["error_description"]


def test_discovery_lists_form_post(client):
    document = json.loads(client.http.get("/.well-known/openid-configuration").body)
    assert document["response_modes_supported"] == ["query", "form_post", "web_message"]



def test_form_post_to_a_custom_scheme_is_refused_by_query(client, api, apps):
    """A native app's private-use URI scheme cannot receive a form POST: invalid_request, sent the
    only way that reaches it."""
    native_callback = "com.example.app:/callback"
    native = api.call("POST", "/api/v2/clients", body={
        "name": "native-fp", "app_type": "native", "callbacks": [native_callback]}).data
    try:
        api.call("PATCH", f"/api/v2/connections/{apps['connection']['id']}/clients",
                 body=[{"client_id": native["client_id"], "status": True}])
        _, challenge = pkce_pair()
        response = client.http.get(authorize_path(
            client_id=native["client_id"], redirect_uri=native_callback, response_type="code",
            scope="openid", state="n1", code_challenge=challenge, code_challenge_method="S256",
            connection=apps["connection"]["name"], response_mode="form_post"))
        assert response.status_code == 302, response.body
        location = response.headers["Location"]
        assert location.startswith(native_callback + "?error=invalid_request")
        assert "state=n1" in location
    finally:
        api.call("DELETE", f"/api/v2/clients/{native['client_id']}")
