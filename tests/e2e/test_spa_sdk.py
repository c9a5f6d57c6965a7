"""Auth0's own SPA SDK (@auth0/auth0-spa-js, pinned in tests/e2e/package.json) against the broker,
unchanged, in headless Chromium: ``domain`` is the broker's URL and nothing else is adapted.

- ``loginWithRedirect`` → the upstream IdP's login → ``handleRedirectCallback``; ``getUser()``.
- ``getTokenSilently`` with refresh tokens (the refresh grant from JavaScript, CORS) and without
  them: the SDK's hidden iframe asks ``/authorize?prompt=none&response_mode=web_message`` and waits
  for the broker's page to post the code back (before web_message it hung for 60 s).
- ``logout()`` (``/v2/logout`` with ``returnTo``); then silent authentication answers
  ``login_required`` at once (a short ``timeoutInSeconds``: a timeout would be another error).
- ``loginWithPopup``: the popup's last page posts the code to its opener.

The SPA is a page on its own 127.0.0.1 port that loads the SDK's UMD build from node_modules."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import ARTIFACTS, Broker, Management, Setup
from tests.support.idp import IdpProcess

pytestmark = pytest.mark.e2e

SDK = Path(__file__).resolve().parent / "node_modules/@auth0/auth0-spa-js/dist/auth0-spa-js.production.js"

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>SDK SPA</title></head><body>
<h1>Auth0 SDK SPA</h1><pre id="status">loading</pre>
<script src="/auth0-spa-js.production.js"></script>
<script>
const config = __CONFIG__;
// One SDK client per way of renewing tokens; same application, same broker.
window.makeClient = (useRefreshTokens) => new auth0.Auth0Client({
  domain: config.domain, clientId: config.client_id, useRefreshTokens,
  useRefreshTokensFallback: false, cacheLocation: "localstorage",
  authorizationParams: { redirect_uri: config.redirect_uri, connection: config.connection,
                         scope: "openid profile email" } });
window.silent = async (useRefreshTokens, timeoutInSeconds) => {
  try {
    const token = await makeClient(useRefreshTokens).getTokenSilently(
      { cacheMode: "off", timeoutInSeconds });
    return { token };
  } catch (e) { return { error: e.error || String(e), description: e.error_description }; }
};
async function main() {
  window.spa = makeClient(true);
  if (location.search.includes("code=") && location.search.includes("state=")) {
    await spa.handleRedirectCallback();
    history.replaceState({}, "", location.pathname);
  }
  document.getElementById("status").textContent =
    (await spa.isAuthenticated()) ? "signed-in" : "signed-out";
}
main().catch((e) => { document.getElementById("status").textContent = "failed: " + e; });
</script></body></html>"""


class SdkSpa:
    """The SPA's origin: ``/`` is the page, ``/auth0-spa-js.production.js`` the SDK (loopback only)."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        spa = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?")[0]
                if path == "/":
                    self._send("text/html; charset=utf-8",
                               PAGE.replace("__CONFIG__", json.dumps(spa.config)).encode())
                elif path == "/auth0-spa-js.production.js":
                    self._send("text/javascript; charset=utf-8", SDK.read_bytes())
                else:
                    self.send_error(404)

            def _send(self, content_type: str, payload: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args):  # noqa: A002 - signature of the base class
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="e2e-sdk-spa", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture()
def sdk_spa(broker: Broker, management: Management, setup: Setup) -> Iterator[SdkSpa]:
    if not SDK.exists():
        pytest.fail(f"{SDK} is missing: run `make test` (npm ci in tests/e2e)", pytrace=False)
    spa = SdkSpa()
    try:
        home = spa.origin + "/"
        app = management.call("POST", "api/v2/clients", {
            "name": f"e2e-sdk-{secrets.token_hex(3)}", "app_type": "spa", "callbacks": [home],
            "web_origins": [spa.origin], "allowed_logout_urls": [home]}, expect=201)
        connection = setup.connections["back"]
        management.call("PATCH", f"api/v2/connections/{connection['id']}/clients",
                        [{"client_id": app["client_id"], "status": True}], expect=204)
        # The SDK builds every URL as domain + "/authorize" etc. and expects the issuer domain + "/".
        spa.config = {"domain": broker.issuer.rstrip("/"), "client_id": app["client_id"],
                      "redirect_uri": home, "connection": connection["name"]}
        yield spa
    finally:
        spa.stop()


def _status(page: Any, expected: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_have_text(expected, timeout=20_000)


def _sign_in_upstream(page: Any) -> None:
    page.wait_for_selector("#login")
    page.fill("#login", "alice")
    page.click("#submit")


def _requests_since(page: Any, start: int, path: str) -> list[str]:
    return [url for method, url in page.e2e_requests[start:] if path in url]


def test_sdk_redirect_login_silent_tokens_and_logout(page, broker: Broker, idp: IdpProcess,
                                                     sdk_spa: SdkSpa):
    page.goto(sdk_spa.origin + "/")
    _status(page, "signed-out")
    page.evaluate("() => { spa.loginWithRedirect(); }")  # navigates away: do not await
    _sign_in_upstream(page)
    _status(page, "signed-in")
    user = page.evaluate("() => spa.getUser()")
    assert user["email"] == "alice@example.com" and user["sub"], user

    # Refresh tokens: the refresh grant, no /authorize.
    mark = len(page.e2e_requests)
    refreshed = page.evaluate("() => silent(true, 10)")
    assert refreshed.get("token"), refreshed
    assert not _requests_since(page, mark, "/authorize")
    assert _requests_since(page, mark, "/oauth/token")

    # No refresh tokens: the hidden iframe with response_mode=web_message and the broker session.
    mark = len(page.e2e_requests)
    framed = page.evaluate("() => silent(false, 10)")
    assert framed.get("token"), framed
    [asked] = _requests_since(page, mark, "/authorize")
    assert "response_mode=web_message" in asked and "prompt=none" in asked
    page.screenshot(path=str(ARTIFACTS / "spa-sdk-signed-in.png"), full_page=True)

    page.evaluate("() => { spa.logout({ logoutParams: { returnTo: location.origin + '/' } }); }")
    page.wait_for_url(sdk_spa.origin + "/")
    _status(page, "signed-out")
    assert any("/v2/logout?" in url and "returnTo=" in url for _, url in page.e2e_requests)

    ended = page.evaluate("() => silent(false, 10)")
    assert ended.get("error") == "login_required", ended  # an answer, not a timeout


def test_sdk_popup_login(page, broker: Broker, idp: IdpProcess, sdk_spa: SdkSpa):
    # The popup's requests join the page's, so the fixture's loopback-only check covers them too.
    page.context.on("request", lambda req: req.frame.page != page
                    and page.e2e_requests.append((req.method, req.url)))
    page.goto(sdk_spa.origin + "/")
    _status(page, "signed-out")
    with page.expect_popup() as opened:
        page.evaluate("() => { window.popupDone = spa.loginWithPopup().then(() => 'ok', "
                      "(e) => e.error || String(e)); }")
    _sign_in_upstream(opened.value)
    # The broker's last page in the popup posted the code to this window (its origin only).
    assert page.evaluate("() => window.popupDone") == "ok"
    assert page.evaluate("() => spa.getUser()")["email"] == "alice@example.com"
    assert any("/authorize?" in url and "response_mode=web_message" in url
               for _, url in page.e2e_requests)
