"""Fixtures for the login page and admin console end-to-end tests (on top of tests/e2e/conftest.py).

    from tests.e2e.console_fixtures import hrd_setup_fixture, partner_idp_fixture  # noqa: F401

(each fixture function is named ``<fixture>_fixture`` so importing it does not shadow the argument)

- ``partner_idp``: a second real oidc-provider (account bob@partner.example), so home realm
  discovery can be seen choosing between two identity providers.
- ``hrd_setup``: an application and two connections shown as buttons with domain_aliases.
- ``axe_script``: the path of axe-core's ``axe.min.js`` from tests/e2e/node_modules (``npm ci`` in
  tests/e2e when it is missing); ``check_accessibility(page, name)`` runs it and returns the
  serious and critical violations.
- ``a11y_page``: a page whose context bypasses CSP, so the injected axe script may run (the pages'
  own CSP forbids it, rightly).
- ``ConsoleSession``: one browser context on the admin console with its real CSP on, signed in
  once (a module's tests share it), in a locale; it records every CSP violation the page reports,
  and ``axe(name)`` runs axe-core through a same-origin script URL the test serves itself, so the
  CSP stays on while axe runs; ``ConsoleSession.on_view(view, ...)`` is a module's, on a view.
- ``seed_events``: log events put straight into the store of the broker under test (its embedded
  moto endpoint, from run_local.py's output), dated as the test says: the Activity view's tests
  need events hours and days old.
"""

from __future__ import annotations

import fcntl
import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import ARTIFACTS, Broker, Management, RelyingParty
from tests.support.idp import IdpProcess, default_idp_config, start_idp

E2E_DIR = Path(__file__).resolve().parent
AXE = E2E_DIR / "node_modules" / "axe-core" / "axe.min.js"

BOB = {"sub": "bob", "email": "bob@partner.example", "email_verified": True, "name": "Bob Partner"}


def _locked_axe_version() -> str | None:
    lock = json.loads((E2E_DIR / "package-lock.json").read_text())
    return lock.get("packages", {}).get("node_modules/axe-core", {}).get("version")


def _installed_axe_version() -> str | None:
    try:
        return json.loads((AXE.parent / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None


def ensure_axe() -> Path:
    """axe-core as the lockfile pins it (``npm ci`` in tests/e2e when missing or stale)."""
    if AXE.exists() and _installed_axe_version() == _locked_axe_version():
        return AXE
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm not found: tests/e2e needs axe-core (npm ci in tests/e2e)", pytrace=False)
    with open(E2E_DIR / ".npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (AXE.exists() and _installed_axe_version() == _locked_axe_version()):
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=E2E_DIR,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
                                  check=False)
            if done.returncode != 0:
                pytest.fail(f"npm ci in tests/e2e failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return AXE


@pytest.fixture(scope="session", name="axe_script")
def axe_script_fixture() -> Path:
    return ensure_axe()


def serious_violations(page: Any, name: str) -> list[dict]:
    """Run axe-core, already on the page (WCAG 2.x A/AA rules and best practices), on the page as it
    is now; write the full report to artifacts/axe-<name>.json; return the serious and critical
    violations."""
    results = page.evaluate(
        """async () => await axe.run(document, {
               runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                                               'wcag22aa', 'best-practice']},
               resultTypes: ['violations']})"""
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(results["violations"], indent=2))
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n["html"][:200] for n in v["nodes"][:5]]}
        for v in results["violations"] if v["impact"] in ("serious", "critical")
    ]


def check_accessibility(page: Any, axe: Path, name: str) -> list[dict]:
    """:func:`serious_violations` with axe-core injected from its file (the page's CSP must be
    bypassed: ``a11y_page``)."""
    page.add_script_tag(path=str(axe))
    return serious_violations(page, name)


@pytest.fixture(name="a11y_page")
def a11y_page_fixture(chromium: Any) -> Iterator[Any]:
    """A fresh context with ``bypass_csp=True`` (for the injected axe script), loopback only."""
    context = chromium.new_context(viewport={"width": 1000, "height": 700}, bypass_csp=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    try:
        yield page
    finally:
        context.close()
    outside = [url for url in requests if not url.startswith(("http://127.0.0.1:", "about:", "data:"))]
    assert not outside, f"the browser left loopback: {outside}"


@pytest.fixture(scope="session", name="partner_idp")
def partner_idp_fixture(broker: Broker) -> Iterator[IdpProcess]:
    config = default_idp_config()  # hrd_setup registers its connection's callback URL
    config["accounts"] = {"bob": dict(BOB)}
    with start_idp(config, max_seconds=900) as running:
        yield running


@dataclass
class HrdSetup:
    client: dict[str, Any]
    corp: dict[str, Any]      # -> the stack's IdP (alice@example.com), button "Example Corp"
    partner: dict[str, Any]   # -> partner_idp (bob@partner.example), button "Partner Inc"


@pytest.fixture(scope="session", name="hrd_setup")
def hrd_setup_fixture(management: Management, idp: IdpProcess, partner_idp: IdpProcess,
              rp_app: RelyingParty) -> HrdSetup:
    suffix = secrets.token_hex(3)
    client = management.call("POST", "api/v2/clients", {
        "name": f"Login page app {suffix}", "app_type": "regular_web",
        "callbacks": [rp_app.callback_url]}, expect=201)

    def connection(name: str, display: str, upstream: IdpProcess, domain: str) -> dict:
        upstream.register_redirect_uri(management.broker.url(f"login/callback/{name}-{suffix}"))
        return management.call("POST", "api/v2/connections", {
            "name": f"{name}-{suffix}", "strategy": "oidc", "display_name": display,
            "show_as_button": True, "enabled_clients": [client["client_id"]],
            "options": {"type": "back_channel", "discovery_url": upstream.issuer,
                        "client_id": "broker-client", "client_secret": "broker-secret",
                        "token_endpoint_auth_method": "client_secret_basic",
                        "domain_aliases": [domain]}}, expect=201)

    return HrdSetup(client, connection("corp", "Example Corp", idp, "example.com"),
                    connection("partner", "Partner Inc", partner_idp, "partner.example"))


# ---- the admin console in one browser context per module ------------------------------------------


class ConsoleSession:
    """A browser context and page on /admin (real CSP), signed in with the broker's admin client."""

    def __init__(self, chromium: Any, broker: Broker, axe: Path, *, locale: str = "en-US",
                 timezone: str = "UTC"):
        self.broker = broker
        self.axe_path = axe
        self.context = chromium.new_context(viewport={"width": 1100, "height": 900}, locale=locale,
                                            timezone_id=timezone)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.csp_violations: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", self._console)
        self.page.on("request", lambda request: self.requests.append(request.url))
        # axe-core as a same-origin script (script-src 'self' allows it), served by the test.
        self.axe_url = broker.url("admin/test-axe.js")
        self.page.route(self.axe_url, lambda route: route.fulfill(
            status=200, content_type="text/javascript", body=axe.read_text(encoding="utf-8")))

    @classmethod
    @contextmanager
    def on_view(cls, view: str, chromium: Any, broker: Broker, axe: Path) -> Iterator[ConsoleSession]:
        """A module's session: signed in, on the console's ``view``; when the module is done, no CSP
        violation was reported, and the context is closed."""
        session = cls(chromium, broker, axe)
        try:
            session.sign_in()
            session.view(view)
            yield session
            assert session.csp_violations == []
        finally:
            session.close()

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.csp_violations.append(message.text)

    def sign_in(self) -> None:
        from playwright.sync_api import expect

        page = self.page
        response = page.goto(self.broker.url("admin"))
        assert "style-src 'self'" in response.headers["content-security-policy"]
        page.locator("#signin-client-id").fill(self.broker.admin_client_id)
        page.locator("#signin-client-secret").fill(self.broker.admin_client_secret)
        page.locator("#signin-form button[type=submit]").click()
        expect(page.locator("#console")).to_be_visible()
        expect(page.locator("#signed-in-as")).to_contain_text("read:logs")

    def view(self, fragment: str) -> None:
        from playwright.sync_api import expect

        self.page.locator(f'#views-nav a[data-view="{fragment}"]').click()
        expect(self.page.locator(f"#view-{fragment}")).to_be_visible()

    def axe(self, name: str) -> list[dict]:
        """axe-core's serious and critical violations on the page as it is now (full report in
        artifacts/axe-<name>.json), with the page's own CSP on."""
        self.page.add_script_tag(url=self.axe_url)
        return serious_violations(self.page, name)

    def screenshot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
        outside = [url for url in self.requests
                   if not url.startswith(("http://127.0.0.1:", "about:", "data:"))]
        assert not outside, f"the browser left loopback: {outside}"


# ---- log events in the broker's own store -----------------------------------------------------------


def broker_dynamodb(broker: Broker) -> tuple[Any, str]:
    """A DynamoDB client on the broker's embedded moto endpoint and its table's name."""
    import boto3

    endpoint = None
    for line in broker.lines:
        match = re.search(r"embedded AWS endpoint \(moto\) on (\S+)", line)
        if match:
            endpoint = match.group(1)
    assert endpoint, "run_local.py did not print its embedded AWS endpoint"
    client = boto3.session.Session().client(
        "dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing")
    name = "broker-local"  # infra/resources.yaml: broker-${Stage}, run_local.py's stage "local"
    assert name in client.list_tables()["TableNames"]
    return client, name


def log_event(type_: str, at_ms: int, **fields: Any) -> dict:
    """An event of ``type_`` built by the broker's own chalicelib.audit.event, dated ``at_ms``."""
    from chalicelib import audit, clock

    previous = clock.install(clock.FixedClock(at_ms / 1000))
    try:
        return dict(audit.event(type_, **fields))
    finally:
        clock.install(previous)


def seed_events(broker: Broker, events: list[dict]) -> None:
    """Store ``events`` as the broker stores them (store/log_events' item: day partition, the
    user's index keys, the retention TTL)."""
    from boto3.dynamodb.types import TypeSerializer

    from chalicelib.store import log_events

    client, table = broker_dynamodb(broker)
    serializer = TypeSerializer()
    expires = int(time.time()) + 8 * 86400
    for event in events:
        item = dict(log_events.put_operation(event, expires).item or {})
        client.put_item(TableName=table, Item={k: serializer.serialize(v) for k, v in item.items()})


def demo_url(broker: Broker) -> str | None:
    """The one URL `make run` prints for the demo (scripts/run_local.py), if it set the demo up."""
    for line in broker.lines:
        match = re.match(r"^DEMO URL (\S+)", line)
        if match:
            return match.group(1)
    return None


__all__ = ["AXE", "ConsoleSession", "HrdSetup", "a11y_page_fixture", "axe_script_fixture",
           "broker_dynamodb", "check_accessibility", "demo_url", "ensure_axe",
           "hrd_setup_fixture", "log_event", "partner_idp_fixture", "seed_events", "serious_violations"]
