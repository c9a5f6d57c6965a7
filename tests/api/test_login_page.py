"""SPEC §3.5 login page, the Try flow and the admin console's static files, through the Chalice
test client (upstream: the scriptable FakeIdp on loopback)."""
from __future__ import annotations

import html
import html.parser
import json
import uuid
from urllib.parse import urlencode, urlsplit

import pytest

from chalicelib.login.jwks_cache import jwks_cache
from chalicelib.login.login_page import STYLE_HASH
from tests.conftest import token_with_scopes
from tests.support.fake_idp import FakeIdp, connection_body
from tests.support.flow import (
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
)

APP_CALLBACK = "https://app.example.com/callback"
ISSUER = "http://127.0.0.1:8000/"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>&"\''


class Page(html.parser.HTMLParser):
    """What a browser would see: the form (action, fields), the buttons, the message."""

    def __init__(self, text: str):
        super().__init__()
        self.form_action = None
        self.fields: list[tuple[str, str]] = []
        self.links: dict[str, str] = {}
        self.images: list[dict] = []
        self.lang = None
        self.email_input: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.lang = attrs.get("lang")
        if tag == "form":
            self.form_action = attrs.get("action")
        if tag == "input" and attrs.get("name"):
            self.fields.append((attrs["name"], attrs.get("value") or ""))
            if attrs.get("type") == "email":
                self.email_input = attrs
        if tag == "a" and attrs.get("data-connection"):
            self.links[attrs["data-connection"]] = attrs["href"]
        if tag == "img":
            self.images.append(attrs)


@pytest.fixture()
def idps():
    jwks_cache().clear()
    with FakeIdp() as corp, FakeIdp() as partner:
        yield corp, partner
    jwks_cache().clear()


@pytest.fixture()
def setup(api, idps):
    corp_idp, partner_idp = idps
    suffix = uuid.uuid4().hex[:6]
    web = api.call("POST", "/api/v2/clients", body={
        "name": "Web shop", "app_type": "regular_web", "callbacks": [APP_CALLBACK]}).data
    other = api.call("POST", "/api/v2/clients", body={
        "name": "other", "app_type": "regular_web", "callbacks": [APP_CALLBACK]}).data
    mine = [web["client_id"]]
    bodies = {
        # HRD only (no button)
        "corp": {**connection_body(corp_idp, f"corp-{suffix}", channel="back", enabled_clients=mine,
                                   domain_aliases=["corp.example"]),
                 "display_name": "Corp SSO"},
        # a button with a logo and a hostile display name
        "partner": {**connection_body(partner_idp, f"partner-{suffix}", enabled_clients=mine,
                                      icon_url="https://cdn.partner.example/logo.png",
                                      domain_aliases=["partner.example"]),
                    "display_name": XSS, "show_as_button": True},
        # show_as_button but not enabled for this application: no button
        "elsewhere": {**connection_body(partner_idp, f"elsewhere-{suffix}",
                                        enabled_clients=[other["client_id"]]),
                      "display_name": "Elsewhere", "show_as_button": True},
        # enabled, not a button, no domains: reachable only with connection=
        "hidden": {**connection_body(corp_idp, f"hidden-{suffix}", enabled_clients=mine),
                   "display_name": "Hidden"},
    }
    created = {}
    for key, body in bodies.items():
        response = api.call("POST", "/api/v2/connections", body=body)
        assert response.status_code == 201, response.data
        created[key] = response.data
    yield {"web": web, "other": other, "idps": idps, **created}
    for connection in created.values():
        api.call("DELETE", f"/api/v2/connections/{connection['id']}")
    for app in (web, other):
        api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


def _params(app, **overrides):
    _, challenge = pkce_pair()
    params = {"client_id": app["client_id"], "redirect_uri": APP_CALLBACK, "response_type": "code",
              "scope": "openid profile email", "state": "app-state", "nonce": "app-nonce",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def _page(client, headers=None, **params):
    response = client.http.get(authorize_path(**params), headers=headers or {})
    assert response.status_code == 200, (response.status_code, response.headers, response.body)
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    return response, Page(response.body.decode())


# --- the page --------------------------------------------------------------------------------

def test_page_is_rendered_when_no_connection_is_chosen(client, setup):
    sent = _params(setup["web"])
    response, page = _page(client, **sent)
    body = response.body.decode()
    assert "<h1>Sign in</h1>" in body and "Signing in to Web shop" in body
    assert page.lang == "en"
    # identifier first: an email field with a label, a GET form to /authorize
    assert page.form_action == ISSUER + "authorize"
    assert '<form method="get"' in body
    assert page.email_input["id"] == "login_hint" and '<label for="login_hint">' in body
    assert "autocomplete" in page.email_input and "required" in page.email_input
    # the original (validated) parameters travel as hidden inputs; connection never does
    fields = dict(page.fields)
    for name, value in sent.items():
        assert fields[name] == value
    assert "connection" not in fields
    assert "<script" not in body.lower()  # no JavaScript at all


def test_buttons_only_for_enabled_show_as_button_connections(client, setup):
    _, page = _page(client, **_params(setup["web"]))
    assert set(page.links) == {setup["partner"]["name"]}
    href = page.links[setup["partner"]["name"]]
    assert href.startswith(ISSUER + "authorize?")
    query = dict(pair.split("=", 1) for pair in urlsplit(href).query.split("&"))
    assert query["connection"] == setup["partner"]["name"]
    assert query["client_id"] == setup["web"]["client_id"]
    # the logo: 20x20, decorative (the label says it all)
    assert page.images == [{"src": "https://cdn.partner.example/logo.png", "width": "20",
                            "height": "20", "alt": "", "referrerpolicy": "no-referrer"}]
    # the other application sees its own connection's button only
    response, other = _page(client, **_params(setup["other"]))
    assert set(other.links) == {setup["elsewhere"]["name"]}
    assert "Continue with Elsewhere" in response.body.decode()
    assert "<form" not in response.body.decode()  # no domain to discover: buttons only


def test_display_names_are_html_escaped(client, setup):
    response, _ = _page(client, **_params(setup["web"]))
    body = response.body.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "Continue with " + html.escape(XSS) in body


def test_csp_header_is_exact(client, setup):
    response, _ = _page(client, **_params(setup["web"]))
    corp_idp, partner_idp = setup["idps"]
    assert response.headers["Content-Security-Policy"] == (
        f"default-src 'none'; style-src '{STYLE_HASH}'; img-src https:; "
        f"form-action 'self' http://127.0.0.1:8000 https://app.example.com {corp_idp.issuer} "
        f"{partner_idp.issuer}; frame-ancestors 'none'; base-uri 'none'")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    # the one inline stylesheet is the one the hash allows
    import base64
    import hashlib
    import re

    style = re.search(r"<style>(.*?)</style>", response.body.decode(), re.S).group(1)
    assert STYLE_HASH == "sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()


@pytest.mark.parametrize("params, headers, lang", [
    ({"ui_locales": "fr"}, {}, "fr"),
    ({"ui_locales": "fr-CA en"}, {}, "fr"),
    ({}, {"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.8"}, "fr"),
    ({}, {"Accept-Language": "de-DE, fr;q=0.5, en;q=0.4"}, "fr"),
    ({"ui_locales": "en"}, {"Accept-Language": "fr"}, "en"),  # ui_locales wins
    ({"ui_locales": "de"}, {"Accept-Language": "en;q=0.2, fr;q=0.9"}, "fr"),
    ({}, {"Accept-Language": "de"}, "en"),
    ({}, {}, "en"),
])
def test_languages(client, setup, params, headers, lang):
    response, page = _page(client, headers=headers, **_params(setup["web"], **params))
    body = response.body.decode()
    assert page.lang == lang and response.headers["Content-Language"] == lang
    if lang == "fr":
        assert "<h1>Connexion</h1>" in body and "Adresse e-mail" in body
        assert "Continuer avec " + html.escape(XSS) in body
    else:
        assert "<h1>Sign in</h1>" in body and "Continue with " in body


def _submit(client, page: Page, email: str, headers=None):
    """What the browser sends when the identifier form is submitted."""
    assert page.form_action == ISSUER + "authorize"
    fields = [(k, v) for k, v in page.fields if k != "login_hint"] + [("login_hint", email)]
    return client.http.get("/authorize?" + urlencode(fields), headers=headers or {})


def test_identifier_form_routes_to_the_matching_connection(client, setup):
    corp_idp, partner_idp = setup["idps"]
    _, page = _page(client, **_params(setup["web"]))
    for email, idp, name in (("Alice@Corp.Example", corp_idp, setup["corp"]["name"]),
                             ("bob@partner.example", partner_idp, setup["partner"]["name"])):
        response = _submit(client, page, email)
        assert response.status_code == 302, response.body
        location = response.headers["Location"]
        assert location.startswith(idp.issuer + "/authorize?"), location
        assert location_params(response)["redirect_uri"] == ISSUER + "login/callback/" + name


def test_unknown_domain_renders_the_page_again_with_a_message(client, setup):
    _, page = _page(client, **_params(setup["web"]))
    response = _submit(client, page, "carol@unknown.example")
    assert response.status_code == 200 and "Location" not in response.headers
    again = Page(response.body.decode())
    body = response.body.decode()
    assert 'role="alert"' in body
    assert "No sign-in method is set up for the domain unknown.example" in body
    assert again.email_input["value"] == "carol@unknown.example"
    assert again.email_input["aria-invalid"] == "true"
    assert set(again.links) == {setup["partner"]["name"]}  # the buttons are still there
    # in French too
    response = _submit(client, page, "carol@unknown.example", {"Accept-Language": "fr"})
    assert "Aucune méthode de connexion" in response.body.decode()


def test_escaped_login_hint_and_message(client, setup):
    response = client.http.get(authorize_path(**_params(setup["web"],
                                                        login_hint='"><b>x</b>@evil"<.example')))
    assert response.status_code == 200
    body = response.body.decode()
    assert "<b>x</b>" not in body and "&lt;b&gt;x&lt;/b&gt;" in body


def test_prompt_none_without_a_connection_is_login_required(client, setup):
    response = client.http.get(authorize_path(**_params(setup["web"], prompt="none")))
    assert response.status_code == 302
    params = location_params(response)
    assert params["error"] == "login_required" and params["state"] == "app-state"


def test_connection_parameter_still_wins(client, setup):
    corp_idp, _ = setup["idps"]
    response = client.http.get(authorize_path(**_params(setup["web"],
                                                        connection=setup["hidden"]["name"])))
    assert response.status_code == 302
    assert response.headers["Location"].startswith(corp_idp.issuer + "/authorize?")


def test_an_invalid_request_never_shows_the_page(client, setup):
    response = client.http.get(authorize_path(**_params(setup["web"], response_type="token")))
    assert response.status_code == 302
    assert location_params(response)["error"] == "unsupported_response_type"
    response = client.http.get(authorize_path(**_params(setup["web"],
                                                        redirect_uri="https://evil.example/cb")))
    assert response.status_code == 400 and "Location" not in response.headers


def test_single_unreachable_connection_is_used_directly(client, api, idps):
    """Nothing to choose on a page (no button, no domain): the only connection is used."""
    corp_idp, _ = idps
    app = api.call("POST", "/api/v2/clients", body={
        "name": "solo", "app_type": "regular_web", "callbacks": [APP_CALLBACK]}).data
    connection = api.call("POST", "/api/v2/connections", body=connection_body(
        corp_idp, f"solo-{uuid.uuid4().hex[:6]}", enabled_clients=[app["client_id"]])).data
    try:
        response = client.http.get(authorize_path(**_params(app)))
        assert response.status_code == 302
        assert response.headers["Location"].startswith(corp_idp.issuer + "/authorize?")
    finally:
        api.call("DELETE", f"/api/v2/connections/{connection['id']}")
        api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


def test_sso_session_is_reused_without_the_page(client, setup):
    browser = Browser(client)
    page = Page(browser.get(authorize_path(**_params(setup["web"]))).body.decode())
    fields = [(k, v) for k, v in page.fields if k != "login_hint"] + [("login_hint", "a@corp.example")]
    start = browser.get("/authorize?" + urlencode(fields))
    method, params = idp_login(start.headers["Location"])
    done = deliver_callback(browser, method, params)
    assert done.status_code == 303 and "code" in location_params(done)
    # a second application request with no connection: the session's connection, no page
    again = browser.get(authorize_path(**_params(setup["web"], state="second")))
    assert again.status_code == 302, again.body
    assert again.headers["Location"].startswith(APP_CALLBACK + "?")
    assert "code" in location_params(again)


# --- Try -------------------------------------------------------------------------------------

def test_try_route_scopes(client, api, setup):
    path = f"/api/v2/connections/{setup['corp']['id']}/try"
    assert api.call("GET", path, token=None).status_code == 401
    assert api.call("GET", path, token="not-a-jwt").status_code == 401
    narrow = token_with_scopes(client, "read:clients update:connections")
    denied = api.call("GET", path, token=narrow)
    assert denied.status_code == 403 and denied.data["errorCode"] == "insufficient_scope"
    reader = token_with_scopes(client, "read:connections")
    denied = api.call("GET", path, token=reader)  # it enables the try app: a write
    assert denied.status_code == 403 and denied.data["errorCode"] == "insufficient_scope"
    reader = token_with_scopes(client, "read:connections update:connections")
    allowed = api.call("GET", path, token=reader)
    assert allowed.status_code == 200, allowed.data
    assert set(allowed.data) == {"url"}
    assert allowed.data["url"].startswith(ISSUER + "login/try?ticket=")
    assert allowed.headers["Cache-Control"] == "no-store"
    missing = api.call("GET", "/api/v2/connections/con_0000000000000000/try", token=reader)
    assert missing.status_code == 404 and missing.data["errorCode"] == "inexistent_connection"


def _try(client, api, connection, callback_path=None) -> tuple[Browser, object]:
    url = api.call("GET", f"/api/v2/connections/{connection['id']}/try").data["url"]
    browser = Browser(client)
    start = browser.get(url[len(ISSUER) - 1:])
    assert start.status_code == 302, start.body
    assert "broker_try=" in str(start.headers.get("Set-Cookie"))
    assert "Path=/login/try" in str(start.headers.get("Set-Cookie"))
    authorize = browser.get(start.headers["Location"][len(ISSUER) - 1:])
    assert authorize.status_code == 302, authorize.body
    # The Try flow's upstream request names the connection's own callback URL, like any login.
    upstream = location_params(authorize)
    assert upstream["redirect_uri"] == ISSUER + "login/callback/" + connection["name"]
    method, params = idp_login(authorize.headers["Location"])
    callback = deliver_callback(browser, method, params, path=callback_path)
    assert callback.status_code == 303, callback.body
    finish = browser.get(callback.headers["Location"][len(ISSUER) - 1:])
    assert finish.status_code == 303, finish.body
    result_path = finish.headers["Location"][len(ISSUER) - 1:]
    assert result_path.startswith("/login/try/result?id=")
    return browser, result_path


def test_try_ends_on_it_works_with_profile_claims_and_checks(client, api, setup):
    browser, result_path = _try(client, api, setup["corp"])
    result = browser.get(result_path)
    assert result.status_code == 200
    body = result.body.decode()
    assert "It works!" in body
    assert "alice@example.com" in body                # the normalized profile
    assert f"oidc|{setup['corp']['name']}|alice" in body
    assert "&quot;iss&quot;: &quot;" + setup["idps"][0].issuer in body  # upstream claims
    assert "The signature verifies" in body and "✗" not in body and "The test failed" not in body
    assert "eyJ" not in body  # claims only, never a token
    assert "Content-Security-Policy" in result.headers
    assert "frame-ancestors 'none'" in result.headers["Content-Security-Policy"]
    # only the browser that started it may look
    assert client.http.get(result_path).status_code == 403
    stranger = Browser(client)
    stranger.cookies["broker_try"] = "x" * 43
    assert stranger.get(result_path).status_code == 403
    # the test login left no session and no usable token behind
    assert "broker_session" in browser.cookies
    again = browser.get(authorize_path(**_params(setup["web"], connection=setup["corp"]["name"],
                                                 prompt="none")))
    assert location_params(again)["error"] == "login_required"


def test_try_ticket_is_single_use(client, api, setup):
    url = api.call("GET", f"/api/v2/connections/{setup['corp']['id']}/try").data["url"]
    assert Browser(client).get(url[len(ISSUER) - 1:]).status_code == 302
    used = Browser(client).get(url[len(ISSUER) - 1:])
    assert used.status_code == 400 and "already used" in used.body.decode()


def test_try_failure_names_the_check_and_the_fix(client, api, setup):
    corp_idp, _ = setup["idps"]
    corp_idp.script(aud="someone-else")
    browser, result_path = _try(client, api, setup["corp"])
    body = browser.get(result_path).body.decode()
    assert "The test failed" in body
    assert "Failed check: aud (and azp) name the connection&#x27;s client_id" in body
    assert "client_id of the application registered at the IdP" in body
    assert "not run" in body


def test_try_answer_at_another_connections_callback_names_the_mixup_check(client, api, setup):
    """The Try flow follows the mix-up defence: an answer read at another connection's callback
    fails, and the fix names this connection's own callback URL to register."""
    browser, result_path = _try(client, api, setup["corp"],
                                callback_path="/login/callback/" + setup["partner"]["name"])
    body = browser.get(result_path).body.decode()
    assert "The test failed" in body
    assert "Failed check: The answer arrived at the connection&#x27;s own callback URL" in body
    assert "mix-up" in body
    assert f"Register {ISSUER}login/callback/{setup['corp']['name']} as the redirect URI" in body


def test_try_callback_from_another_browser_is_refused(client, api, setup):
    url = api.call("GET", f"/api/v2/connections/{setup['corp']['id']}/try").data["url"]
    start = Browser(client).get(url[len(ISSUER) - 1:])
    state = location_params(start)["state"]
    response = Browser(client).get("/login/try/callback?" + urlencode({"state": state,
                                                                       "code": "x"}))
    assert response.status_code == 400


def test_demo_is_off_unless_make_run_turns_it_on(client):
    assert client.http.get("/demo").status_code == 404
    assert client.http.get("/demo/callback?state=x&code=y").status_code == 404


# --- the admin console's files ---------------------------------------------------------------

CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
               "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")


def test_admin_console_is_served_with_a_strict_csp(client):
    page = client.http.get("/admin")
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == CONSOLE_CSP
    assert page.headers["X-Frame-Options"] == "DENY"
    body = page.body.decode()
    assert '<script src="admin/admin.js" defer></script>' in body
    assert "<script>" not in body and " style=" not in body and " on" + "click=" not in body
    script = client.http.get("/admin/admin.js")
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert "localStorage" not in script.body.decode() and "sessionStorage" not in script.body.decode()
    assert "innerHTML" not in script.body.decode()
    css = client.http.get("/admin/admin.css")
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    for bad in ("/admin/admin.html", "/admin/..%2Fapi%2Fconsole.py", "/admin/secret"):
        assert client.http.get(bad).status_code == 404


def test_try_flow_json_never_contains_a_secret(client, api, setup):
    """The ticket response has the URL only; the built-in application's secret is never shown."""
    data = api.call("GET", f"/api/v2/connections/{setup['corp']['id']}/try").data
    assert list(data) == ["url"]
    builtin = api.call("GET", "/api/v2/clients/broker-try-connection").data
    assert "client_secret" not in builtin and "client_secret_hash" not in json.dumps(builtin)
    assert builtin["callbacks"] == [ISSUER + "login/try/callback"]
