"""Single-use things stay single-use under concurrency (SPEC §7): 20 parallel requests over real
HTTP against the threaded local server, exactly one winner each time."""
from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import requests

from tests.support.flow import CALLBACK, Browser, authorize_path, callback_url, idp_login, pkce_pair
from tests.support.idp import default_idp_config, start_idp
from tests.support.live_fixtures import live_url  # noqa: F401

APP_CALLBACK = "https://app.example.com/callback"
PARALLEL = 20


def _parallel(call, count=PARALLEL):
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


def test_concurrent_creates_of_one_connection_name(api, live_url):  # noqa: F811
    name = f"race-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"name": name, "strategy": "oidc", "options": {
        "client_id": "c", "issuer": "http://127.0.0.1:9/",
        "authorization_endpoint": "http://127.0.0.1:9/a", "jwks_uri": "http://127.0.0.1:9/j"}})
    headers = {"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"}

    def create():
        return requests.post(f"{live_url}/api/v2/connections", data=body, headers=headers,
                             timeout=30)

    statuses = sorted(r.status_code for r in _parallel(create))
    assert statuses == [201] + [409] * (PARALLEL - 1), statuses
    listed = api.call("GET", f"/api/v2/connections?name={name}").data
    assert len(listed) == 1
    api.call("DELETE", f"/api/v2/connections/{listed[0]['id']}")


@pytest.fixture(scope="module")
def idp():
    with start_idp(default_idp_config(redirect_uris=[CALLBACK])) as running:
        yield running


@pytest.fixture()
def spa_login(api, client, idp):
    spa = api.call("POST", "/api/v2/clients", body={
        "name": "spa", "app_type": "spa", "callbacks": [APP_CALLBACK]}).data
    connection = api.call("POST", "/api/v2/connections", body={
        "name": f"race-{uuid.uuid4().hex[:6]}", "strategy": "oidc",
        "enabled_clients": [spa["client_id"]],
        "options": {"type": "back_channel", "discovery_url": idp.issuer,
                    "client_id": "broker-client", "client_secret": "broker-secret",
                    "token_endpoint_auth_method": "client_secret_basic"}}).data
    idp.register_redirect_uri(callback_url(connection["name"]))

    def login():
        browser = Browser(client)
        verifier, challenge = pkce_pair()
        start = browser.get(authorize_path(
            client_id=spa["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
            scope="openid offline_access", state="s", code_challenge=challenge,
            code_challenge_method="S256", connection=connection["name"]))
        method, params = idp_login(start.headers["Location"])
        return browser, method, params, verifier

    yield spa, login
    api.call("DELETE", f"/api/v2/connections/{connection['id']}")


def _code_from(browser, method, params):
    from tests.support.flow import deliver_callback, location_params

    response = deliver_callback(browser, method, params)
    return location_params(response)["code"]


def test_concurrent_redemptions_of_one_code(live_url, spa_login):  # noqa: F811
    spa, login = spa_login
    browser, method, params, verifier = login()
    code = _code_from(browser, method, params)
    form = urlencode({"grant_type": "authorization_code", "code": code,
                      "redirect_uri": APP_CALLBACK, "code_verifier": verifier,
                      "client_id": spa["client_id"]})

    def redeem():
        return requests.post(f"{live_url}/oauth/token", data=form, timeout=30, headers={
            "Content-Type": "application/x-www-form-urlencoded"})

    results = _parallel(redeem)
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1, statuses
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code != 200)


def _parallel_refreshes(base_url, spa_login):
    """A fresh login's refresh token, presented PARALLEL times at once over HTTP."""
    spa, login = spa_login
    browser, method, params, verifier = login()
    code = _code_from(browser, method, params)
    tokens = requests.post(f"{base_url}/oauth/token", timeout=30, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": APP_CALLBACK,
        "code_verifier": verifier, "client_id": spa["client_id"]}).json()
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
            "client_id": spa["client_id"]}
    return _parallel(lambda: requests.post(f"{base_url}/oauth/token", data=form, timeout=30))


def test_concurrent_uses_of_one_refresh_token(live_url, spa_login):  # noqa: F811
    statuses = sorted(r.status_code for r in _parallel_refreshes(live_url, spa_login))
    assert statuses.count(200) == 1, statuses
    assert statuses.count(400) == PARALLEL - 1, statuses


def test_concurrent_uses_within_the_leeway_all_succeed(api, live_url, spa_login):  # noqa: F811
    """Two tabs (here twenty) refreshing with the same token at once, with Auth0's reuse interval
    set: every one gets a distinct new token and the family stays alive."""
    spa, _ = spa_login
    patched = api.call("PATCH", f"/api/v2/clients/{spa['client_id']}",
                       body={"refresh_token": {"rotation_type": "rotating", "leeway": 60}})
    assert patched.status_code == 200, patched.data
    results = _parallel_refreshes(live_url, spa_login)
    assert [r.status_code for r in results] == [200] * PARALLEL, [r.text for r in results]
    issued = {r.json()["refresh_token"] for r in results}
    assert len(issued) == PARALLEL
    for token in issued:  # every one of them works: nothing was revoked
        response = requests.post(f"{live_url}/oauth/token", timeout=30, data={
            "grant_type": "refresh_token", "refresh_token": token, "client_id": spa["client_id"]})
        assert response.status_code == 200, response.text


def test_concurrent_callbacks_with_one_state(live_url, spa_login):  # noqa: F811
    spa, login = spa_login
    browser, method, params, verifier = login()
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())

    def callback():
        if method == "POST":
            return requests.post(f"{live_url}{params.path}", data=params, timeout=30,
                                 headers={"Cookie": cookie}, allow_redirects=False)
        return requests.get(f"{live_url}{params.path}", params=params, timeout=30,
                            headers={"Cookie": cookie}, allow_redirects=False)

    results = _parallel(callback)
    with_code = [r for r in results if r.status_code == 303 and "code=" in r.headers["Location"]]
    assert len(with_code) == 1, [r.status_code for r in results]
