"""SPEC §5 + §6: what a Global Token Revocation does to the applications of the user.

- Back-channel logout: every application that got tokens in the user's (SSO) session receives one
  logout token, validated by a real relying-party endpoint (tests/support/bcl_receiver.py).
- Refreshes racing the revocation over real HTTP: whatever tokens they obtained are dead afterwards.

The upstream IdP is the scriptable fake (tests/support/fake_idp.py): it signs the ID tokens that
create the user and the session, and the revocation JWT. Deliveries run through
``backchannel.process_queue_once()`` (tests/api/test_backchannel.py's ``drain``); nothing sleeps.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from chalicelib.logout import backchannel
from tests.api.test_backchannel import drain, jwks, queues, receivers  # noqa: F401 - fixtures
from tests.api.test_gtr import (  # noqa: F401 - make_connection, web, conn are fixtures
    GTR_PATH,
    claims_of,
    conn,
    gtr_jwt,
    iss_sub,
    login,
    make_connection,
    post,
    web,
)
from tests.api.test_logout import new_app, refresh, sign_in, userinfo_status
from tests.support.live_server import live_server

ISSUER = "http://127.0.0.1:8000/"
REFRESHES = 50
HTTP_TIMEOUT = 60


# --------------------------------------------------------------------------- back-channel logout

@pytest.fixture()
def two_apps(api, make_connection, idp):  # noqa: F811
    """Two confidential web applications on one connection to the fake IdP."""
    first, second = new_app(api, "gtr-bcl-one"), new_app(api, "gtr-bcl-two")
    connection = make_connection(idp, [first["client_id"], second["client_id"]])
    yield first, second, connection
    for app in (first, second):
        api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


def test_gtr_sends_one_validated_logout_token_to_each_application(client, idp, two_apps,
                                                                  queues, receivers):  # noqa: F811
    first, second, connection = two_apps
    first_rp, second_rp = receivers(first), receivers(second)
    browser, first_tokens = sign_in(client, first, connection)
    upstream_logins = len(idp.requests_to("/authorize"))
    _, second_tokens = sign_in(client, second, connection, browser=browser)
    assert len(idp.requests_to("/authorize")) == upstream_logins  # SSO: the IdP was skipped
    first_claims = claims_of(first_tokens["id_token"])
    second_claims = claims_of(second_tokens["id_token"])
    assert first_claims["sid"] == second_claims["sid"]
    assert first_claims["sub"] == second_claims["sub"] == f"oidc|{connection['name']}|alice"
    assert drain() == []  # logging in queued nothing

    response = post(client, connection["name"], gtr_jwt(idp, connection), iss_sub(idp, "alice"))
    assert response.status_code == 204, response.body

    assert sorted(drain()) == ["delivered", "delivered"]
    assert drain() == []
    for rp, app, id_claims in ((first_rp, first, first_claims), (second_rp, second, second_claims)):
        assert len(rp.deliveries) == 1, rp.deliveries
        [delivery] = rp.deliveries
        # The receiver validated signature (broker JWKS), typ, iss, aud, iat, exp, jti, sub/sid,
        # events and the absence of nonce; a failure would show here as an error and a 400.
        assert delivery.error is None and delivery.status == 200, delivery
        assert delivery.content_type.startswith("application/x-www-form-urlencoded")
        assert delivery.header["typ"] == "logout+jwt" and delivery.header["alg"] == "RS256"
        claims = delivery.claims
        assert claims["iss"] == ISSUER
        assert claims["aud"] == app["client_id"]
        assert claims["sub"] == id_claims["sub"]
        assert claims["sid"] == id_claims["sid"]
        assert isinstance(claims["iat"], int) and 0 < claims["exp"] - claims["iat"] <= 120
        assert isinstance(claims["jti"], str) and claims["jti"]
        assert claims["events"] == {backchannel.EVENT: {}}
        assert "nonce" not in claims
    assert first_rp.deliveries[0].claims["jti"] != second_rp.deliveries[0].claims["jti"]
    # And the applications' tokens are dead.
    for tokens in (first_tokens, second_tokens):
        assert userinfo_status(client, tokens["access_token"]) == 401


# --------------------------------------------------------------------------- refreshes racing GTR

@pytest.fixture()
def live_url(app, monkeypatch):
    """tests/support/live_fixtures.py's ``live_url`` with a deeper listen backlog.

    chalice's local server listens with socketserver's default backlog of 5: 51 simultaneous
    connections overflow it and the kernel resets some POSTs before the server ever accepts them
    (seen as ``ConnectionResetError``), which would make the race below a test of the backlog.
    """
    from chalice.local import ThreadedHTTPServer

    monkeypatch.setattr(ThreadedHTTPServer, "request_queue_size", 128, raising=False)
    with live_server(app) as base_url:
        yield base_url


def _live_refresh(base_url: str, app: dict, refresh_token: str) -> requests.Response:
    return requests.post(f"{base_url}/oauth/token", timeout=HTTP_TIMEOUT, data={
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": app["client_id"], "client_secret": app["client_secret"]})


def _live_userinfo(base_url: str, access_token: str) -> int:
    return requests.get(f"{base_url}/userinfo", timeout=HTTP_TIMEOUT,
                        headers={"Authorization": f"Bearer {access_token}"}).status_code


def test_refreshes_racing_the_revocation_leave_no_live_token(client, live_url, idp, web,  # noqa: F811
                                                            conn):  # noqa: F811
    assert (web.get("refresh_token") or {}).get("rotation_type") == "non-rotating", web
    _, tokens = login(client, web, conn, idp)
    original = tokens["refresh_token"]
    warm = _live_refresh(live_url, web, original)  # concurrent uses are legitimate: no rotation
    assert warm.status_code == 200, warm.text
    assert warm.json().get("refresh_token") in (None, original)
    assert _live_userinfo(live_url, warm.json()["access_token"]) == 200

    half = REFRESHES // 2
    early_go = threading.Barrier(half + 1)  # the early refreshes and the revoker start together
    gtr_started = threading.Event()  # the late refreshes start once the revocation is on its way
    token = gtr_jwt(idp, conn)
    body = iss_sub(idp, "alice")

    def revoke() -> requests.Response:
        early_go.wait(timeout=30)
        gtr_started.set()
        return requests.post(f"{live_url}{GTR_PATH}{conn['name']}", json=body, timeout=HTTP_TIMEOUT,
                             headers={"Authorization": f"Bearer {token}"})

    def early() -> requests.Response:
        early_go.wait(timeout=30)
        return _live_refresh(live_url, web, original)

    def late() -> requests.Response:
        assert gtr_started.wait(timeout=30)
        return _live_refresh(live_url, web, original)

    with ThreadPoolExecutor(max_workers=REFRESHES + 1) as pool:
        revocation = pool.submit(revoke)
        futures = [pool.submit(early) for _ in range(half)]
        futures += [pool.submit(late) for _ in range(REFRESHES - half)]
        results = [f.result(timeout=120) for f in futures]
        gtr_response = revocation.result(timeout=120)
    assert gtr_response.status_code == 204, gtr_response.text

    statuses = [r.status_code for r in results]
    assert set(statuses) <= {200, 400}, statuses
    refused = [r.json() for r in results if r.status_code == 400]
    assert all(e["error"] == "invalid_grant" for e in refused), refused
    granted = [r.json() for r in results if r.status_code == 200]
    access_tokens = {t["access_token"] for t in granted} | {warm.json()["access_token"],
                                                            tokens["access_token"]}
    refresh_tokens = {t["refresh_token"] for t in granted if t.get("refresh_token")} | {original}

    live_access = [a for a in access_tokens if _live_userinfo(live_url, a) != 401]
    assert live_access == [], f"{len(live_access)} of {len(access_tokens)} access tokens survived"
    for refresh_token in refresh_tokens:
        answer = refresh(client, web, refresh_token)
        assert answer.status_code == 400 and answer.data["error"] == "invalid_grant", answer.data
    # The union of outcomes, for the record: every request got a definite answer.
    assert len(granted) + len(refused) == REFRESHES
