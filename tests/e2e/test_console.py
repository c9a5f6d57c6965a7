"""The admin console (/admin) end to end in headless Chromium, with its real CSP on: sign in with a
management client, create a connection against the local oidc-provider (green tick), refuse a bad
discovery URL (red cross and the reason), Try the connection up to "It works!", edit, enable,
delete, create an application (secret shown once), and pass axe-core."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.e2e.console_fixtures import (  # noqa: F401 - fixtures
    a11y_page_fixture,
    axe_script_fixture,
    check_accessibility,
)
from tests.e2e.harness import ARTIFACTS, Broker, Management
from tests.support.idp import IdpProcess

pytestmark = pytest.mark.e2e


def sign_in(page: Any, broker: Broker) -> None:
    from playwright.sync_api import expect

    response = page.goto(broker.url("admin"))
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    page.locator("#signin-client-id").fill(broker.admin_client_id)
    page.locator("#signin-client-secret").fill(broker.admin_client_secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Connections")).to_be_visible()
    expect(page.locator("#signed-in-as")).to_contain_text("create:connections")


def fill_connection(page: Any, name: str, discovery_url: str) -> None:
    page.get_by_role("button", name="New connection").click()
    page.locator("#c-name").fill(name)
    page.get_by_label("Display name").fill(name.replace("-", " ").title())
    page.get_by_label("Discovery URL").fill(discovery_url)
    page.get_by_label("Client ID at the identity provider").fill("broker-client")
    page.locator("#c-client-secret").fill("broker-secret")
    page.get_by_label("Channel").select_option("back_channel")
    page.get_by_label("Token endpoint authentication").select_option("client_secret_basic")
    page.get_by_label("Email domains (home realm discovery)").fill("console.example")
    page.get_by_label("Show as a button on the login page").check()


def test_console_manages_connections_and_try_works(page, broker: Broker, idp: IdpProcess,
                                                   management: Management):
    from playwright.sync_api import expect

    sign_in(page, broker)
    name = f"console-{secrets.token_hex(3)}"

    # A bad discovery URL: red cross with the reason from the 400 message; nothing created.
    fill_connection(page, name, idp.issuer + "/nope")
    page.get_by_role("button", name="Create connection").click()
    error = page.locator("#connection-status .error")
    expect(error).to_contain_text("✗")
    expect(error).to_contain_text("Discovery failed")
    expect(error).to_contain_text("returned HTTP 404")
    page.screenshot(path=str(ARTIFACTS / "console-discovery-failed.png"), full_page=True)
    assert management.call("GET", f"api/v2/connections?name={name}", expect=200) == []

    # The right one: green tick, and the connection is listed.
    page.get_by_label("Discovery URL").fill(idp.issuer)
    page.get_by_role("button", name="Create connection").click()
    ok = page.locator("#connection-status .ok")
    expect(ok).to_contain_text("✓")
    expect(ok).to_contain_text("Discovery check passed")
    expect(ok).to_contain_text(idp.issuer)
    row = page.locator(f'tr[data-connection="{name}"]')
    expect(row).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
    created = management.call("GET", f"api/v2/connections?name={name}", expect=200)[0]
    assert created["show_as_button"] is True
    assert created["options"]["domain_aliases"] == ["console.example"]
    assert "client_secret" not in created["options"]

    # Edit: the display name changes, the stored client secret is kept (the field stays empty).
    row.get_by_role("button", name="Edit").click()
    # The connection's own callback URL, read-only, to register at the IdP (with a Copy button).
    callback = page.get_by_label("Callback URL (redirect URI at the IdP)")
    expect(callback).to_have_value(broker.url("login/callback/" + name))
    expect(callback).to_have_attribute("readonly", "")
    expect(page.locator("#c-callback-help")).to_contain_text("Register this URL at the identity provider")
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.locator("#c-callback-status")).to_contain_text("C")  # copied, or selected to copy
    page.get_by_label("Display name").fill("Console Edited")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#connection-status .ok")).to_contain_text("Discovery check passed")
    expect(row).to_contain_text("Console Edited")
    edited = management.call("GET", f"api/v2/connections/{created['id']}", expect=200)
    assert edited["display_name"] == "Console Edited"

    # Try: a new tab through the IdP to "It works!" with the profile, once the connection's own
    # callback URL is registered at the IdP (as the console tells the administrator to).
    idp.register_redirect_uri(broker.url("login/callback/" + name))
    with page.context.expect_page() as opened:
        row.get_by_role("button", name="Try").click()
    tab = opened.value
    tab.wait_for_selector("#login")
    assert tab.url.startswith(idp.issuer + "/"), tab.url
    tab.fill("#login", "alice")
    tab.click("#submit")
    expect(tab.get_by_role("heading", name="It works!")).to_be_visible()
    expect(tab.get_by_text('"email": "alice@example.com"').first).to_be_visible()
    expect(tab.get_by_text(f'"user_id": "oidc|{name}|alice"')).to_be_visible()
    expect(tab.get_by_role("heading", name="Upstream ID token claims")).to_be_visible()
    expect(tab.get_by_role("cell", name="The signature verifies")).to_be_visible()
    assert "eyJ" not in tab.content()  # claims, never a token
    tab.screenshot(path=str(ARTIFACTS / "try-it-works.png"), full_page=True)
    result_url = tab.url
    assert result_url.startswith(broker.url("login/try/result?id="))
    tab.close()

    # The result is bound to this browser: another browser gets nothing.
    other = page.context.browser.new_context()
    try:
        stranger = other.new_page()
        response = stranger.goto(result_url)
        assert response.status == 403
        assert "It works!" not in stranger.content()
    finally:
        other.close()

    # Nothing of the credentials or the token is kept in web storage.
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0

    # Delete: two steps.
    row.get_by_role("button", name=f"Delete {'Console Edited'}").click()
    row.get_by_role("button", name="Confirm: delete Console Edited").click()
    expect(page.locator("#connections-status .ok")).to_contain_text(f"Deleted connection {name}")
    expect(row).to_have_count(0)
    assert management.call("GET", f"api/v2/connections?name={name}", expect=200) == []


def test_console_creates_an_application_and_enables_it(page, broker: Broker, idp: IdpProcess,
                                                       management: Management):
    from playwright.sync_api import expect

    sign_in(page, broker)
    app_name = f"Console app {secrets.token_hex(3)}"
    page.get_by_role("button", name="New application").click()
    page.locator("#a-name").fill(app_name)
    page.locator("#a-type").select_option("regular_web")
    page.get_by_label("Callback URLs").fill("http://127.0.0.1:9/callback")
    page.get_by_role("button", name="Create application").click()
    secret_box = page.locator("#secret-once")
    expect(secret_box).to_be_visible()
    secret = page.locator("#secret-once-value").inner_text()
    client_id = page.locator("#secret-once-client-id").inner_text()
    assert len(secret) >= 32
    expect(page.get_by_role("cell", name=app_name)).to_be_visible()
    page.get_by_role("button", name="I have copied it").click()
    expect(secret_box).to_be_hidden()
    assert secret not in page.content()  # shown once

    # Enable it on a connection made through the API.
    connection = management.call("POST", "api/v2/connections", {
        "name": f"enable-{secrets.token_hex(3)}", "strategy": "oidc",
        "options": {"type": "front_channel", "discovery_url": idp.issuer, "client_id": "broker-client"}},
        expect=201)
    try:
        page.reload()
        sign_in(page, broker)
        row = page.locator(f'tr[data-connection="{connection["name"]}"]')
        row.get_by_role("button", name="Applications").click()
        page.get_by_label(f"{app_name} ({client_id})").check()
        page.locator("#enable-form").get_by_role("button", name="Save").click()
        expect(page.locator("#enable-status .ok")).to_contain_text("Saved")
        expect(row.locator("td").nth(5)).to_have_text("1")
        enabled = management.call("GET", f"api/v2/connections/{connection['id']}/clients", expect=200)
        assert {"client_id": client_id} in enabled["clients"]
    finally:
        management.call("DELETE", f"api/v2/connections/{connection['id']}")
        management.call("DELETE", f"api/v2/clients/{client_id}")


def test_console_lists_beyond_the_first_page(page, broker: Broker, idp: IdpProcess, management: Management):
    """The list routes answer 50 items by default: a tenant with more applications than one page of 100
    still sees every one, in the table and in the enable form (regression: the console asked once)."""
    from playwright.sync_api import expect

    existing = management.call("GET", "api/v2/clients?include_totals=true&per_page=1", expect=200)["total"]
    created: list[str] = []
    connection = management.call("POST", "api/v2/connections", {
        "name": f"paging-{secrets.token_hex(3)}", "strategy": "oidc",
        "options": {"type": "front_channel", "discovery_url": idp.issuer, "client_id": "broker-client"}},
        expect=201)
    try:
        for number in range(max(0, 101 - existing) + 1):  # bounded: at most 102 applications
            created.append(management.call("POST", "api/v2/clients", {
                "name": f"Paging app {number}", "app_type": "regular_web",
                "callbacks": ["http://127.0.0.1:9/callback"]}, expect=201)["client_id"])
        clients = management.call("GET", "api/v2/clients?include_totals=true&per_page=1", expect=200)
        assert clients["total"] > 100
        last = max(created)  # ids sort ascending: the largest of ours is not on the first page of 100
        first_page = management.call("GET", "api/v2/clients?take=100", expect=200)["clients"]
        assert last not in {c["client_id"] for c in first_page}

        sign_in(page, broker)
        expect(page.get_by_role("cell", name=last, exact=True)).to_be_visible()
        row = page.locator(f'tr[data-connection="{connection["name"]}"]')
        row.get_by_role("button", name="Applications").click()
        expect(page.locator(f'#enable-list input[value="{last}"]')).to_have_count(1)
    finally:
        management.call("DELETE", f"api/v2/connections/{connection['id']}")
        for client_id in created:
            management.call("DELETE", f"api/v2/clients/{client_id}")


def test_console_signin_failure_is_reported(page, broker: Broker):
    from playwright.sync_api import expect

    page.goto(broker.url("admin"))
    page.locator("#signin-client-id").fill(broker.admin_client_id)
    page.locator("#signin-client-secret").fill("wrong-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-status .error")).to_be_visible()
    expect(page.get_by_role("heading", name="Connections")).to_be_hidden()


def test_console_and_it_works_page_are_accessible(a11y_page, axe_script, broker: Broker, idp: IdpProcess,
                                                  management: Management):
    from playwright.sync_api import expect

    page = a11y_page
    page.goto(broker.url("admin"))
    assert check_accessibility(page, axe_script, "console-signin") == []
    sign_in(page, broker)
    page.get_by_role("button", name="New connection").click()
    page.get_by_role("button", name="New application").click()
    expect(page.get_by_label("Discovery URL")).to_be_visible()
    assert check_accessibility(page, axe_script, "console") == []

    connection = management.call("POST", "api/v2/connections", {
        "name": f"a11y-{secrets.token_hex(3)}", "strategy": "oidc",
        "options": {"type": "front_channel", "discovery_url": idp.issuer, "client_id": "broker-client"}},
        expect=201)
    idp.register_redirect_uri(broker.url("login/callback/" + connection["name"]))
    try:
        url = management.call("GET", f"api/v2/connections/{connection['id']}/try", expect=200)["url"]
        page.goto(url)
        page.fill("#login", "alice")
        page.click("#submit")
        expect(page.get_by_role("heading", name="It works!")).to_be_visible()
        assert check_accessibility(page, axe_script, "it-works") == []
    finally:
        management.call("DELETE", f"api/v2/connections/{connection['id']}")
