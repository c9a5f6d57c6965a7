"""SPEC §2.4 user administration, as Auth0 admins use it: PATCH (blocked, app_metadata,
user_metadata), users-by-email, the q search subset, and refresh-token management. Logins go
through the real upstream IdP (tests/idp, module-scoped) and the broker's callback."""
from __future__ import annotations

import json
import uuid
from urllib.parse import quote, urlencode

import pytest

from tests.api.test_logout import (
    APP_CALLBACK,
    claims_of,
    new_app,
    new_connection,
    refresh,
    sign_in,
    silent_authorize,
    userinfo_status,
)
from tests.conftest import token_with_scopes
from tests.support.flow import (
    CALLBACK,
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
)
from tests.support.idp import default_idp_config, start_idp



@pytest.fixture(scope="module")
def idp():
    """The real upstream IdP with two accounts: alice and bob."""
    config = default_idp_config(redirect_uris=[CALLBACK])
    config["accounts"]["bob"] = {"sub": "bob", "email": "bob@example.com",
                                 "email_verified": True, "name": "Bob"}
    with start_idp(config) as running:
        yield running


@pytest.fixture()
def setup(api, idp):
    app = new_app(api, "admin-users-app", grant_types=["authorization_code", "refresh_token"])
    connection = new_connection(api, idp, "adm", [app["client_id"]])
    yield app, connection
    api.call("DELETE", f"/api/v2/connections/{connection['id']}")
    api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


def user_path(user_id: str, suffix: str = "") -> str:
    return f"/api/v2/users/{quote(user_id, safe='')}{suffix}"


def login_answer(client, app, connection, browser=None) -> dict:
    """A full login through the IdP and the callback; the parameters sent to the application."""
    browser = browser or Browser(client)
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", state="st", nonce="n-" + uuid.uuid4().hex,
        code_challenge=pkce_pair()[1], code_challenge_method="S256",
        connection=connection["name"], prompt="login"))
    method, params = idp_login(response.headers["Location"])
    return location_params(deliver_callback(browser, method, params))


def signed_in_user(client, app, connection):
    browser, tokens = sign_in(client, app, connection, scope="openid offline_access")
    return browser, tokens, claims_of(tokens["id_token"])["sub"]


def set_blocked_flag_only(user_id: str, value: bool) -> None:
    """The flag without the revocation that follows it in a PATCH: a block whose revocation is
    still in flight (or failed half-way). Each check must hold on its own."""
    from chalicelib.store.dynamo import table
    from chalicelib.users import key

    table().update(*key(user_id), "SET blocked = :b", values={":b": value})


def assert_api_error(response, status: int, code: str, *names: str) -> None:
    assert response.status_code == status, response.data
    assert response.data["statusCode"] == status and response.data["errorCode"] == code
    for name in names:
        assert name in response.data["message"], response.data


# --- PATCH: metadata ------------------------------------------------------------------------------

def test_metadata_merges_one_level_deep_and_null_removes(client, api, setup):
    app, connection = setup
    _, _, user_id = signed_in_user(client, app, connection)
    first = api.call("PATCH", user_path(user_id), body={
        "user_metadata": {"theme": "dark", "prefs": {"a": 1, "b": 2}, "lang": "fr"},
        "app_metadata": {"plan": "gold"}})
    assert first.status_code == 200, first.data
    assert first.data["user_metadata"] == {"theme": "dark", "prefs": {"a": 1, "b": 2},
                                           "lang": "fr"}
    second = api.call("PATCH", user_path(user_id), body={
        "user_metadata": {"prefs": {"c": 3}, "theme": None, "new": [1, "x"]}})
    assert second.status_code == 200, second.data
    # Top-level keys merge; a nested object is replaced whole; null removes the key.
    assert second.data["user_metadata"] == {"prefs": {"c": 3}, "lang": "fr", "new": [1, "x"]}
    assert second.data["app_metadata"] == {"plan": "gold"}  # untouched
    fetched = api.call("GET", user_path(user_id)).data
    assert fetched["user_metadata"] == second.data["user_metadata"]
    # A later login keeps the metadata (the login writes only its own attributes).
    sign_in(client, app, connection)
    assert api.call("GET", user_path(user_id)).data["app_metadata"] == {"plan": "gold"}
    cleared = api.call("PATCH", user_path(user_id), body={"app_metadata": {}})
    assert cleared.data["app_metadata"] == {} and cleared.data["user_metadata"]["lang"] == "fr"


def test_metadata_validation_changes_nothing(client, api, setup):
    app, connection = setup
    _, _, user_id = signed_in_user(client, app, connection)
    api.call("PATCH", user_path(user_id), body={"user_metadata": {"keep": "me"}})
    before = api.call("GET", user_path(user_id)).data

    too_big = api.call("PATCH", user_path(user_id),
                       body={"user_metadata": {"blob": "x" * (16 * 1024)}})
    assert_api_error(too_big, 400, "invalid_body", "user_metadata", "16384")
    # The limit is on the merged object: two halves that fit alone do not fit together.
    half = "y" * (9 * 1024)
    assert api.call("PATCH", user_path(user_id),
                    body={"user_metadata": {"h1": half}}).status_code == 200
    assert_api_error(api.call("PATCH", user_path(user_id), body={"user_metadata": {"h2": half}}),
                     400, "invalid_body", "user_metadata")
    api.call("PATCH", user_path(user_id), body={"user_metadata": {"h1": None}})
    assert_api_error(api.call("PATCH", user_path(user_id), body={"app_metadata": ["a"]}),
                     400, "invalid_body", "app_metadata")
    assert_api_error(api.call("PATCH", user_path(user_id), body={"app_metadata": {"a.b": 1}}),
                     400, "invalid_body", "a.b")
    # DynamoDB cannot store an empty map key nor an unpaired surrogate, at any depth.
    for bad in ({"x": {"": 1}}, {"x": [{"ok": "\ud800"}]}, {"\udc00": 1}):
        assert_api_error(api.call("PATCH", user_path(user_id), body={"app_metadata": bad}),
                         400, "invalid_body", "app_metadata")
    assert_api_error(api.call("PATCH", user_path(user_id),
                              body={"app_metadata": {"n": 1e300}}), 400, "invalid_body")
    assert_api_error(api.call("PATCH", user_path(user_id), body={"email": "x@example.com"}),
                     400, "invalid_body", "email")
    assert_api_error(api.call("PATCH", user_path(user_id), body={"favourite": 1}),
                     400, "invalid_body", "favourite")
    assert_api_error(api.call("PATCH", user_path(user_id), body={"blocked": "yes"}),
                     400, "invalid_body", "blocked")
    assert_api_error(api.call("PATCH", user_path(user_id), body={}), 400, "invalid_body")
    # A refused body changes nothing, not even the part that was valid.
    mixed = api.call("PATCH", user_path(user_id),
                     body={"user_metadata": {"keep": "changed"}, "nickname": "x"})
    assert_api_error(mixed, 400, "invalid_body", "nickname")
    after = api.call("GET", user_path(user_id)).data
    assert after["user_metadata"] == before["user_metadata"] == {"keep": "me"}
    assert "blocked" not in after


def test_patch_scope_and_unknown_user(client, api, setup):
    app, connection = setup
    _, _, user_id = signed_in_user(client, app, connection)
    reader = token_with_scopes(client, "read:users")
    refused = api.call("PATCH", user_path(user_id), body={"blocked": True}, token=reader)
    assert_api_error(refused, 403, "insufficient_scope")
    assert "blocked" not in api.call("GET", user_path(user_id)).data
    missing = api.call("PATCH", user_path(f"oidc|{connection['name']}|nobody"),
                       body={"app_metadata": {"a": 1}})
    assert_api_error(missing, 404, "inexistent_user")


# --- PATCH: blocked ------------------------------------------------------------------------------

def test_blocking_ends_everything_and_refuses_logins_until_unblocked(client, api, setup):
    app, connection = setup
    browser, tokens, user_id = signed_in_user(client, app, connection)
    cookie = browser.cookies["broker_session"]
    assert api.call("GET", user_path(user_id, "/sessions")).data["sessions"]
    logins_before = api.call("GET", user_path(user_id)).data["logins_count"]

    blocked = api.call("PATCH", user_path(user_id), body={"blocked": True})
    assert blocked.status_code == 200 and blocked.data["blocked"] is True
    assert api.call("GET", user_path(user_id)).data["blocked"] is True
    assert api.call("GET", user_path(user_id, "/sessions")).data["sessions"] == []
    assert refresh(client, app, tokens["refresh_token"]).data["error"] == "invalid_grant"
    assert userinfo_status(client, tokens["access_token"]) == 401
    assert "code" not in silent_authorize(client, app, connection, cookie)

    refused = login_answer(client, app, connection)
    assert refused["error"] == "access_denied" and refused["error_description"] == "user is blocked"
    # Nothing stored for the refused login: no session, no new login on the profile.
    assert api.call("GET", user_path(user_id, "/sessions")).data["sessions"] == []
    after = api.call("GET", user_path(user_id)).data
    assert after["logins_count"] == logins_before and after["blocked"] is True

    unblocked = api.call("PATCH", user_path(user_id), body={"blocked": False})
    assert unblocked.status_code == 200 and unblocked.data["blocked"] is False
    # Revoked tokens stay revoked; a new login works.
    assert refresh(client, app, tokens["refresh_token"]).status_code == 400
    _, fresh = sign_in(client, app, connection, scope="openid offline_access")
    assert userinfo_status(client, fresh["access_token"]) == 200
    assert refresh(client, app, fresh["refresh_token"]).status_code == 200
    assert api.call("GET", user_path(user_id)).data["logins_count"] == logins_before + 1


def test_the_blocked_flag_alone_refuses_refresh_userinfo_and_sso(client, api, setup):
    """Each check holds without the revocation (a block whose revocation is in flight)."""
    app, connection = setup
    browser, tokens, user_id = signed_in_user(client, app, connection)
    cookie = browser.cookies["broker_session"]
    set_blocked_flag_only(user_id, True)

    refused = refresh(client, app, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.data["error"] == "invalid_grant"
    assert userinfo_status(client, tokens["access_token"]) == 401
    sso = silent_authorize(client, app, connection, cookie)
    assert sso["error"] == "access_denied" and sso["error_description"] == "user is blocked"

    set_blocked_flag_only(user_id, False)
    assert refresh(client, app, tokens["refresh_token"]).status_code == 200
    assert userinfo_status(client, tokens["access_token"]) == 200
    assert "code" in silent_authorize(client, app, connection, cookie)


# --- users-by-email and q ----------------------------------------------------------------------

def test_users_by_email_is_exact_and_case_insensitive(client, api, setup):
    app, connection = setup
    _, _, user_id = signed_in_user(client, app, connection)
    found = api.call("GET", "/api/v2/users-by-email?" + urlencode({"email": "ALICE@example.COM"}))
    assert found.status_code == 200, found.data
    assert user_id in [u["user_id"] for u in found.data]
    assert all(u["email"].casefold() == "alice@example.com" for u in found.data)
    assert api.call("GET", "/api/v2/users-by-email?email=alice%40example").data == []
    assert api.call("GET", "/api/v2/users-by-email?email=lice%40example.com").data == []
    fields = api.call("GET", "/api/v2/users-by-email?email=alice%40example.com&fields=user_id")
    assert all(set(u) == {"user_id"} for u in fields.data)
    assert_api_error(api.call("GET", "/api/v2/users-by-email"), 400, "invalid_query_string",
                     "email")
    assert_api_error(api.call("GET", "/api/v2/users-by-email?email=a%40b.c",
                              token=token_with_scopes(client, "read:clients")),
                     403, "insufficient_scope")


def search(api, q: str, **params):
    return api.call("GET", "/api/v2/users?" + urlencode({"q": q, **params}))


def test_q_supports_the_documented_subset(client, api, setup, idp):
    app, connection = setup
    other = new_connection(api, idp, "adm-other", [app["client_id"]])
    try:
        _, _, alice = signed_in_user(client, app, connection)
        _, bob_tokens = sign_in(client, app, connection, username="bob")
        bob = claims_of(bob_tokens["id_token"])["sub"]
        _, other_tokens = sign_in(client, app, other)
        alice_elsewhere = claims_of(other_tokens["id_token"])["sub"]
        name = connection["name"]

        def ids(response):
            assert response.status_code == 200, response.data
            body = response.data
            return [u["user_id"] for u in (body["users"] if isinstance(body, dict) else body)]

        assert ids(search(api, f'identities.connection:"{name}"')) == sorted([alice, bob])
        assert ids(search(api, f'user_id:"{bob}"')) == [bob]
        assert ids(search(api, 'email:"Alice@Example.com"')) == sorted([alice, alice_elsewhere])
        assert ids(search(api, f'email:"alice@example.com" AND identities.connection:"{name}"',
                          search_engine="v3")) == [alice]
        assert ids(search(api, f'user_id:"{bob}" AND email:"alice@example.com"')) == []
        assert ids(search(api, "blocked:true")) == []
        api.call("PATCH", user_path(bob), body={"blocked": True})
        assert ids(search(api, "blocked:true")) == [bob]
        assert ids(search(api, f'blocked:true AND identities.connection:"{name}"')) == [bob]
        assert ids(search(api, f'blocked:true AND identities.connection:"{other["name"]}"')) == []
        # The connection parameter and q combine.
        assert ids(search(api, 'email:"alice@example.com"', connection=other["name"])) == [
            alice_elsewhere]
        paged = search(api, f'identities.connection:"{name}"', per_page=1, page=1,
                       include_totals="true")
        assert paged.data["total"] == 2 and ids(paged) == [max(alice, bob)]
        searched_page = search(api, "email:alice@example.com", per_page=1, include_totals="true")
        assert searched_page.data["total"] == 2 and len(ids(searched_page)) == 1

        for q, named in [('name:"Alice"', "name"), ('email:"a" OR user_id:"b"', "OR"),
                         ("email:alice*", "alice*"), ("blocked:false", "blocked:false"),
                         ('email:"a" and blocked:true', "and"), ('NOT blocked:true', "NOT"),
                         ('(email:"a")', "(")]:
            assert_api_error(search(api, q), 400, "invalid_query_string", named)
        assert_api_error(search(api, "blocked:true", search_engine="v1"), 400,
                         "invalid_query_string", "search_engine")
    finally:
        api.call("DELETE", f"/api/v2/connections/{other['id']}")


# --- refresh tokens --------------------------------------------------------------------------------

@pytest.fixture()
def rotating_setup(api, idp):
    app = new_app(api, "admin-users-rotating", grant_types=["authorization_code", "refresh_token"],
                  refresh_token={"rotation_type": "rotating", "expiration_type": "expiring"})
    connection = new_connection(api, idp, "adm-rot", [app["client_id"]])
    yield app, connection
    api.call("DELETE", f"/api/v2/connections/{connection['id']}")
    api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


def test_refresh_tokens_are_listed_without_their_value_and_delete_revokes_the_family(
        client, api, rotating_setup):
    from chalicelib.tokens import digest

    app, connection = rotating_setup
    _, tokens, user_id = signed_in_user(client, app, connection)
    _, second = sign_in(client, app, connection, scope="openid offline_access")
    _, online_only = sign_in(client, app, connection, scope="openid")  # no refresh token
    rotated = refresh(client, app, tokens["refresh_token"])
    assert rotated.status_code == 200
    newest = rotated.data["refresh_token"]

    from chalicelib.store.dynamo import table

    # Rotation takes the old token out of the listing index: one entry per family remains.
    assert len(list(table().query_index("users", "list_pk", f"RTS#{user_id}"))) == 2
    listed = api.call("GET", user_path(user_id, "/refresh-tokens") + "?include_totals=true")
    assert listed.status_code == 200, listed.data
    families = {claims_of(t["access_token"])["gid"] for t in (tokens, second)}
    assert sorted(t["id"] for t in listed.data["tokens"]) == sorted(families)
    assert claims_of(online_only["access_token"])["gid"] not in {t["id"] for t in listed.data["tokens"]}
    raw = json.dumps(listed.data)
    for value in (tokens["refresh_token"], newest, second["refresh_token"]):
        assert value not in raw and digest(value) not in raw
    first_id = claims_of(tokens["access_token"])["gid"]
    [first] = [t for t in listed.data["tokens"] if t["id"] == first_id]
    assert set(first) == {"id", "user_id", "created_at", "idle_expires_at", "expires_at",
                          "client_id", "session_id", "rotating", "resource_servers",
                          "last_exchanged_at"}
    assert first["user_id"] == user_id and first["client_id"] == app["client_id"]
    assert first["rotating"] is True and first["last_exchanged_at"] is not None
    assert first["session_id"] == claims_of(tokens["id_token"])["sid"]
    assert first["resource_servers"][0]["scopes"] == "openid offline_access"
    assert first["created_at"] <= first["last_exchanged_at"] < first["expires_at"]
    assert api.call("GET", f"/api/v2/refresh-tokens/{first_id}").data == first
    paged = api.call("GET", user_path(user_id, "/refresh-tokens") + "?take=1")
    assert len(paged.data["tokens"]) == 1 and paged.data["next"] == paged.data["tokens"][0]["id"]

    reader = token_with_scopes(client, "read:users")
    assert_api_error(api.call("GET", user_path(user_id, "/refresh-tokens"), token=reader),
                     403, "insufficient_scope")
    assert_api_error(api.call("DELETE", f"/api/v2/refresh-tokens/{first_id}",
                              token=token_with_scopes(client, "read:refresh_tokens")),
                     403, "insufficient_scope")
    still = refresh(client, app, newest)
    assert still.status_code == 200  # nothing was revoked by the 403
    assert_api_error(api.call("GET", user_path(f"oidc|{connection['name']}|nobody",
                                               "/refresh-tokens")), 404, "inexistent_user")

    assert api.call("DELETE", f"/api/v2/refresh-tokens/{first_id}").status_code == 204
    latest = api.call("GET", user_path(user_id, "/refresh-tokens")).data["tokens"]
    assert [t["id"] for t in latest] == [claims_of(second["access_token"])["gid"]]
    # The whole family is dead: its tokens, and the access tokens issued from it.
    assert refresh(client, app, still.data["refresh_token"]).data["error"] == "invalid_grant"
    assert userinfo_status(client, still.data["access_token"]) == 401
    assert refresh(client, app, second["refresh_token"]).status_code == 200  # the other lives
    assert_api_error(api.call("GET", f"/api/v2/refresh-tokens/{first_id}"), 404,
                     "inexistent_refresh_token")
    assert_api_error(api.call("DELETE", f"/api/v2/refresh-tokens/{first_id}"), 404,
                     "inexistent_refresh_token")
