"""The admin console's Users view (SPEC §9) in headless Chromium with its real CSP on: alice signs in
through two connections (twice through the first: two sessions); the view finds each user with the
users API's q subset, refuses an unsupported query with the API's reason, shows a user's sessions and
revokes one then all, blocks and unblocks (checked through the Management API), shows the user's
recent log events and links to them in the Activity view, and deletes a user only after a second
click; axe-core finds nothing, in English and in French. One signed-in browser context for the
module (and one more in French)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.console_fixtures import (  # noqa: F401 - fixtures
    ConsoleSession,
    axe_script_fixture,
    log_event,
    seed_events,
)
from tests.e2e.harness import Broker, Management, RelyingParty, pkce_pair
from tests.e2e.test_login_page import authorize_url, sign_in_at_idp
from tests.support.idp import IdpProcess

pytestmark = pytest.mark.e2e

SEEDED = "Seeded for the Users view"


def login_as_alice(chromium: Any, broker: Broker, idp: IdpProcess, rp_app: RelyingParty, client: dict,
                   connection: str) -> None:
    """alice through ``connection`` in a browser of her own: one more broker session."""
    context = chromium.new_context()
    try:
        page = context.new_page()
        state = secrets.token_urlsafe(8)
        _, challenge = pkce_pair()
        page.goto(authorize_url(broker, client, rp_app, state, challenge, connection=connection))
        sign_in_at_idp(page, idp, "alice")
        page.wait_for_url(re.compile("^" + re.escape(rp_app.callback_url) + r"\?"))
        params, _ = rp_app.callback_for(state)
        assert "code" in params, params
    finally:
        context.close()


@pytest.fixture(scope="module")
def people(chromium: Any, broker: Broker, idp: IdpProcess, rp_app: RelyingParty,
           management: Management) -> dict[str, str]:
    suffix = secrets.token_hex(3)
    client = management.call("POST", "api/v2/clients", {
        "name": f"Users view app {suffix}", "app_type": "regular_web",
        "callbacks": [rp_app.callback_url]}, expect=201)
    names = {}
    for key in ("a", "b"):
        name = f"users-{key}-{suffix}"
        idp.register_redirect_uri(broker.url("login/callback/" + name))
        management.call("POST", "api/v2/connections", {
            "name": name, "strategy": "oidc", "enabled_clients": [client["client_id"]],
            "options": {"type": "back_channel", "discovery_url": idp.issuer, "client_id": "broker-client",
                        "client_secret": "broker-secret",
                        "token_endpoint_auth_method": "client_secret_basic"}}, expect=201)
        names[key] = name
    for connection in (names["a"], names["a"], names["b"]):
        login_as_alice(chromium, broker, idp, rp_app, client, connection)
    user_a, user_b = f"oidc|{names['a']}|alice", f"oidc|{names['b']}|alice"
    seed_events(broker, [log_event("s", int(time.time() * 1000), connection=names["a"],
                                   user_id=user_a, description=SEEDED)])
    return {"a": names["a"], "b": names["b"], "user_a": user_a, "user_b": user_b}


@pytest.fixture(scope="module")
def console(chromium: Any, broker: Broker, axe_script: Path, people: dict) -> Iterator[ConsoleSession]:
    with ConsoleSession.on_view("users", chromium, broker, axe_script) as session:
        yield session


def user_rows(console: ConsoleSession) -> Any:
    return console.page.locator("#users-table tbody tr[data-user-id]")


def search(console: ConsoleSession, text: str, blocked_only: bool = False) -> Any:
    """Search and wait for the API's answer; returns it."""
    page = console.page
    page.get_by_label("Search users").fill(text)
    page.get_by_label("Blocked users only").set_checked(blocked_only)
    with page.expect_response(re.compile(r"/api/v2/users\?")) as answer:
        page.get_by_role("button", name="Search", exact=True).click()
    return answer.value


def open_user(console: ConsoleSession, user_id: str) -> None:
    from playwright.sync_api import expect

    page = console.page
    row = page.locator(f'#users-table tbody tr[data-user-id="{user_id}"]')
    with page.expect_response(re.compile(r"/api/v2/users/[^/]+/sessions$")):
        row.get_by_role("button", name=re.compile("^Open ")).click()
    expect(page.locator("#user-detail")).to_be_visible()
    expect(page.locator('#user-detail dd[data-field="user_id"]')).to_have_text(user_id)


def test_users_are_found_with_the_query_subset(console: ConsoleSession, people: dict):
    from playwright.sync_api import expect

    page = console.page
    assert search(console, f"identities.connection:{people['a']}").status == 200
    expect(user_rows(console)).to_have_count(1)
    row = user_rows(console).first
    expect(row).to_have_attribute("data-user-id", people["user_a"])
    expect(row).to_contain_text("Alice Liddell")
    expect(row.locator("td").nth(2)).to_have_text(people["a"])
    expect(row.locator("td").nth(4)).to_have_text("2")  # two logins
    expect(row.locator('td[data-status="active"]')).to_have_text("Active")
    expect(page.locator("#users-range")).to_have_text("Users 1–1 of 1")

    search(console, f'email:"alice@example.com" AND identities.connection:{people["b"]}')
    expect(user_rows(console)).to_have_count(1)
    expect(user_rows(console).first).to_have_attribute("data-user-id", people["user_b"])

    # Text without a field name is an email address.
    answer = search(console, "alice@example.com")
    assert "q=email%3A%22alice%40example.com%22" in answer.url
    expect(user_rows(console).first).to_be_visible()
    for n in range(user_rows(console).count()):
        expect(user_rows(console).nth(n)).to_contain_text("alice@example.com")
    console.screenshot("console-users")

    # Not blocked: the blocked-only search finds nobody.
    search(console, f"identities.connection:{people['a']}", blocked_only=True)
    expect(page.locator("#users-table tbody")).to_have_text("No user matches.")

    # What the users API does not support: its own reason, nothing listed.
    assert search(console, "nickname:alice").status == 400
    expect(page.locator("#users-status .error")).to_contain_text("Could not search the users")
    expect(page.locator("#users-status .error")).to_contain_text("nickname")
    expect(user_rows(console)).to_have_count(0)


def test_sessions_revoke_block_unblock_activity_and_delete(console: ConsoleSession, people: dict,
                                                           management: Management):
    from playwright.sync_api import expect

    page = console.page
    user_a = people["user_a"]
    api_path = "api/v2/users/" + user_a.replace("|", "%7C")
    search(console, f"identities.connection:{people['a']}")
    open_user(console, user_a)
    expect(page.locator("#user-detail-title")).to_have_text("Alice Liddell")
    expect(page.locator('#user-detail dd[data-field="email"]')).to_have_text("alice@example.com")

    # Two sessions, as the API has them.
    sessions = page.locator("#sessions-table tbody tr[data-session-id]")
    expect(sessions).to_have_count(2)
    listed = management.call("GET", api_path + "/sessions", expect=200)["sessions"]
    assert sorted(s["id"] for s in listed) == sorted(
        sessions.nth(n).get_attribute("data-session-id") for n in range(2))
    # The user's recent events, the seeded one among them.
    expect(page.locator("#user-logs-table tbody")).to_contain_text(SEEDED)
    console.screenshot("console-user-detail")
    assert console.axe("console-users") == []

    # Revoke one.
    revoked = sessions.first.get_attribute("data-session-id")
    sessions.first.get_by_role("button", name=f"Revoke session {revoked}").click()
    expect(page.locator("#sessions-status .ok")).to_contain_text(f"Revoked session {revoked}.")
    expect(sessions).to_have_count(1)
    left = management.call("GET", api_path + "/sessions", expect=200)["sessions"]
    assert [s["id"] for s in left] == [sessions.first.get_attribute("data-session-id")]
    assert revoked not in {s["id"] for s in left}

    # Revoke all.
    page.get_by_role("button", name="Revoke all sessions").click()
    expect(page.locator("#sessions-status .ok")).to_contain_text("Revoked every session of Alice Liddell.")
    expect(page.locator("#sessions-table tbody")).to_have_text("No live session.")
    assert management.call("GET", api_path + "/sessions", expect=200)["sessions"] == []

    # Block, then unblock: the API's user follows.
    page.get_by_role("button", name="Block user").click()
    expect(page.locator("#user-status .ok")).to_contain_text("Blocked Alice Liddell")
    expect(page.locator('#user-detail dd[data-field="status"]')).to_have_text("Blocked")
    assert management.call("GET", api_path, expect=200)["blocked"] is True
    expect(page.locator(f'#users-table tr[data-user-id="{user_a}"] td[data-status="blocked"]')).to_have_text(
        "Blocked")
    page.get_by_role("button", name="Unblock user").click()
    expect(page.locator("#user-status .ok")).to_contain_text("Unblocked Alice Liddell.")
    expect(page.get_by_role("button", name="Block user")).to_be_visible()
    assert management.call("GET", api_path, expect=200)["blocked"] is False

    # The user's events in the Activity view, filtered by the user id.
    with page.expect_response(re.compile(r"/api/v2/logs\?.*per_page=50")) as answer:
        page.get_by_role("button", name="All events of this user").click()
    assert "user_id%3A%22" in answer.value.url
    expect(page.locator("#view-activity")).to_be_visible()
    expect(page.get_by_label("User ID")).to_have_value(user_a)
    expect(page.locator("#events-table tbody")).to_contain_text(SEEDED)
    console.view("users")

    # Delete B: the first click only asks for confirmation.
    user_b = people["user_b"]
    search(console, f"identities.connection:{people['b']}")
    open_user(console, user_b)
    page.get_by_role("button", name="Delete user").click()
    confirm = page.get_by_role("button", name="Confirm: delete user Alice Liddell")
    expect(confirm).to_be_visible()
    management.call("GET", "api/v2/users/" + user_b.replace("|", "%7C"), expect=200)
    with page.expect_response(lambda r: r.request.method == "DELETE") as answer:
        confirm.click()
    assert answer.value.status == 204
    expect(page.locator("#users-status .ok")).to_contain_text("Deleted user Alice Liddell.")
    expect(page.locator("#user-detail")).to_be_hidden()
    expect(page.locator(f'#users-table tr[data-user-id="{user_b}"]')).to_have_count(0)
    management.call("GET", "api/v2/users/" + user_b.replace("|", "%7C"), expect=404)


def test_users_view_in_french_is_accessible(chromium: Any, broker: Broker, axe_script: Path, people: dict):
    from playwright.sync_api import expect

    session = ConsoleSession(chromium, broker, axe_script, locale="fr-FR", timezone="Europe/Paris")
    try:
        session.sign_in()
        page = session.page
        session.view("users")
        expect(page.get_by_role("heading", name="Utilisateurs", exact=True)).to_be_visible()
        page.get_by_label("Rechercher des utilisateurs").fill(f"identities.connection:{people['a']}")
        page.get_by_role("button", name="Rechercher", exact=True).click()
        expect(user_rows(session)).to_have_count(1)
        expect(user_rows(session).first.locator('td[data-status="active"]')).to_have_text("Actif")
        user_rows(session).first.get_by_role("button", name="Ouvrir Alice Liddell").click()
        expect(page.get_by_role("button", name="Bloquer l'utilisateur")).to_be_visible()
        expect(page.get_by_role("heading", name="Activité récente")).to_be_visible()
        expect(page.get_by_role("button", name="Révoquer toutes les sessions")).to_be_visible()
        session.screenshot("console-users-fr")
        assert session.axe("console-users-fr") == []
        assert session.csp_violations == []
        # Signing out leaves nothing read with the token on the page.
        page.get_by_role("button", name="Se déconnecter").click()
        expect(page.locator("#console")).to_be_hidden()
        shown = "#users-table tbody tr, #sessions-table tbody tr, #user-detail-fields dd"
        assert page.locator(shown).count() == 0
        assert "alice@example.com" not in page.content()
    finally:
        session.close()
