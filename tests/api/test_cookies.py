"""The broker's cookies (SPEC §3.2, §4): a fresh browser binding for each login, in its own cookie
so two tabs' logins coexist, and the ``__Host-`` prefix over https.

Loopback runs are same-site and over http, so the https attributes are checked on the
``Set-Cookie`` headers themselves, with ``BROKER_ISSUER`` set to an https URL for the test. The
fake IdP's answer is read from its redirect, never followed (nothing leaves loopback)."""
from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from chalicelib.login.transactions import MAX_PENDING_LOGINS, binding_cookie_name
from tests.support.fake_idp import connection_body
from tests.support.flow import (
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
)

APP_CALLBACK = "https://app.example.com/callback"
HTTPS_ISSUER = "https://broker.example/"


@pytest.fixture()
def setup(api, idp):
    web = api.call("POST", "/api/v2/clients", body={
        "name": "cookie-web", "app_type": "regular_web", "callbacks": [APP_CALLBACK]}).data
    body = connection_body(idp, f"cookies-{uuid.uuid4().hex[:6]}", channel="back",
                           enabled_clients=[web["client_id"]])
    connection = api.call("POST", "/api/v2/connections", body=body)
    assert connection.status_code == 201, connection.data
    yield {"web": web, "back": connection.data}
    api.call("DELETE", f"/api/v2/connections/{connection.data['id']}")


def set_cookies(response) -> list[str]:
    raw = response.headers.get("Set-Cookie")
    return raw if isinstance(raw, list) else ([raw] if raw else [])


def attributes(header: str) -> tuple[str, str, set[str]]:
    name_value, *rest = [part.strip() for part in header.split(";")]
    name, _, value = name_value.partition("=")
    return name, value, {a.lower() for a in rest}


def start(client, setup, browser=None):
    browser = browser or Browser(client)
    _, challenge = pkce_pair()
    response = browser.get(authorize_path(
        client_id=setup["web"]["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", state="app-state", code_challenge=challenge,
        code_challenge_method="S256", connection=setup["back"]["name"]))
    assert response.status_code == 302, response.body
    return browser, response


def bindings(browser) -> dict[str, str]:
    return {k: v for k, v in browser.cookies.items() if k.startswith("broker_tx_")}


# --------------------------------------------------------------------------- http (loopback)

def test_binding_cookie_attributes(client, setup):
    _, response = start(client, setup)
    upstream_state = location_params(response)["state"]
    [header] = [c for c in set_cookies(response) if c.startswith("broker_tx_")]
    name, value, attrs = attributes(header)
    assert name == binding_cookie_name(upstream_state)
    assert len(value) >= 43
    assert {"httponly", "secure", "samesite=none", "path=/"} <= attrs
    assert not any(a.startswith("domain=") for a in attrs)
    [max_age] = [a for a in attrs if a.startswith("max-age=")]
    assert 0 < int(max_age.split("=")[1]) <= 600


def test_each_login_gets_a_fresh_binding(client, setup):
    browser, _ = start(client, setup)
    first = bindings(browser)
    start(client, setup, browser)
    second = {k: v for k, v in bindings(browser).items() if k not in first}
    assert len(first) == 1 and len(second) == 1
    assert set(first.values()).isdisjoint(second.values())


def test_two_concurrent_logins_in_one_browser_both_complete(client, setup):
    browser, tab_one = start(client, setup)
    _, tab_two = start(client, setup, browser)
    answers = [idp_login(tab.headers["Location"]) for tab in (tab_one, tab_two)]
    for method, params in reversed(answers):  # the later tab finishes first
        response = deliver_callback(browser, method, params)
        assert "code" in location_params(response), location_params(response)
    assert bindings(browser) == {}  # each spent binding was expired


def test_another_browsers_callback_fails(client, setup):
    _, response = start(client, setup)
    method, params = idp_login(response.headers["Location"])
    intruder, _ = start(client, setup)  # with a binding of its own
    refused = deliver_callback(intruder, method, params)
    assert refused.status_code == 400 and "Location" not in refused.headers
    assert "broker_session" not in intruder.cookies


def test_pending_binding_cookies_are_bounded(client, setup):
    browser = Browser(client)
    for _ in range(MAX_PENDING_LOGINS + 3):
        start(client, setup, browser)
        assert len(bindings(browser)) <= MAX_PENDING_LOGINS
    assert len(bindings(browser)) == MAX_PENDING_LOGINS


# --------------------------------------------------------------------------- https: __Host-

def _host_cookie(header: str, same_site: str) -> str:
    name, value, attrs = attributes(header)
    assert name.startswith("__Host-"), header
    assert {"secure", "path=/", "httponly", f"samesite={same_site}"} <= attrs, header
    assert not any(a.startswith("domain=") for a in attrs), header
    return name


def test_https_cookies_use_the_host_prefix(client, setup, idp, monkeypatch):
    monkeypatch.setenv("BROKER_ISSUER", HTTPS_ISSUER)
    browser, response = start(client, setup)
    [binding] = set_cookies(response)
    # the transaction cookie must ride the IdP's cross-site form POST: SameSite=None; Secure
    name = _host_cookie(binding, "none")
    assert name == "__Host-" + binding_cookie_name(location_params(response)["state"])
    upstream = location_params(response)
    assert upstream["redirect_uri"] == f"{HTTPS_ISSUER}login/callback/{setup['back']['name']}"
    answer = requests.get(response.headers["Location"], allow_redirects=False, timeout=10)
    callback = urlsplit(answer.headers["Location"])
    assert callback.netloc == "broker.example"  # read, not followed
    params = {k: v[0] for k, v in parse_qs(callback.query).items()}

    # An unprefixed cookie with the same value is ignored over https (a sibling subdomain could
    # have planted it): the login cannot be completed with it.
    plain = Browser(client)
    plain.cookies = {name[len("__Host-"):]: browser.cookies[name]}
    assert deliver_callback(plain, "GET", params, path=callback.path).status_code == 400

    done = deliver_callback(browser, "GET", params, path=callback.path)
    assert "code" in location_params(done), location_params(done)
    headers = set_cookies(done)
    [session] = [h for h in headers if h.startswith("__Host-broker_session=")]
    _host_cookie(session, "none")  # silent authentication runs in the app's cross-site iframe
    [spent] = [h for h in headers if h.startswith(name + "=")]
    assert "max-age=0" in attributes(spent)[2]

    # The session is read back under its prefixed name only (SSO), and logout expires that name.
    again = browser.get(authorize_path(
        client_id=setup["web"]["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", state="s2", prompt="none", connection=setup["back"]["name"]))
    assert "code" in location_params(again), location_params(again)
    logout = browser.get("/v2/logout?" + "client_id=" + setup["web"]["client_id"])
    assert any(h.startswith("__Host-broker_session=;") and "Max-Age=0" in h
               for h in set_cookies(logout)), set_cookies(logout)


def test_https_try_cookie_uses_the_host_prefix(client, api, setup, monkeypatch):
    url = api.call("GET", f"/api/v2/connections/{setup['back']['id']}/try").data["url"]
    monkeypatch.setenv("BROKER_ISSUER", HTTPS_ISSUER)
    response = Browser(client).get(urlsplit(url).path + "?" + urlsplit(url).query)
    assert response.status_code == 302, response.body
    [header] = set_cookies(response)
    assert attributes(header)[0] == "__Host-broker_try"
    _host_cookie(header, "lax")
