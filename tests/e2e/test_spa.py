"""A single-page application in headless Chromium: PKCE in the browser, the code redeemed and
/userinfo called with fetch() from the application's own origin (CORS), a refresh, a revocation.
The same JavaScript on an origin the application does not allow cannot read the token endpoint."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.harness import ARTIFACTS, HTTP_TIMEOUT, Broker, Management, Setup, http_session, send_html
from tests.support.idp import IdpProcess

pytestmark = pytest.mark.e2e

SPA_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>SPA</title></head><body>
<h1>Test SPA</h1><pre id="result">working</pre>
<script>
const config = __CONFIG__;
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
const show = (value) => { document.getElementById("result").textContent = JSON.stringify(value); };
async function post(path, form) {
  const response = await fetch(config.broker + path, { method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", "Auth0-Client": "dGVzdA" },
    body: new URLSearchParams(form) });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}
async function main() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code")) {
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    sessionStorage.setItem("verifier", verifier);
    location.assign(config.broker + "authorize?" + new URLSearchParams({
      client_id: config.client_id, redirect_uri: config.redirect_uri, response_type: "code",
      scope: "openid profile email offline_access", state: "spa-state", nonce: "spa-nonce",
      code_challenge: challenge, code_challenge_method: "S256", connection: config.connection }));
    return;
  }
  const form = { grant_type: "authorization_code", code: params.get("code"),
    redirect_uri: config.redirect_uri, client_id: config.client_id,
    code_verifier: sessionStorage.getItem("verifier") };
  if (config.foreign) { show({ landed: true, form }); return; }  // the test drives the rest
  const tokens = await post("oauth/token", form);
  const info = await fetch(config.broker + "userinfo",
    { headers: { Authorization: "Bearer " + tokens.body.access_token } });
  const refreshed = await post("oauth/token", { grant_type: "refresh_token", client_id: config.client_id,
    refresh_token: tokens.body.refresh_token });
  const revoked = await post("oauth/revoke", { client_id: config.client_id,
    token: refreshed.body.refresh_token });
  const after = await post("oauth/token", { grant_type: "refresh_token", client_id: config.client_id,
    refresh_token: refreshed.body.refresh_token });
  show({ token_status: tokens.status, has_id_token: Boolean(tokens.body.id_token),
    userinfo_status: info.status, userinfo: await info.json(),
    refresh_status: refreshed.status, rotated: refreshed.body.refresh_token !== tokens.body.refresh_token,
    revoke_status: revoked.status, after_revoke: after.status, after_error: after.body.error });
}
main().catch((error) => show({ failed: String(error) }));
</script></body></html>"""


class SpaServer:
    """Serves the SPA page at /spa with a per-test configuration (loopback only)."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] != "/spa":
                    self.send_error(404)
                    return
                payload = SPA_PAGE.replace("__CONFIG__", json.dumps(server.config)).encode()
                send_html(self, payload)

            def log_message(self, format, *args):  # noqa: A002 - signature of the base class
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="e2e-spa", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture()
def spa_server() -> Iterator[SpaServer]:
    server = SpaServer()
    yield server
    server.stop()


def _spa_client(management: Management, setup: Setup, redirect_uri: str) -> dict:
    app = management.call("POST", "api/v2/clients", {
        "name": f"e2e-spa-{secrets.token_hex(3)}", "app_type": "spa", "callbacks": [redirect_uri]},
        expect=201)
    management.call("PATCH", f"api/v2/connections/{setup.connections['back']['id']}/clients",
                    [{"client_id": app["client_id"], "status": True}], expect=204)
    return app


def _result(page: Any) -> dict:
    from playwright.sync_api import expect

    expect(page.locator("#result")).not_to_have_text("working", timeout=20000)
    return json.loads(page.locator("#result").inner_text())


def test_spa_in_the_browser_uses_the_token_endpoint_with_cors(page, broker: Broker, idp: IdpProcess,
                                                              management: Management, setup: Setup,
                                                              spa_server: SpaServer):
    redirect_uri = f"http://127.0.0.1:{spa_server.port}/spa"
    app = _spa_client(management, setup, redirect_uri)
    spa_server.config = {"broker": broker.url(""), "client_id": app["client_id"],
                         "redirect_uri": redirect_uri, "connection": setup.connections["back"]["name"]}
    page.goto(redirect_uri)
    page.wait_for_selector("#login")
    page.fill("#login", "alice")
    page.click("#submit")
    result = _result(page)
    page.screenshot(path=str(ARTIFACTS / "spa-cors.png"), full_page=True)
    assert result.get("token_status") == 200, result
    assert result["has_id_token"] and result["userinfo_status"] == 200
    assert result["userinfo"]["email"] == "alice@example.com"
    assert result["refresh_status"] == 200 and result["rotated"]
    assert result["revoke_status"] == 200
    assert (result["after_revoke"], result["after_error"]) == (400, "invalid_grant")


def test_spa_code_on_a_foreign_origin_cannot_be_read_or_redeemed(page, broker: Broker, idp: IdpProcess,
                                                                 management: Management, setup: Setup,
                                                                 spa_server: SpaServer):
    """The page signs in on a second origin (another port, then a registered callback); once the
    application lists only the first origin, the page's fetch to the token endpoint is cross-origin
    from an origin it does not allow: the browser blocks it and the broker refused it, so the code was
    not consumed and a server (no Origin) still redeems it."""
    foreign = SpaServer()
    try:
        _foreign_origin(page, broker, management, setup, spa_server, foreign)
    finally:
        foreign.stop()


def _foreign_origin(page: Any, broker: Broker, management: Management, setup: Setup, spa_server: SpaServer,
                    foreign: SpaServer) -> None:
    foreign_uri = f"http://127.0.0.1:{foreign.port}/spa"
    own_uri = f"http://127.0.0.1:{spa_server.port}/spa"
    app = _spa_client(management, setup, foreign_uri)
    foreign.config = {"broker": broker.url(""), "client_id": app["client_id"],
                      "redirect_uri": foreign_uri, "connection": setup.connections["back"]["name"],
                      "foreign": True}
    page.goto(foreign_uri)
    page.wait_for_selector("#login")
    page.fill("#login", "alice")
    page.click("#submit")
    form = _result(page)["form"]
    management.call("PATCH", f"api/v2/clients/{app['client_id']}", {"callbacks": [own_uri]}, expect=200)

    outcome = page.evaluate("""async ([url, form]) => {
        try {
          const response = await fetch(url, { method: "POST", body: new URLSearchParams(form),
            headers: { "Content-Type": "application/x-www-form-urlencoded" } });
          return "read " + response.status + " " + await response.text();
        } catch (error) { return "blocked: " + error; }
    }""", [broker.url("oauth/token"), form])
    assert outcome.startswith("blocked: TypeError"), outcome

    management.call("PATCH", f"api/v2/clients/{app['client_id']}",
                    {"callbacks": [own_uri, foreign_uri]}, expect=200)
    redeemed = http_session().post(broker.url("oauth/token"), data=form, timeout=HTTP_TIMEOUT)
    assert redeemed.status_code == 200, redeemed.text  # the refused request consumed nothing
