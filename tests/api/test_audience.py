"""SPEC §2.5, §3.1: access-token audiences are registered APIs only. What /authorize refuses, what
a token for an API carries (aud, scope, lifetime), client credentials within a grant, and that a
deleted API gets no further tokens."""
from __future__ import annotations

import base64
import json
import uuid

import pytest

from tests.conftest import get_token
from tests.support.fake_idp import connection_body
from tests.support.flow import (
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
    token_request,
)

APP_CALLBACK = "https://app.example.com/callback"
USERINFO = "http://127.0.0.1:8000/userinfo"
MANAGEMENT = "http://127.0.0.1:8000/api/v2/"


def _api_body(**fields) -> dict:
    return {"identifier": f"https://orders-{uuid.uuid4().hex[:8]}.example.com/",
            "scopes": [{"value": "read:orders"}, {"value": "write:orders"}], **fields}


@pytest.fixture()
def setup(api, idp):
    apps = {}
    for key, app_type in (("web", "regular_web"), ("other", "regular_web"), ("spa", "spa")):
        created = api.call("POST", "/api/v2/clients", body={
            "name": key, "app_type": app_type, "callbacks": [APP_CALLBACK]})
        assert created.status_code == 201, created.data
        apps[key] = created.data
    connection = api.call("POST", "/api/v2/connections", body=connection_body(
        idp, f"aud-{uuid.uuid4().hex[:6]}", channel="back",
        enabled_clients=[a["client_id"] for a in apps.values()]))
    assert connection.status_code == 201, connection.data
    orders = api.call("POST", "/api/v2/resource-servers", body=_api_body(
        token_lifetime=5000, token_lifetime_for_web=900, allow_offline_access=True))
    assert orders.status_code == 201, orders.data
    yield {**apps, "connection": connection.data, "orders": orders.data}
    api.call("DELETE", f"/api/v2/connections/{connection.data['id']}")
    for app in apps.values():
        api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


def _authorize(client, setup, app, **extra):
    verifier, challenge = pkce_pair()
    browser = Browser(client)
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        state="s", nonce="n", code_challenge=challenge, code_challenge_method="S256",
        connection=setup["connection"]["name"], **extra))
    return browser, response, verifier


def login(client, setup, app, **extra):
    browser, response, verifier = _authorize(client, setup, app, **extra)
    assert response.status_code == 302, response.body
    callback = deliver_callback(browser, *idp_login(response.headers["Location"]))
    params = location_params(callback)
    assert "code" in params, params
    return params["code"], verifier


def exchange(client, app, code, verifier):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP_CALLBACK,
            "client_id": app["client_id"], "code_verifier": verifier}
    if app.get("client_secret"):
        form["client_secret"] = app["client_secret"]
    return token_request(client, form)


def refresh(client, app, token):
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": app["client_id"]}
    if app.get("client_secret"):
        form["client_secret"] = app["client_secret"]
    return token_request(client, form)


def claims(jwt: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))


def _app_error(response, error, description=None):
    assert response.status_code == 302, response.body
    assert response.headers["Location"].startswith(APP_CALLBACK + "?")
    params = location_params(response)
    assert params["error"] == error, params
    assert "code" not in params
    if description:
        assert params["error_description"] == description, params
    return params


def _invalid_grant(response):
    assert response.status_code == 400, response.data
    assert response.data["error"] == "invalid_grant", response.data


# ----------------------------------------------------------------------------- /authorize

def test_another_clients_id_is_not_an_audience(client, setup):
    _, response, _ = _authorize(client, setup, setup["web"], scope="openid",
                                audience=setup["other"]["client_id"])
    _app_error(response, "invalid_request", "unknown audience")


@pytest.mark.parametrize("audience", ["https://unregistered.example.com/", MANAGEMENT,
                                      "x" * 700, ""])
def test_unregistered_audiences_are_refused(client, setup, audience):
    _, response, _ = _authorize(client, setup, setup["web"], scope="openid", audience=audience)
    _app_error(response, "invalid_request", "unknown audience")


def test_management_api_is_refused_even_if_stored_as_an_api(client, setup):
    """Defence in depth: an API record under the Management API's audience (an older issuer, a
    hand-written item) still never makes /authorize mint a management-audience token."""
    from chalicelib.management.resource_servers import forget_cached_resource_servers
    from chalicelib.store import resource_servers as store

    planted = store.ResourceServer(id="f" * 24, identifier=MANAGEMENT, name="planted",
                                   scopes=[{"value": "read:clients", "description": ""}])
    store.create(planted)
    forget_cached_resource_servers()
    try:
        _, response, _ = _authorize(client, setup, setup["web"], scope="openid read:clients",
                                    audience=MANAGEMENT)
        _app_error(response, "invalid_request", "unknown audience")
    finally:
        store.delete(planted)
        forget_cached_resource_servers()


# ----------------------------------------------------------------------------- tokens for an API

def test_token_for_a_registered_api(client, setup):
    orders = setup["orders"]
    code, verifier = login(client, setup, setup["web"], audience=orders["identifier"],
                           scope="openid read:orders delete:orders profile")
    tokens = exchange(client, setup["web"], code, verifier)
    assert tokens.status_code == 200, tokens.data
    access = claims(tokens.data["access_token"])
    assert access["aud"] == [orders["identifier"], USERINFO]
    # Only scopes the API defines (delete:orders is not one), plus the OpenID scopes.
    assert access["scope"] == "openid read:orders profile" == tokens.data["scope"]
    assert access["exp"] - access["iat"] == 5000 == tokens.data["expires_in"]
    assert claims(tokens.data["id_token"])["aud"] == setup["web"]["client_id"]
    # The token works at /userinfo for its whole lifetime (the grant lives as long).
    info = client.http.get("/userinfo", headers={
        "Authorization": f"Bearer {tokens.data['access_token']}"})
    assert info.status_code == 200, info.body
    from chalicelib.provider import grant_store

    assert grant_store.get_grant(access["gid"])["ttl"] >= access["exp"]


def test_without_openid_the_audience_is_the_api_alone(client, setup):
    orders = setup["orders"]
    code, verifier = login(client, setup, setup["web"], audience=orders["identifier"],
                           scope="write:orders")
    tokens = exchange(client, setup["web"], code, verifier)
    assert tokens.status_code == 200, tokens.data
    access = claims(tokens.data["access_token"])
    assert access["aud"] == orders["identifier"]
    assert access["scope"] == "write:orders"
    assert "id_token" not in tokens.data


def test_spa_tokens_use_the_web_lifetime(client, setup):
    code, verifier = login(client, setup, setup["spa"], audience=setup["orders"]["identifier"],
                           scope="openid read:orders")
    tokens = exchange(client, setup["spa"], code, verifier)
    assert tokens.status_code == 200, tokens.data
    access = claims(tokens.data["access_token"])
    assert access["exp"] - access["iat"] == 900 == tokens.data["expires_in"]


def test_api_scopes_need_the_audience(client, setup):
    code, verifier = login(client, setup, setup["web"], scope="openid read:orders")
    tokens = exchange(client, setup["web"], code, verifier)
    assert tokens.data["scope"] == "openid"
    assert claims(tokens.data["access_token"])["aud"] == USERINFO


def test_offline_access_only_when_the_api_allows_it(api, client, setup):
    closed = api.call("POST", "/api/v2/resource-servers", body=_api_body()).data
    assert closed["allow_offline_access"] is False
    code, verifier = login(client, setup, setup["web"], audience=closed["identifier"],
                           scope="openid offline_access read:orders")
    tokens = exchange(client, setup["web"], code, verifier)
    assert tokens.status_code == 200, tokens.data
    assert "refresh_token" not in tokens.data
    assert tokens.data["scope"] == "openid read:orders"
    code, verifier = login(client, setup, setup["web"], audience=setup["orders"]["identifier"],
                           scope="openid offline_access read:orders")
    tokens = exchange(client, setup["web"], code, verifier)
    assert "refresh_token" in tokens.data
    again = refresh(client, setup["web"], tokens.data["refresh_token"])
    assert again.status_code == 200, again.data
    access = claims(again.data["access_token"])
    assert orders_aud(access) == setup["orders"]["identifier"]
    assert access["exp"] - access["iat"] == 5000 == again.data["expires_in"]
    # The API stops allowing refresh tokens: the ones it issued stop working.
    api.call("PATCH", f"/api/v2/resource-servers/{setup['orders']['id']}",
             body={"allow_offline_access": False})
    _invalid_grant(refresh(client, setup["web"], tokens.data["refresh_token"]))


def orders_aud(access: dict) -> str:
    return access["aud"][0] if isinstance(access["aud"], list) else access["aud"]


def test_a_removed_api_scope_leaves_refreshed_tokens(api, client, setup):
    orders = setup["orders"]
    code, verifier = login(client, setup, setup["web"], audience=orders["identifier"],
                           scope="openid offline_access read:orders write:orders")
    tokens = exchange(client, setup["web"], code, verifier)
    assert "write:orders" in tokens.data["scope"].split()
    api.call("PATCH", f"/api/v2/resource-servers/{orders['id']}",
             body={"scopes": [{"value": "read:orders"}]})
    again = refresh(client, setup["web"], tokens.data["refresh_token"])
    assert again.status_code == 200, again.data
    assert "write:orders" not in claims(again.data["access_token"])["scope"].split()


def test_a_scope_removed_before_the_code_exchange_is_not_in_the_token(api, client, setup):
    orders = setup["orders"]
    code, verifier = login(client, setup, setup["web"], audience=orders["identifier"],
                           scope="openid read:orders write:orders")
    api.call("PATCH", f"/api/v2/resource-servers/{orders['id']}",
             body={"scopes": [{"value": "read:orders"}]})
    tokens = exchange(client, setup["web"], code, verifier)
    assert tokens.status_code == 200, tokens.data
    assert claims(tokens.data["access_token"])["scope"] == "openid read:orders"


def test_requested_scope_at_authorize(setup):
    """/authorize keeps the OpenID scopes and the API's own; offline_access only when both the
    client and the API allow refresh tokens."""
    from chalicelib.login.authorize import _scope
    from chalicelib.store.resource_servers import ResourceServer

    scopes = [{"value": "read:orders", "description": ""}]
    closed = ResourceServer(id="a" * 24, identifier="https://a/", name="a", scopes=scopes)
    open_ = ResourceServer(id="b" * 24, identifier="https://b/", name="b", scopes=scopes,
                           allow_offline_access=True)
    web, machine = setup["web"], {"grant_types": ["authorization_code"]}
    asked = "openid offline_access read:orders delete:orders"
    assert _scope(asked, web, closed) == "openid read:orders"
    assert _scope(asked, web, open_) == "openid offline_access read:orders"
    assert _scope(asked, machine, open_) == "openid read:orders"
    assert _scope(asked, web, None) == "openid offline_access"


# ----------------------------------------------------------------------------- deleted APIs

def test_deleted_api_refuses_code_exchange(api, client, setup):
    orders = setup["orders"]
    code, verifier = login(client, setup, setup["web"], audience=orders["identifier"],
                           scope="openid read:orders")
    assert api.call("DELETE", f"/api/v2/resource-servers/{orders['id']}").status_code == 204
    _invalid_grant(exchange(client, setup["web"], code, verifier))


def test_api_deleted_elsewhere_refuses_code_exchange_and_refresh(client, setup):
    """Deleted in another container: this one's cache still has the API, and the token
    transaction's own check refuses."""
    from chalicelib.management.resource_servers import cached_resource_server
    from chalicelib.store import resource_servers as store

    orders = setup["orders"]
    first, v1 = login(client, setup, setup["web"], audience=orders["identifier"],
                      scope="openid offline_access read:orders")
    tokens = exchange(client, setup["web"], first, v1)
    assert tokens.status_code == 200, tokens.data
    code, verifier = login(client, setup, setup["web"], audience=orders["identifier"],
                           scope="openid read:orders")
    server = cached_resource_server(orders["identifier"])
    store.delete(server)  # not through the Management API: the cache is not dropped
    assert cached_resource_server(orders["identifier"]) is not None
    _invalid_grant(exchange(client, setup["web"], code, verifier))
    _invalid_grant(refresh(client, setup["web"], tokens.data["refresh_token"]))


def test_deleted_then_registered_again_api_refuses_old_refresh_tokens(api, client, setup):
    orders = setup["orders"]
    code, verifier = login(client, setup, setup["web"], audience=orders["identifier"],
                           scope="openid offline_access read:orders")
    tokens = exchange(client, setup["web"], code, verifier)
    assert tokens.status_code == 200, tokens.data
    assert api.call("DELETE", f"/api/v2/resource-servers/{orders['id']}").status_code == 204
    _invalid_grant(refresh(client, setup["web"], tokens.data["refresh_token"]))
    again = api.call("POST", "/api/v2/resource-servers", body={
        "identifier": orders["identifier"], "allow_offline_access": True,
        "scopes": [{"value": "read:orders"}]})
    assert again.status_code == 201, again.data
    _invalid_grant(refresh(client, setup["web"], tokens.data["refresh_token"]))


# ----------------------------------------------------------------------------- client credentials

def _machine(api):
    return api.call("POST", "/api/v2/clients", body={
        "name": "m", "app_type": "non_interactive"}).data


def _grant(api, machine, audience, scope):
    return api.call("POST", "/api/v2/client-grants", body={
        "client_id": machine["client_id"], "audience": audience, "scope": scope})


def test_client_credentials_within_the_grant(api, client, setup):
    orders, machine = setup["orders"], _machine(api)
    assert _grant(api, machine, orders["identifier"], ["read:orders"]).status_code == 201
    response = get_token(client, machine["client_id"], machine["client_secret"],
                         audience=orders["identifier"])
    assert response.status_code == 200, response.body
    body = json.loads(response.body)
    access = claims(body["access_token"])
    assert access["aud"] == orders["identifier"]
    assert access["scope"] == body["scope"] == "read:orders"
    assert access["exp"] - access["iat"] == 5000 == body["expires_in"]
    beyond = get_token(client, machine["client_id"], machine["client_secret"],
                       audience=orders["identifier"], scope="read:orders write:orders")
    assert beyond.status_code == 400
    assert json.loads(beyond.body)["error"] == "invalid_scope"
    # No management access from an API grant, and no API access from nothing.
    assert get_token(client, machine["client_id"], machine["client_secret"]).status_code == 403


def test_client_credentials_refused_for_unregistered_audiences(api, client, setup):
    machine = _machine(api)
    for audience in ("https://unregistered.example.com/", setup["web"]["client_id"]):
        response = get_token(client, machine["client_id"], machine["client_secret"],
                             audience=audience)
        assert response.status_code == 403, response.body
        assert json.loads(response.body)["error"] == "access_denied"


def test_client_credentials_drop_scopes_the_api_no_longer_defines(api, client, setup):
    orders, machine = setup["orders"], _machine(api)
    _grant(api, machine, orders["identifier"], ["read:orders", "write:orders"])
    api.call("PATCH", f"/api/v2/resource-servers/{orders['id']}",
             body={"scopes": [{"value": "read:orders"}]})
    body = json.loads(get_token(client, machine["client_id"], machine["client_secret"],
                                audience=orders["identifier"]).body)
    assert body["scope"] == "read:orders"


def test_grant_scopes_must_be_defined_by_the_api(api, setup):
    machine = _machine(api)
    response = _grant(api, machine, setup["orders"]["identifier"], ["delete:orders"])
    assert response.status_code == 400 and "delete:orders" in response.data["message"]
    response = _grant(api, machine, "https://unregistered.example.com/", [])
    assert response.status_code == 404
    assert response.data["errorCode"] == "inexistent_resource_server"
    ok = _grant(api, machine, setup["orders"]["identifier"], ["read:orders"]).data
    patched = api.call("PATCH", f"/api/v2/client-grants/{ok['id']}",
                       body={"scope": ["delete:orders"]})
    assert patched.status_code == 400
    assert api.call("GET", f"/api/v2/client-grants?client_id={machine['client_id']}"
                    ).data[0]["scope"] == ["read:orders"]


def test_grant_surviving_its_api_does_not_serve_a_new_one(api, client, setup):
    """A grant left behind for an API deleted without the Management API's sweep is tied to
    that registration: the API registered again does not revive it."""
    from chalicelib.management.resource_servers import forget_cached_resource_servers
    from chalicelib.store import resource_servers as store

    orders, machine = setup["orders"], _machine(api)
    _grant(api, machine, orders["identifier"], ["read:orders"])
    store.delete(store.get_by_identifier(orders["identifier"]))
    forget_cached_resource_servers()
    gone = get_token(client, machine["client_id"], machine["client_secret"],
                     audience=orders["identifier"])
    assert gone.status_code == 403, gone.body
    assert json.loads(gone.body)["error"] == "access_denied"
    api.call("POST", "/api/v2/resource-servers", body={
        "identifier": orders["identifier"], "scopes": [{"value": "read:orders"}]})
    response = get_token(client, machine["client_id"], machine["client_secret"],
                         audience=orders["identifier"])
    assert response.status_code == 403, response.body


def test_grant_cannot_be_created_for_an_api_deleted_meanwhile(api, setup, monkeypatch):
    """The grant's write checks the API in the same transaction: a delete between the read and
    the write leaves no grant behind."""
    from chalicelib.management import grants
    from chalicelib.store import resource_servers as store

    orders, machine = setup["orders"], _machine(api)
    real = store.get_by_identifier

    def read_then_delete(identifier):
        found = real(identifier)
        if found is not None:
            store.delete(found)
        return found

    monkeypatch.setattr(grants.resource_servers, "get_by_identifier", read_then_delete)
    response = _grant(api, machine, orders["identifier"], ["read:orders"])
    assert response.status_code == 404, response.data
    assert response.data["errorCode"] == "inexistent_resource_server"
    monkeypatch.undo()
    assert api.call("GET", f"/api/v2/client-grants?client_id={machine['client_id']}").data == []
