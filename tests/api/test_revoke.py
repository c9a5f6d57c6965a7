"""SPEC §4 ``POST /oauth/revoke`` (RFC 7009) with tokens from real logins."""
from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest

from chalicelib.logout import backchannel
from tests.api import test_logout as flows
from tests.api.test_logout import refresh, sign_in, silent_authorize, userinfo_status
from tests.conftest import token_with_scopes

idp, apps = flows.idp, flows.apps


def revoke(client, form: dict, basic: tuple[str, str] | None = None, json_body: bool = False):
    headers = {"Content-Type": "application/json" if json_body else
               "application/x-www-form-urlencoded"}
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{basic[0]}:{basic[1]}".encode()).decode()
    body = json.dumps(form) if json_body else urlencode(form)
    response = client.http.post("/oauth/revoke", body=body, headers=headers)
    response.data = json.loads(response.body) if response.body else None
    return response


def creds(app) -> dict:
    form = {"client_id": app["client_id"]}
    if app.get("client_secret"):
        form["client_secret"] = app["client_secret"]
    return form


def assert_revoked_ok(response):
    assert response.status_code == 200, response.data
    assert response.body in (b"", "")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture()
def offline_login(client, apps):
    browser, tokens = sign_in(client, apps["web"], apps["connection"],
                              scope="openid offline_access")
    assert "refresh_token" in tokens
    return browser, tokens


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token", "something_else"])
def test_revoking_a_refresh_token_kills_the_family(client, apps, offline_login, hint):
    web = apps["web"]
    _, tokens = offline_login
    refreshed = refresh(client, web, tokens["refresh_token"])
    assert refreshed.status_code == 200
    form = {**creds(web), "token": tokens["refresh_token"]}
    if hint:
        form["token_type_hint"] = hint  # only a hint: a wrong one still finds the token
    assert_revoked_ok(revoke(client, form))
    again = refresh(client, web, tokens["refresh_token"])
    assert again.status_code == 400 and again.data["error"] == "invalid_grant"
    assert userinfo_status(client, tokens["access_token"]) == 401
    assert userinfo_status(client, refreshed.data["access_token"]) == 401
    # Idempotent: revoking again is still 200.
    assert_revoked_ok(revoke(client, form))


def test_revoking_an_access_token_revokes_its_grant(client, apps, offline_login):
    web = apps["web"]
    _, tokens = offline_login
    assert_revoked_ok(revoke(client, {**creds(web), "token": tokens["access_token"],
                                      "token_type_hint": "refresh_token"}))
    assert userinfo_status(client, tokens["access_token"]) == 401
    assert refresh(client, web, tokens["refresh_token"]).status_code == 400


def test_revocation_ends_no_session_and_sends_no_backchannel_logout(client, api, apps,
                                                                    offline_login, monkeypatch):
    from chalicelib import aws

    web, other, conn = apps["web"], apps["other"], apps["connection"]
    browser, tokens = offline_login
    sign_in(client, other, conn, browser=browser)  # SSO: a second app in the session
    patched = api.call("PATCH", f"/api/v2/clients/{other['client_id']}", body={
        "oidc_logout": {"backchannel_logout_urls": ["http://127.0.0.1:9/bcl"]}})
    assert patched.status_code == 200
    sqs = aws.client("sqs")
    sqs.purge_queue(QueueUrl=backchannel.queue_url())
    assert_revoked_ok(revoke(client, {**creds(web), "token": tokens["refresh_token"]}))
    pending = sqs.receive_message(QueueUrl=backchannel.queue_url(), MaxNumberOfMessages=10,
                                  WaitTimeSeconds=0).get("Messages", [])
    assert pending == []
    # RFC 7009 revokes a token, not a session: SSO still works without the IdP.
    assert "code" in silent_authorize(client, web, conn, browser.cookies["broker_session"])


def test_another_clients_token_is_refused_and_nothing_is_revoked(client, apps, offline_login):
    web, other = apps["web"], apps["other"]
    _, tokens = offline_login
    for token in (tokens["refresh_token"], tokens["access_token"]):
        response = revoke(client, {**creds(other), "token": token})
        assert response.status_code == 400
        assert response.data == {"error": "invalid_request", "error_description":
                                 "client is not authorized to revoke the presented token"}
    assert userinfo_status(client, tokens["access_token"]) == 200
    assert refresh(client, web, tokens["refresh_token"]).status_code == 200


def test_public_client_revokes_its_own_refresh_token(client, apps):
    spa = apps["spa"]
    _, tokens = sign_in(client, spa, apps["connection"], scope="openid offline_access")
    assert_revoked_ok(revoke(client, {"client_id": spa["client_id"],
                                      "token": tokens["refresh_token"]}, json_body=True))
    assert refresh(client, spa, tokens["refresh_token"]).status_code == 400


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 9000, "eyJhbGciOiJub25lIn0.e30."])
def test_unknown_token_is_200(client, apps, token):
    assert_revoked_ok(revoke(client, {**creds(apps["web"]), "token": token}))


def test_token_is_required(client, apps):
    response = revoke(client, creds(apps["web"]))
    assert response.status_code == 400 and response.data["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"


def test_client_authentication_is_required(client, apps, offline_login):
    web = apps["web"]
    _, tokens = offline_login
    bad = revoke(client, {"client_id": web["client_id"], "client_secret": "wrong",
                          "token": tokens["refresh_token"]})
    assert bad.status_code == 401 and bad.data["error"] == "invalid_client"
    missing = revoke(client, {"token": tokens["refresh_token"]})
    assert missing.status_code == 401
    assert refresh(client, web, tokens["refresh_token"]).status_code == 200


def test_client_credentials_token_is_an_unsupported_type(client):
    from tests.conftest import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET

    token = token_with_scopes(client, "read:users")
    response = revoke(client, {"token": token}, basic=(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET))
    assert response.status_code == 400 and response.data["error"] == "unsupported_token_type"
