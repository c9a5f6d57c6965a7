"""SPEC §2.2: the connections routes of the Management API, rule by rule.

Every rejection is checked for Auth0's exact error body, for a message naming the field or the
problem, and for having no effect: a rejected create leaves the name free, a rejected PATCH leaves
the connection as it was. Discovery runs against the real oidc-provider IdP (``oidc_idp``) and,
where a document the IdP cannot serve is needed, against a tiny static server on loopback.
"""
from __future__ import annotations

import json
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import Api, token_with_scopes

CONNECTIONS = "/api/v2/connections"
UPSTREAM = "http://127.0.0.1:9"  # loopback, allowed by BROKER_ALLOW_INSECURE_LOOPBACK; never fetched


# --- helpers ----------------------------------------------------------------------------------

def unique(prefix: str = "con") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def explicit_options(**extra) -> dict:
    """Options without discovery: the three endpoints the broker cannot do without."""
    return {"client_id": "upstream-client", "issuer": f"{UPSTREAM}/",
            "authorization_endpoint": f"{UPSTREAM}/authorize", "jwks_uri": f"{UPSTREAM}/jwks",
            **extra}


def body_for(name: str, **extra) -> dict:
    options = extra.pop("options", None)
    return {"name": name, "strategy": "oidc",
            "options": options if options is not None else explicit_options(), **extra}


def assert_error(response, status: int, error: str, code: str, *needles: str) -> dict:
    assert response.status_code == status, response.body
    body = json.loads(response.body)
    assert set(body) == {"statusCode", "error", "message", "errorCode"}, body
    assert body["statusCode"] == status
    assert body["error"] == error
    assert body["errorCode"] == code
    for needle in needles:
        assert needle.lower() in body["message"].lower(), (needle, body["message"])
    return body


def assert_invalid(response, *needles: str) -> dict:
    return assert_error(response, 400, "Bad Request", "invalid_body", *needles)


def assert_bad_query(response, *needles: str) -> dict:
    return assert_error(response, 400, "Bad Request", "invalid_query_string", *needles)


def assert_not_found(response) -> dict:
    return assert_error(response, 404, "Not Found", "inexistent_connection")


def text(response) -> str:
    body = response.body
    return body.decode() if isinstance(body, bytes) else body


def secret_name(connection_id: str) -> str:
    from chalicelib.secrets import connection_secret_name
    from chalicelib.settings import get_settings

    return connection_secret_name(get_settings().secret_prefix, connection_id)


def stored_secret(connection_id: str) -> str:
    """Read Secrets Manager directly (not the broker's cache)."""
    from chalicelib import aws

    return aws.client("secretsmanager").get_secret_value(
        SecretId=secret_name(connection_id))["SecretString"]


class Connections:
    """Creates connections and deletes whatever is left of them after the test."""

    def __init__(self, api: Api):
        self.api = api
        self.ids: list[str] = []

    def create(self, body: dict | None = None, **extra) -> dict:
        body = body if body is not None else body_for(unique(), **extra)
        response = self.api.call("POST", CONNECTIONS, body=body)
        assert response.status_code == 201, response.body
        self.ids.append(response.data["id"])
        return response.data

    def track(self, response) -> None:
        if response.status_code == 201:
            self.ids.append(response.data["id"])

    def get(self, connection_id: str) -> dict:
        response = self.api.call("GET", f"{CONNECTIONS}/{connection_id}")
        assert response.status_code == 200, response.body
        return response.data

    def patch(self, connection_id: str, body) -> object:
        return self.api.call("PATCH", f"{CONNECTIONS}/{connection_id}", body=body)

    def cleanup(self) -> None:
        for connection_id in self.ids:
            self.api.call("DELETE", f"{CONNECTIONS}/{connection_id}")


@pytest.fixture()
def cons(api):
    helper = Connections(api)
    yield helper
    helper.cleanup()


@pytest.fixture()
def make_client(api):
    created: list[str] = []

    def make() -> str:
        response = api.call("POST", "/api/v2/clients",
                            body={"name": unique("app"), "app_type": "regular_web",
                                  "callbacks": ["https://app.example.com/callback"]})
        assert response.status_code == 201, response.body
        created.append(response.data["client_id"])
        return response.data["client_id"]

    yield make
    for client_id in created:
        api.call("DELETE", f"/api/v2/clients/{client_id}")


def rejected_create(api, cons: Connections, body, *needles: str) -> dict:
    """The create is refused with 400 invalid_body and leaves nothing behind."""
    response = api.call("POST", CONNECTIONS, body=body)
    cons.track(response)
    error = assert_invalid(response, *needles)
    name = body.get("name") if isinstance(body, dict) else None
    if isinstance(name, str) and name.startswith("n-"):
        assert api.call("GET", f"{CONNECTIONS}?name={name}").data == []
        cons.create(body_for(name))  # the name is still free
    return error


def rejected_patch(cons: Connections, connection_id: str, body, *needles: str) -> dict:
    """The PATCH is refused with 400 invalid_body and changes nothing."""
    before = cons.get(connection_id)
    error = assert_invalid(cons.patch(connection_id, body), *needles)
    assert cons.get(connection_id) == before
    return error


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StaticIdp:
    """Discovery documents served from loopback: ``docs[path] = dict`` (absent paths give 404)."""

    def __init__(self):
        self.docs: dict[str, dict] = {}
        self.hits: list[str] = []
        self.stopped = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.hits.append(self.path)
                doc = outer.docs.get(self.path)
                payload = json.dumps(doc).encode() if doc is not None else b"{}"
                self.send_response(200 if doc is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def tenant(self, path: str, **overrides) -> str:
        """Publish a valid document for issuer ``base + path``; returns that issuer."""
        issuer = self.base + path
        self.docs[path + "/.well-known/openid-configuration"] = {
            "issuer": issuer, "authorization_endpoint": issuer + "/authorize",
            "token_endpoint": issuer + "/token", "jwks_uri": issuer + "/jwks",
            "userinfo_endpoint": issuer + "/userinfo",
            "response_types_supported": ["code", "id_token"], **overrides}
        return issuer

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def static_idp():
    idp = StaticIdp()
    yield idp
    idp.stop()


# --- the object -------------------------------------------------------------------------------

def test_create_returns_the_object_with_defaults(api, cons):
    name = unique()
    created = cons.create(body_for(name))
    assert set(created) == {"id", "name", "strategy", "display_name", "show_as_button",
                            "is_domain_connection", "realms", "metadata", "enabled_clients",
                            "options"}
    assert created["id"].startswith("con_") and len(created["id"]) == 20
    assert created["id"][4:].isalnum() and created["id"][4:].isascii()
    assert created["name"] == name and created["strategy"] == "oidc"
    assert created["display_name"] == name
    assert created["show_as_button"] is False and created["is_domain_connection"] is False
    assert created["realms"] == [name]
    assert created["metadata"] == {} and created["enabled_clients"] == []
    options = created["options"]
    assert options["type"] == "front_channel"
    assert options["client_id"] == "upstream-client"
    assert options["issuer"] == f"{UPSTREAM}/"
    assert options["scope"] == "openid profile email"
    assert options["connection_settings"] == {"pkce": "auto"}
    assert options["attribute_map"]["mapping_mode"] == "basic_profile"
    assert options["set_user_root_attributes"] == "on_each_login"
    assert options["token_endpoint_auth_method"] == "client_secret_post"
    assert options["id_token_signed_response_algs"] == ["RS256"]
    assert options["send_back_channel_nonce"] is True
    assert "client_secret" not in options and "oidc_metadata" not in options
    assert cons.get(created["id"]) == created


def test_create_with_every_top_level_field(api, cons):
    name = unique()
    created = cons.create(body_for(name, display_name="Acme Corp", show_as_button=True,
                                   is_domain_connection=True, realms=["acme", "acme-eu"],
                                   metadata={"tier": "gold", "region": "eu"}))
    assert created["display_name"] == "Acme Corp"
    assert created["show_as_button"] is True and created["is_domain_connection"] is True
    assert created["realms"] == ["acme", "acme-eu"]
    assert created["metadata"] == {"tier": "gold", "region": "eu"}
    assert cons.get(created["id"]) == created


@pytest.mark.parametrize("make_name", [
    pytest.param(lambda: "a", id="one-char"),
    pytest.param(lambda: "A1-b2-C3-" + uuid.uuid4().hex[:8], id="mixed"),
    pytest.param(lambda: "x" * 115 + "-" + uuid.uuid4().hex[:12], id="128-chars"),
])
def test_valid_names(api, cons, make_name):
    name = make_name()
    assert len(name) <= 128
    created = cons.create(body_for(name))
    assert created["name"] == name and created["realms"] == [name]


@pytest.mark.parametrize("name", [
    pytest.param("", id="empty"),
    pytest.param("x" * 129, id="too-long"),
    pytest.param("-leading", id="leading-dash"),
    pytest.param("trailing-", id="trailing-dash"),
    pytest.param("double--dash", id="double-dash"),
    pytest.param("under_score", id="underscore"),
    pytest.param("with space", id="space"),
    pytest.param("caf\u00e9", id="unicode"),
    pytest.param("\u0430dmin", id="cyrillic-homoglyph"),
    pytest.param("newline\n", id="trailing-newline"),
    pytest.param("dot.ted", id="dot"),
])
def test_invalid_names(api, cons, name):
    rejected_create(api, cons, body_for(name), "name")


def test_name_is_required(api, cons):
    body = body_for("unused")
    del body["name"]
    rejected_create(api, cons, body, "name")


@pytest.mark.parametrize("value", [5, None, ["n"]])
def test_name_must_be_a_string(api, cons, value):
    rejected_create(api, cons, body_for("unused") | {"name": value}, "name")


def test_duplicate_name_is_409(api, cons):
    name = unique()
    first = cons.create(body_for(name))
    response = api.call("POST", CONNECTIONS, body=body_for(name, display_name="Second"))
    cons.track(response)
    assert_error(response, 409, "Conflict", "connection_conflict", "already exists")
    assert [c["id"] for c in api.call("GET", f"{CONNECTIONS}?name={name}").data] == [first["id"]]
    assert cons.get(first["id"])["display_name"] == name


@pytest.mark.parametrize("strategy", ["google-oauth2", "samlp", "auth0", "waad", "OIDC", ""])
def test_only_the_oidc_strategy(api, cons, strategy):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}") | {"strategy": strategy},
                    "strategy")


def test_strategy_is_required(api, cons):
    body = body_for(f"n-{uuid.uuid4().hex[:12]}")
    del body["strategy"]
    rejected_create(api, cons, body, "strategy")


@pytest.mark.parametrize("key", ["id", "foo", "provisioning_ticket_url", "Name"])
def test_unknown_top_level_keys_on_create(api, cons, key):
    body = body_for(f"n-{uuid.uuid4().hex[:12]}") | {key: "x"}
    error = rejected_create(api, cons, body, key)
    assert "additional properties" in error["message"].lower()


@pytest.mark.parametrize("field,value", [
    ("display_name", 5),
    ("show_as_button", "true"),
    ("show_as_button", 1),
    ("is_domain_connection", "false"),
    ("is_domain_connection", 0),
    ("realms", "realm"),
    ("realms", [1]),
    ("metadata", ["a"]),
    ("metadata", "a=b"),
    ("enabled_clients", "client"),
    ("options", "oidc"),
    ("options", []),
])
def test_wrong_json_types_on_create(api, cons, field, value):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}") | {field: value}, field)


@pytest.mark.parametrize("option,value", [
    ("client_id", 123),
    ("client_secret", 7),
    ("send_back_channel_nonce", "false"),
    ("send_back_channel_nonce", 0),
    ("type", 1),
    ("domain_aliases", "example.com"),
    ("id_token_signed_response_algs", "RS256"),
    ("connection_settings", "S256"),
    ("attribute_map", "bind_all"),
    ("upstream_params", ["audience"]),
    ("icon_url", 5),
    ("discovery_url", ["https://idp.example.com"]),
])
def test_wrong_json_types_in_options(api, cons, option, value):
    body = body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(**{option: value}))
    rejected_create(api, cons, body, f"options.{option}")


@pytest.mark.parametrize("raw", ["{not json", "", '{"name": "x",}', "\"a string\"", "null", "42"])
def test_body_not_a_json_object(api, raw):
    assert_invalid(api.call("POST", CONNECTIONS, body=raw))


def test_body_json_array(api, cons):
    name = f"n-{uuid.uuid4().hex[:12]}"
    assert_invalid(api.call("POST", CONNECTIONS, body=[body_for(name)]), "object")
    assert api.call("GET", f"{CONNECTIONS}?name={name}").data == []


def test_display_name_limits(api, cons):
    assert cons.create(body_for(unique(), display_name="d" * 128))["display_name"] == "d" * 128
    for value in ("", "d" * 129):
        rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", display_name=value),
                        "display_name")


def test_realms_limit(api, cons):
    realms = [f"r{i}" for i in range(10)]
    assert cons.create(body_for(unique(), realms=realms))["realms"] == realms
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", realms=realms + ["r10"]),
                    "realms")


def test_metadata_limits(api, cons):
    ten = {f"k{i}": "v" * 255 for i in range(10)}
    assert cons.create(body_for(unique(), metadata=ten))["metadata"] == ten
    for metadata in ({f"k{i}": "v" for i in range(11)}, {"k": "v" * 256}, {"k": 1},
                     {"k": True}, {"k": None}, {"k": {"nested": "x"}}, {"k": ["x"]}):
        rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", metadata=metadata),
                        "metadata")


def test_options_are_required(api, cons):
    body = body_for(f"n-{uuid.uuid4().hex[:12]}")
    del body["options"]
    rejected_create(api, cons, body, "options")


# --- options ----------------------------------------------------------------------------------

def test_options_type(api, cons):
    created = cons.create(body_for(unique(), options=explicit_options(
        type="back_channel", token_endpoint=f"{UPSTREAM}/token", client_secret="s3cret")))
    assert created["options"]["type"] == "back_channel"
    for value in ("code", "implicit", "Front_Channel", ""):
        rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}",
                                            options=explicit_options(type=value)), "options.type")


def test_client_id_rules(api, cons):
    assert cons.create(body_for(unique(), options=explicit_options(
        client_id="c" * 255)))["options"]["client_id"] == "c" * 255
    options = explicit_options()
    del options["client_id"]
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=options),
                    "options.client_id")
    for value in ("", "c" * 256):
        rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}",
                                            options=explicit_options(client_id=value)),
                        "options.client_id")


def test_client_secret_length(api, cons):
    created = cons.create(body_for(unique(), options=explicit_options(client_secret="s" * 700)))
    assert stored_secret(created["id"]) == "s" * 700
    for value in ("s" * 701, ""):
        rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}",
                                            options=explicit_options(client_secret=value)),
                        "options.client_secret")


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
def test_back_channel_needs_a_client_secret(api, cons, method):
    options = explicit_options(type="back_channel", token_endpoint=f"{UPSTREAM}/token",
                               token_endpoint_auth_method=method)
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=options),
                    "options.client_secret", "required")
    created = cons.create(body_for(unique(), options=options | {"client_secret": "shh"}))
    assert created["options"]["token_endpoint_auth_method"] == method


def test_secret_not_needed_for_front_channel_or_private_key_jwt(api, cons):
    cons.create(body_for(unique(), options=explicit_options(
        token_endpoint_auth_method="client_secret_basic")))
    created = cons.create(body_for(unique(), options=explicit_options(
        type="back_channel", token_endpoint=f"{UPSTREAM}/token",
        token_endpoint_auth_method="private_key_jwt")))
    assert created["options"]["token_endpoint_auth_method"] == "private_key_jwt"


def test_client_secret_is_write_only_and_kept_on_patch(client, api, cons):
    first, second = "first-" + uuid.uuid4().hex, "second-" + uuid.uuid4().hex
    options = explicit_options(type="back_channel", token_endpoint=f"{UPSTREAM}/token",
                               client_secret=first)
    response = api.call("POST", CONNECTIONS, body=body_for(unique(), options=options))
    cons.track(response)
    assert response.status_code == 201, response.body
    connection_id = response.data["id"]
    seen = [response]
    assert stored_secret(connection_id) == first

    seen.append(api.call("GET", f"{CONNECTIONS}/{connection_id}"))
    seen.append(api.call("GET", CONNECTIONS))
    seen.append(api.call("GET", f"{CONNECTIONS}?include_totals=true&fields=options"))
    seen.append(api.call("GET", f"{CONNECTIONS}?take=100"))
    # PATCH without client_secret: back_channel still valid because the stored one is kept.
    without = {k: v for k, v in options.items() if k != "client_secret"}
    patched = cons.patch(connection_id, {"options": without | {"scope": "openid email"}})
    assert patched.status_code == 200, patched.body
    seen.append(patched)
    assert stored_secret(connection_id) == first
    # PATCH of other fields only: the secret is untouched too.
    seen.append(cons.patch(connection_id, {"display_name": "Renamed"}))
    assert stored_secret(connection_id) == first
    # PATCH with a new one replaces it.
    patched = cons.patch(connection_id, {"options": without | {"client_secret": second}})
    assert patched.status_code == 200, patched.body
    seen.append(patched)
    assert stored_secret(connection_id) == second
    seen.append(api.call("GET", f"{CONNECTIONS}/{connection_id}"))
    for response in seen:
        assert response.status_code in (200, 201), response.body
        assert first not in text(response) and second not in text(response)
        assert '"client_secret"' not in text(response)
    assert "client_secret" not in seen[1].data["options"]


def test_client_secret_is_never_returned_even_to_a_limited_reader(client, api, cons):
    secret = "hidden-" + uuid.uuid4().hex
    created = cons.create(body_for(unique(), options=explicit_options(client_secret=secret)))
    reader = Api(client, token_with_scopes(client, "read:connections read:connections_options"))
    for path in (f"{CONNECTIONS}/{created['id']}", CONNECTIONS,
                 f"{CONNECTIONS}/{created['id']}?fields=options"):
        response = reader.call("GET", path)
        assert response.status_code == 200
        assert secret not in text(response) and '"client_secret"' not in text(response)


def test_patch_to_back_channel_without_any_secret_is_refused(api, cons):
    created = cons.create()
    rejected_patch(cons, created["id"], {"options": explicit_options(
        type="back_channel", token_endpoint=f"{UPSTREAM}/token")}, "options.client_secret")


@pytest.mark.parametrize("field,value,expected", [
    ("scope", "openid", "openid"),
    ("scope", "openid profile", "openid profile"),
    ("scope", "openid,email,profile", "openid email profile"),
    ("scope", "openid, email  offline_access", "openid email offline_access"),
    ("scopes", "openid email", "openid email"),
    ("scopes", "email,openid", "email openid"),
])
def test_scope_spellings(api, cons, field, value, expected):
    created = cons.create(body_for(unique(), options=explicit_options(**{field: value})))
    assert created["options"]["scope"] == expected


@pytest.mark.parametrize("field,value", [
    ("scope", "profile email"),
    ("scope", ""),
    ("scope", "openidx profile"),
    ("scopes", "email,profile"),
    ("scope", "OPENID"),
])
def test_scope_must_contain_openid(api, cons, field, value):
    body = body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(**{field: value}))
    rejected_create(api, cons, body, "options.scope", "openid")


@pytest.mark.parametrize("pkce", ["auto", "S256", "plain", "disabled"])
def test_pkce_values(api, cons, pkce):
    created = cons.create(body_for(unique(), options=explicit_options(
        connection_settings={"pkce": pkce})))
    assert created["options"]["connection_settings"] == {"pkce": pkce}


@pytest.mark.parametrize("settings,needle", [
    ({"pkce": "s256"}, "options.connection_settings.pkce"),
    ({"pkce": "S512"}, "options.connection_settings.pkce"),
    ({"pkce": True}, "options.connection_settings.pkce"),
    ({"pkce": "auto", "other": 1}, "other"),
])
def test_pkce_invalid(api, cons, settings, needle):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        connection_settings=settings)), needle)


@pytest.mark.parametrize("mode", ["use_map", "bind_all", "basic_profile"])
def test_attribute_map_modes(api, cons, mode):
    created = cons.create(body_for(unique(), options=explicit_options(
        attribute_map={"mapping_mode": mode})))
    assert created["options"]["attribute_map"]["mapping_mode"] == mode


def test_attribute_map_valid_templates(api, cons):
    attributes = {
        "nickname": "${context.tokenset.nickname}",
        "groups": "${context.userinfo.groups}",
        "label": "${context.userinfo.given_name} via ${context.connection.name}",
        "source": "${context.connection.strategy}:${context.connection.id}",
        "tenant": "${context.tokenset.https://example.com/tenant}",
        "literal": "just text",
    }
    mapping = {"mapping_mode": "use_map", "userinfo_scope": "openid groups",
               "attributes": attributes}
    created = cons.create(body_for(unique(), options=explicit_options(attribute_map=mapping)))
    assert created["options"]["attribute_map"] == mapping


@pytest.mark.parametrize("template", [
    "${context.request.ip}",
    "${context.tokenset}",
    "${context.connection.options}",
    "${process.env.AWS_SECRET_ACCESS_KEY}",
    "${}",
    "${ context.tokenset.a b }",
    "${context.tokenset.a}${context.userinfo.b",
    "${context.userinfo.${context.tokenset.x}}",
])
def test_attribute_map_invalid_expressions(api, cons, template):
    mapping = {"mapping_mode": "use_map", "attributes": {"nickname": template}}
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        attribute_map=mapping)), "options.attribute_map.attributes.nickname")


@pytest.mark.parametrize("target", ["sub", "iss", "aud", "exp", "nonce", "azp", "auth_time",
                                    "sid"])
def test_attribute_map_registered_claim_targets(api, cons, target):
    mapping = {"mapping_mode": "use_map", "attributes": {target: "${context.tokenset.email}"}}
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        attribute_map=mapping)), f"options.attribute_map.attributes.{target}", "registered")


@pytest.mark.parametrize("mapping,needle", [
    ({"mapping_mode": "map"}, "options.attribute_map.mapping_mode"),
    ({"mapping_mode": "use_map", "attributes": {"x": 1}}, "options.attribute_map.attributes"),
    ({"mapping_mode": "use_map", "attributes": {"bad name": "v"}},
     "options.attribute_map.attributes"),
    ({"mapping_mode": "use_map", "extra": {}}, "extra"),
])
def test_attribute_map_shape(api, cons, mapping, needle):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        attribute_map=mapping)), needle)


@pytest.mark.parametrize("value", ["on_each_login", "on_first_login", "never_on_login"])
def test_set_user_root_attributes(api, cons, value):
    created = cons.create(body_for(unique(), options=explicit_options(
        set_user_root_attributes=value)))
    assert created["options"]["set_user_root_attributes"] == value


@pytest.mark.parametrize("value", ["always", "on_login", ""])
def test_set_user_root_attributes_invalid(api, cons, value):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        set_user_root_attributes=value)), "options.set_user_root_attributes")


def test_domain_aliases(api, cons):
    created = cons.create(body_for(unique(), options=explicit_options(
        domain_aliases=["example.com", "Mail.Example.ORG", "xn--bcher-kva.example"])))
    assert created["options"]["domain_aliases"] == ["example.com", "mail.example.org",
                                                    "xn--bcher-kva.example"]
    thousand = [f"d{i}.example.com" for i in range(1000)]
    created = cons.create(body_for(unique(), options=explicit_options(domain_aliases=thousand)))
    assert len(created["options"]["domain_aliases"]) == 1000
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        domain_aliases=thousand + ["d1000.example.com"])), "options.domain_aliases")


@pytest.mark.parametrize("domain", ["not a domain", "localhost", "-bad.example.com",
                                    "user@example.com", "*.example.com", "example.com/path",
                                    "https://example.com", "", 5])
def test_domain_aliases_invalid(api, cons, domain):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        domain_aliases=[domain])), "options.domain_aliases")


@pytest.mark.parametrize("url", ["https://cdn.example.com/acme.png", "http://127.0.0.1:9/i.png"])
def test_icon_url_valid(api, cons, url):
    created = cons.create(body_for(unique(), options=explicit_options(icon_url=url)))
    assert created["options"]["icon_url"] == url


@pytest.mark.parametrize("url", ["http://cdn.example.com/acme.png", "javascript:alert(1)",
                                 "data:image/png;base64,AAAA", "ftp://cdn.example.com/i.png",
                                 "/relative.png", "https://user:pw@cdn.example.com/i.png"])
def test_icon_url_invalid(api, cons, url):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        icon_url=url)), "options.icon_url")


def test_upstream_params_valid(api, cons):
    params = {"audience": {"value": "https://api.example.com"},
              "login_hint": {"alias": "login_hint"},
              "acr_values": {"alias": "acr_values"},
              "domain_hint": {"value": "example.com"}}
    created = cons.create(body_for(unique(), options=explicit_options(upstream_params=params)))
    assert created["options"]["upstream_params"] == params


@pytest.mark.parametrize("alias", ["acr_values", "audience", "client_id", "display",
                                   "id_token_hint", "login_hint", "max_age", "prompt", "resource",
                                   "response_mode", "response_type", "ui_locales"])
def test_upstream_params_every_alias(api, cons, alias):
    params = {"custom": {"alias": alias}}
    created = cons.create(body_for(unique(), options=explicit_options(upstream_params=params)))
    assert created["options"]["upstream_params"] == params


@pytest.mark.parametrize("params,needle", [
    ({"custom": {"alias": "email"}}, "options.upstream_params.custom"),
    ({"custom": {"alias": "state"}}, "options.upstream_params.custom"),
    ({"custom": {"value": "a", "alias": "prompt"}}, "exactly one"),
    ({"custom": {}}, "exactly one"),
    ({"custom": {"value": "a", "other": "b"}}, "other"),
    ({"custom": "static"}, "options.upstream_params.custom"),
    ({"custom": {"value": 5}}, "options.upstream_params.custom"),
    ({"state": {"value": "fixed"}}, "state"),
    ({"nonce": {"value": "fixed"}}, "nonce"),
    ({"redirect_uri": {"value": "https://evil.example.com/cb"}}, "redirect_uri"),
    ({"code_challenge": {"value": "x"}}, "code_challenge"),
    ({"code_challenge_method": {"value": "plain"}}, "code_challenge_method"),
    ({"scope": {"value": "openid admin"}}, "scope"),
    ({"client_id": {"alias": "client_id"}}, "client_id"),
    ({"response_type": {"value": "token"}}, "response_type"),
    ({"bad name": {"value": "x"}}, "options.upstream_params"),
])
def test_upstream_params_invalid(api, cons, params, needle):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        upstream_params=params)), needle)


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic",
                                    "private_key_jwt"])
def test_token_endpoint_auth_method(api, cons, method):
    created = cons.create(body_for(unique(), options=explicit_options(
        token_endpoint_auth_method=method)))
    assert created["options"]["token_endpoint_auth_method"] == method


@pytest.mark.parametrize("method", ["client_secret_jwt", "none", "tls_client_auth", ""])
def test_token_endpoint_auth_method_invalid(api, cons, method):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        token_endpoint_auth_method=method)), "options.token_endpoint_auth_method")


def test_id_token_algs_valid(api, cons):
    created = cons.create(body_for(unique(), options=explicit_options(
        id_token_signed_response_algs=["ES256", "RS256", "PS384", "EdDSA"])))
    assert created["options"]["id_token_signed_response_algs"] == ["ES256", "RS256", "PS384",
                                                                   "EdDSA"]


@pytest.mark.parametrize("algs", [["none"], ["HS256"], ["RS256", "HS512"], ["HS384"], [],
                                  ["rs256"], ["RSA-OAEP"]])
def test_id_token_algs_invalid(api, cons, algs):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        id_token_signed_response_algs=algs)), "options.id_token_signed_response_algs")


def test_send_back_channel_nonce(api, cons):
    assert cons.create()["options"]["send_back_channel_nonce"] is True
    created = cons.create(body_for(unique(), options=explicit_options(
        send_back_channel_nonce=False)))
    assert created["options"]["send_back_channel_nonce"] is False


def test_oidc_metadata_from_the_client_is_ignored(api, cons):
    created = cons.create(body_for(unique(), options=explicit_options(
        oidc_metadata={"issuer": "https://evil.example.com", "jwks_uri": "https://evil/jwks"})))
    assert "oidc_metadata" not in created["options"]
    assert "oidc_metadata" not in cons.get(created["id"])["options"]


@pytest.mark.parametrize("option", ["issuer", "authorization_endpoint", "token_endpoint",
                                    "jwks_uri", "userinfo_endpoint", "end_session_endpoint",
                                    "discovery_url"])
def test_urls_must_be_https_off_loopback(api, cons, option):
    body = body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        **{option: f"http://idp.example.com/{option}"}))
    rejected_create(api, cons, body, f"options.{option}", "https")


@pytest.mark.parametrize("option", ["issuer", "authorization_endpoint", "token_endpoint",
                                    "jwks_uri", "userinfo_endpoint", "end_session_endpoint"])
@pytest.mark.parametrize("url", ["not a url", "/relative/path", "https://idp.example.com/x#frag",
                                 "https://user:pw@idp.example.com/x", "javascript:alert(1)"])
def test_urls_must_be_absolute_web_urls(api, cons, option, url):
    body = body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(**{option: url}))
    rejected_create(api, cons, body, f"options.{option}")


def test_https_urls_accepted_without_discovery(api, cons):
    urls = {"issuer": "https://idp.example.com/",
            "authorization_endpoint": "https://idp.example.com/authorize",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/.well-known/jwks.json",
            "userinfo_endpoint": "https://idp.example.com/userinfo",
            "end_session_endpoint": "https://idp.example.com/logout"}
    created = cons.create(body_for(unique(), options={"client_id": "c", **urls}))
    for key, value in urls.items():
        assert created["options"][key] == value


def test_issuer_with_query_is_refused(api, cons):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        issuer="https://idp.example.com/?tenant=1")), "options.issuer")


@pytest.mark.parametrize("missing", ["issuer", "authorization_endpoint", "jwks_uri"])
def test_endpoints_required_without_discovery(api, cons, missing):
    options = explicit_options()
    del options[missing]
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=options),
                    f"options.{missing}")


def test_back_channel_needs_token_endpoint_without_discovery(api, cons):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        type="back_channel", client_secret="s")), "options.token_endpoint")


# --- discovery --------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["base", "base-slash", "full"])
def test_discovery_against_the_real_idp(api, cons, oidc_idp, form):
    url = {"base": oidc_idp.issuer, "base-slash": oidc_idp.issuer + "/",
           "full": oidc_idp.discovery_url}[form]
    created = cons.create(body_for(unique(), options={"client_id": "broker-client",
                                                      "discovery_url": url}))
    options = created["options"]
    assert options["discovery_url"] == url
    assert options["issuer"] == oidc_idp.issuer
    assert options["authorization_endpoint"] == oidc_idp.issuer + "/auth"
    assert options["token_endpoint"] == oidc_idp.issuer + "/token"
    assert options["jwks_uri"] == oidc_idp.issuer + "/jwks"
    assert options["userinfo_endpoint"] == oidc_idp.issuer + "/me"
    assert options["end_session_endpoint"] == oidc_idp.issuer + "/session/end"
    metadata = options["oidc_metadata"]
    assert metadata["issuer"] == oidc_idp.issuer
    assert "code" in metadata["response_types_supported"]
    # the IdP lists HS256 and RS256: only the asymmetric one is kept
    assert options["id_token_signed_response_algs"] == ["RS256"]
    assert cons.get(created["id"]) == created


def test_discovery_back_channel_with_the_real_idp(api, cons, oidc_idp):
    created = cons.create(body_for(unique(), options={
        "client_id": "broker-client", "client_secret": "broker-secret",
        "discovery_url": oidc_idp.issuer, "type": "back_channel",
        "token_endpoint_auth_method": "client_secret_basic"}))
    assert created["options"]["token_endpoint"] == oidc_idp.issuer + "/token"
    assert stored_secret(created["id"]) == "broker-secret"


def test_explicit_values_beat_discovered_ones(api, cons, oidc_idp):
    created = cons.create(body_for(unique(), options={
        "client_id": "broker-client", "discovery_url": oidc_idp.issuer,
        "authorization_endpoint": "https://login.example.com/authorize",
        "userinfo_endpoint": "https://login.example.com/userinfo",
        "id_token_signed_response_algs": ["ES256"]}))
    options = created["options"]
    assert options["authorization_endpoint"] == "https://login.example.com/authorize"
    assert options["userinfo_endpoint"] == "https://login.example.com/userinfo"
    assert options["token_endpoint"] == oidc_idp.issuer + "/token"
    assert options["id_token_signed_response_algs"] == ["ES256"]


def test_explicit_url_is_still_checked_with_discovery(api, cons, oidc_idp):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options={
        "client_id": "c", "discovery_url": oidc_idp.issuer,
        "jwks_uri": "http://idp.example.com/jwks"}), "options.jwks_uri", "https")


def test_client_supplied_metadata_loses_to_the_fetched_document(api, cons, oidc_idp):
    created = cons.create(body_for(unique(), options={
        "client_id": "c", "discovery_url": oidc_idp.issuer,
        "oidc_metadata": {"issuer": "https://evil.example.com", "injected": True}}))
    assert created["options"]["oidc_metadata"]["issuer"] == oidc_idp.issuer
    assert "injected" not in created["options"]["oidc_metadata"]


def test_discovered_asymmetric_algorithms_are_added(api, cons, static_idp):
    issuer = static_idp.tenant("/algs", id_token_signing_alg_values_supported=[
        "HS256", "RS256", "ES256", "none", "PS256", "HS512", "EdDSA"])
    created = cons.create(body_for(unique(), options={"client_id": "c", "discovery_url": issuer}))
    assert created["options"]["id_token_signed_response_algs"] == ["RS256", "ES256", "PS256",
                                                                   "EdDSA"]


def test_discovery_back_channel_requires_token_endpoint(api, cons, static_idp):
    issuer = static_idp.tenant("/no-token")
    doc = static_idp.docs["/no-token/.well-known/openid-configuration"]
    del doc["token_endpoint"]
    created = cons.create(body_for(unique(), options={"client_id": "c", "discovery_url": issuer}))
    assert "token_endpoint" not in created["options"]
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options={
        "client_id": "c", "client_secret": "s", "discovery_url": issuer, "type": "back_channel"}),
        "token_endpoint")
    # SPEC §2.2's discovery check: the document itself must list it for back_channel
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options={
        "client_id": "c", "client_secret": "s", "discovery_url": issuer, "type": "back_channel",
        "token_endpoint": "https://idp.example.com/token"}), "token_endpoint")


@pytest.mark.parametrize("field", ["authorization_endpoint", "token_endpoint", "jwks_uri",
                                   "userinfo_endpoint", "end_session_endpoint"])
@pytest.mark.parametrize("suffix", ["\r\nSet-Cookie: x=1", "\t", "\u0085", " x", "#frag"])
def test_discovered_endpoints_pass_the_same_url_check(api, cons, static_idp, field, suffix):
    """A discovered value is stored as an explicit one would be: the same check applies."""
    path = f"/bad-{uuid.uuid4().hex[:6]}"
    issuer = static_idp.tenant(path)
    static_idp.docs[path + "/.well-known/openid-configuration"][field] = (
        f"{issuer}/{field}{suffix}")
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options={
        "client_id": "c", "discovery_url": issuer}), field)

def test_discovery_with_nothing_listening(api, cons):
    port = free_loopback_port()
    error = rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options={
        "client_id": "c", "discovery_url": f"http://127.0.0.1:{port}/"}), "discovery")
    assert "connect" in error["message"].lower()


def test_discovery_issuer_mismatch_names_the_problem(api, cons, static_idp):
    static_idp.tenant("/mismatch", issuer="https://other.example.com")
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options={
        "client_id": "c", "discovery_url": static_idp.base + "/mismatch"}), "issuer")


def test_discovery_url_off_loopback_http_is_refused_before_any_fetch(api, cons):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options={
        "client_id": "c", "discovery_url": "http://idp.example.com/"}),
        "options.discovery_url", "https")


def test_patch_that_changes_discovery_url_refetches(api, cons, static_idp):
    issuer = static_idp.tenant("/t1")
    created = cons.create(body_for(unique(), options={"client_id": "c", "discovery_url": issuer}))
    assert created["options"]["authorization_endpoint"] == issuer + "/authorize"
    # the IdP moves its endpoints; a PATCH with the other spelling of its URL fetches again
    static_idp.tenant("/t1", authorization_endpoint=issuer + "/v2/authorize",
                      id_token_signing_alg_values_supported=["ES384"])
    full = issuer + "/.well-known/openid-configuration"
    hits = len(static_idp.hits)
    patched = cons.patch(created["id"], {"options": {"client_id": "c", "discovery_url": full}})
    assert patched.status_code == 200, patched.body
    assert len(static_idp.hits) == hits + 1
    assert patched.data["options"]["authorization_endpoint"] == issuer + "/v2/authorize"
    assert patched.data["options"]["oidc_metadata"]["authorization_endpoint"] == (
        issuer + "/v2/authorize")
    assert patched.data["options"]["id_token_signed_response_algs"] == ["RS256", "ES384"]
    # a PATCH to another IdP fetches that one
    other = static_idp.tenant("/t2")
    patched = cons.patch(created["id"], {"options": {"client_id": "c", "discovery_url": other}})
    assert patched.status_code == 200, patched.body
    assert patched.data["options"]["issuer"] == other
    assert cons.get(created["id"]) == patched.data


def test_patch_that_keeps_discovery_url_does_not_need_the_idp(api, cons, static_idp):
    issuer = static_idp.tenant("/keep")
    created = cons.create(body_for(unique(), options={"client_id": "c", "discovery_url": issuer}))
    static_idp.stop()  # the IdP is gone
    patched = cons.patch(created["id"], {"options": {"client_id": "c2", "discovery_url": issuer,
                                                     "scope": "openid email"}})
    assert patched.status_code == 200, patched.body
    assert patched.data["options"]["client_id"] == "c2"
    assert patched.data["options"]["authorization_endpoint"] == issuer + "/authorize"
    assert patched.data["options"]["oidc_metadata"] == created["options"]["oidc_metadata"]
    # ... but changing it does, and a failed fetch changes nothing
    rejected_patch(cons, created["id"], {"options": {
        "client_id": "c", "discovery_url": static_idp.base + "/elsewhere"}}, "discovery")


def test_patch_to_a_failing_discovery_url_changes_nothing(api, cons, static_idp):
    issuer = static_idp.tenant("/ok")
    created = cons.create(body_for(unique(), options={"client_id": "c", "discovery_url": issuer}))
    rejected_patch(cons, created["id"], {"options": {
        "client_id": "c", "discovery_url": static_idp.base + "/missing"}}, "discovery", "404")
    port = free_loopback_port()
    rejected_patch(cons, created["id"], {"options": {
        "client_id": "c", "discovery_url": f"http://127.0.0.1:{port}"}}, "discovery")


# --- PATCH ------------------------------------------------------------------------------------

def test_patch_top_level_fields(api, cons):
    created = cons.create()
    patched = cons.patch(created["id"], {"display_name": "New Name", "show_as_button": True,
                                         "is_domain_connection": True, "realms": ["one"],
                                         "metadata": {"a": "b"}})
    assert patched.status_code == 200, patched.body
    expected = created | {"display_name": "New Name", "show_as_button": True,
                          "is_domain_connection": True, "realms": ["one"],
                          "metadata": {"a": "b"}}
    assert patched.data == expected
    assert cons.get(created["id"]) == expected
    # fields absent from the PATCH keep their values
    patched = cons.patch(created["id"], {"show_as_button": False})
    assert patched.data == expected | {"show_as_button": False}


def test_patch_replaces_options_as_a_whole(api, cons):
    rich = explicit_options(
        type="back_channel", token_endpoint=f"{UPSTREAM}/token", client_secret="kept-secret",
        userinfo_endpoint=f"{UPSTREAM}/userinfo", scope="openid email",
        connection_settings={"pkce": "S256"}, attribute_map={"mapping_mode": "bind_all"},
        set_user_root_attributes="on_first_login", domain_aliases=["example.com"],
        icon_url="https://cdn.example.com/i.png", upstream_params={"prompt": {"value": "login"}},
        token_endpoint_auth_method="client_secret_basic",
        id_token_signed_response_algs=["ES256"], send_back_channel_nonce=False)
    created = cons.create(body_for(unique(), options=rich))
    patched = cons.patch(created["id"], {"options": explicit_options(client_id="new-client")})
    assert patched.status_code == 200, patched.body
    options = patched.data["options"]
    assert options == {
        "type": "front_channel", "client_id": "new-client", "issuer": f"{UPSTREAM}/",
        "authorization_endpoint": f"{UPSTREAM}/authorize", "jwks_uri": f"{UPSTREAM}/jwks",
        "scope": "openid profile email", "connection_settings": {"pkce": "auto"},
        "attribute_map": {"mapping_mode": "basic_profile"},
        "set_user_root_attributes": "on_each_login",
        "token_endpoint_auth_method": "client_secret_post",
        "id_token_signed_response_algs": ["RS256"], "send_back_channel_nonce": True,
        "callback_url": f"http://127.0.0.1:8000/login/callback/{created['name']}",
        "backchannel_logout_url":
            f"http://127.0.0.1:8000/login/backchannel-logout/{created['name']}"}
    assert cons.get(created["id"])["options"] == options
    assert stored_secret(created["id"]) == "kept-secret"
    # other top-level fields are untouched by an options PATCH
    assert {k: v for k, v in patched.data.items() if k != "options"} == {
        k: v for k, v in created.items() if k != "options"}


def test_get_edit_patch_round_trip(api, cons, oidc_idp):
    created = cons.create(body_for(unique(), options={
        "client_id": "broker-client", "discovery_url": oidc_idp.issuer,
        "client_secret": "round-trip", "domain_aliases": ["example.com"],
        "upstream_params": {"prompt": {"value": "login"}},
        "attribute_map": {"mapping_mode": "use_map",
                          "attributes": {"nickname": "${context.tokenset.nickname}"}}}))
    fetched = cons.get(created["id"])
    editable = {k: v for k, v in fetched.items() if k not in ("id", "strategy", "name")}
    patched = cons.patch(created["id"], editable)
    assert patched.status_code == 200, patched.body
    assert patched.data == fetched
    assert stored_secret(created["id"]) == "round-trip"


def test_rejected_patch_with_a_new_secret_keeps_the_old_one(api, cons):
    created = cons.create(body_for(unique(), options=explicit_options(client_secret="old")))
    rejected_patch(cons, created["id"], {"options": explicit_options(client_secret="new"),
                                         "enabled_clients": ["ghost"]}, "ghost")
    assert stored_secret(created["id"]) == "old"


def test_patch_options_need_client_id(api, cons):
    created = cons.create()
    options = explicit_options()
    del options["client_id"]
    rejected_patch(cons, created["id"], {"options": options}, "options.client_id")


def test_patch_name_is_immutable(api, cons):
    created = cons.create()
    rejected_patch(cons, created["id"], {"name": unique()}, "name", "cannot be changed")
    rejected_patch(cons, created["id"], {"name": "bad name"}, "name")
    same = cons.patch(created["id"], {"name": created["name"], "display_name": "Same"})
    assert same.status_code == 200, same.body
    assert same.data["name"] == created["name"]


@pytest.mark.parametrize("strategy", ["google-oauth2", "samlp", "auth0"])
def test_patch_strategy_is_immutable(api, cons, strategy):
    created = cons.create()
    rejected_patch(cons, created["id"], {"strategy": strategy}, "strategy")


@pytest.mark.parametrize("body,needle", [
    ({"id": "con_0000000000000000"}, "id"),
    ({"foo": 1}, "foo"),
    ({"display_name": "ok", "unknown": True}, "unknown"),
    ({"options": {**explicit_options(), "surprise": 1}}, "surprise"),
    ({"display_name": ""}, "display_name"),
    ({"display_name": "d" * 129}, "display_name"),
    ({"show_as_button": "yes"}, "show_as_button"),
    ({"is_domain_connection": 1}, "is_domain_connection"),
    ({"realms": [f"r{i}" for i in range(11)]}, "realms"),
    ({"metadata": {f"k{i}": "v" for i in range(11)}}, "metadata"),
    ({"metadata": {"k": 1}}, "metadata"),
    ({"metadata": {"k": "v" * 256}}, "metadata"),
    ({"enabled_clients": "x"}, "enabled_clients"),
    ({"enabled_clients": ["no-such-client"]}, "no-such-client"),
    ({"options": explicit_options(scope="email")}, "openid"),
    ({"options": explicit_options(type="hybrid")}, "options.type"),
    ({"options": explicit_options(icon_url="http://cdn.example.com/i.png")}, "options.icon_url"),
    ({"options": explicit_options(issuer="http://idp.example.com/")}, "options.issuer"),
    ({"options": explicit_options(id_token_signed_response_algs=["none"])},
     "options.id_token_signed_response_algs"),
    ({"options": explicit_options(upstream_params={"nonce": {"value": "n"}})}, "nonce"),
    ({"options": explicit_options(attribute_map={
        "mapping_mode": "use_map", "attributes": {"sub": "${context.tokenset.email}"}})}, "sub"),
    ({"options": explicit_options(client_secret="s" * 701)}, "options.client_secret"),
    ({"options": "oidc"}, "options"),
])
def test_rejected_patch_changes_nothing(api, cons, body, needle):
    secret = "before-" + uuid.uuid4().hex
    created = cons.create(body_for(unique(), metadata={"keep": "me"},
                                   options=explicit_options(client_secret=secret)))
    rejected_patch(cons, created["id"], body, needle)
    assert stored_secret(created["id"]) == secret


@pytest.mark.parametrize("raw", ["{oops", "[]", '[{"display_name": "x"}]', "\"text\""])
def test_patch_body_must_be_a_json_object(api, cons, raw):
    created = cons.create()
    before = cons.get(created["id"])
    assert_invalid(cons.patch(created["id"], raw))
    assert cons.get(created["id"]) == before


# --- unknown ids and DELETE -------------------------------------------------------------------

@pytest.mark.parametrize("connection_id", ["con_0000000000000000", "con_doesnotexist12", "nope",
                                           "con_" + "x" * 200])
def test_unknown_id_is_404(api, connection_id):
    path = f"{CONNECTIONS}/{connection_id}"
    assert_not_found(api.call("GET", path))
    assert_not_found(api.call("PATCH", path, body={"display_name": "x"}))
    assert_not_found(api.call("DELETE", path))
    assert_not_found(api.call("GET", f"{path}/clients"))
    assert_not_found(api.call("PATCH", f"{path}/clients",
                              body=[{"client_id": "x", "status": False}]))


def test_delete(api, cons):
    name = unique()
    created = cons.create(body_for(name))
    response = api.call("DELETE", f"{CONNECTIONS}/{created['id']}")
    assert response.status_code == 204
    assert not response.body
    assert_not_found(api.call("GET", f"{CONNECTIONS}/{created['id']}"))
    assert_not_found(api.call("DELETE", f"{CONNECTIONS}/{created['id']}"))
    assert api.call("GET", f"{CONNECTIONS}?name={name}").data == []
    again = cons.create(body_for(name))  # the name is free again
    assert again["id"] != created["id"]


def test_delete_schedules_the_secret_deletion(api, cons):
    from botocore.exceptions import ClientError

    from chalicelib import aws

    created = cons.create(body_for(unique(), options=explicit_options(client_secret="doomed")))
    assert stored_secret(created["id"]) == "doomed"
    assert api.call("DELETE", f"{CONNECTIONS}/{created['id']}").status_code == 204
    sm = aws.client("secretsmanager")
    described = sm.describe_secret(SecretId=secret_name(created["id"]))
    assert described.get("DeletedDate") is not None
    with pytest.raises(ClientError):
        sm.get_secret_value(SecretId=secret_name(created["id"]))


# --- list -------------------------------------------------------------------------------------

@pytest.fixture()
def five(cons):
    return [cons.create() for _ in range(5)]


def all_ids(api) -> list[str]:
    response = api.call("GET", f"{CONNECTIONS}?per_page=100")
    assert response.status_code == 200 and isinstance(response.data, list)
    assert len(response.data) < 100, "too many connections left by other tests"
    return [c["id"] for c in response.data]


def test_list_is_a_bare_array(api, five):
    response = api.call("GET", CONNECTIONS)
    assert response.status_code == 200
    assert isinstance(response.data, list)
    listed = {c["id"]: c for c in response.data}
    for created in five:
        assert listed[created["id"]] == created


def test_list_include_totals(api, five):
    ids = all_ids(api)
    response = api.call("GET", f"{CONNECTIONS}?include_totals=true&per_page=2&page=1")
    assert response.status_code == 200
    assert set(response.data) == {"start", "limit", "total", "connections"}
    assert response.data["start"] == 2 and response.data["limit"] == 2
    assert response.data["total"] == len(ids)
    assert [c["id"] for c in response.data["connections"]] == ids[2:4]
    default = api.call("GET", f"{CONNECTIONS}?include_totals=true").data
    assert default["start"] == 0 and default["limit"] == 50
    assert api.call("GET", f"{CONNECTIONS}?include_totals=false").data == \
        api.call("GET", CONNECTIONS).data


def test_list_offset_paging_walks_every_connection_once(api, five):
    ids = all_ids(api)
    seen, number = [], 0
    while True:
        chunk = api.call("GET", f"{CONNECTIONS}?per_page=2&page={number}").data
        assert len(chunk) <= 2
        if not chunk:
            break
        seen += [c["id"] for c in chunk]
        number += 1
    assert seen == ids
    assert {c["id"] for c in five} <= set(seen)


@pytest.mark.parametrize("query,name", [
    ("per_page=0", "per_page"), ("per_page=101", "per_page"), ("per_page=-1", "per_page"),
    ("per_page=ten", "per_page"), ("page=-1", "page"), ("page=1.5", "page"),
    ("include_totals=yes", "include_totals"), ("take=0", "take"), ("take=101", "take"),
    ("take=x", "take"), ("page=0&page=1", "page"), ("bogus=1", "bogus"),
    ("page=0&take=5", "from/take"), ("fields=id,password", "password"),
    ("include_fields=maybe&fields=id", "include_fields"),
])
def test_list_bad_query(api, query, name):
    assert_bad_query(api.call("GET", f"{CONNECTIONS}?{query}"), name)


def test_list_checkpoint_paging_walks_every_connection_once(api, five):
    ids = all_ids(api)
    seen, path, rounds = [], f"{CONNECTIONS}?take=2", 0
    while True:
        response = api.call("GET", path)
        assert response.status_code == 200, response.body
        assert set(response.data) <= {"connections", "next"}
        assert len(response.data["connections"]) <= 2
        seen += [c["id"] for c in response.data["connections"]]
        rounds += 1
        assert rounds <= len(ids)
        if "next" not in response.data:
            break
        path = f"{CONNECTIONS}?take=2&from={response.data['next']}"
    assert seen == ids and len(set(seen)) == len(seen)
    assert {c["id"] for c in five} <= set(seen)
    one_page = api.call("GET", f"{CONNECTIONS}?take=100").data
    assert "next" not in one_page and [c["id"] for c in one_page["connections"]] == ids


def test_list_filters(api, cons, five):
    target = five[2]
    by_name = api.call("GET", f"{CONNECTIONS}?name={target['name']}").data
    assert by_name == [target]
    assert api.call("GET", f"{CONNECTIONS}?name={target['name'][:-1]}").data == []
    assert api.call("GET", f"{CONNECTIONS}?name={target['name'].upper()}").data == []
    oidc = {c["id"] for c in api.call("GET", f"{CONNECTIONS}?strategy=oidc&per_page=100").data}
    assert {c["id"] for c in five} <= oidc
    both = api.call("GET", f"{CONNECTIONS}?strategy=samlp&strategy=oidc&per_page=100").data
    assert {c["id"] for c in both} == oidc
    assert api.call("GET", f"{CONNECTIONS}?strategy=samlp").data == []
    assert api.call("GET", f"{CONNECTIONS}?strategy=samlp&strategy=google-oauth2").data == []
    combined = api.call("GET", f"{CONNECTIONS}?strategy=oidc&name={target['name']}").data
    assert combined == [target]
    assert api.call("GET", f"{CONNECTIONS}?strategy=samlp&name={target['name']}").data == []


def test_list_fields(api, five):
    target = five[0]
    query = f"{CONNECTIONS}?name={target['name']}"
    included = api.call("GET", f"{query}&fields=id,name").data
    assert included == [{"id": target["id"], "name": target["name"]}]
    included = api.call("GET", f"{query}&fields=id,name&include_fields=true").data
    assert included == [{"id": target["id"], "name": target["name"]}]
    excluded = api.call("GET", f"{query}&fields=options,metadata&include_fields=false").data
    assert excluded == [{k: v for k, v in target.items() if k not in ("options", "metadata")}]
    totals = api.call("GET", f"{query}&fields=id&include_totals=true").data
    assert totals["connections"] == [{"id": target["id"]}]
    one = api.call("GET", f"{CONNECTIONS}/{target['id']}?fields=display_name").data
    assert one == {"display_name": target["display_name"]}
    one = api.call("GET", f"{CONNECTIONS}/{target['id']}?fields=options&include_fields=false")
    assert one.data == {k: v for k, v in target.items() if k != "options"}
    assert_bad_query(api.call("GET", f"{CONNECTIONS}/{target['id']}?page=1"), "page")


def test_options_need_read_connections_options(client, api, five):
    target = five[0]
    reader = Api(client, token_with_scopes(client, "read:connections"))
    full = Api(client, token_with_scopes(client, "read:connections read:connections_options"))
    listed = reader.call("GET", CONNECTIONS).data
    assert listed and all("options" not in c for c in listed)
    assert "options" not in reader.call("GET", f"{CONNECTIONS}/{target['id']}").data
    assert reader.call("GET", f"{CONNECTIONS}?name={target['name']}&fields=options").data == [{}]
    assert reader.call("GET", f"{CONNECTIONS}?take=10").data["connections"][0].get(
        "options") is None
    assert full.call("GET", f"{CONNECTIONS}/{target['id']}").data == target
    assert full.call("GET", f"{CONNECTIONS}?name={target['name']}").data == [target]


def test_create_and_patch_answer_options_only_with_read_connections_options(client, api, cons):
    """SPEC §2.2: one view for every response; a writer without read:connections_options does
    not read the options back through POST or PATCH."""
    writer = Api(client, token_with_scopes(
        client, "create:connections update:connections update:connections_options"))
    created = writer.call("POST", CONNECTIONS, body=body_for(unique()))
    cons.track(created)
    assert created.status_code == 201, created.body
    assert "options" not in created.data
    assert created.data["name"] and created.data["id"].startswith("con_")
    patched = writer.call("PATCH", f"{CONNECTIONS}/{created.data['id']}",
                          body={"options": explicit_options(client_id="changed")})
    assert patched.status_code == 200, patched.body
    assert "options" not in patched.data
    plain = writer.call("PATCH", f"{CONNECTIONS}/{created.data['id']}",
                        body={"display_name": "Renamed"})
    assert plain.status_code == 200, plain.body
    assert "options" not in plain.data and plain.data["display_name"] == "Renamed"
    # the writes happened: a reader with the scope sees them
    assert cons.get(created.data["id"])["options"]["client_id"] == "changed"


# --- read-only options.callback_url -----------------------------------------------------------

def callback_of(name: str) -> str:
    return f"http://127.0.0.1:8000/login/callback/{name}"


def test_callback_url_is_shown_and_not_stored(api, cons):
    from chalicelib.store.dynamo import table

    created = cons.create()
    assert created["options"]["callback_url"] == callback_of(created["name"])
    assert cons.get(created["id"])["options"]["callback_url"] == callback_of(created["name"])
    listed = api.call("GET", f"{CONNECTIONS}?name={created['name']}").data
    assert listed[0]["options"]["callback_url"] == callback_of(created["name"])
    assert "callback_url" not in table().get("CONNECTIONS", created["id"])["options"]


def test_callback_url_sent_back_unchanged_is_ignored(api, cons):
    name = unique()
    created = cons.create(body_for(name, options=explicit_options(
        callback_url=callback_of(name))))
    assert created["options"]["callback_url"] == callback_of(name)
    fetched = cons.get(created["id"])
    patched = cons.patch(created["id"], {"options": fetched["options"]})
    assert patched.status_code == 200, patched.body
    assert patched.data == fetched


@pytest.mark.parametrize("value", ["https://elsewhere.example.com/login/callback/x",
                                   "http://127.0.0.1:8000/login/callback",
                                   "http://127.0.0.1:8000/login/callback/other-name"])
def test_callback_url_cannot_be_changed(api, cons, value):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}", options=explicit_options(
        callback_url=value)), "options.callback_url", "read-only")
    created = cons.create()
    rejected_patch(cons, created["id"], {"options": explicit_options(callback_url=value)},
                   "options.callback_url", "read-only")


# --- every stored URL: raw characters, userinfo, fragment (SPEC §8) ---------------------------

URL_OPTIONS = ("discovery_url", "issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
               "userinfo_endpoint", "end_session_endpoint", "icon_url")
# Each is https on a host that is never contacted (the check comes before any fetch), so only the
# bad part can be the reason for the 400.
BAD_URLS = {
    "CR": "https://idp.example.com/a\rb",
    "LF": "https://idp.example.com/a\nb",
    "CRLF header": "https://idp.example.com/a\r\nSet-Cookie: x=1",
    "TAB": "https://idp.example.com/a\tb",
    "NUL": "https://idp.example.com/a\x00b",
    "DEL": "https://idp.example.com/a\x7fb",
    "leading space": " https://idp.example.com/a",
    "trailing LF": "https://idp.example.com/a\n",
    "space": "https://idp.example.com/a b",
    "NEL U+0085": "https://idp.example.com/a\u0085b",
    "NBSP": "https://idp.example.com/a\u00a0b",
    "line separator": "https://idp.example.com/a\u2028b",
    "ideographic space": "https://idp.example.com/a\u3000b",
    "userinfo": "https://user@idp.example.com/a",
    "empty userinfo": "https://@idp.example.com/a",
    "user and password": "https://user:pw@idp.example.com/a",
    "fragment": "https://idp.example.com/a#frag",
    "empty fragment": "https://idp.example.com/a#",
    "backslash": "https://idp.example.com\\@evil.example.com/a",
    "no host": "https:///a",
}


@pytest.mark.parametrize("option", URL_OPTIONS)
@pytest.mark.parametrize("bad", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_bad_option_url_is_refused_on_create(api, cons, option, bad):
    rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}",
                                        options=explicit_options(**{option: bad})),
                    f"options.{option}")


@pytest.mark.parametrize("option", URL_OPTIONS)
@pytest.mark.parametrize("bad", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_bad_option_url_is_refused_on_patch(api, cons, option, bad):
    created = cons.create()
    rejected_patch(cons, created["id"], {"options": explicit_options(**{option: bad})},
                   f"options.{option}")


# --- enabled clients --------------------------------------------------------------------------

def test_enabled_clients_on_create_and_patch(api, cons, make_client):
    a, b, c = make_client(), make_client(), make_client()
    created = cons.create(body_for(unique(), enabled_clients=[a, b, a]))
    assert created["enabled_clients"] == sorted([a, b])
    listed = api.call("GET", f"{CONNECTIONS}/{created['id']}/clients").data
    assert listed == {"clients": [{"client_id": x} for x in sorted([a, b])]}
    patched = cons.patch(created["id"], {"enabled_clients": [c]})
    assert patched.status_code == 200, patched.body
    assert patched.data["enabled_clients"] == [c]
    assert api.call("GET", f"{CONNECTIONS}/{created['id']}/clients").data == {
        "clients": [{"client_id": c}]}
    patched = cons.patch(created["id"], {"enabled_clients": []})
    assert patched.data["enabled_clients"] == []
    assert api.call("GET", f"{CONNECTIONS}/{created['id']}/clients").data == {"clients": []}
    # PATCH without enabled_clients keeps them
    cons.patch(created["id"], {"enabled_clients": [a]})
    cons.patch(created["id"], {"display_name": "x"})
    assert cons.get(created["id"])["enabled_clients"] == [a]


def test_enabled_clients_unknown_client(api, cons, make_client):
    a = make_client()
    error = rejected_create(api, cons, body_for(f"n-{uuid.uuid4().hex[:12]}",
                                                enabled_clients=[a, "no-such-client"]),
                            "enabled_clients", "no-such-client")
    assert error
    created = cons.create(body_for(unique(), enabled_clients=[a]))
    rejected_patch(cons, created["id"], {"enabled_clients": ["ghost"]}, "enabled_clients",
                   "ghost")


def test_patch_connection_clients(api, cons, make_client):
    a, b = make_client(), make_client()
    created = cons.create()
    path = f"{CONNECTIONS}/{created['id']}/clients"
    response = api.call("PATCH", path, body=[{"client_id": a, "status": True},
                                             {"client_id": b, "status": True}])
    assert response.status_code == 204, response.body
    assert not response.body
    assert cons.get(created["id"])["enabled_clients"] == sorted([a, b])
    assert api.call("GET", path).data == {"clients": [{"client_id": x} for x in sorted([a, b])]}
    response = api.call("PATCH", path, body=[{"client_id": a, "status": False}])
    assert response.status_code == 204
    assert cons.get(created["id"])["enabled_clients"] == [b]
    # disabling what is not enabled is harmless; enabling twice too
    assert api.call("PATCH", path, body=[{"client_id": a, "status": False}]).status_code == 204
    assert api.call("PATCH", path, body=[{"client_id": b, "status": True}]).status_code == 204
    assert cons.get(created["id"])["enabled_clients"] == [b]
    assert api.call("PATCH", path, body=[{"client_id": b, "status": False}]).status_code == 204
    assert cons.get(created["id"])["enabled_clients"] == []
    assert api.call("GET", path).data == {"clients": []}


@pytest.mark.parametrize("body,needle", [
    ([], "1 to 50"),
    ([{"client_id": "c", "status": True}] * 51, "1 to 50"),
    ({"client_id": "c", "status": True}, "array"),
    ([{"client_id": "c", "status": True, "extra": 1}], "extra"),
    ([{"client_id": "c"}], "status"),
    ([{"status": True}], "client_id"),
    ([{"client_id": "c", "status": "true"}], "status"),
    ([{"client_id": 5, "status": True}], "client_id"),
    (["c"], ""),
    ([{"client_id": "no-such-client", "status": True}], "no-such-client"),
])
def test_patch_connection_clients_invalid(api, cons, make_client, body, needle):
    a = make_client()
    created = cons.create(body_for(unique(), enabled_clients=[a]))
    before = cons.get(created["id"])
    assert_invalid(api.call("PATCH", f"{CONNECTIONS}/{created['id']}/clients", body=body), needle)
    assert cons.get(created["id"]) == before


def test_patch_connection_clients_not_json(api, cons):
    created = cons.create()
    assert_invalid(api.call("PATCH", f"{CONNECTIONS}/{created['id']}/clients", body="[{"))


def test_patch_connection_clients_both_enable_and_disable(api, cons, make_client):
    a = make_client()
    created = cons.create()
    assert_invalid(api.call("PATCH", f"{CONNECTIONS}/{created['id']}/clients", body=[
        {"client_id": a, "status": True}, {"client_id": a, "status": False}]), "client_id")
    assert cons.get(created["id"])["enabled_clients"] == []


def test_connection_clients_paging(api, cons, make_client):
    ids = sorted(make_client() for _ in range(5))
    created = cons.create(body_for(unique(), enabled_clients=ids))
    path = f"{CONNECTIONS}/{created['id']}/clients"
    first = api.call("GET", f"{path}?take=2").data
    assert first == {"clients": [{"client_id": x} for x in ids[:2]], "next": first["next"]}
    seen, page_body = [], first
    while True:
        seen += [c["client_id"] for c in page_body["clients"]]
        if "next" not in page_body:
            break
        page_body = api.call("GET", f"{path}?take=2&from={page_body['next']}").data
    assert seen == ids
    assert api.call("GET", path).data == {"clients": [{"client_id": x} for x in ids]}
    assert_bad_query(api.call("GET", f"{path}?take=0"), "take")
    assert_bad_query(api.call("GET", f"{path}?take=101"), "take")
    assert_bad_query(api.call("GET", f"{path}?page=1"), "page")


def test_deleting_a_client_disables_it(api, cons, make_client):
    a, b = make_client(), make_client()
    created = cons.create(body_for(unique(), enabled_clients=[a, b]))
    assert api.call("DELETE", f"/api/v2/clients/{a}").status_code == 204
    assert cons.get(created["id"])["enabled_clients"] == [b]


def test_enable_and_disable_in_one_call(api):
    clients = [api.call("POST", "/api/v2/clients", body={"name": f"c{i}"}).data["client_id"]
               for i in range(2)]
    created = api.call("POST", "/api/v2/connections", body={
        "name": f"mixed-{uuid.uuid4().hex[:8]}", "strategy": "oidc",
        "enabled_clients": [clients[0]],
        "options": {"client_id": "c", "issuer": "http://127.0.0.1:9/",
                    "authorization_endpoint": "http://127.0.0.1:9/a",
                    "jwks_uri": "http://127.0.0.1:9/j"}}).data
    response = api.call("PATCH", f"/api/v2/connections/{created['id']}/clients", body=[
        {"client_id": clients[0], "status": False}, {"client_id": clients[1], "status": True}])
    assert response.status_code == 204, response.data
    after = api.call("GET", f"/api/v2/connections/{created['id']}").data
    assert after["enabled_clients"] == [clients[1]]
    api.call("DELETE", f"/api/v2/connections/{created['id']}")
