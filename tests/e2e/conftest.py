"""End-to-end fixtures: the broker as `make run` serves it, the real upstream IdP, a tiny relying-party
application and headless Chromium, all on 127.0.0.1.

Everything stops by itself: the fixtures tear down the browser, the application server, the IdP and
the broker (run_local.py stops its moto and chalice local); the broker and the IdP also have hard
lifetimes (BROKER_RUN_MAX_SECONDS, IDP_MAX_SECONDS) in case this process is killed.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Broker,
    Management,
    RelyingParty,
    Setup,
    Stack,
    start_broker,
    stop_broker,
    wait_broker,
)
from tests.support.https_stack import free_port, port_answers
from tests.support.idp import IdpProcess, default_idp_config, start_idp


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The broker over real HTTP and the upstream IdP, started side by side."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (scripts/install_browser.sh)", pytrace=False)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/"
    broker = start_broker(port)
    try:
        idp = start_idp(default_idp_config(redirect_uris=[issuer + "login/callback"]), max_seconds=900)
    except BaseException:
        stop_broker(broker)
        raise
    try:
        wait_broker(broker)
        assert broker.issuer == issuer, broker.output()
        yield Stack(broker, idp)
    finally:
        idp.stop()
        stop_broker(broker)
    # run_local.py stops chalice local itself: nothing may be left listening.
    gone_by = time.monotonic() + 10
    while port_answers(port) and time.monotonic() < gone_by:
        time.sleep(0.2)
    assert not port_answers(port), f"port {port} still answers after run_local.py exited"
    assert not idp.is_running()


@pytest.fixture(scope="session")
def broker(stack: Stack) -> Broker:
    return stack.broker


@pytest.fixture(scope="session")
def idp(stack: Stack) -> IdpProcess:
    return stack.idp


@pytest.fixture(scope="session")
def management(broker: Broker) -> Management:
    return Management(broker)


@pytest.fixture(scope="session")
def rp_app() -> Iterator[RelyingParty]:
    app = RelyingParty()
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="session")
def setup(management: Management, idp: IdpProcess, rp_app: RelyingParty) -> Iterator[Setup]:
    """A confidential application and a front- and a back-channel connection enabled for it."""
    suffix = secrets.token_hex(3)
    client = management.call(
        "POST",
        "api/v2/clients",
        {"name": f"e2e-web-{suffix}", "app_type": "regular_web", "callbacks": [rp_app.callback_url]},
        expect=201,
    )
    assert client.get("client_secret"), client
    connections = {
        "front": management.call(
            "POST",
            "api/v2/connections",
            {
                "name": f"e2e-front-{suffix}",
                "strategy": "oidc",
                "options": {
                    "type": "front_channel",
                    "discovery_url": idp.issuer,
                    "client_id": "broker-client",
                },
            },
            expect=201,
        ),
        "back": management.call(
            "POST",
            "api/v2/connections",
            {
                "name": f"e2e-back-{suffix}",
                "strategy": "oidc",
                "options": {
                    "type": "back_channel",
                    "discovery_url": idp.issuer,
                    "client_id": "broker-client",
                    "client_secret": "broker-secret",
                    "token_endpoint_auth_method": "client_secret_basic",
                },
            },
            expect=201,
        ),
    }
    for connection in connections.values():
        assert "client_secret" not in connection.get("options", {}), connection
        # Each connection has its own redirect URI, registered at the IdP as an admin would.
        idp.register_redirect_uri(management.broker.url("login/callback/" + connection["name"]))
        management.call(
            "PATCH",
            f"api/v2/connections/{connection['id']}/clients",
            [{"client_id": client["client_id"], "status": True}],
            expect=204,
        )
    # Nothing to delete afterwards: the broker and its embedded AWS endpoint go away with the session.
    yield Setup(client, connections)


# ---- the browser -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"e2e_report_{report.when}", report)
    if report.failed:
        # What the broker and the IdP logged lately: the place to look when a login fails.
        broker, idp = item.funcargs.get("broker"), item.funcargs.get("idp")
        if isinstance(broker, Broker):
            report.sections.append(("broker log (last 150 lines)", "".join(broker.lines[-150:])))
        if isinstance(idp, IdpProcess):
            report.sections.append(("IdP log (last 5000 chars)", idp.log()[-5000:]))
    return report


@pytest.fixture()
def page(request: pytest.FixtureRequest, chromium: Any) -> Iterator[Any]:
    """A fresh browser profile (no cookies) per test. ``page.e2e_requests`` lists every request the
    page made as (method, url); all of them must go to 127.0.0.1. A failed test leaves a screenshot."""
    context = chromium.new_context(viewport={"width": 1000, "height": 700})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.e2e_requests = []
    page.on("request", lambda req: page.e2e_requests.append((req.method, req.url)))
    try:
        yield page
        report = getattr(request.node, "e2e_report_call", None)
        if report is not None and report.failed:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            page.screenshot(path=str(ARTIFACTS / f"failed-{name}.png"), full_page=True)
    finally:
        context.close()
    outside = [url for _, url in page.e2e_requests
               if not url.startswith(("http://127.0.0.1:", "about:", "data:"))]
    assert not outside, f"the browser left loopback: {outside}"
