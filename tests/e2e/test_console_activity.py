"""The admin console's Activity view (SPEC §9) in headless Chromium with its real CSP on: log events
put into the broker's store show newest first, each filter narrows them (type, connection,
application, user, days), pages turn, an event's detail shows every field and its details as
JSON (as text, never markup); the chart draws the seeded logins and failures in their hour and
connection, for the last 24 hours and the last 7 days, with the same figures in its text
alternative; a chart that stopped at its page limit says so; axe-core finds nothing, in English
and in French. One signed-in browser context for the module (and one more in French)."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.console_fixtures import (  # noqa: F401 - fixtures
    ConsoleSession,
    axe_script_fixture,
    log_event,
    seed_events,
)
from tests.e2e.harness import ARTIFACTS, Broker

pytestmark = pytest.mark.e2e

HOUR = 3600


def iso_hour(epoch: int) -> str:
    """An hour's start as the chart writes it (JavaScript's toISOString)."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:00:00.000Z")


def utc_day(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def seeded(broker: Broker) -> dict[str, Any]:
    """Connection A: 3 logins and 1 failure two hours ago, 2 logins 30 hours ago, a failed logout
    with markup in its description an hour ago. Connection B: 2 failures of bob five hours ago
    through one application. Connection C: 55 API operations (two pages of events)."""
    suffix = secrets.token_hex(3)
    a, b, c = f"act-a-{suffix}", f"act-b-{suffix}", f"act-c-{suffix}"
    client_id = f"ActClient{suffix}"
    bob = f"oidc|{b}|bob"
    hour = int(time.time()) // HOUR * HOUR  # the current hour (UTC; the test browsers' hours too)
    at = lambda hours_ago, minute: (hour - hours_ago * HOUR + minute * 60) * 1000  # noqa: E731
    failure = log_event("f", at(2, 20), connection=a, client_id=client_id, user_id=f"oidc|{a}|alice",
                        details={"error": "access_denied", "error_description": "The user said no",
                                 "upstream": {"status": 400}})
    events = [
        *(log_event("s", at(2, 10 + n), connection=a, client_id=client_id, user_id=f"oidc|{a}|alice")
          for n in range(3)),
        failure,
        *(log_event("s", at(30, 5 + n), connection=a, user_id=f"oidc|{a}|alice") for n in range(2)),
        log_event("flo", at(1, 1), connection=a, description='<img src=x> <b>bold</b> "quoted"'),
        *(log_event("f", at(5, 30 + n), connection=b, client_id=client_id, user_id=bob, user_name="Bob",
                    details={"error": "login_required"}) for n in range(2)),
        *(log_event("sapi", at(3, 0) + n, connection=c, details={"path": f"/api/v2/x/{n}"})
          for n in range(55)),
    ]
    seed_events(broker, events)
    return {"a": a, "b": b, "c": c, "client_id": client_id, "bob": bob, "hour": hour,
            "failure": failure}


@pytest.fixture(scope="module")
def console(chromium: Any, broker: Broker, axe_script: Path, seeded: dict) -> Iterator[ConsoleSession]:
    with ConsoleSession.on_view("activity", chromium, broker, axe_script) as session:
        yield session


def rows(console: ConsoleSession) -> Any:
    return console.page.locator("#events-table tbody tr[data-log-id]")


def filter_events(console: ConsoleSession, **values: str) -> None:
    """Fill the filters (the others emptied) and apply them; waits for the answer."""
    page = console.page
    page.locator("#events-filters").evaluate("form => form.reset()")
    fields = {"type": "#f-type", "connection": "#f-connection", "client": "#f-client",
              "user": "#f-user", "since": "#f-from", "until": "#f-to"}
    for name, value in values.items():
        if name == "type":
            page.locator(fields[name]).select_option(value)
        else:
            page.locator(fields[name]).fill(value)
    with page.expect_response(re.compile(r"/api/v2/logs\?.*per_page=50")) as answer:
        page.locator("#events-filters button[type=submit]").click()
    assert answer.value.status == 200, answer.value.text()


def test_events_are_listed_filtered_paged_and_detailed(console: ConsoleSession, seeded: dict):
    from playwright.sync_api import expect

    page = console.page
    a, b = seeded["a"], seeded["b"]
    filter_events(console, connection=a)
    expect(rows(console)).to_have_count(7)
    # Newest first: the failed logout an hour ago, then the failure and the logins two hours ago.
    expect(rows(console).first).to_contain_text("flo")
    dates = [rows(console).nth(n).locator("time").get_attribute("datetime") for n in range(7)]
    assert dates == sorted(dates, reverse=True)
    # Text from the API stays text: the description's markup is shown, never parsed.
    expect(rows(console).first.locator("td").nth(2)).to_have_text('<img src=x> <b>bold</b> "quoted"')
    assert page.locator("#events-table img, #events-table b").count() == 0
    console.screenshot("console-activity")

    filter_events(console, type="f", connection=a)
    expect(rows(console)).to_have_count(1)
    expect(rows(console).first).to_have_attribute("data-log-id", seeded["failure"]["log_id"])

    filter_events(console, user=seeded["bob"])
    expect(rows(console)).to_have_count(2)
    expect(rows(console).first).to_contain_text("Bob")

    filter_events(console, client=seeded["client_id"], type="f")
    expect(rows(console)).to_have_count(3)  # A's failure and B's two

    thirty_ago = seeded["hour"] - 30 * HOUR
    filter_events(console, connection=a, since=utc_day(thirty_ago), until=utc_day(thirty_ago))
    expect(rows(console)).to_have_count(2)
    filter_events(console, connection=b, since=utc_day(seeded["hour"] + 86400))
    expect(page.locator("#events-table tbody")).to_contain_text("No event matches.")

    # A start after the end: said so, and nothing is asked of the API.
    page.locator("#f-from").fill(utc_day(seeded["hour"]))
    page.locator("#f-to").fill(utc_day(thirty_ago))
    before = len([u for u in console.requests if "/api/v2/logs?" in u])
    page.locator("#events-filters button[type=submit]").click()
    expect(page.locator("#events-status .error")).to_contain_text(
        "The start day must not be after the end day.")
    assert len([u for u in console.requests if "/api/v2/logs?" in u]) == before

    # Two pages of C's 55 events.
    filter_events(console, connection=seeded["c"])
    expect(rows(console)).to_have_count(50)
    expect(page.locator("#events-range")).to_have_text("Events 1–50 of 55")
    expect(page.locator("#events-prev")).to_be_disabled()
    with page.expect_response(re.compile(r"/api/v2/logs\?page=1&per_page=50")):
        page.locator("#events-next").click()
    expect(rows(console)).to_have_count(5)
    expect(page.locator("#events-range")).to_have_text("Events 51–55 of 55")
    expect(page.locator("#events-next")).to_be_disabled()
    expect(page.locator("#events-prev")).to_be_enabled()

    # The failure's detail: every field, and its details as JSON text.
    filter_events(console, connection=a, type="f")
    with page.expect_response(re.compile(r"/api/v2/logs/900\d+$")):
        rows(console).first.get_by_role("button", name=re.compile("^Details of the event")).click()
    detail = page.locator("#event-detail")
    expect(detail).to_be_visible()
    failure = seeded["failure"]
    expect(page.locator("#event-detail-title")).to_have_text(f"Event {failure['log_id']}")
    for field in ("log_id", "date", "type", "description", "connection", "client_id", "user_id",
                  "strategy", "strategy_type"):
        expect(detail.locator(f'dd[data-field="{field}"]')).to_have_text(str(failure[field]))
    shown = json.loads(page.locator("#event-detail-json").inner_text())
    assert shown == {"error": "access_denied", "error_description": "The user said no",
                     "upstream": {"status": 400}}
    console.screenshot("console-activity-detail")
    assert console.axe("console-activity") == []


def test_chart_draws_logins_and_failures_per_hour_and_connection(console: ConsoleSession, seeded: dict):
    from playwright.sync_api import expect

    page = console.page
    a, b = seeded["a"], seeded["b"]
    two_ago, five_ago = iso_hour(seeded["hour"] - 2 * HOUR), iso_hour(seeded["hour"] - 5 * HOUR)
    thirty_ago = iso_hour(seeded["hour"] - 30 * HOUR)
    with page.expect_response(re.compile(r"/api/v2/logs\?.*type%3As")):
        page.locator("#chart-refresh").click()
    chart_a = page.locator(f'#chart-figures svg[data-connection="{a}"]')
    expect(chart_a).to_have_attribute("role", "img")
    expect(chart_a).to_have_attribute("aria-label", re.compile(
        f"^{a}, Last 24 hours: 3 successful logins and 1 failed login; the most in one hour: 4"))
    logins = chart_a.locator(f'rect[data-type="s"][data-hour="{two_ago}"]')
    failures = chart_a.locator(f'rect[data-type="f"][data-hour="{two_ago}"]')
    expect(logins).to_have_attribute("data-count", "3")
    expect(failures).to_have_attribute("data-count", "1")
    expect(logins).to_have_attribute("fill", "#1d4ed8")
    expect(failures).to_have_attribute("fill", "#d97706")
    # Stacked on one scale: the failure sits on the logins, a third of their height.
    height_s, height_f = (float(r.get_attribute("height")) for r in (logins, failures))
    assert height_s == pytest.approx(3 * height_f)
    assert float(failures.get_attribute("y")) + height_f == pytest.approx(float(logins.get_attribute("y")))
    assert chart_a.locator("rect").count() == 2  # nothing 30 hours ago in the last 24 hours
    chart_b = page.locator(f'#chart-figures svg[data-connection="{b}"]')
    expect(chart_b.locator(f'rect[data-type="f"][data-hour="{five_ago}"]')).to_have_attribute(
        "data-count", "2")
    assert chart_b.locator('rect[data-type="s"]').count() == 0
    # An API operation is not a login: C has no chart.
    expect(page.locator(f'#chart-figures svg[data-connection="{seeded["c"]}"]')).to_have_count(0)

    # The text alternative: totals per connection and the figures per hour.
    def totals(connection: str) -> list[str]:
        row = page.locator(f'#chart-totals tbody tr[data-connection="{connection}"]')
        return [row.locator("td").nth(0).inner_text(), row.locator("td").nth(1).inner_text()]

    assert totals(a) == ["3", "1"]
    assert totals(b) == ["0", "2"]
    hourly = page.locator(f'#chart-hourly-table tr[data-connection="{a}"][data-hour="{two_ago}"] td')
    assert [hourly.nth(n).text_content() for n in (1, 2)] == ["3", "1"]  # in a closed <details>
    expect(page.locator(".legend")).to_contain_text("Successful logins (s)")
    expect(page.locator(".legend")).to_contain_text("Failed logins (f)")
    expect(page.locator("#chart-status")).to_have_attribute("data-truncated", "false")
    page.locator("#chart").screenshot(path=str(ARTIFACTS / "console-activity-chart-day.png"))

    # The last 7 days: the logins of 30 hours ago join in, in their own hour.
    page.get_by_label("Last 7 days").check()
    expect(chart_a).to_have_attribute("aria-label", re.compile(
        "Last 7 days: 5 successful logins and 1 failed login"))
    expect(chart_a.locator(f'rect[data-type="s"][data-hour="{thirty_ago}"]')).to_have_attribute(
        "data-count", "2")
    assert totals(a) == ["5", "1"]
    page.locator("#chart").screenshot(path=str(ARTIFACTS / "console-activity-chart-week.png"))
    page.get_by_label("Last 24 hours").check()
    assert totals(a) == ["3", "1"]


def test_chart_reads_at_most_ten_pages_and_says_so(console: ConsoleSession):
    """More logins than the chart reads: it stops after 10 pages of 100 and says the older hours
    may be incomplete (the API answered through a route: a thousand events need not be stored)."""
    from playwright.sync_api import expect

    page = console.page
    now_ms = int(time.time() * 1000)
    asked: list[str] = []

    def full_pages(route: Any) -> None:
        url = route.request.url
        if "type%3As" not in url:
            route.continue_()
            return
        asked.append(url)
        number = int(re.search(r"[?&]page=(\d+)", url).group(1))
        logs = [{"log_id": f"900{now_ms - m * 40_000:016d}{'0' * 37}", "type": "s", "connection": "busy",
                 "date": datetime.fromtimestamp((now_ms - m * 40_000) / 1000, tz=timezone.utc)
                 .isoformat(timespec="milliseconds").replace("+00:00", "Z")}
                for m in range(number * 100, number * 100 + 100)]
        route.fulfill(status=200, content_type="application/json", body=json.dumps(logs))

    page.route(re.compile(r"/api/v2/logs\?"), full_pages)
    try:
        page.locator("#chart-refresh").click()
        expect(page.locator("#chart-status")).to_have_attribute("data-truncated", "true")
        expect(page.locator("#chart-status")).to_contain_text(
            "Only the newest 1,000 events of each kind were read")
        assert len(asked) == 10
        assert page.locator('#chart-totals tbody tr[data-connection="busy"] td').first.inner_text() == "1,000"
    finally:
        page.unroute(re.compile(r"/api/v2/logs\?"))
    with page.expect_response(re.compile(r"/api/v2/logs\?.*type%3As")):
        page.locator("#chart-refresh").click()
    expect(page.locator("#chart-status")).to_have_attribute("data-truncated", "false")


def test_activity_view_in_french_is_accessible(chromium: Any, broker: Broker, axe_script: Path,
                                               seeded: dict):
    from playwright.sync_api import expect

    session = ConsoleSession(chromium, broker, axe_script, locale="fr-FR", timezone="Europe/Paris")
    try:
        session.sign_in()
        page = session.page
        assert page.evaluate("document.documentElement.lang") == "fr"
        expect(page.get_by_role("link", name="Activité")).to_be_visible()
        session.view("activity")
        expect(page.get_by_role("heading", name="Événements du journal")).to_be_visible()
        chart_a = page.locator(f'#chart-figures svg[data-connection="{seeded["a"]}"]')
        expect(chart_a).to_have_attribute("aria-label", re.compile(
            "Dernières 24 heures : 3 ouvertures de session réussies et 1 ouverture de session échouée"))
        expect(page.locator(".legend")).to_contain_text("Ouvertures de session échouées (f)")
        page.locator("#f-connection").fill(seeded["a"])
        page.locator("#events-filters button[type=submit]").click()
        expect(rows(session)).to_have_count(7)
        expect(rows(session).first).to_contain_text("Échec de la déconnexion")
        rows(session).first.get_by_role("button", name=re.compile("^Détails de l'événement")).click()
        expect(page.locator("#event-detail-title")).to_contain_text("Événement ")
        session.screenshot("console-activity-fr")
        assert session.axe("console-activity-fr") == []
        assert session.csp_violations == []
    finally:
        session.close()

