"""A real cross-site login in Chromium (SPEC §3.2, §4): the broker and the upstream IdP on different
sites, both over https, the way they are deployed.

- The broker runs as ``make run HTTPS=1 BROKER_HOSTNAME=broker.test`` serves it: issuer
  ``https://broker.test:<port>/``, through run_local.py's TLS proxy, with a certificate for
  broker.test from a local CA made for this module.
- The IdP (oidc-provider, tests/idp) is ``https://idp.test:<port>``: its issuer is that URL (so the ID
  tokens it signs say ``iss: https://idp.test:<port>``) and a TLS proxy (the same scripts/tls_proxy.py,
  certificate for idp.test from the same CA) sits in front of it, trusted by the IdP for
  X-Forwarded-Proto/Host so every URL it builds is an https idp.test one.
- Chromium maps both names to 127.0.0.1 (``--host-resolver-rules``) and trusts exactly these two
  certificates' keys (``--ignore-certificate-errors-spki-list``), not every certificate.

Only the browser can resolve idp.test. The broker's server side reaches the IdP's JWKS at its
listening address ``http://127.0.0.1:<idp port>/jwks`` (loopback http, allowed locally) — the stand-in
for DNS. So the connection is made with explicit endpoints and no discovery: ``issuer`` and
``authorization_endpoint`` are the IdP's public https ones, ``jwks_uri`` its loopback address. Nothing
about the login itself is simulated: it is a ``front_channel`` connection, so the IdP answers with a
``form_post`` from https://idp.test to https://broker.test — a cross-site POST that carries the
transaction cookie only because it is ``SameSite=None; Secure``. The second test is the control:
the same login with that one cookie made ``SameSite=Lax`` fails, which shows the POST really is
cross-site (a same-site POST would carry a Lax cookie).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS, HTTP_TIMEOUT, RelyingParty, pkce_pair
from tests.support.https_stack import LocalStack, StackError, free_port, start_local_stack
from tests.support.idp import IdpProcess, default_idp_config, start_idp

pytestmark = pytest.mark.e2e

BROKER_HOST = "broker.test"
IDP_HOST = "idp.test"


def _load_scripts():
    import sys

    scripts = str(Path(__file__).resolve().parents[2] / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import local_tls
    import tls_proxy

    return local_tls, tls_proxy


class CrossSite:
    def __init__(self, broker: LocalStack, idp: IdpProcess, idp_issuer: str, spki_hashes: list[str]):
        self.broker, self.idp, self.idp_issuer, self.spki_hashes = broker, idp, idp_issuer, spki_hashes
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = str(broker.ca_path)
        token = self.http.post(broker.url("oauth/token"), timeout=HTTP_TIMEOUT, data={
            "grant_type": "client_credentials", "client_id": broker.admin_client_id,
            "client_secret": broker.admin_client_secret, "audience": broker.management_audience})
        assert token.status_code == 200, token.text
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = self.http.request(method, self.broker.url(path), json=body, timeout=HTTP_TIMEOUT)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def cross_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrossSite]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (scripts/install_browser.sh)", pytrace=False)
    local_tls, tls_proxy = _load_scripts()
    tls_dir = tmp_path_factory.mktemp("cross-site-tls")
    try:
        with start_local_stack(hostname=BROKER_HOST, tls_dir=tls_dir, max_seconds=900,
                               extra_env={"BROKER_DEMO": "0"}) as broker:
            assert broker.issuer == f"https://{BROKER_HOST}:{broker.port}/", broker.output()
            idp_files = local_tls.issue_server_certificate(tls_dir, [IDP_HOST], stem="idp")
            idp_port = free_port()
            idp_issuer = f"https://{IDP_HOST}:{idp_port}"
            config = default_idp_config(redirect_uris=[broker.issuer + "login/callback"])
            config.update(issuer=idp_issuer, trust_proxy=True)
            with start_idp(config, max_seconds=900) as idp:
                proxy = tls_proxy.TlsProxy(host="127.0.0.1", port=idp_port, backend_host="127.0.0.1",
                                           backend_port=idp.port, cert_file=idp_files.server_cert,
                                           key_file=idp_files.server_key)
                proxy.start()
                try:
                    broker_spki = local_tls.TlsFiles(broker.ca_path, tls_dir / "server.pem",
                                                     tls_dir / "server-key.pem").server_spki_hash()
                    yield CrossSite(broker, idp, idp_issuer, [broker_spki, idp_files.server_spki_hash()])
                finally:
                    proxy.stop()
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def browser(chromium: Any, cross_site: CrossSite) -> Iterator[Any]:
    """A Chromium of its own (the session's has no host mapping), launched from the same Playwright."""
    rules = f"MAP {BROKER_HOST} 127.0.0.1, MAP {IDP_HOST} 127.0.0.1"
    launched = chromium.browser_type.launch(
        executable_path=str(CHROMIUM), headless=True, timeout=30_000,
        args=[*CHROMIUM_ARGS, f"--host-resolver-rules={rules}",
              "--ignore-certificate-errors-spki-list=" + ",".join(cross_site.spki_hashes)])
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture(scope="module")
def rp_app() -> Iterator[RelyingParty]:
    app = RelyingParty()
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def login_setup(cross_site: CrossSite, rp_app: RelyingParty) -> dict[str, Any]:
    suffix = secrets.token_hex(3)
    client = cross_site.call("POST", "api/v2/clients", {
        "name": f"cross-site-{suffix}", "app_type": "regular_web", "callbacks": [rp_app.callback_url],
        "token_endpoint_auth_method": "client_secret_post"}, expect=201)
    loopback = f"http://127.0.0.1:{cross_site.idp.port}"
    connection = cross_site.call("POST", "api/v2/connections", {
        "name": f"cross-site-{suffix}", "strategy": "oidc", "options": {
            "type": "front_channel", "client_id": "broker-client",
            "issuer": cross_site.idp_issuer,
            "authorization_endpoint": cross_site.idp_issuer + "/auth",
            "jwks_uri": loopback + "/jwks"}}, expect=201)
    callback = cross_site.broker.issuer + "login/callback/" + connection["name"]
    assert connection["options"].get("callback_url", callback) == callback
    cross_site.idp.register_redirect_uri(callback)
    cross_site.call("PATCH", f"api/v2/connections/{connection['id']}/clients",
                    [{"client_id": client["client_id"], "status": True}], expect=204)
    return {"client": client, "connection": connection, "callback": callback}


def _start_login(context: Any, cross_site: CrossSite, rp_app: RelyingParty, setup: dict) -> tuple:
    """Open /authorize at https://broker.test and land on the IdP's login form at https://idp.test."""
    page = context.new_page()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    verifier, challenge = pkce_pair()
    page.goto(cross_site.broker.issuer + "authorize?" + urlencode({
        "client_id": setup["client"]["client_id"], "redirect_uri": rp_app.callback_url,
        "response_type": "code", "scope": "openid profile email", "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
        "connection": setup["connection"]["name"]}))
    page.wait_for_selector("#login")
    assert urlsplit(page.url).hostname == IDP_HOST and page.url.startswith("https://"), page.url
    return page, state, verifier


def _binding_cookies(context: Any, cross_site: CrossSite) -> list[dict]:
    return [c for c in context.cookies(cross_site.broker.issuer) if "session" not in c["name"]]


def test_cross_site_front_channel_login(browser: Any, cross_site: CrossSite, rp_app: RelyingParty,
                                        login_setup: dict):
    context = browser.new_context()
    context.set_default_timeout(15_000)
    try:
        page, state, verifier = _start_login(context, cross_site, rp_app, login_setup)
        # The browser stored the transaction binding as deployed: __Host-, Secure, SameSite=None.
        bindings = _binding_cookies(context, cross_site)
        assert len(bindings) == 1, context.cookies()
        binding = bindings[0]
        assert binding["name"].startswith("__Host-"), binding
        assert binding["secure"] and binding["httpOnly"] and binding["path"] == "/", binding
        assert binding["sameSite"] == "None", binding
        assert binding["domain"] == BROKER_HOST, binding  # host-only: no Domain attribute

        page.fill("#login", "alice")
        with page.expect_request(lambda r: r.method == "POST" and r.url == login_setup["callback"]) as posted:
            page.click("#submit")
            page.wait_for_url(re.compile("^" + re.escape(rp_app.callback_url) + r"\?"))
        request = posted.value
        # The cross-site form POST from https://idp.test carried the binding cookie.
        assert request.frame.page == page
        headers = request.all_headers()
        assert urlsplit(headers.get("origin", "")).hostname == IDP_HOST, headers
        assert f"{binding['name']}={binding['value']}" in headers.get("cookie", ""), headers
        assert "id_token=" in (request.post_data or "")

        params, _ = rp_app.callback_for(state)
        assert "error" not in params, params
        assert params["iss"] == cross_site.broker.issuer
        # The binding is spent; the broker's session cookie is __Host- too.
        assert not _binding_cookies(context, cross_site), context.cookies()
        session = [c for c in context.cookies(cross_site.broker.issuer) if "session" in c["name"]]
        assert session and session[0]["name"].startswith("__Host-") and session[0]["secure"], session

        # The application redeems the code at the broker's token endpoint.
        app_http = requests.Session()
        app_http.trust_env = False
        tokens = app_http.post(cross_site.broker.url("oauth/token"), verify=str(cross_site.broker.ca_path),
                               timeout=HTTP_TIMEOUT, data={
            "grant_type": "authorization_code", "code": params["code"], "redirect_uri": rp_app.callback_url,
            "code_verifier": verifier, "client_id": login_setup["client"]["client_id"],
            "client_secret": login_setup["client"]["client_secret"]})
        assert tokens.status_code == 200, tokens.text
        assert tokens.json()["id_token"] and tokens.json()["access_token"]
    finally:
        context.close()


def test_a_lax_binding_cookie_does_not_survive_the_cross_site_post(browser: Any, cross_site: CrossSite,
                                                                    rp_app: RelyingParty, login_setup: dict):
    """Control: the same login with the binding cookie made SameSite=Lax fails — the POST from the
    IdP is cross-site, so the browser withholds a Lax cookie and the broker issues no code."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    try:
        page, state, _ = _start_login(context, cross_site, rp_app, login_setup)
        (binding,) = _binding_cookies(context, cross_site)
        context.clear_cookies(name=binding["name"])  # only this one: the IdP's stay
        context.add_cookies([{"name": binding["name"], "value": binding["value"],
                              "url": cross_site.broker.issuer, "secure": True, "httpOnly": True,
                              "sameSite": "Lax", "expires": binding["expires"]}])
        (lax,) = _binding_cookies(context, cross_site)
        assert lax["sameSite"] == "Lax" and lax["domain"] == BROKER_HOST, lax

        page.fill("#login", "alice")
        with page.expect_response(lambda r: r.request.method == "POST"
                                  and r.url == login_setup["callback"]) as answered:
            page.click("#submit")
        response = answered.value
        assert binding["name"] not in (response.request.all_headers().get("cookie") or "")
        page.wait_for_load_state()
        codes = [p for p in rp_app.callbacks if p.get("state") == state and "code" in p]
        assert not codes, rp_app.callbacks
        location = response.headers.get("location") or ""
        assert "code=" not in location, location
    finally:
        context.close()
