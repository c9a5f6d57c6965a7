"""SPEC §2.5: resource servers (APIs) through the Management API: shape, validation, scopes,
uniqueness under concurrency, and what deleting one takes with it."""
from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import token_with_scopes

BASE = "/api/v2/resource-servers"


def _err(response, status, code, *, naming: str | None = None):
    assert response.status_code == status, response.data
    assert response.data["errorCode"] == code, response.data
    assert response.data["statusCode"] == status
    if naming:
        assert naming in response.data["message"], response.data
    return response.data


def _identifier() -> str:
    return f"https://api-{uuid.uuid4().hex[:10]}.example.com/"


def new_api(api, **fields) -> dict:
    body = {"identifier": _identifier(), "name": "Orders API",
            "scopes": [{"value": "read:orders", "description": "Read orders"},
                       {"value": "write:orders", "description": "Write orders"}], **fields}
    response = api.call("POST", BASE, body=body)
    assert response.status_code == 201, response.data
    return response.data


def test_create_defaults_and_read_back(api):
    created = new_api(api)
    assert len(created["id"]) == 24
    assert created["signing_alg"] == "RS256"
    assert created["token_lifetime"] == 86400
    assert created["token_lifetime_for_web"] == 7200
    assert created["allow_offline_access"] is False
    assert created["skip_consent_for_verifiable_first_party_clients"] is True
    assert api.call("GET", f"{BASE}/{created['id']}").data == created
    listed = api.call("GET", BASE).data
    assert created in listed


def test_auth0_fields_are_stored_and_echoed(api):
    created = new_api(api, token_dialect="rfc9068_profile", enforce_policies=False,
                      authorization_details=[{"type": "payment"}],
                      subject_type_authorization={"user": {"policy": "allow_all"},
                                                  "client": {"policy": "require_client_grant"}},
                      token_encryption=None, consent_policy=None, proof_of_possession=None,
                      skip_consent_for_verifiable_first_party_clients=False)
    fetched = api.call("GET", f"{BASE}/{created['id']}").data
    assert fetched["token_dialect"] == "rfc9068_profile"
    assert fetched["authorization_details"] == [{"type": "payment"}]
    assert fetched["subject_type_authorization"]["client"]["policy"] == "require_client_grant"
    assert fetched["skip_consent_for_verifiable_first_party_clients"] is False


def test_get_then_patch_without_read_only_fields_changes_nothing(api):
    created = new_api(api, allow_offline_access=True, token_lifetime=3600,
                      token_lifetime_for_web=600, token_dialect="access_token")
    fetched = api.call("GET", f"{BASE}/{created['id']}").data
    body = {k: v for k, v in fetched.items() if k not in ("id", "identifier")}
    patched = api.call("PATCH", f"{BASE}/{created['id']}", body=body)
    assert patched.status_code == 200, patched.data
    assert patched.data == fetched
    assert api.call("GET", f"{BASE}/{created['id']}").data == fetched


def test_patch_changes_fields_and_null_restores_defaults(api):
    created = new_api(api)
    patched = api.call("PATCH", f"{BASE}/{created['id']}", body={
        "name": "Renamed", "scopes": [{"value": "read:orders"}], "allow_offline_access": True,
        "token_lifetime": 7200})
    assert patched.status_code == 200, patched.data
    assert patched.data["name"] == "Renamed"
    assert patched.data["scopes"] == [{"value": "read:orders", "description": ""}]
    assert patched.data["allow_offline_access"] is True
    reset = api.call("PATCH", f"{BASE}/{created['id']}", body={"token_lifetime": None})
    assert reset.data["token_lifetime"] == 86400


@pytest.mark.parametrize("body,naming", [
    ({}, "identifier"),
    ({"identifier": ""}, "identifier"),
    ({"identifier": "x" * 601}, "identifier"),
    ({"identifier": "https://api.example.com/" + "\u20ac" * 400}, "identifier"),  # >1024 bytes
    ({"identifier": "https://api.example.com/ orders"}, "identifier"),
    ({"identifier": "https://api.example.com/\n"}, "identifier"),
    ({"identifier": 5}, "identifier"),
    ({"signing_alg": "HS256"}, "HS256"),
    ({"signing_alg": "none"}, "signing_alg"),
    ({"signing_secret": "s" * 32}, "signing_secret"),
    ({"token_lifetime": 2_592_001}, "token_lifetime"),
    ({"token_lifetime": 0}, "token_lifetime"),
    ({"token_lifetime": "3600"}, "token_lifetime"),
    ({"token_lifetime": 600, "token_lifetime_for_web": 601}, "token_lifetime_for_web"),
    ({"token_lifetime_for_web": 2_592_001}, "token_lifetime_for_web"),
    ({"allow_offline_access": "yes"}, "allow_offline_access"),
    ({"scopes": [{"value": "read orders"}]}, "scopes"),
    ({"scopes": [{"value": ""}]}, "scopes"),
    ({"scopes": [{"value": 'read"x'}]}, "scopes"),
    ({"scopes": [{"value": "openid"}]}, "openid"),
    ({"scopes": [{"value": "offline_access"}]}, "offline_access"),
    ({"scopes": [{"value": "a"}, {"value": "a"}]}, "unique"),
    ({"scopes": [{"value": "a", "description": "d" * 501}]}, "scopes"),
    ({"scopes": [{"value": "a", "extra": 1}]}, "extra"),
    ({"name": "<script>"}, "name"),
    ({"enforce_policies": True}, "enforce_policies"),
    ({"token_dialect": "access_token_authz"}, "token_dialect"),
    ({"token_encryption": {"format": "compact-nested-jwe"}}, "token_encryption"),
    ({"consent_policy": "transactional-authorization-with-mfa"}, "consent_policy"),
    ({"proof_of_possession": {"mechanism": "dpop", "required": True}}, "proof_of_possession"),
    ({"subject_type_authorization": {"user": {"policy": "require_client_grant"}}},
     "subject_type_authorization"),
    ({"subject_type_authorization": {"client": {"policy": "deny_all"}}},
     "subject_type_authorization"),
    ({"is_system": True}, "is_system"),
    ({"unknown_field": 1}, "unknown_field"),
])
def test_create_validation(api, body, naming):
    full = {"identifier": _identifier(), **body} if "identifier" not in body and body else body
    if body == {}:
        full = {"name": "no identifier"}
    before = api.call("GET", BASE).data
    _err(api.call("POST", BASE, body=full), 400, "invalid_body", naming=naming)
    assert api.call("GET", BASE).data == before  # nothing was written


def test_identifier_is_never_a_client_id_nor_a_broker_audience(api):
    machine = api.call("POST", "/api/v2/clients", body={
        "name": "m", "app_type": "non_interactive"}).data
    for identifier in (machine["client_id"], "AdminBootstrapClient0000000000001",
                       "http://127.0.0.1:8000/api/v2/", "http://127.0.0.1:8000/api/v2",
                       "http://127.0.0.1:8000/userinfo"):
        _err(api.call("POST", BASE, body={"identifier": identifier}), 400, "invalid_body",
             naming="identifier")


def test_identifier_is_unique_and_immutable(api):
    created = new_api(api)
    _err(api.call("POST", BASE, body={"identifier": created["identifier"]}), 409,
         "resource_server_conflict")
    _err(api.call("PATCH", f"{BASE}/{created['id']}",
                  body={"identifier": _identifier()}), 400, "invalid_body", naming="identifier")
    _err(api.call("PATCH", f"{BASE}/{created['id']}", body={"id": "x" * 24}), 400,
         "invalid_body", naming="id")
    assert api.call("GET", f"{BASE}/{created['id']}").data == created


@pytest.mark.parametrize("body,naming", [
    ({"signing_alg": "HS256"}, "HS256"),
    ({"token_lifetime": 2_592_001}, "token_lifetime"),
    ({"token_lifetime": 3600}, "token_lifetime_for_web"),  # below the stored web lifetime
    ({"name": None}, "name"),
    ({"scopes": [{"value": "openid"}]}, "openid"),
    ({"enforce_policies": True}, "enforce_policies"),
])
def test_patch_validation_changes_nothing(api, body, naming):
    created = new_api(api, token_lifetime_for_web=7200)
    _err(api.call("PATCH", f"{BASE}/{created['id']}", body=body), 400, "invalid_body",
         naming=naming)
    assert api.call("GET", f"{BASE}/{created['id']}").data == created


def test_unknown_ids_are_404(api):
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        _err(api.call(method, f"{BASE}/{'0' * 24}", body=body), 404,
             "inexistent_resource_server")
    _err(api.call("GET", f"{BASE}/{'a' * 100}"), 404, "inexistent_resource_server")


@pytest.mark.parametrize("method,path,scope", [
    ("GET", BASE, "read:resource_servers"),
    ("POST", BASE, "create:resource_servers"),
    ("GET", f"{BASE}/x", "read:resource_servers"),
    ("PATCH", f"{BASE}/x", "update:resource_servers"),
    ("DELETE", f"{BASE}/x", "delete:resource_servers"),
])
def test_routes_need_their_scope(client, api, method, path, scope):
    from tests.conftest import Api

    others = "read:clients create:clients update:clients delete:clients read:resource_servers"
    weak = Api(client, token_with_scopes(client, " ".join(
        s for s in others.split() if s != scope)))
    body = {"identifier": _identifier()} if method in ("POST", "PATCH") else None
    _err(weak.call(method, path, body=body), 403, "insufficient_scope")
    _err(weak.call(method, path, body=body, token=None), 401, "invalid_token")
    if method == "POST":
        assert body["identifier"] not in json.dumps(api.call("GET", BASE).data)


def test_bootstrap_admin_has_the_resource_server_scopes(client):
    from tests.conftest import get_token

    scope = json.loads(get_token(client).body)["scope"].split()
    assert {"read:resource_servers", "create:resource_servers", "update:resource_servers",
            "delete:resource_servers"} <= set(scope)


def test_paging(api):
    for _ in range(3):
        new_api(api)
    everything = api.call("GET", BASE).data
    first = api.call("GET", f"{BASE}?per_page=2&page=0&include_totals=true").data
    assert first["total"] == len(everything) and len(first["resource_servers"]) == 2
    assert first["resource_servers"] == everything[:2]
    taken = api.call("GET", f"{BASE}?take=2").data
    assert taken["resource_servers"] == everything[:2]
    rest = api.call("GET", f"{BASE}?take=100&from={taken['next']}").data
    assert taken["resource_servers"] + rest["resource_servers"] == everything
    _err(api.call("GET", f"{BASE}?per_page=1000"), 400, "invalid_query_string")
    _err(api.call("GET", f"{BASE}?bogus=1"), 400, "invalid_query_string")


def test_concurrent_creates_of_one_identifier_have_one_winner(app, api):
    from chalice.test import Client

    from tests.conftest import ROOT

    identifier = _identifier()

    def create(_):
        with Client(app, stage_name="local", project_dir=str(ROOT)) as own:
            response = own.http.post(BASE, body=json.dumps({"identifier": identifier}), headers={
                "Authorization": f"Bearer {api.token}", "Content-Type": "application/json"})
            return response.status_code, json.loads(response.body)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(create, range(20)))
    statuses = sorted(status for status, _ in results)
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == 19, results
    listed = [s for s in api.call("GET", BASE).data if s["identifier"] == identifier]
    assert len(listed) == 1


def test_deleting_an_api_deletes_its_client_grants(api):
    server = new_api(api)
    machine = api.call("POST", "/api/v2/clients", body={
        "name": "m", "app_type": "non_interactive"}).data
    grant = api.call("POST", "/api/v2/client-grants", body={
        "client_id": machine["client_id"], "audience": server["identifier"],
        "scope": ["read:orders"]})
    assert grant.status_code == 201, grant.data
    assert api.call("DELETE", f"{BASE}/{server['id']}").status_code == 204
    assert api.call("GET", f"/api/v2/client-grants?audience={server['identifier']}").data == []
    _err(api.call("GET", f"{BASE}/{server['id']}"), 404, "inexistent_resource_server")
    _err(api.call("DELETE", f"{BASE}/{server['id']}"), 404, "inexistent_resource_server")
    # Registered again under the same identifier: a new API, with no grants and a new id.
    again = new_api(api, identifier=server["identifier"])
    assert again["id"] != server["id"]
