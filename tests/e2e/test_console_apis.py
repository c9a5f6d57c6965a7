"""The admin console lists APIs (resource servers) in headless Chromium, with its real CSP on: an
API created through the Management API shows with its identifier and scopes, and text from the
API is inserted as text, never as markup."""

from __future__ import annotations

import secrets

import pytest

from tests.e2e.harness import Broker, Management
from tests.e2e.test_console import sign_in

pytestmark = pytest.mark.e2e


def test_console_lists_a_created_api(page, broker: Broker, management: Management):
    from playwright.sync_api import expect

    identifier = f"https://orders-{secrets.token_hex(4)}.example.com/"
    created = management.call("POST", "api/v2/resource-servers", {
        "identifier": identifier, "name": "Orders &lt;b&gt;API&lt;/b&gt;",
        "scopes": [{"value": "read:orders"}, {"value": "write:orders"}]}, expect=201)
    try:
        sign_in(page, broker)
        row = page.locator("#apis-table tbody tr", has_text=identifier)
        expect(row).to_have_count(1)
        expect(row).to_contain_text("read:orders write:orders")
        expect(row.locator("td").first).to_have_text("Orders &lt;b&gt;API&lt;/b&gt;")
        expect(page.get_by_role("heading", name="APIs")).to_be_visible()
    finally:
        management.call("DELETE", f"api/v2/resource-servers/{created['id']}")
