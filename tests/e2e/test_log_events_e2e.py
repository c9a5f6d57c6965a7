"""Issue 16's "done when", end to end (SPEC §9): the broker as `make run` serves it
(scripts/run_local.py), the real upstream IdP and headless Chromium. In one browser, for an
application and a connection of this module's own:

- alice cancels at the IdP (the IdP answers ``error=access_denied``): an ``f`` whose check is
  ``upstream_error``;
- a callback with a tampered state (one no login was started with; the browser even holds a
  binding cookie for it, so the state itself is what is refused): an ``f`` whose check is ``state``;
- alice signs in, and the application redeems its code: an ``s`` and a ``seacft``.

Then ``GET /api/v2/logs?q=connection:…`` lists exactly those four, newest first, with the right
connection, application, user, failed check, ip and user agent; ``GET /api/v2/logs/{id}`` and
``GET /api/v2/users/{id}/logs`` agree; no event holds the codes, tokens, state, cookies or client
secret the flow used. The admin console's Activity view lists them and its 24-hour chart counts
1 login and 2 failures for the connection, in the hour they happened.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests

from chalicelib.login.transactions import binding_cookie_name
from tests.e2e.console_fixtures import ConsoleSession, axe_script_fixture  # noqa: F401 - fixture
from tests.e2e.harness import (
    ARTIFACTS,
    HTTP_TIMEOUT,
    Broker,
    Management,
    RelyingParty,
    pkce_pair,
)
from tests.e2e.test_browser_login import browser_login, token_request
from tests.support import secret_scan
from tests.support.idp import IdpProcess

pytestmark = pytest.mark.e2e

SCOPE = "openid profile email offline_access"
# Every event of a login flow has Auth0's fields (SPEC §9).
AUTH0_FIELDS = {"log_id", "date", "type", "description", "connection", "ip", "user_agent", "strategy",
                "strategy_type", "details"}


@pytest.fixture(scope="module")
def flows(chromium: Any, broker: Broker, idp: IdpProcess, rp_app: RelyingParty,
          management: Management) -> Iterator[dict[str, Any]]:
    """The three logins in one browser profile; what they were and every credential they used."""
    from playwright.sync_api import expect

    suffix = secrets.token_hex(3)
    client = management.call("POST", "api/v2/clients", {
        "name": f"Log events app {suffix}", "app_type": "regular_web",
        "callbacks": [rp_app.callback_url]}, expect=201)
    name = f"logs-{suffix}"
    idp.register_redirect_uri(broker.url("login/callback/" + name))
    connection = management.call("POST", "api/v2/connections", {
        "name": name, "strategy": "oidc", "enabled_clients": [client["client_id"]],
        "options": {"type": "back_channel", "discovery_url": idp.issuer, "client_id": "broker-client",
                    "client_secret": "broker-secret",
                    "token_endpoint_auth_method": "client_secret_basic"}}, expect=201)
    own_callback = broker.url("login/callback/" + name)

    context = chromium.new_context(viewport={"width": 1000, "height": 700})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.e2e_requests = []
    page.on("request", lambda req: page.e2e_requests.append((req.method, req.url)))
    credentials = [client["client_secret"], broker.admin_client_secret, "broker-secret",
                   management.http.headers["Authorization"].split(" ", 1)[1]]
    try:
        browser_agent = page.evaluate("navigator.userAgent")

        # 1. alice cancels at the IdP: it sends error=access_denied to the broker's callback.
        cancelled = secrets.token_urlsafe(16)
        verifier, challenge = pkce_pair()
        credentials.append(verifier)
        page.goto(rp_app.authorize_url(broker, client, name, cancelled, secrets.token_urlsafe(8), challenge,
                                       scope=SCOPE))
        page.wait_for_selector("#login")
        assert page.url.startswith(idp.issuer + "/"), page.url
        page.click("#abort")
        page.wait_for_url(re.compile("^" + re.escape(rp_app.callback_url) + r"\?"))
        expect(page.get_by_text("Sign-in failed")).to_be_visible()
        params, _ = rp_app.callback_for(cancelled)
        assert params["error"] == "access_denied", params
        page.screenshot(path=str(ARTIFACTS / "log-events-cancelled.png"), full_page=True)

        # 2. A tampered state at the connection's callback. The browser holds a binding cookie
        # named after that state (as one planted next to a forged callback would be), so what is
        # refused is the state itself: no login was started with it.
        bogus = secrets.token_urlsafe(24)
        binding = f"{int(time.time()):x}.{secrets.token_urlsafe(32)}"
        credentials.append(binding)
        context.add_cookies([{"name": binding_cookie_name(bogus), "value": binding,
                              "url": broker.issuer}])
        answer = page.goto(f"{own_callback}?{urlencode({'state': bogus, 'code': 'x'})}")
        assert answer.status == 400, answer.status
        expect(page.get_by_text("Login failed")).to_be_visible()

        # 3. alice signs in; the application redeems its code.
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        verifier, challenge = pkce_pair()
        credentials.append(verifier)
        login_url = rp_app.authorize_url(broker, client, name, state, nonce, challenge, scope=SCOPE)
        params, _ = browser_login(page, login_url, idp, rp_app, state, "log-events")
        tokens = token_request(broker, client, {"grant_type": "authorization_code", "code": params["code"],
                                                "redirect_uri": rp_app.callback_url,
                                                "code_verifier": verifier})
        assert tokens.get("refresh_token"), sorted(tokens)
        credentials += [params["code"], tokens["access_token"], tokens["id_token"], tokens["refresh_token"]]
        # What the IdP sent the broker (its code and the broker's upstream states) and every
        # cookie the browser holds (the broker's session, the IdP's).
        for method, url in page.e2e_requests:
            if method == "GET" and url.split("?")[0] == own_callback:
                query = parse_qs(urlsplit(url).query)
                credentials += [v for key in ("code", "state") for v in query.get(key, []) if v != "x"]
        credentials += [c["value"] for c in context.cookies() if len(c["value"]) >= 16]
        yield {"client": client, "connection": connection, "name": name, "browser_agent": browser_agent,
               "user_id": f"oidc|{name}|alice", "credentials": [c for c in credentials if len(c) >= 8]}
    finally:
        context.close()
    outside = [url for _, url in page.e2e_requests
               if not url.startswith(("http://127.0.0.1:", "about:", "data:"))]
    assert not outside, f"the browser left loopback: {outside}"


def get(management: Management, path: str, **params: str) -> Any:
    response = management.http.get(management.broker.url(path), params=params, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    return response.json()


def assert_no_credential(events: list[dict], credentials: list[str]) -> None:
    text = json.dumps(events, sort_keys=True)
    held = [c[:4] + "…" for c in credentials if c in text]
    assert held == [], f"log events hold credentials of the flow: {held}"
    assert secret_scan.leaks(text) == []  # nothing JWT-shaped, no credential the run made


def test_logs_list_the_logins_with_their_codes_and_reasons(flows: dict, management: Management):
    name, client, connection = flows["name"], flows["client"], flows["connection"]
    logs = get(management, "api/v2/logs", q=f"connection:{name}")
    assert [event["type"] for event in logs] == ["seacft", "s", "f", "f"], logs
    log_ids = [event["log_id"] for event in logs]
    assert log_ids == sorted(log_ids, reverse=True)  # newest first
    assert [e["date"] for e in logs] == sorted((e["date"] for e in logs), reverse=True)
    exchange, login, tampered, cancelled = logs

    for event in logs:
        assert AUTH0_FIELDS <= set(event), event
        assert event["connection"] == name
        # The code exchange knows the connection by the user id's name only (token_events.connection_of).
        assert event.get("connection_id", connection["id"]) == connection["id"]
        assert (event["strategy"], event["strategy_type"]) == ("oidc", "enterprise")
        assert event["ip"] and event["user_agent"]
    # The browser's requests are the browser's; the code exchange is the application's.
    for event in (login, tampered, cancelled):
        assert event["user_agent"] == flows["browser_agent"]
    assert exchange["user_agent"] == requests.utils.default_user_agent()

    # The login and its code exchange: the application and alice.
    for event in (login, exchange):
        assert event["client_id"] == client["client_id"] and event["client_name"] == client["name"]
        assert event["user_id"] == flows["user_id"]
        assert event["user_name"] == "alice@example.com"
    for event in (login, tampered, cancelled):
        assert event["connection_id"] == connection["id"]
    assert login["description"] == "Successful login"
    assert login["details"]["channel"] == "back_channel" and login["details"]["silent"] is False
    assert set(exchange["details"]["scope"].split()) == set(SCOPE.split())

    # alice said no at the IdP: the application is known, no user is.
    assert cancelled["client_id"] == client["client_id"] and "user_id" not in cancelled
    assert cancelled["details"]["check"] == "upstream_error"
    assert cancelled["details"]["error"] == "access_denied"
    assert cancelled["details"]["upstream_error"] == "access_denied"
    # The tampered state names no login: neither application nor user.
    assert "client_id" not in tampered and "user_id" not in tampered
    assert tampered["details"]["check"] == "state"
    assert tampered["details"]["callback"] == "connection"
    assert tampered["description"] == "The login's state is not valid"

    # Filters combine; one event by its id; alice's events by her user id.
    failures = get(management, "api/v2/logs", q=f"type:f AND connection:{name}")
    assert [e["log_id"] for e in failures] == [tampered["log_id"], cancelled["log_id"]]
    assert get(management, f"api/v2/logs/{cancelled['log_id']}") == cancelled
    alice = get(management, f"api/v2/users/{quote(flows['user_id'], safe='')}/logs")
    assert [e["log_id"] for e in alice] == [exchange["log_id"], login["log_id"]]

    assert_no_credential([*logs, *alice], flows["credentials"])
    seen = [{k: e.get(k) for k in ("type", "client_id", "user_id", "details")} for e in logs]
    print(f"credentials checked: {len(flows['credentials'])}; log events seen:", json.dumps(seen))


def test_console_activity_lists_and_charts_them(flows: dict, chromium: Any, broker: Broker,
                                               management: Management, axe_script: Path):
    from playwright.sync_api import expect

    name = flows["name"]
    logs = get(management, "api/v2/logs", q=f"connection:{name}")
    # The hours (UTC: the console's browser runs in UTC) the chart must count them in.
    expected: dict[str, list[int]] = {}
    for event in logs:
        if event["type"] in ("s", "f"):
            at = datetime.fromisoformat(event["date"].replace("Z", "+00:00"))
            hour = at.strftime("%Y-%m-%dT%H:00:00.000Z")
            expected.setdefault(hour, [0, 0])[0 if event["type"] == "s" else 1] += 1

    console = ConsoleSession(chromium, broker, axe_script)
    try:
        console.sign_in()
        page = console.page
        with page.expect_response(re.compile(r"/api/v2/logs\?.*type%3Af")):
            console.view("activity")
        page.get_by_role("radio", name="Last 24 hours").check()
        figure = page.locator(f'#chart-figures svg[data-connection="{name}"]')
        expect(figure).to_have_attribute("aria-label", re.compile(
            "^" + re.escape(f"{name}, Last 24 hours: 1 successful login and 2 failed logins")))
        row = page.locator(f'#chart-totals tbody tr[data-connection="{name}"] td')
        assert [row.nth(0).inner_text(), row.nth(1).inner_text()] == ["1", "2"]
        hourly = page.locator(f'#chart-hourly-table tbody tr[data-connection="{name}"]')
        shown = {hourly.nth(n).get_attribute("data-hour"):
                 [int(hourly.nth(n).locator(f'td[data-type="{kind}"]').text_content()) for kind in "sf"]
                 for n in range(hourly.count())}
        assert shown == expected
        for hour, (logins, failures) in expected.items():
            for kind, count in (("s", logins), ("f", failures)):
                bar = figure.locator(f'rect[data-type="{kind}"][data-hour="{hour}"]')
                if count:
                    expect(bar).to_have_attribute("data-count", str(count))
                else:
                    expect(bar).to_have_count(0)
        # In the usual case all three happened in the current hour: the chart's last one.
        print("chart per hour (logins, failures):", shown)
        page.locator("#chart").screenshot(path=str(ARTIFACTS / "log-events-chart.png"))

        # The event list, filtered on the connection: the four events, newest first.
        page.locator("#f-connection").fill(name)
        with page.expect_response(re.compile(r"/api/v2/logs\?.*per_page=50")):
            page.locator("#events-filters button[type=submit]").click()
        rows = page.locator("#events-table tbody tr[data-log-id]")
        expect(rows).to_have_count(4)
        assert [rows.nth(n).get_attribute("data-log-id") for n in range(4)] == [e["log_id"] for e in logs]
        console.screenshot("log-events-activity")
        assert console.csp_violations == []
    finally:
        console.close()
