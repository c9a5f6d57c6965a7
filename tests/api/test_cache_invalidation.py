"""SPEC §8: every cache entry an administrator's change makes stale is dropped by that change in
the same container. Each test first warms the cache through the route that reads it, then makes
the change through the Management API, then shows the very next request sees it.

The caches: the application (``clients.cached_client``: /authorize and the callback), the
connection by id (the callback), by name (/authorize?connection=, the keys route, GTR), the
connections enabled for an application (/authorize without connection=), and the upstream client
secret (Secrets Manager cache). Client grants are read uncached; a test keeps it that way.
"""
from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import get_token
from tests.support.flow import authorize_path, location_params

APP_CALLBACK = "https://app.example.com/callback"
OTHER_CALLBACK = "https://app.example.com/other"
UPSTREAM = "http://127.0.0.1:9"  # loopback; /authorize only redirects there, never fetches it
AUDIENCE = "http://127.0.0.1:8000/api/v2/"


def _options(**extra) -> dict:
    return {"client_id": "upstream-client", "issuer": f"{UPSTREAM}/",
            "authorization_endpoint": f"{UPSTREAM}/authorize", "jwks_uri": f"{UPSTREAM}/jwks",
            **extra}


@pytest.fixture()
def made(api):
    """Creates applications and connections; deletes what is left of them afterwards."""
    created: list[str] = []

    class Made:
        @staticmethod
        def app(**fields) -> dict:
            body = {"name": f"app-{uuid.uuid4().hex[:8]}", "callbacks": [APP_CALLBACK], **fields}
            response = api.call("POST", "/api/v2/clients", body=body)
            assert response.status_code == 201, response.data
            created.append(f"/api/v2/clients/{response.data['client_id']}")
            return response.data

        @staticmethod
        def connection(enabled: list[str], name: str | None = None, **options) -> dict:
            response = api.call("POST", "/api/v2/connections", body={
                "name": name or f"cache-{uuid.uuid4().hex[:10]}", "strategy": "oidc",
                "enabled_clients": enabled, "options": _options(**options)})
            assert response.status_code == 201, response.data
            created.append(f"/api/v2/connections/{response.data['id']}")
            return response.data

    yield Made
    for path in reversed(created):
        api.call("DELETE", path)


def _authorize(client, app: dict, redirect_uri: str = APP_CALLBACK, connection: str | None = None):
    return client.http.get(authorize_path(
        client_id=app["client_id"], redirect_uri=redirect_uri, response_type="code",
        scope="openid", state="s", connection=connection))


def assert_upstream(response, endpoint: str = f"{UPSTREAM}/authorize") -> None:
    assert response.status_code == 302, response.body
    assert response.headers["Location"].startswith(endpoint + "?"), response.headers["Location"]


def assert_error_page(response) -> None:
    """400 HTML page: no redirect at all (the application is unknown or the URI unregistered)."""
    assert response.status_code == 400, response.body
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")


def assert_refused_to_app(response, redirect_uri: str = APP_CALLBACK) -> None:
    """The connection is refused: the application hears invalid_request; nothing goes upstream."""
    assert response.status_code == 302, response.body
    assert response.headers["Location"].startswith(redirect_uri + "?"), response.headers
    assert location_params(response)["error"] == "invalid_request"


# --- the application cache ----------------------------------------------------------------------

def test_deleted_client_is_unknown_at_once(client, api, made):
    app = made.app()
    con = made.connection([app["client_id"]])
    assert_upstream(_authorize(client, app, connection=con["name"]))  # warm
    assert api.call("DELETE", f"/api/v2/clients/{app['client_id']}").status_code == 204
    assert_error_page(_authorize(client, app, connection=con["name"]))
    assert_error_page(_authorize(client, app))


def test_removed_callback_is_refused_at_once(client, api, made):
    app = made.app(callbacks=[APP_CALLBACK])
    con = made.connection([app["client_id"]])
    assert_upstream(_authorize(client, app, connection=con["name"]))  # warm
    patched = api.call("PATCH", f"/api/v2/clients/{app['client_id']}",
                       body={"callbacks": [OTHER_CALLBACK]})
    assert patched.status_code == 200, patched.data
    assert_error_page(_authorize(client, app, connection=con["name"]))
    assert_upstream(_authorize(client, app, OTHER_CALLBACK, connection=con["name"]))


def test_rotated_secret_is_not_served_from_the_cache(client, api, made):
    from chalicelib.registry.clients import cached_client, get_client

    app = made.app()
    before = cached_client(app["client_id"])["client_secret_hash"]  # warm
    rotated = api.call("POST", f"/api/v2/clients/{app['client_id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.data
    after = cached_client(app["client_id"])["client_secret_hash"]
    assert after != before
    assert after == get_client(app["client_id"])["client_secret_hash"]


def test_created_client_is_not_hidden_by_a_cached_miss(client, api, made, monkeypatch):
    from chalicelib.management import clients

    app_id = clients.new_client_id()
    monkeypatch.setattr(clients, "new_client_id", lambda: app_id)
    assert clients.cached_client(app_id) is None  # warm: a cached miss
    made.app()
    assert clients.cached_client(app_id)["client_id"] == app_id


# --- the connection caches ----------------------------------------------------------------------

def test_disabled_connection_is_refused_at_once(client, api, made):
    app = made.app()
    con = made.connection([app["client_id"]])
    assert_upstream(_authorize(client, app, connection=con["name"]))  # warm: by name
    assert_upstream(_authorize(client, app))  # warm: the enabled list
    response = api.call("PATCH", f"/api/v2/connections/{con['id']}/clients",
                        body=[{"client_id": app["client_id"], "status": False}])
    assert response.status_code == 204, response.data
    assert_refused_to_app(_authorize(client, app, connection=con["name"]))
    assert_refused_to_app(_authorize(client, app))


def test_enabled_clients_patch_is_seen_at_once(client, api, made):
    app = made.app()
    con = made.connection([])
    assert_refused_to_app(_authorize(client, app, connection=con["name"]))  # warm: by name
    assert_refused_to_app(_authorize(client, app))  # warm: the (empty) enabled list
    response = api.call("PATCH", f"/api/v2/connections/{con['id']}",
                        body={"enabled_clients": [app["client_id"]]})
    assert response.status_code == 200, response.data
    assert_upstream(_authorize(client, app, connection=con["name"]))
    assert_upstream(_authorize(client, app))
    response = api.call("PATCH", f"/api/v2/connections/{con['id']}", body={"enabled_clients": []})
    assert response.status_code == 200, response.data
    assert_refused_to_app(_authorize(client, app, connection=con["name"]))
    assert_refused_to_app(_authorize(client, app))


def test_deleted_connection_is_refused_at_once(client, api, made):
    from chalicelib.registry.connections import cached_connection

    app = made.app()
    con = made.connection([app["client_id"]])
    assert_upstream(_authorize(client, app, connection=con["name"]))  # warm: by name
    assert_upstream(_authorize(client, app))  # warm: the enabled list
    assert cached_connection(con["id"]) is not None  # warm: by id (the callback's read)
    assert api.call("DELETE", f"/api/v2/connections/{con['id']}").status_code == 204
    assert_refused_to_app(_authorize(client, app, connection=con["name"]))
    assert_refused_to_app(_authorize(client, app))
    assert cached_connection(con["id"]) is None


def test_deleted_client_leaves_no_cached_enablement(client, api, made):
    """Deleting an application disables it on every connection (no orphans): the connection
    as cached by id and by name forgets it too."""
    from chalicelib.registry.connections import cached_connection, cached_connection_by_name

    app = made.app()
    con = made.connection([app["client_id"]])
    assert app["client_id"] in cached_connection(con["id"])["enabled_clients"]  # warm
    assert app["client_id"] in cached_connection_by_name(con["name"])["enabled_clients"]
    assert api.call("DELETE", f"/api/v2/clients/{app['client_id']}").status_code == 204
    assert app["client_id"] not in (cached_connection(con["id"]).get("enabled_clients") or [])
    assert app["client_id"] not in (
        cached_connection_by_name(con["name"]).get("enabled_clients") or [])


def test_patched_options_are_used_at_once(client, api, made):
    from chalicelib.registry.connections import cached_connection

    app = made.app()
    con = made.connection([app["client_id"]])
    assert_upstream(_authorize(client, app, connection=con["name"]))  # warm: by name
    assert_upstream(_authorize(client, app))  # warm: the enabled list
    assert cached_connection(con["id"])["options"]["client_id"] == "upstream-client"
    moved = f"{UPSTREAM}/moved/authorize"
    response = api.call("PATCH", f"/api/v2/connections/{con['id']}", body={
        "options": _options(authorization_endpoint=moved, client_id="new-client")})
    assert response.status_code == 200, response.data
    assert_upstream(_authorize(client, app, connection=con["name"]), moved)
    assert_upstream(_authorize(client, app), moved)
    assert cached_connection(con["id"])["options"]["client_id"] == "new-client"


def test_created_connection_is_not_hidden_by_a_cached_miss(client, api, made):
    app = made.app()
    name = f"later-{uuid.uuid4().hex[:10]}"
    assert_refused_to_app(_authorize(client, app, connection=name))  # warm: a miss by name
    assert_refused_to_app(_authorize(client, app))  # warm: nothing enabled
    made.connection([app["client_id"]], name=name)
    assert_upstream(_authorize(client, app, connection=name))
    assert_upstream(_authorize(client, app))


def test_new_upstream_secret_is_used_at_once(client, api, made):
    from chalicelib.registry.connections import connection_secret, get_connection

    app = made.app()
    con = made.connection([app["client_id"]], client_secret="old-secret")
    assert connection_secret(get_connection(con["id"])) == "old-secret"  # warm
    response = api.call("PATCH", f"/api/v2/connections/{con['id']}",
                        body={"options": _options(client_secret="new-secret")})
    assert response.status_code == 200, response.data
    assert connection_secret(get_connection(con["id"])) == "new-secret"


# --- client grants: read uncached ---------------------------------------------------------------

def test_client_grant_changes_apply_at_once(client, api, made):
    machine = made.app(app_type="non_interactive", callbacks=[])
    granted = api.call("POST", "/api/v2/client-grants", body={
        "client_id": machine["client_id"], "audience": AUDIENCE,
        "scope": ["read:clients", "read:connections"]})
    assert granted.status_code == 201, granted.data

    def scope() -> str | None:
        response = get_token(client, machine["client_id"], machine["client_secret"])
        return json.loads(response.body).get("scope") if response.status_code == 200 else None

    assert scope() == "read:clients read:connections"
    path = f"/api/v2/client-grants/{granted.data['id']}"
    assert api.call("PATCH", path, body={"scope": ["read:clients"]}).status_code == 200
    assert scope() == "read:clients"
    assert api.call("DELETE", path).status_code == 204
    assert scope() is None
