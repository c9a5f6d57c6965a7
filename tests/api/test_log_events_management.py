"""SPEC §9: every Management API write (POST, PATCH, PUT, DELETE under ``/api/v2/``) is one log
event, ``sapi`` or ``fapi``, naming the calling client, the method, the concrete path and the
status (Auth0's ``errorCode`` on failure); never the body nor the Authorization header. GETs are
not logged.

Each test calls the API as a machine client of its own, so its events are told apart from the
other tests' by ``client_id`` (the log partitions are shared)."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import Api, get_token
from tests.support.log_events import events_since, now_ms, one, text_of

AUDIENCE = "http://127.0.0.1:8000/api/v2/"


@pytest.fixture()
def machine(client, api):
    """``machine(scopes)``: an Api calling as a new machine client holding ``scopes``."""
    created = []

    def make(scopes: list[str]) -> Api:
        app = api.call("POST", "/api/v2/clients", body={"name": f"m2m-{uuid.uuid4().hex[:8]}",
                                                        "app_type": "non_interactive"})
        assert app.status_code == 201, app.data
        created.append(app.data["client_id"])
        grant = api.call("POST", "/api/v2/client-grants", body={
            "client_id": app.data["client_id"], "audience": AUDIENCE, "scope": scopes})
        assert grant.status_code == 201, grant.data
        token = get_token(client, app.data["client_id"], app.data["client_secret"])
        assert token.status_code == 200, token.body
        caller = Api(client, json.loads(token.body)["access_token"])
        caller.client_id = app.data["client_id"]  # type: ignore[attr-defined]
        return caller

    yield make
    for client_id in created:
        api.call("DELETE", f"/api/v2/clients/{client_id}")


def of(caller: Api):
    """The caller's Management API events (its token requests are events too: left out)."""
    return lambda event: (event.get("client_id") == caller.client_id  # type: ignore[attr-defined]
                          and event.get("type") in ("sapi", "fapi"))


def test_create_update_delete_are_sapi_with_method_path_and_status(machine):
    admin = machine(["create:clients", "update:clients", "delete:clients", "read:clients"])
    start = now_ms()
    created = admin.call("POST", "/api/v2/clients", body={"name": "logged"})
    assert created.status_code == 201, created.data
    client_id = created.data["client_id"]
    assert admin.call("PATCH", f"/api/v2/clients/{client_id}?fields=name",
                      body={"name": "renamed"}).status_code == 200
    assert admin.call("DELETE", f"/api/v2/clients/{client_id}").status_code == 204

    events = events_since(start, of(admin))
    assert [e["type"] for e in events] == ["sapi", "sapi", "sapi"]  # newest first
    delete, update, create = events
    assert create["description"] == "Create a client"
    assert create["details"] == {"request": {"method": "post", "path": "/api/v2/clients"},
                                 "response": {"statusCode": 201}}
    assert update["description"] == "Update a client"
    # The concrete path, without its query string.
    assert update["details"]["request"] == {"method": "patch",
                                            "path": f"/api/v2/clients/{client_id}"}
    assert delete["description"] == "Delete a client"
    assert delete["details"]["response"] == {"statusCode": 204}
    for event in events:
        assert event["client_id"] == admin.client_id
        assert event["log_id"] and event["date"]
        assert "user_id" not in event and "connection" not in event


def test_gets_are_not_logged(machine):
    reader = machine(["read:clients", "read:connections"])
    start = now_ms()
    assert reader.call("GET", "/api/v2/clients").status_code == 200
    assert reader.call("GET", "/api/v2/connections").status_code == 200
    assert reader.call("GET", "/api/v2/clients/nope").status_code == 404
    assert events_since(start, of(reader)) == []


def test_invalid_body_is_fapi_400_with_the_error_code(machine):
    admin = machine(["create:clients", "create:connections"])
    start = now_ms()
    assert admin.call("POST", "/api/v2/clients", body={"name": 7}).status_code == 400
    assert admin.call("POST", "/api/v2/connections", body="{not json").status_code == 400
    bad_json, bad_field = events_since(start, of(admin))
    assert bad_field["type"] == bad_json["type"] == "fapi"
    assert bad_field["details"] == {"request": {"method": "post", "path": "/api/v2/clients"},
                                    "response": {"statusCode": 400, "errorCode": "invalid_body"}}
    assert bad_field["description"] == "Failed to create a client"
    assert bad_json["details"]["request"]["path"] == "/api/v2/connections"
    assert bad_json["details"]["response"]["statusCode"] == 400


def test_missing_scope_is_fapi_403_naming_the_caller(machine):
    reader = machine(["read:clients"])
    start = now_ms()
    denied = reader.call("POST", "/api/v2/clients", body={"name": "nope"})
    assert denied.status_code == 403
    event = one(start, of(reader))
    assert event["type"] == "fapi"
    assert event["client_id"] == reader.client_id
    assert event["details"]["response"] == {"statusCode": 403, "errorCode": "insufficient_scope"}


def test_unknown_resource_is_fapi_404(machine):
    admin = machine(["update:clients"])
    start = now_ms()
    missing = f"nope{uuid.uuid4().hex}"
    assert admin.call("PATCH", f"/api/v2/clients/{missing}", body={"name": "x"}).status_code == 404
    event = one(start, of(admin))
    assert event["type"] == "fapi"
    assert event["details"] == {"request": {"method": "patch", "path": f"/api/v2/clients/{missing}"},
                                "response": {"statusCode": 404, "errorCode": "inexistent_client"}}


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "Basic dXNlcjpwYXNz"])
def test_failed_authentication_is_fapi_401_without_a_client(client, authorization):
    marker = uuid.uuid4().hex
    path = f"/api/v2/clients/{marker}"
    headers = {"Authorization": authorization} if authorization else {}
    start = now_ms()
    response = Api(client, "").call("DELETE", path, token=None, headers=headers)
    assert response.status_code == 401
    event = one(start, lambda e: e.get("details", {}).get("request", {}).get("path") == path)
    assert event["type"] == "fapi"
    assert "client_id" not in event
    assert event["details"]["response"] == {"statusCode": 401, "errorCode": "invalid_token"}
    assert "dXNlcjpwYXNz" not in text_of(event) and "not-a-jwt" not in text_of(event)


def _write_routes():
    import app

    for path, entry in sorted(app.app.routes.items()):
        for method in sorted(entry):
            if method in ("POST", "PATCH", "PUT", "DELETE") and path.startswith("/api/v2/"):
                yield method, path


def test_every_write_route_logs_once_even_when_refused(client):
    """Generic: every write route, whatever its resource, gives exactly one event (here fapi
    401), with its own description and its concrete path. A route that skipped the wrapper or
    authenticated some other way would show up here."""
    from chalicelib.api.http import api_write_description

    marker = uuid.uuid4().hex[:12]
    routes = list(_write_routes())
    assert len(routes) >= 20
    start = now_ms()
    expected = {}
    for method, template in routes:
        path = template.replace("{", f"{marker}-").replace("}", "")
        response = Api(client, "").call(method, path, body={} if method != "DELETE" else None,
                                        token=None)
        assert response.status_code == 401, (method, path, response.data)
        expected[(method.lower(), path)] = api_write_description(method, template)
    found: dict[tuple[str, str], list[str]] = {}
    for event in events_since(start, lambda e: e.get("type") == "fapi"):
        request = event["details"].get("request", {})
        key = (request.get("method"), request.get("path"))
        if key in expected:
            found.setdefault(key, []).append(event["description"])
    assert {route for route in expected if route not in found} == set()
    for route, description in expected.items():
        failed = f"Failed to {description[0].lower()}{description[1:]}"
        if marker in route[1]:
            assert found[route] == [failed], route
        else:  # a path without parameters: another test of the session may have used it too
            assert failed in found[route], route


def test_descriptions_name_the_operation():
    from chalicelib.api.http import api_write_description

    assert api_write_description("POST", "/api/v2/clients") == "Create a client"
    assert api_write_description("PATCH", "/api/v2/connections/{connection_id}") == (
        "Update a connection")
    assert api_write_description("DELETE", "/api/v2/client-grants/{grant_id}") == (
        "Delete a client grant")
    assert api_write_description("DELETE", "/api/v2/refresh-tokens/{token_id}") == (
        "Delete a refresh token")
    assert api_write_description("POST", "/api/v2/clients/{client_id}/rotate-secret") == (
        "Rotate a client's secret")
    generic = {api_write_description(m, p) for m, p in _write_routes()}
    assert not any("resource" == d.split()[-1] for d in generic), generic


def test_no_secret_of_the_body_or_the_response_reaches_the_event(machine, caplog):
    import logging

    admin = machine(["create:clients", "update:clients", "delete:clients"])
    planted = "planted-secret-" + uuid.uuid4().hex
    start = now_ms()
    with caplog.at_level(logging.INFO, logger="broker.events"):
        refused = admin.call("POST", "/api/v2/clients",
                             body={"name": "secretive", "client_secret": planted})
        created = admin.call("POST", "/api/v2/clients", body={"name": "secretive"})
        rotated = admin.call("POST", f"/api/v2/clients/{created.data['client_id']}/rotate-secret")
        patched = admin.call("PATCH", f"/api/v2/clients/{created.data['client_id']}",
                             body={"client_secret": planted, "name": "x"})
        admin.call("DELETE", f"/api/v2/clients/{created.data['client_id']}")
    assert refused.status_code == 400 and patched.status_code == 400
    assert rotated.status_code == 200
    secrets = [planted, created.data["client_secret"], rotated.data["client_secret"],
               admin.token]
    events = events_since(start, of(admin))
    assert [e["type"] for e in events] == ["sapi", "fapi", "sapi", "sapi", "fapi"]
    assert events[2]["description"] == "Rotate a client's secret"
    stored = " ".join(text_of(e) for e in events)
    lines = " ".join(json.dumps(getattr(r, "log_event", {})) + r.getMessage()
                     for r in caplog.records)
    assert admin.client_id in lines  # the log lines were captured: the check below can fail
    for secret in secrets:
        assert secret not in stored and secret not in lines
    assert "eyJ" not in stored


def test_a_crash_is_fapi_500(machine, monkeypatch):
    from chalicelib.management import clients

    admin = machine(["create:clients"])

    def crash(body):
        raise KeyError("internal detail")

    monkeypatch.setattr(clients, "create_client", crash)
    start = now_ms()
    response = admin.call("POST", "/api/v2/clients", body={"name": "boom"})
    assert response.status_code == 500
    event = one(start, of(admin))
    assert event["type"] == "fapi"
    assert event["details"]["response"] == {"statusCode": 500, "errorCode": "internal_error"}
    assert "internal detail" not in text_of(event)
