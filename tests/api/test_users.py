"""Users at scale and without orphans: each profile in its own partition, listed through the
keys-only ``users`` index (per connection, sharded), and deleted with its connection (SPEC §2.4, §8)."""
from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.api import test_logout as flows
from tests.api.test_logout import claims_of, new_app, new_connection, refresh, sign_in, silent_authorize

idp = flows.idp


@pytest.fixture()
def two_connections(api, idp):
    app = new_app(api, "users-app", grant_types=["authorization_code", "refresh_token"])
    made = [new_connection(api, idp, f"users-{label}", [app["client_id"]]) for label in ("a", "b")]
    yield app, made[0], made[1]
    for connection in made:
        api.call("DELETE", f"/api/v2/connections/{connection['id']}")
    api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


def test_profiles_have_their_own_partitions_and_list_by_connection(client, api, two_connections):
    from chalicelib.store.dynamo import table

    app, first, second = two_connections
    _, a_tokens = sign_in(client, app, first, scope="openid offline_access")
    _, b_tokens = sign_in(client, app, second, scope="openid offline_access")
    a_user, b_user = claims_of(a_tokens["id_token"])["sub"], claims_of(b_tokens["id_token"])["sub"]
    assert a_user == f"oidc|{first['name']}|alice" and b_user == f"oidc|{second['name']}|alice"
    stored = table().get(f"USER#{a_user}", "PROFILE")
    assert stored is not None and stored["user_id"] == a_user
    assert stored["list_pk"].startswith(f"USERS#{first['name']}#") and stored["list_sk"] == a_user
    assert stored["email_key"] == f"{first['name']}|alice@example.com"
    assert list(table().query("USERS")) == []  # no partition every login writes to

    only_a = api.call("GET", f"/api/v2/users?connection={first['name']}").data
    assert [u["user_id"] for u in only_a] == [a_user]
    assert only_a[0]["email"] == "alice@example.com" and only_a[0]["logins_count"] == 1
    everyone = api.call("GET", "/api/v2/users?per_page=100").data
    ids = [u["user_id"] for u in everyone]
    assert a_user in ids and b_user in ids and ids == sorted(ids)
    totals = api.call("GET", f"/api/v2/users?connection={second['name']}&include_totals=true"
                             "&per_page=1&page=0").data
    assert totals["total"] == 1 and [u["user_id"] for u in totals["users"]] == [b_user]
    assert api.call("GET", f"/api/v2/users?connection={second['name']}&per_page=1&page=1").data == []
    assert api.call("GET", "/api/v2/users?connection=no-such-connection").data == []

    # A second login updates the same item (no second index entry).
    sign_in(client, app, first)
    again = api.call("GET", f"/api/v2/users?connection={first['name']}").data
    assert [(u["user_id"], u["logins_count"]) for u in again] == [(a_user, 2)]


def test_deleting_a_connection_deletes_its_users_and_everything_they_hold(client, api, two_connections):
    """SPEC §8: no orphans. The connection's users go with it: sessions end, refresh tokens die;
    the other connection's user of the same person is untouched."""
    app, first, second = two_connections
    a_browser, a_tokens = sign_in(client, app, first, scope="openid offline_access")
    _, b_tokens = sign_in(client, app, second, scope="openid offline_access")
    a_user = claims_of(a_tokens["id_token"])["sub"]
    a_cookie = a_browser.cookies["broker_session"]
    session_id = claims_of(a_tokens["id_token"])["sid"]

    assert api.call("DELETE", f"/api/v2/connections/{first['id']}").status_code == 204
    assert api.call("GET", f"/api/v2/users/{quote(a_user, safe='')}").status_code == 404
    assert api.call("GET", f"/api/v2/sessions/{session_id}").status_code == 404
    assert refresh(client, app, a_tokens["refresh_token"]).status_code == 400
    assert silent_authorize(client, app, second, a_cookie)["error"] == "login_required"
    from chalicelib.users import user_ids_by_email

    assert user_ids_by_email(first["name"], "alice@example.com") == []
    # The same person through the other connection keeps working.
    assert refresh(client, app, b_tokens["refresh_token"]).status_code == 200
    assert [u["user_id"] for u in api.call("GET", f"/api/v2/users?connection={second['name']}").data] == [
        claims_of(b_tokens["id_token"])["sub"]]
