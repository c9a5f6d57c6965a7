"""SPEC §2.4 sessions in the Management API, shaped after Auth0's session object."""
from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from tests.api import test_logout as flows
from tests.api.test_logout import (
    claims_of,
    refresh,
    sign_in,
    silent_authorize,
    userinfo_status,
)
from tests.conftest import token_with_scopes

idp, apps = flows.idp, flows.apps
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def user_path(user_id: str) -> str:
    return f"/api/v2/users/{quote(user_id, safe='')}/sessions"


@pytest.fixture()
def two_sessions(client, apps):
    """alice: one session serving web and other (SSO), and a second one (another browser)."""
    conn = apps["connection"]
    browser, web_tokens = sign_in(client, apps["web"], conn)
    _, other_tokens = sign_in(client, apps["other"], conn, browser=browser,
                              scope="openid offline_access")
    second_browser, spa_tokens = sign_in(client, apps["spa"], conn, scope="openid offline_access")
    first = claims_of(web_tokens["id_token"])
    second = claims_of(spa_tokens["id_token"])
    assert first["sid"] != second["sid"] and first["sub"] == second["sub"]
    return {"user_id": first["sub"], "first": first["sid"], "second": second["sid"],
            "browsers": (browser, second_browser), "web": web_tokens, "other": other_tokens,
            "spa": spa_tokens}


def test_list_a_users_sessions(api, apps, two_sessions):
    response = api.call("GET", user_path(two_sessions["user_id"]))
    assert response.status_code == 200, response.data
    sessions = {s["id"]: s for s in response.data["sessions"]}
    assert set(sessions) >= {two_sessions["first"], two_sessions["second"]}
    first = sessions[two_sessions["first"]]
    assert first["user_id"] == two_sessions["user_id"]
    assert sorted(c["client_id"] for c in first["clients"]) == sorted(
        [apps["web"]["client_id"], apps["other"]["client_id"]])
    assert sessions[two_sessions["second"]]["clients"] == [{"client_id": apps["spa"]["client_id"]}]
    for field in ("created_at", "updated_at", "authenticated_at", "idle_expires_at", "expires_at"):
        assert ISO.match(first[field]), (field, first[field])
    assert first["created_at"] <= first["updated_at"] < first["idle_expires_at"] <= first[
        "expires_at"]
    [method] = first["authentication"]["methods"]
    assert method["name"] == "federated" and ISO.match(method["timestamp"])
    assert "cookie_digest" not in first and "grants" not in first


def test_user_id_with_raw_pipes_works_too(api, two_sessions):
    response = api.call("GET", f"/api/v2/users/{two_sessions['user_id']}/sessions")
    assert response.status_code == 200


def test_get_one_session(api, apps, two_sessions):
    response = api.call("GET", f"/api/v2/sessions/{two_sessions['first']}")
    assert response.status_code == 200
    assert response.data["id"] == two_sessions["first"]
    assert response.data["user_id"] == two_sessions["user_id"]


@pytest.mark.parametrize("path", ["/api/v2/sessions/no-such-session",
                                  "/api/v2/sessions/" + "x" * 100])
def test_unknown_session_is_404(api, path):
    for method in ("GET", "DELETE"):
        response = api.call(method, path)
        assert response.status_code == 404
        assert response.data == {"statusCode": 404, "error": "Not Found",
                                 "message": "The session does not exist.",
                                 "errorCode": "inexistent_session"}


def test_unknown_user_is_404(api):
    for method in ("GET", "DELETE"):
        response = api.call(method, user_path("oidc|nowhere|nobody"))
        assert response.status_code == 404 and response.data["errorCode"] == "inexistent_user"


def test_delete_one_session_revokes_it_like_gtr(client, api, apps, two_sessions):
    sid = two_sessions["first"]
    assert api.call("DELETE", f"/api/v2/sessions/{sid}").status_code == 204
    browser, second_browser = two_sessions["browsers"]
    assert silent_authorize(client, apps["web"], apps["connection"],
                            browser.cookies["broker_session"])["error"] == "login_required"
    assert userinfo_status(client, two_sessions["web"]["access_token"]) == 401
    # Offline refresh tokens of that session die too (unlike a plain logout) ...
    assert refresh(client, apps["other"], two_sessions["other"]["refresh_token"]).status_code == 400
    # ... and the other session is untouched.
    assert refresh(client, apps["spa"], two_sessions["spa"]["refresh_token"]).status_code == 200
    assert "code" in silent_authorize(client, apps["spa"], apps["connection"],
                                      second_browser.cookies["broker_session"])
    gone = api.call("GET", f"/api/v2/sessions/{sid}")
    assert gone.status_code == 404
    assert api.call("DELETE", f"/api/v2/sessions/{sid}").status_code == 404
    listed = api.call("GET", user_path(two_sessions["user_id"])).data["sessions"]
    assert sid not in {s["id"] for s in listed}


def test_delete_all_sessions_of_a_user(client, api, apps, two_sessions):
    assert api.call("DELETE", user_path(two_sessions["user_id"])).status_code == 204
    assert api.call("GET", user_path(two_sessions["user_id"])).data == {"sessions": []}
    for browser, app in zip(two_sessions["browsers"], (apps["web"], apps["spa"]), strict=True):
        assert silent_authorize(client, app, apps["connection"],
                                browser.cookies["broker_session"])["error"] == "login_required"
    assert refresh(client, apps["other"], two_sessions["other"]["refresh_token"]).status_code == 400
    assert refresh(client, apps["spa"], two_sessions["spa"]["refresh_token"]).status_code == 400
    # The user still exists: deleting sessions is not deleting the user.
    assert api.call("GET", f"/api/v2/users/{quote(two_sessions['user_id'], safe='')}"
                    ).status_code == 200


def test_scopes(client, api, two_sessions):
    sid = two_sessions["first"]
    reader = token_with_scopes(client, "read:sessions")
    other = token_with_scopes(client, "read:users delete:users")
    cases = [
        ("GET", user_path(two_sessions["user_id"]), other, 403),
        ("GET", f"/api/v2/sessions/{sid}", other, 403),
        ("DELETE", user_path(two_sessions["user_id"]), reader, 403),
        ("DELETE", f"/api/v2/sessions/{sid}", reader, 403),
        ("GET", f"/api/v2/sessions/{sid}", None, 401),
        ("DELETE", f"/api/v2/sessions/{sid}", None, 401),
        ("GET", f"/api/v2/sessions/{sid}", reader, 200),
        ("GET", user_path(two_sessions["user_id"]), reader, 200),
    ]
    for method, path, token, status in cases:
        response = api.call(method, path, token=token)
        assert response.status_code == status, (method, path, response.data)
        if status == 403:
            assert response.data["errorCode"] == "insufficient_scope"
    # Nothing was deleted by the refused calls.
    assert api.call("GET", f"/api/v2/sessions/{sid}").status_code == 200
