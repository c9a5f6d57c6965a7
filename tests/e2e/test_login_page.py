"""SPEC §3.5 end to end: headless Chromium on the broker's login page, with two real upstream IdPs.

Home realm discovery sends an email to the right IdP, a "Continue with …" button logs in, an unknown
domain shows a message, French follows the browser, the page passes axe-core, and the `make run`
demo URL logs in end to end to its "It works!" page."""

from __future__ import annotations

import base64
import json
import re
import secrets
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.console_fixtures import (  # noqa: F401 - fixtures
    HrdSetup,
    a11y_page_fixture,
    axe_script_fixture,
    check_accessibility,
    demo_url,
    hrd_setup_fixture,
    partner_idp_fixture,
)
from tests.e2e.harness import ARTIFACTS, HTTP_TIMEOUT, Broker, RelyingParty, http_session, pkce_pair
from tests.support.idp import IdpProcess

pytestmark = pytest.mark.e2e


def authorize_url(broker: Broker, client: dict, rp_app: RelyingParty, state: str, challenge: str,
                  **extra: str) -> str:
    return broker.url("authorize") + "?" + urlencode({
        "client_id": client["client_id"], "redirect_uri": rp_app.callback_url, "response_type": "code",
        "scope": "openid profile email", "state": state, "nonce": secrets.token_urlsafe(12),
        "code_challenge": challenge, "code_challenge_method": "S256", **extra})


def sign_in_at_idp(page: Any, idp: IdpProcess, account: str) -> None:
    page.wait_for_selector("#login")
    assert page.url.startswith(idp.issuer + "/"), page.url
    page.fill("#login", account)
    page.click("#submit")


def redeem(broker: Broker, client: dict, rp_app: RelyingParty, code: str, verifier: str) -> dict:
    """The application's side: the code for tokens; returns the broker ID token's claims."""
    response = http_session().post(broker.url("oauth/token"), timeout=HTTP_TIMEOUT, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": rp_app.callback_url,
        "code_verifier": verifier, "client_id": client["client_id"],
        "client_secret": client["client_secret"]})
    assert response.status_code == 200, response.text
    payload = response.json()["id_token"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_identifier_first_routes_the_email_to_the_right_idp(page, broker: Broker, partner_idp: IdpProcess,
                                                            rp_app: RelyingParty, hrd_setup: HrdSetup):
    from playwright.sync_api import expect

    state = secrets.token_urlsafe(12)
    verifier, challenge = pkce_pair()
    page.goto(authorize_url(broker, hrd_setup.client, rp_app, state, challenge))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("link", name="Continue with Example Corp")).to_be_visible()
    expect(page.get_by_role("link", name="Continue with Partner Inc")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "login-page.png"), full_page=True)

    # Keyboard only: the email field has the focus order first; Enter submits the form.
    page.keyboard.press("Tab")
    expect(page.get_by_label("Email address")).to_be_focused()
    page.keyboard.type("bob@partner.example")
    page.keyboard.press("Enter")
    sign_in_at_idp(page, partner_idp, "bob")
    page.wait_for_url(re.compile("^" + re.escape(rp_app.callback_url) + r"\?"))
    expect(page.get_by_text("Signed in")).to_be_visible()
    params, _ = rp_app.callback_for(state)
    claims = redeem(broker, hrd_setup.client, rp_app, params["code"], verifier)
    assert claims["sub"] == f"oidc|{hrd_setup.partner['name']}|bob"
    assert claims["email"] == "bob@partner.example"


def test_button_login_works(page, broker: Broker, idp: IdpProcess, rp_app: RelyingParty,
                            hrd_setup: HrdSetup):
    from playwright.sync_api import expect

    state = secrets.token_urlsafe(12)
    verifier, challenge = pkce_pair()
    page.goto(authorize_url(broker, hrd_setup.client, rp_app, state, challenge))
    page.get_by_role("link", name="Continue with Example Corp").click()
    sign_in_at_idp(page, idp, "alice")
    page.wait_for_url(re.compile("^" + re.escape(rp_app.callback_url) + r"\?"))
    expect(page.get_by_text("Signed in")).to_be_visible()
    params, _ = rp_app.callback_for(state)
    assert params["iss"] == broker.issuer
    claims = redeem(broker, hrd_setup.client, rp_app, params["code"], verifier)
    assert claims["sub"] == f"oidc|{hrd_setup.corp['name']}|alice"


def test_unknown_domain_shows_a_message_on_the_page(page, broker: Broker, rp_app: RelyingParty,
                                                    hrd_setup: HrdSetup):
    from playwright.sync_api import expect

    state = secrets.token_urlsafe(12)
    _, challenge = pkce_pair()
    page.goto(authorize_url(broker, hrd_setup.client, rp_app, state, challenge))
    page.get_by_label("Email address").fill("carol@nowhere.example")
    page.get_by_role("button", name="Continue").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("No sign-in method is set up for the domain nowhere.example")
    assert page.url.startswith(broker.url("authorize") + "?")
    expect(page.get_by_label("Email address")).to_have_value("carol@nowhere.example")
    expect(page.get_by_role("link", name="Continue with Partner Inc")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "login-page-unknown-domain.png"), full_page=True)
    assert not rp_app.callbacks or all(c.get("state") != state for c in rp_app.callbacks)


def test_french_follows_the_browser_language(chromium, broker: Broker, rp_app: RelyingParty,
                                             hrd_setup: HrdSetup):
    from playwright.sync_api import expect

    context = chromium.new_context(locale="fr-FR")
    try:
        page = context.new_page()
        _, challenge = pkce_pair()
        page.goto(authorize_url(broker, hrd_setup.client, rp_app, "fr", challenge))
        expect(page.get_by_role("heading", name="Connexion")).to_be_visible()
        expect(page.get_by_role("link", name="Continuer avec Example Corp")).to_be_visible()
        assert page.evaluate("document.documentElement.lang") == "fr"
        page.screenshot(path=str(ARTIFACTS / "login-page-fr.png"), full_page=True)
        # ui_locales beats the browser
        page.goto(authorize_url(broker, hrd_setup.client, rp_app, "en", challenge, ui_locales="en"))
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    finally:
        context.close()


def test_login_page_csp_blocks_injected_scripts(page, broker: Broker, rp_app: RelyingParty,
                                                hrd_setup: HrdSetup):
    _, challenge = pkce_pair()
    response = page.goto(authorize_url(broker, hrd_setup.client, rp_app, "csp", challenge))
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp and "default-src 'none'" in csp
    with pytest.raises(Exception):  # noqa: B017 - Playwright raises its own Error type
        page.add_script_tag(content="window.injected = true")
    assert page.evaluate("window.injected === undefined")


def test_login_page_is_accessible(a11y_page, axe_script, broker: Broker, rp_app: RelyingParty,
                                  hrd_setup: HrdSetup):
    _, challenge = pkce_pair()
    a11y_page.goto(authorize_url(broker, hrd_setup.client, rp_app, "a11y", challenge))
    assert check_accessibility(a11y_page, axe_script, "login-page") == []
    # with the "unknown domain" message as well
    a11y_page.goto(authorize_url(broker, hrd_setup.client, rp_app, "a11y", challenge,
                                 login_hint="x@nowhere.example"))
    assert check_accessibility(a11y_page, axe_script, "login-page-message") == []
    a11y_page.goto(authorize_url(broker, hrd_setup.client, rp_app, "a11y", challenge, ui_locales="fr"))
    assert check_accessibility(a11y_page, axe_script, "login-page-fr") == []


def test_logout_confirmation_page_is_accessible(a11y_page, axe_script, broker: Broker, idp: IdpProcess,
                                                rp_app: RelyingParty, hrd_setup: HrdSetup):
    """The "Do you want to sign out?" page (/oidc/logout without id_token_hint), in both languages."""
    from playwright.sync_api import expect

    _, challenge = pkce_pair()
    a11y_page.goto(authorize_url(broker, hrd_setup.client, rp_app, "a11y-logout", challenge,
                                 connection=hrd_setup.corp["name"]))
    sign_in_at_idp(a11y_page, idp, "alice")
    a11y_page.wait_for_url(re.compile("^" + re.escape(rp_app.callback_url) + r"\?"))
    a11y_page.goto(broker.url("oidc/logout") + "?" + urlencode({"client_id": hrd_setup.client["client_id"]}))
    expect(a11y_page.get_by_role("heading", name="Do you want to sign out?")).to_be_visible()
    assert check_accessibility(a11y_page, axe_script, "logout-confirm") == []
    a11y_page.goto(broker.url("oidc/logout") + "?ui_locales=fr")
    expect(a11y_page.get_by_role("heading", name="Voulez-vous vous déconnecter ?")).to_be_visible()
    assert check_accessibility(a11y_page, axe_script, "logout-confirm-fr") == []


def test_make_run_demo_url_logs_in_end_to_end(page, broker: Broker):
    """scripts/run_local.py started the demo IdP and printed one URL: it works for a newcomer."""
    from playwright.sync_api import expect

    url = demo_url(broker)
    assert url == broker.url("demo"), broker.output()[-3000:]
    page.goto(url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email address").fill("alice@example.com")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_selector("#login")
    page.fill("#login", "alice")
    page.click("#submit")
    expect(page.get_by_role("heading", name="It works!")).to_be_visible()
    expect(page.get_by_text('"email": "alice@example.com"').first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "demo-it-works.png"), full_page=True)
