"""The OpenAPI document (chalicelib/openapi_doc.py) is valid and true to the implementation.

(a) it is a valid OpenAPI document that documents every Management API route the app has;
(b) schemathesis fuzzes every operation over real HTTP (tests/support/live_server.py) with a real
    admin token and checks: no 5xx, documented status codes, content types and response bodies;
(c) real responses of the main flows validate against the document's response schemas.
"""
from __future__ import annotations

import os
import re
import uuid
from urllib.parse import quote

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chalicelib.openapi_doc import document
from tests.conftest import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET
from tests.support.live_fixtures import live_url  # noqa: F401

AUDIENCE = "http://127.0.0.1:8000/api/v2/"
LOOPBACK_IDP = "http://127.0.0.1:9"  # port 9: nothing listens; nothing is fetched without discovery
TIMEOUT = 10

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]

# Bounded and deterministic: a fixed seed, derandomized Hypothesis, no example database, no
# coverage phase (its boundary-value matrix is large), a few examples per operation.
# OAS_FUZZ_SEED / OAS_FUZZ_EXAMPLES widen a local exploratory run; CI uses the defaults.
SCHEMATHESIS_CONFIG = schemathesis.Config.from_dict({
    "seed": int(os.environ.get("OAS_FUZZ_SEED", "20240611")),
    "generation": {"mode": "all", "max-examples": int(os.environ.get("OAS_FUZZ_EXAMPLES", "25")),
                   "deterministic": True, "database": "none"},
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
})
# Rotating the signing key retires older keys (and every token they signed): it takes no input,
# so the example tests below cover it once instead of fuzzing it. The tenant settings are one
# item for the whole deployment (languages, session lifetimes): a fuzzed PATCH would change them
# for every later test, so tests/api/test_tenant_settings.py checks its answers against this
# document instead.
schema = schemathesis.openapi.from_dict(document(), config=SCHEMATHESIS_CONFIG).exclude(
    method="POST", path="/api/v2/keys/signing/rotate").exclude(
    method="PATCH", path="/api/v2/tenants/settings")


# --- helpers --------------------------------------------------------------------------------------

def _token(base_url: str, **form) -> str:
    response = requests.post(f"{base_url}/oauth/token", timeout=TIMEOUT, data={
        "grant_type": "client_credentials", "client_id": ADMIN_CLIENT_ID,
        "client_secret": ADMIN_CLIENT_SECRET, "audience": AUDIENCE, **form})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture(scope="module")
def token(live_url) -> str:  # noqa: F811
    """One admin token for the module (the fuzzer may not use function-scoped fixtures)."""
    return _token(live_url)


@pytest.fixture(scope="module")
def created(live_url):  # noqa: F811
    """Resources the fuzzer managed to create; deleted afterwards so other tests see no litter."""
    found: list[str] = []
    yield found
    auth = {"Authorization": f"Bearer {_token(live_url)}"}
    for path in found:
        requests.delete(live_url + path, headers=auth, timeout=TIMEOUT)


class Doc:
    """Validate a real response against what the document says of that operation and status."""

    def __init__(self):
        import jsonschema

        self.doc = document()
        self.jsonschema = jsonschema

    def _resolve(self, node: dict) -> dict:
        while "$ref" in node and node["$ref"].startswith("#/components/responses/"):
            node = self.doc["components"]["responses"][node["$ref"].rsplit("/", 1)[1]]
        return node

    def check(self, response: requests.Response, method: str, template: str, status: int):
        assert response.status_code == status, (method, template, response.status_code,
                                                response.text)
        operation = self.doc["paths"][template][method.lower()]
        documented = operation["responses"].get(str(status))
        assert documented is not None, f"{method} {template}: {status} is not documented"
        documented = self._resolve(documented)
        content = documented.get("content")
        if not content:
            assert response.content == b"", "a response documented without a body has one"
            return None
        media = response.headers["Content-Type"].split(";")[0].strip()
        assert media in content, (media, list(content))
        body = response.json()
        root = {"components": self.doc["components"], **content[media]["schema"]}
        validator = self.jsonschema.Draft202012Validator(
            root, format_checker=self.jsonschema.Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{method} {template} {status}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
        return body


@pytest.fixture(scope="module")
def doc() -> Doc:
    return Doc()


class Live:
    def __init__(self, base_url: str, token: str, doc: Doc):
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.doc = doc

    def __call__(self, method: str, template: str, status: int, *, path: str | None = None,
                 json=None, params=None, headers=None, data=None):
        all_headers = {**self.headers, **(headers or {})}
        response = requests.request(method, self.base_url + (path or template), json=json,
                                    params=params, headers=all_headers, data=data,
                                    timeout=TIMEOUT)
        return self.doc.check(response, method, template, status)


@pytest.fixture()
def live(live_url, token, doc) -> Live:  # noqa: F811
    return Live(live_url, token, doc)


# --- (a) the document ---------------------------------------------------------------------------

def test_document_is_valid_openapi():
    from openapi_spec_validator import validate

    validate(document())
    assert document() == document() and document() is not document()  # cached, yet a fresh copy


def test_document_covers_every_management_route(app):
    documented = {(path, method.upper()) for path, item in document()["paths"].items()
                  for method in item if method != "parameters"}
    implemented = {(path, method) for path, methods in app.routes.items() for method in methods
                   if path.startswith("/api/v2/") or path == "/oauth/token"}
    assert implemented == documented


def test_request_bodies_come_from_the_pydantic_models():
    from chalicelib.management.clients import ClientCreate
    from chalicelib.management.connections import ConnectionCreate, Options

    schemas = document()["components"]["schemas"]
    assert set(schemas["ConnectionCreate"]["properties"]) == set(ConnectionCreate.model_fields)
    assert set(schemas["Options"]["properties"]) == set(Options.model_fields)
    assert set(schemas["ClientCreate"]["properties"]) == set(ClientCreate.model_fields)
    assert "$defs" not in str(document())
    # Every stored option is documented in the response schema (client_secret is write-only,
    # scopes is stored as scope).
    stored = set(Options.model_fields) - {"client_secret", "scopes"}
    assert stored <= set(schemas["ConnectionOptions"]["properties"])


def test_callback_url_is_read_only_in_requests_and_answers():
    schemas = document()["components"]["schemas"]
    assert schemas["Options"]["properties"]["callback_url"]["readOnly"] is True
    assert schemas["ConnectionOptions"]["properties"]["callback_url"]["readOnly"] is True
    assert "callback_url" in schemas["ConnectionOptions"]["required"]

def test_served_document_is_the_document(live_url):  # noqa: F811
    response = requests.get(f"{live_url}/api/v2/openapi.json", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json() == document()


# --- (b) property-based run over HTTP -----------------------------------------------------------

def _no_outbound_fetch(case) -> None:
    """A generated discovery_url would be fetched: point it at a closed loopback port instead."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("options"), dict) and isinstance(
            body["options"].get("discovery_url"), str):
        body["options"]["discovery_url"] = f"{LOOPBACK_IDP}/"



@schema.parametrize()
def test_api_conforms_to_document(case, live_url, token, created):  # noqa: F811
    _no_outbound_fetch(case)
    public = case.path in ("/oauth/token", "/api/v2/openapi.json")
    headers = {} if public else {"Authorization": f"Bearer {token}"}
    response = case.call_and_validate(base_url=live_url, headers=headers, checks=CHECKS,
                                      timeout=TIMEOUT)
    if case.method.upper() == "POST" and response.status_code == 201:
        body = response.json()
        if case.path == "/api/v2/connections":
            created.append(f"/api/v2/connections/{body['id']}")
        elif case.path == "/api/v2/clients":
            created.append(f"/api/v2/clients/{body['client_id']}")
        elif case.path == "/api/v2/client-grants":
            created.append(f"/api/v2/client-grants/{body['id']}")
        elif case.path == "/api/v2/resource-servers":
            created.append(f"/api/v2/resource-servers/{body['id']}")


@pytest.fixture(scope="module")
def real(live_url, token):  # noqa: F811
    """Existing resources, so that fuzzing by id reaches more than the 404s."""
    auth = {"Authorization": f"Bearer {token}"}

    def post(path, body):
        response = requests.post(live_url + path, json=body, headers=auth, timeout=TIMEOUT)
        assert response.status_code == 201, response.text
        return response.json()

    web = post("/api/v2/clients", {"name": "oas-fuzz-web"})
    machine = post("/api/v2/clients", {"name": "oas-fuzz-m", "app_type": "non_interactive"})
    server = post("/api/v2/resource-servers", {
        "identifier": f"https://api-{uuid.uuid4().hex[:8]}.example.test/",
        "scopes": [{"value": "read:things"}]})
    grant = post("/api/v2/client-grants", {"client_id": machine["client_id"],
                                           "audience": server["identifier"],
                                           "scope": ["read:things"]})
    connection = post("/api/v2/connections", _connection_body(
        f"oas-fuzz-{uuid.uuid4().hex[:8]}", enabled_clients=[web["client_id"]]))
    keys = requests.get(live_url + "/api/v2/keys/signing", headers=auth, timeout=TIMEOUT).json()
    user_id, sid = _store_user_and_session(connection, web["client_id"])
    from chalicelib import audit

    event = audit.event("s", connection=connection, client=web, user_id=user_id)
    audit.record(event)  # a log event of the user, for GET /api/v2/logs/{log_id}
    yield {"connection_id": connection["id"], "client_id": web["client_id"],
           "grant_id": grant["id"], "kid": keys[0]["kid"], "user_id": user_id,
           "session_id": sid, "server_id": server["id"],
           "token_id": "no-such-refresh-token", "log_id": event["log_id"]}
    for path in (f"/api/v2/users/{quote(user_id, safe='')}",
                 f"/api/v2/connections/{connection['id']}", f"/api/v2/clients/{web['client_id']}",
                 f"/api/v2/clients/{machine['client_id']}",
                 f"/api/v2/resource-servers/{server['id']}"):
        requests.delete(live_url + path, headers=auth, timeout=TIMEOUT)


# Operations on one resource, minus DELETE (it would leave nothing for the others).
by_id = schema.include(path_regex=r"\{[a-z_]+\}").exclude(method="DELETE")


@by_id.parametrize()
def test_api_conforms_to_document_on_existing_resources(case, live_url, token, real):  # noqa: F811
    case.path_parameters = {name: real[name] for name in case.path_parameters}
    _no_outbound_fetch(case)
    case.call_and_validate(base_url=live_url, headers={"Authorization": f"Bearer {token}"},
                           checks=CHECKS, timeout=TIMEOUT)


# --- (c) real responses against the document ----------------------------------------------------

def _connection_body(name: str, **extra) -> dict:
    return {"name": name, "strategy": "oidc", **extra, "options": {
        "client_id": "upstream-client",
        "issuer": f"{LOOPBACK_IDP}/",
        "authorization_endpoint": f"{LOOPBACK_IDP}/authorize",
        "jwks_uri": f"{LOOPBACK_IDP}/jwks",
        "token_endpoint": f"{LOOPBACK_IDP}/token",
        "type": "back_channel",
        "client_secret": "upstream-secret-value",
        "upstream_params": {"lang": {"value": "en"}, "hint": {"alias": "login_hint"}},
        "domain_aliases": ["example.com"],
    }}


def test_token_endpoint_responses(live_url, doc):  # noqa: F811
    form = {"grant_type": "client_credentials", "client_id": ADMIN_CLIENT_ID,
            "client_secret": ADMIN_CLIENT_SECRET, "audience": AUDIENCE}
    url = f"{live_url}/oauth/token"
    body = doc.check(requests.post(url, data=form, timeout=TIMEOUT), "POST", "/oauth/token", 200)
    assert body["token_type"] == "Bearer"
    doc.check(requests.post(url, json=form, timeout=TIMEOUT), "POST", "/oauth/token", 200)
    doc.check(requests.post(url, data={**form, "client_id": "no-such-client"}, timeout=TIMEOUT),
              "POST", "/oauth/token", 401)
    doc.check(requests.post(url, data={**form, "grant_type": "password"}, timeout=TIMEOUT),
              "POST", "/oauth/token", 400)
    doc.check(requests.post(url, data={**form, "audience": "https://other.example/"},
                            timeout=TIMEOUT), "POST", "/oauth/token", 403)
    doc.check(requests.post(url, data="x", headers={"Content-Type": "text/plain"},
                            timeout=TIMEOUT), "POST", "/oauth/token", 415)


def test_token_endpoint_throttling_response(live, live_url, doc):  # noqa: F811
    machine = live("POST", "/api/v2/clients", 201, json={"name": "oas-throttle",
                                                         "app_type": "non_interactive"})
    form = {"grant_type": "client_credentials", "client_id": machine["client_id"],
            "client_secret": "wrong", "audience": AUDIENCE}
    try:
        for _ in range(30):
            response = requests.post(f"{live_url}/oauth/token", data=form, timeout=TIMEOUT)
            if response.status_code != 401:
                break
        doc.check(response, "POST", "/oauth/token", 429)
        assert int(response.headers["Retry-After"]) >= 1
    finally:
        live("DELETE", "/api/v2/clients/{client_id}", 204,
             path=f"/api/v2/clients/{machine['client_id']}")


def test_connection_responses(live):
    name = f"oas-{uuid.uuid4().hex[:10]}"
    created = live("POST", "/api/v2/connections", 201, json=_connection_body(
        name, display_name="OAS", metadata={"k": "v"}))
    assert "client_secret" not in created["options"]
    item = f"/api/v2/connections/{created['id']}"
    try:
        one = "/api/v2/connections/{connection_id}"
        assert live("GET", one, 200, path=item)["options"]["client_id"] == "upstream-client"
        assert set(live("GET", one, 200, path=item, params={"fields": "id,name"})) == {"id", "name"}
        live("GET", one, 200, path=item, params={"fields": "options", "include_fields": "false"})
        listed = live("GET", "/api/v2/connections", 200)
        assert isinstance(listed, list) and created["id"] in [c["id"] for c in listed]
        totals = live("GET", "/api/v2/connections", 200,
                      params={"include_totals": "true", "per_page": 1, "page": 0})
        assert totals["limit"] == 1 and totals["total"] >= 1
        checkpoint = live("GET", "/api/v2/connections", 200, params={"take": 1})
        assert set(checkpoint) <= {"connections", "next"}
        live("GET", "/api/v2/connections", 200, params={"name": name, "strategy": ["oidc"]})
        patched = live("PATCH", one, 200, path=item, json={"display_name": "OAS 2"})
        assert patched["display_name"] == "OAS 2"
        live("GET", "/api/v2/connections", 400, params={"take": 1, "page": 0})
        live("GET", "/api/v2/connections", 400, params={"per_page": 0})
        live("GET", one, 400, path=item, params={"fields": "client_secret"})
        live("POST", "/api/v2/connections", 409, json=_connection_body(name))
        live("POST", "/api/v2/connections", 400, json={**_connection_body("x"), "strategy": "saml"})
        live("POST", "/api/v2/connections", 415, data="{}",
             headers={"Content-Type": "application/xml"})
        live("GET", one, 404, path="/api/v2/connections/con_0000000000000000")
        live("GET", "/api/v2/connections", 401, headers={"Authorization": "Bearer nope"})

        keys = "/api/v2/connections/{connection_id}/keys"
        listed_keys = live("GET", keys, 200, path=item + "/keys")
        assert sorted(k["next"] for k in listed_keys) == [False, True]
        live("POST", keys, 409, path=item + "/keys")
        rotated = live("POST", keys + "/rotate", 201, path=item + "/keys/rotate",
                       json={"signing_alg": "ES256"})
        assert rotated["algorithm"] == "ES256" and rotated["next"] is True
        live("POST", keys + "/rotate", 400, path=item + "/keys/rotate", json={"signing_alg": "HS256"})
        live("GET", keys, 404, path="/api/v2/connections/con_0000000000000000/keys")

        tried = live("GET", one + "/try", 200, path=item + "/try")
        assert tried["url"].startswith("http")

        client = live("POST", "/api/v2/clients", 201, json={"name": "oas-enable"})
        clients = "/api/v2/connections/{connection_id}/clients"
        live("PATCH", clients, 204, path=item + "/clients",
             json=[{"client_id": client["client_id"], "status": True}])
        enabled = live("GET", clients, 200, path=item + "/clients", params={"take": 1})
        assert len(enabled["clients"]) == 1
        assert {"client_id": client["client_id"]} in live("GET", clients, 200,
                                                          path=item + "/clients")["clients"]
        live("DELETE", "/api/v2/clients/{client_id}", 204,
             path=f"/api/v2/clients/{client['client_id']}")
    finally:
        live("DELETE", "/api/v2/connections/{connection_id}", 204, path=item)
    live("DELETE", "/api/v2/connections/{connection_id}", 404, path=item)


def test_connection_writes_without_the_options_scope_match_the_document(live_url, doc, live):  # noqa: F811
    """POST and PATCH answer like a GET: no options without read:connections_options, and the
    documented 201/200 bodies allow that."""
    writer = Live(live_url, _token(live_url, scope="create:connections update:connections"), doc)
    created = writer("POST", "/api/v2/connections", 201,
                     json=_connection_body(f"oas-{uuid.uuid4().hex[:10]}"))
    one = "/api/v2/connections/{connection_id}"
    item = f"/api/v2/connections/{created['id']}"
    try:
        assert "options" not in created
        patched = writer("PATCH", one, 200, path=item, json={"display_name": "No options"})
        assert "options" not in patched and patched["display_name"] == "No options"
        full = live("GET", one, 200, path=item)
        assert full["options"]["callback_url"] == f"http://127.0.0.1:8000/login/callback/{full['name']}"
    finally:
        live("DELETE", one, 204, path=item)

def test_client_responses(live):
    web = live("POST", "/api/v2/clients", 201, json={
        "name": "oas-web", "callbacks": ["http://127.0.0.1:9/cb"], "description": "d",
        "client_metadata": {"team": "x"}})
    assert web["client_secret"]
    spa = live("POST", "/api/v2/clients", 201, json={"name": "oas-spa", "app_type": "spa"})
    assert "client_secret" not in spa
    machine = live("POST", "/api/v2/clients", 201, json={"name": "oas-m",
                                                         "app_type": "non_interactive"})
    one = "/api/v2/clients/{client_id}"
    try:
        fetched = live("GET", one, 200, path=f"/api/v2/clients/{web['client_id']}")
        assert "client_secret" not in fetched
        live("GET", one, 200, path=f"/api/v2/clients/{web['client_id']}",
             params={"fields": "client_id,app_type"})
        listed = live("GET", "/api/v2/clients", 200)
        assert isinstance(listed, list)
        live("GET", "/api/v2/clients", 200, params={"include_totals": "true", "app_type": "spa"})
        live("GET", "/api/v2/clients", 200, params={"from": "0", "take": 2})
        rotated = live("POST", "/api/v2/clients/{client_id}/rotate-secret", 200,
                       path=f"/api/v2/clients/{web['client_id']}/rotate-secret")
        assert rotated["client_secret"] != web["client_secret"]
        live("POST", "/api/v2/clients/{client_id}/rotate-secret", 400,
             path=f"/api/v2/clients/{spa['client_id']}/rotate-secret")
        live("PATCH", one, 200, path=f"/api/v2/clients/{web['client_id']}",
             json={"name": "oas-web-2"})
        became = live("PATCH", one, 200, path=f"/api/v2/clients/{spa['client_id']}",
                      json={"app_type": "regular_web"})
        assert became["client_secret"]
        live("PATCH", one, 400, path=f"/api/v2/clients/{web['client_id']}",
             json={"unknown": 1})

        grants = "/api/v2/client-grants"
        grant = live("POST", grants, 201, json={"client_id": machine["client_id"],
                                                "audience": AUDIENCE, "scope": ["read:clients"]})
        live("POST", grants, 409, json={"client_id": machine["client_id"], "audience": AUDIENCE,
                                        "scope": []})
        live("POST", grants, 404, json={"client_id": "nope", "audience": AUDIENCE, "scope": []})
        assert grant in live("GET", grants, 200, params={"client_id": machine["client_id"]})
        live("GET", grants, 200, params={"include_totals": "true"})
        live("GET", grants, 200, params={"take": 1})
        updated = live("PATCH", grants + "/{grant_id}", 200, path=f"{grants}/{grant['id']}",
                       json={"scope": ["read:clients", "read:connections"]})
        assert updated["scope"] == ["read:clients", "read:connections"]
        live("DELETE", grants + "/{grant_id}", 204, path=f"{grants}/{grant['id']}")
        live("DELETE", grants + "/{grant_id}", 404, path=f"{grants}/{grant['id']}")
    finally:
        for client in (web, spa, machine):
            live("DELETE", one, 204, path=f"/api/v2/clients/{client['client_id']}")


def _store_user_and_session(connection: dict, client_id: str) -> tuple[str, str]:
    """A user and a session as a login stores them (written directly: no upstream IdP here)."""
    import time

    from chalicelib import sessions, users
    from chalicelib.store.unit_of_work import UnitOfWork

    now = int(time.time())
    user_id = users.user_id_for(connection["name"], "alice")
    sid, _cookie, fields = sessions.new_session_values(now)
    UnitOfWork([
        users.user_update_operation(user_id, connection, "alice", {
            "email": "alice@example.com", "email_verified": True, "name": "Alice",
            "groups": ["a", "b"]}, now),
        *sessions.session_put_operations(sid, fields, user_id, connection["id"], client_id,
                                         "grant-1"),
    ]).commit()
    return user_id, sid


def test_user_and_session_responses(live):
    name = f"oas-u-{uuid.uuid4().hex[:8]}"
    connection = live("POST", "/api/v2/connections", 201, json=_connection_body(name))
    client = live("POST", "/api/v2/clients", 201, json={"name": "oas-u"})
    user_id, sid = _store_user_and_session(connection, client["client_id"])
    one = "/api/v2/users/{user_id}"
    path = f"/api/v2/users/{quote(user_id, safe='')}"
    try:
        fetched = live("GET", one, 200, path=path)
        assert fetched["user_id"] == user_id and fetched["groups"] == ["a", "b"]
        listed = live("GET", "/api/v2/users", 200, params={"connection": name})
        assert [u["user_id"] for u in listed] == [user_id]
        live("GET", "/api/v2/users", 200, params={"include_totals": "true", "per_page": 5})
        live("GET", "/api/v2/users", 200, params={"fields": "user_id,email"})
        live("GET", "/api/v2/users", 400, params={"take": 1})
        mine = live("GET", one + "/sessions", 200, path=path + "/sessions")
        assert [s["id"] for s in mine["sessions"]] == [sid]
        session = "/api/v2/sessions/{session_id}"
        assert live("GET", session, 200, path=f"/api/v2/sessions/{sid}")["user_id"] == user_id
        live("DELETE", session, 204, path=f"/api/v2/sessions/{sid}")
        live("GET", session, 404, path=f"/api/v2/sessions/{sid}")
        live("DELETE", one + "/sessions", 204, path=path + "/sessions")
        live("DELETE", one, 204, path=path)
        live("GET", one, 404, path=path)
        live("GET", one + "/sessions", 404, path=path + "/sessions")
    finally:
        live("DELETE", "/api/v2/clients/{client_id}", 204,
             path=f"/api/v2/clients/{client['client_id']}")
        live("DELETE", "/api/v2/connections/{connection_id}", 204,
             path=f"/api/v2/connections/{connection['id']}")


@pytest.fixture()
def restore_signing_keys():
    """Put the broker's key set back afterwards: other tests count its keys."""
    from chalicelib.secrets import secret_store, signing_keys_secret_name
    from chalicelib.settings import get_settings

    name = signing_keys_secret_name(get_settings().secret_prefix)
    saved = secret_store().get(name)
    yield
    secret_store().put(name, saved)


def test_signing_key_responses(live, live_url, restore_signing_keys):  # noqa: F811
    keys = live("GET", "/api/v2/keys/signing", 200)
    assert sum(k["current"] for k in keys) == 1
    kid = keys[0]["kid"]
    live("GET", "/api/v2/keys/signing/{kid}", 200, path=f"/api/v2/keys/signing/{kid}")
    live("GET", "/api/v2/keys/signing/{kid}", 404, path="/api/v2/keys/signing/unknown-kid")
    rotated = live("POST", "/api/v2/keys/signing/rotate", 201)
    assert re.match(r"^[A-Za-z0-9_-]+$", rotated["kid"])
    after = live("GET", "/api/v2/keys/signing", 200)
    assert [k["kid"] for k in after if k["current"]] == [rotated["kid"]]
    # A token with too few scopes gets the documented 403.
    narrow = Live(live_url, _token(live_url, scope="read:clients"), live.doc)
    narrow("POST", "/api/v2/keys/signing/rotate", 403)


# --- regressions: bugs the document run found, now fixed ---------------------------------------

def test_regression_non_ascii_client_id_is_a_401_not_a_500(live_url):  # noqa: F811
    response = requests.post(f"{live_url}/oauth/token", timeout=TIMEOUT, data={
        "grant_type": "client_credentials", "client_id": "\u00e9", "client_secret": "x",
        "audience": AUDIENCE})
    assert response.status_code == 401, response.text


ONE_CLIENT = "/api/v2/clients/{client_id}"


@pytest.mark.parametrize("field,default", [("token_lifetime", 2_592_000),
                                           ("idle_token_lifetime", 1_296_000)])
def test_regression_null_refresh_lifetime_restores_the_default(live, field, default):
    """A null inside a settings object means "back to the default" (clients._without_nulls):
    a 200 whose answer and stored value hold the default, never a stored null or a 500."""
    created = live("POST", "/api/v2/clients", 201, json={
        "name": "oas-null", "refresh_token": {"token_lifetime": 7200, "idle_token_lifetime": 3600}})
    path = f"/api/v2/clients/{created['client_id']}"
    try:
        assert created["refresh_token"][field] != default
        patched = live("PATCH", ONE_CLIENT, 200, path=path,
                       json={"refresh_token": {field: None}})
        assert patched["refresh_token"][field] == default
        fetched = live("GET", ONE_CLIENT, 200, path=path)
        assert fetched["refresh_token"] == patched["refresh_token"]
    finally:
        requests.delete(live.base_url + path, headers=live.headers, timeout=TIMEOUT)


@pytest.mark.parametrize("created_with,body,where,default", [
    ({"refresh_token": {"expiration_type": "non-expiring"}},
     {"refresh_token": {"expiration_type": None}}, ("refresh_token", "expiration_type"),
     "expiring"),
    ({"jwt_configuration": {"lifetime_in_seconds": 600}},
     {"jwt_configuration": {"lifetime_in_seconds": None}},
     ("jwt_configuration", "lifetime_in_seconds"), 36000),
])
def test_regression_nested_nulls_restore_the_defaults(live, created_with, body, where, default):
    created = live("POST", "/api/v2/clients", 201, json={"name": "oas-null", **created_with})
    path = f"/api/v2/clients/{created['client_id']}"
    outer, inner = where
    try:
        assert created[outer][inner] != default
        patched = live("PATCH", ONE_CLIENT, 200, path=path, json=body)
        assert patched[outer][inner] == default
        assert live("GET", ONE_CLIENT, 200, path=path)[outer] == patched[outer]
    finally:
        requests.delete(live.base_url + path, headers=live.headers, timeout=TIMEOUT)


def test_regression_client_name_cannot_be_removed(live):
    """name is required on create, so a PATCH cannot null it (clients.update_client): a 400
    naming it, and the stored name is unchanged."""
    created = live("POST", "/api/v2/clients", 201, json={"name": "oas-name"})
    path = f"/api/v2/clients/{created['client_id']}"
    try:
        error = live("PATCH", ONE_CLIENT, 400, path=path, json={"name": None})
        assert error["errorCode"] == "invalid_body"
        assert error["message"].endswith("on property name"), error["message"]
        assert live("GET", ONE_CLIENT, 200, path=path)["name"] == "oas-name"
    finally:
        requests.delete(live.base_url + path, headers=live.headers, timeout=TIMEOUT)


def test_regression_empty_client_metadata_key(live):
    from chalicelib.store.dynamo import table

    response = requests.post(live.base_url + "/api/v2/clients", headers=live.headers,
                             json={"name": "oas-md", "client_metadata": {"": "x"}}, timeout=TIMEOUT)
    if response.status_code != 201:
        assert response.status_code == 400, response.text
        return
    client_id = response.json()["client_id"]
    try:
        fetched = requests.get(f"{live.base_url}/api/v2/clients/{client_id}",
                               headers=live.headers, timeout=TIMEOUT)
        assert fetched.status_code == 200, fetched.text
    finally:
        table().delete("CLIENTS", client_id)  # the API cannot delete it: keep the list usable
