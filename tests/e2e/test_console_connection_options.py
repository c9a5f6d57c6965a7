"""The admin console's connection options of the token vault and of back-channel logout from the IdP
(SPEC §10, §11) in headless Chromium with its real CSP on. An OIDC connection shows its back-channel
logout URL read-only, equal to the Management API's ``options.backchannel_logout_url``, with a Copy
button and the hint to register it at the IdP; the vault's settings (on or off, retention days, the
applications allowed to exchange tokens) are read from the stored connection and saved through
PATCH /api/v2/connections/{id}, which never carries the read-only URLs back; what the API refuses (an
application deleted meanwhile) shows the API's reason and changes nothing, and a retention out of
1..365 is never sent; French words; axe-core finds nothing. One signed-in browser context for the
module (and one more in French)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.console_fixtures import ConsoleSession, axe_script_fixture  # noqa: F401 - fixtures
from tests.e2e.harness import Broker, Management
from tests.support.idp import IdpProcess

pytestmark = pytest.mark.e2e

VAULT = "Keep the upstream tokens in the vault"
RETENTION = "Vault retention (days)"
LOGOUT_URL = "Logout URL (where the IdP sends its logout tokens)"


@pytest.fixture(scope="module")
def vault_setup(idp: IdpProcess, management: Management) -> Iterator[dict[str, Any]]:
    """An OIDC connection (vault off) and two applications: one to allow, one deleted mid-test."""
    suffix = secrets.token_hex(3)
    apps = {key: management.call("POST", "api/v2/clients", {
        "name": f"Exchange {key} {suffix}", "app_type": "regular_web",
        "callbacks": ["http://127.0.0.1:9/callback"]}, expect=201) for key in ("allowed", "gone")}
    connection = management.call("POST", "api/v2/connections", {
        "name": f"vault-{suffix}", "strategy": "oidc",
        "options": {"type": "back_channel", "discovery_url": idp.issuer, "client_id": "broker-client",
                    "client_secret": "broker-secret",
                    "token_endpoint_auth_method": "client_secret_basic"}}, expect=201)
    try:
        yield {"connection": connection, **apps}
    finally:
        management.call("DELETE", f"api/v2/connections/{connection['id']}")
        for app in apps.values():
            management.call("DELETE", f"api/v2/clients/{app['client_id']}")  # "gone" is already


@pytest.fixture(scope="module")
def console(chromium: Any, broker: Broker, axe_script: Path, vault_setup: dict) -> Iterator[ConsoleSession]:
    session = ConsoleSession(chromium, broker, axe_script)
    session.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                      origin=broker.url("").rstrip("/"))
    try:
        session.sign_in()
        yield session
        assert session.csp_violations == []
    finally:
        session.close()


def stored(management: Management, connection: dict) -> dict:
    return management.call("GET", f"api/v2/connections/{connection['id']}", expect=200)


def open_edit(page: Any, connection: dict) -> None:
    from playwright.sync_api import expect

    page.locator(f'tr[data-connection="{connection["name"]}"]').get_by_role("button", name="Edit").click()
    expect(page.locator("#connection-form")).to_be_visible()
    expect(page.locator("#c-name")).to_have_value(connection["name"])


def save(page: Any, connection: dict) -> dict:
    """Click Save changes; returns the PATCH body the console sent (after the API answered)."""
    path = f"/api/v2/connections/{connection['id']}"
    with page.expect_response(lambda r: r.request.method == "PATCH" and r.url.endswith(path)) as answer:
        page.get_by_role("button", name="Save changes").click()
    return answer.value.request.post_data_json


def exchange_box(page: Any, app: dict) -> Any:
    return page.locator("#c-exchange-list").get_by_label(f"{app['name']} ({app['client_id']})")


def test_logout_url_is_shown_and_the_vault_is_saved(console: ConsoleSession, broker: Broker,
                                                    vault_setup: dict, management: Management):
    from playwright.sync_api import expect

    page = console.page
    connection, allowed = vault_setup["connection"], vault_setup["allowed"]
    before = stored(management, connection)
    url = before["options"]["backchannel_logout_url"]
    assert url == broker.url(f"login/backchannel-logout/{connection['name']}")
    assert "token_storage" not in before["options"]

    open_edit(page, connection)
    # The back-channel logout URL: the API's, read-only, with its hint and its own Copy button.
    field = page.get_by_label(LOGOUT_URL)
    expect(field).to_have_value(url)
    expect(field).to_have_attribute("readonly", "")
    expect(page.locator("#c-logout-help")).to_contain_text(
        "Register this URL as the back-channel logout URI at your identity provider")
    page.get_by_role("button", name="Copy the logout URL").click()
    expect(page.locator("#c-logout-status .ok")).to_contain_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == url
    # The callback URL keeps its own box and Copy button.
    expect(page.locator("#c-callback-url")).to_have_value(broker.url(f"login/callback/{connection['name']}"))

    # The vault as stored: off, default retention, no application.
    expect(page.get_by_label(VAULT)).not_to_be_checked()
    expect(page.get_by_label(RETENTION)).to_have_value("")
    expect(exchange_box(page, allowed)).not_to_be_checked()
    assert console.axe("console-connection-options") == []

    # On, 45 days, one application allowed.
    page.get_by_label(VAULT).check()
    page.get_by_label(RETENTION).fill("45")
    exchange_box(page, allowed).check()
    console.screenshot("console-connection-vault")
    sent = save(page, connection)
    expect(page.locator("#connection-status .ok")).to_contain_text("Discovery check passed")
    # The read-only URLs are never sent back.
    assert "backchannel_logout_url" not in sent["options"] and "callback_url" not in sent["options"]
    assert "client_secret" not in sent["options"]
    after = stored(management, connection)
    assert after["options"]["token_storage"] == "vault"
    assert after["options"]["token_retention_days"] == 45
    assert after["options"]["token_exchange_clients"] == [allowed["client_id"]]
    assert after["options"]["backchannel_logout_url"] == url
    assert {k: after["options"].get(k) for k in ("client_id", "type", "token_endpoint_auth_method")} == {
        "client_id": "broker-client", "type": "back_channel",
        "token_endpoint_auth_method": "client_secret_basic"}

    # Opened again (from the list the console re-read), the form shows what is stored.
    page.get_by_role("button", name="Cancel").click()
    open_edit(page, connection)
    expect(page.get_by_label(VAULT)).to_be_checked()
    expect(page.get_by_label(RETENTION)).to_have_value("45")
    expect(exchange_box(page, allowed)).to_be_checked()

    # Off again: PATCH replaces options as a whole, so the three settings are gone.
    page.get_by_label(VAULT).uncheck()
    page.get_by_label(RETENTION).fill("")
    exchange_box(page, allowed).uncheck()
    save(page, connection)
    expect(page.locator("#connection-status .ok")).to_contain_text("Discovery check passed")
    options = stored(management, connection)["options"]
    assert not {"token_storage", "token_retention_days", "token_exchange_clients"} & set(options)


def test_what_the_api_refuses_is_shown_and_changes_nothing(console: ConsoleSession, vault_setup: dict,
                                                           management: Management):
    from playwright.sync_api import expect

    page = console.page
    connection, gone = vault_setup["connection"], vault_setup["gone"]
    before = stored(management, connection)
    open_edit(page, connection)
    page.get_by_label(VAULT).check()

    # A retention out of 1..365 is refused in the page: nothing is sent.
    patches: list[str] = []
    page.on("request", lambda r: patches.append(r.url) if r.method == "PATCH" else None)
    for bad in ("0", "366"):
        page.get_by_label(RETENTION).fill(bad)
        page.get_by_role("button", name="Save changes").click()
        expect(page.locator("#c-token-retention:invalid")).to_have_count(1)
        expect(page.locator("#connection-status")).to_have_text("")  # the save never started
    assert patches == []

    # An application deleted since the console listed it: the API's 400 and its reason.
    page.get_by_label(RETENTION).fill("10")
    management.call("DELETE", f"api/v2/clients/{gone['client_id']}", expect=204)
    exchange_box(page, gone).check()
    save(page, connection)
    error = page.locator("#connection-status .error")
    expect(error).to_contain_text("✗")
    expect(error).to_contain_text(f"client {gone['client_id']} does not exist")
    expect(error).to_contain_text("options.token_exchange_clients")
    assert stored(management, connection) == before
    page.get_by_role("button", name="Cancel").click()


def test_french_words(chromium: Any, broker: Broker, axe_script: Path, vault_setup: dict,
                      management: Management):
    from playwright.sync_api import expect

    connection = vault_setup["connection"]
    url = stored(management, connection)["options"]["backchannel_logout_url"]
    session = ConsoleSession(chromium, broker, axe_script, locale="fr-FR")
    try:
        session.sign_in()
        page = session.page
        page.locator(f'tr[data-connection="{connection["name"]}"]').get_by_role(
            "button", name=re.compile("^Modifier")).click()
        expect(page.get_by_label("URL de déconnexion (où le fournisseur envoie ses jetons de déconnexion)")
               ).to_have_value(url)
        expect(page.locator("#c-logout-help")).to_contain_text(
            "Enregistrez cette URL chez votre fournisseur d'identité comme URI de déconnexion")
        expect(page.get_by_role("button", name="Copier l'URL de déconnexion")).to_be_visible()
        expect(page.locator("#c-vault legend").first).to_have_text("Coffre à jetons et échange de jetons")
        expect(page.get_by_label("Conserver les jetons du fournisseur dans le coffre")).to_be_visible()
        expect(page.get_by_label("Durée de conservation dans le coffre (jours)")).to_be_visible()
        expect(page.get_by_text("Applications autorisées à échanger des jetons")).to_be_visible()
        assert session.axe("console-connection-options-fr") == []
        assert session.csp_violations == []
    finally:
        session.close()
