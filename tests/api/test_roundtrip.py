"""SPEC §2.4 (Auth0 tools round-trip), §2.2, §2.3, §2.5: every field of Auth0's Management API
schema is accepted; the ones the broker does not act on are stored and echoed; values asking for
what the broker does not do are refused naming the field and change nothing; a GET sent back by
PATCH changes nothing; the list filters Auth0's tools send are honoured."""
from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CLIENTS = "/api/v2/clients"
CONNECTIONS = "/api/v2/connections"
SERVERS = "/api/v2/resource-servers"
GRANTS = "/api/v2/client-grants"
# Moved by the broker on every write; everything else must come back as it was.
VOLATILE = ("updated_at",)
CLIENT_READ_ONLY = ("client_id", "created_at", "updated_at")
CONNECTION_READ_ONLY = ("id", "name", "strategy")
SERVER_READ_ONLY = ("id", "identifier")

text = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=20)
flat_json = st.dictionaries(text.filter(lambda k: "secret" not in k.lower()),
                            st.one_of(text, st.booleans(), st.integers(-1000, 1000)), max_size=4)
https_url = text.map(lambda s: f"https://{s.lower()}.example.com/login")

CLIENT_INERT = {
    "oidc_conformant": st.booleans(),
    "client_aliases": st.lists(text, max_size=3),
    "allowed_clients": st.lists(text, max_size=3),
    "session_transfer": flat_json,
    "sso": st.booleans(),
    "sso_disabled": st.booleans(),
    "cross_origin_authentication": st.booleans(),
    "cross_origin_loc": https_url,
    "custom_login_page_on": st.booleans(),
    "custom_login_page": text,
    "form_template": text,
    "addons": st.dictionaries(st.sampled_from(["samlp", "wsfed", "aws"]), flat_json, max_size=2),
    "mobile": st.fixed_dictionaries({"ios": st.fixed_dictionaries({"team_id": text})}),
    "initiate_login_uri": https_url,
    "native_social_login": st.fixed_dictionaries(
        {"apple": st.fixed_dictionaries({"enabled": st.booleans()})}),
    "organization_usage": st.sampled_from(["deny", "allow"]),
    "organization_require_behavior": st.sampled_from(["no_prompt", "pre_login_prompt"]),
    "par_request_expiry": st.integers(5, 600),
    "third_party_security_mode": st.sampled_from(["strict", "permissive"]),
    "require_pushed_authorization_requests": st.just(False),
    "require_proof_of_possession": st.just(False),
    "compliance_level": st.just("none"),
    "is_token_endpoint_ip_header_trusted": st.just(False),
    "signed_request_object": st.just({"required": False}),
    "jwt_configuration": st.fixed_dictionaries(
        {"alg": st.just("RS256"), "lifetime_in_seconds": st.integers(60, 86400)},
        optional={"secret_encoded": st.booleans(), "scopes": flat_json}),
    "oidc_logout": st.fixed_dictionaries(
        {"backchannel_logout_urls": st.lists(https_url, max_size=2, unique=True)},
        optional={"backchannel_logout_initiators": st.just({"mode": "all"}),
                  "backchannel_logout_session_metadata": st.fixed_dictionaries(
                      {"include": st.booleans()})}),
    "refresh_token": st.fixed_dictionaries(
        {"rotation_type": st.just("non-rotating"), "expiration_type": st.just("expiring")},
        optional={"policies": st.lists(st.fixed_dictionaries(
            {"audience": https_url, "scope": st.lists(text, max_size=2)}), max_size=2)}),
}
OPTION_INERT = {
    "tenant_domain": text.map(lambda s: f"{s.lower()}.example.com"),
    "token_endpoint_auth_signing_alg": st.sampled_from(["RS256", "PS256", "ES256"]),
    "pushed_authorization_request_endpoint": https_url,
    "id_token_session_expiry_supported": st.booleans(),
    "federated_connections_access_tokens": st.fixed_dictionaries({"active": st.booleans()}),
    "non_persistent_attrs": st.just([]),
    "enable_pushed_authorization_requests": st.just(False),
    "scope": st.just("openid profile"),
    "set_user_root_attributes": st.sampled_from(["on_first_login", "never_on_login"]),
}
CONNECTION_INERT = {
    "authentication": st.just({"active": True}),
    "connected_accounts": st.fixed_dictionaries({"active": st.booleans()}),
    "show_as_button": st.booleans(),
    "metadata": st.dictionaries(text, text, max_size=3),
}
SERVER_INERT = {
    "token_dialect": st.sampled_from(["access_token", "rfc9068_profile"]),
    "enforce_policies": st.just(False),
    "allow_online_access": st.booleans(),
    "allow_online_access_with_ephemeral_sessions": st.booleans(),
    "allow_offline_access": st.booleans(),
    "skip_consent_for_verifiable_first_party_clients": st.booleans(),
    "authorization_details": st.lists(st.fixed_dictionaries({"type": text}), max_size=2),
}


def _some(fields: dict) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional=fields)


def _err(response, status, code, naming=None):
    assert response.status_code == status, response.data
    assert response.data["errorCode"] == code, response.data
    if naming:
        assert naming in response.data["message"], response.data
    return response.data


def _options(**extra) -> dict:
    return {"client_id": "upstream", "issuer": "https://idp.example.com/",
            "authorization_endpoint": "https://idp.example.com/authorize",
            "jwks_uri": "https://idp.example.com/jwks", **extra}


def _round_trip(api, path: str, read_only: tuple[str, ...]) -> dict:
    """GET, PATCH the GET back less its read-only fields, GET again: nothing changed."""
    first = api.call("GET", path)
    assert first.status_code == 200, first.data
    body = {k: v for k, v in first.data.items() if k not in read_only}
    patched = api.call("PATCH", path, body=body)
    assert patched.status_code == 200, patched.data
    second = api.call("GET", path).data
    strip = lambda d: {k: v for k, v in d.items() if k not in VOLATILE}  # noqa: E731
    assert strip(second) == strip(first.data)
    return first.data


LIMITED = settings(max_examples=20, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])


@LIMITED
@given(fields=_some(CLIENT_INERT))
def test_client_round_trip(api, fields):
    created = api.call("POST", CLIENTS, body={"name": "rt", **fields})
    assert created.status_code == 201, created.data
    path = f"{CLIENTS}/{created.data['client_id']}"
    try:
        first = _round_trip(api, path, CLIENT_READ_ONLY)
        for key, value in fields.items():
            if key not in ("jwt_configuration", "oidc_logout", "refresh_token"):
                assert first[key] == value, key  # echoed unchanged
        # The whole GET, read-only fields included, is accepted back too.
        assert api.call("PATCH", path, body=first).status_code == 200
    finally:
        api.call("DELETE", path)


@LIMITED
@given(fields=_some(CONNECTION_INERT), options=_some(OPTION_INERT))
def test_connection_round_trip(api, fields, options):
    body = {"name": f"rt-{uuid.uuid4().hex[:12]}", "strategy": "oidc",
            "options": _options(**options), **fields}
    created = api.call("POST", CONNECTIONS, body=body)
    assert created.status_code == 201, created.data
    path = f"{CONNECTIONS}/{created.data['id']}"
    try:
        first = _round_trip(api, path, CONNECTION_READ_ONLY)
        for key, value in options.items():
            if key != "scope":
                assert first["options"][key] == value, key
        assert api.call("PATCH", path, body=first).status_code == 200
    finally:
        api.call("DELETE", path)


@LIMITED
@given(fields=_some(SERVER_INERT))
def test_resource_server_round_trip(api, fields):
    body = {"identifier": f"https://rt-{uuid.uuid4().hex[:12]}.example.com/", "name": "rt",
            "scopes": [{"value": "read:x", "description": "x"}], **fields}
    created = api.call("POST", SERVERS, body=body)
    assert created.status_code == 201, created.data
    path = f"{SERVERS}/{created.data['id']}"
    try:
        first = _round_trip(api, path, SERVER_READ_ONLY)
        for key, value in fields.items():
            assert first[key] == value, key
        assert api.call("PATCH", path, body=first).status_code == 200
    finally:
        api.call("DELETE", path)


# --- refused values: a 400 naming the field, nothing changed -------------------------------------

@pytest.fixture()
def app_client(api):
    created = api.call("POST", CLIENTS, body={"name": "refusals"}).data
    yield created
    api.call("DELETE", f"{CLIENTS}/{created['client_id']}")


@pytest.mark.parametrize("body,where", [
    ({"jwt_configuration": {"alg": "HS256"}}, "jwt_configuration.alg"),
    ({"jwt_configuration": {"alg": "PS256"}}, "jwt_configuration.alg"),
    ({"require_pushed_authorization_requests": True}, "require_pushed_authorization_requests"),
    ({"require_proof_of_possession": True}, "require_proof_of_possession"),
    ({"compliance_level": "fapi2_sp_pkj_mtls"}, "compliance_level"),
    ({"is_token_endpoint_ip_header_trusted": True}, "is_token_endpoint_ip_header_trusted"),
    ({"skip_non_verifiable_callback_uri_confirmation_prompt": False},
     "skip_non_verifiable_callback_uri_confirmation_prompt"),
    ({"signed_request_object": {"required": True}}, "signed_request_object.required"),
    ({"client_authentication_methods": {"private_key_jwt": {"credentials": [{"id": "cred"}]}}},
     "client_authentication_methods"),
    ({"encryption_key": {"pub": "-----BEGIN PUBLIC KEY-----"}}, "encryption_key"),
    ({"token_quota": {"client_credentials": {"per_day": 10}}}, "token_quota"),
    ({"token_vault_privileged_access": {"grants": []}}, "token_vault_privileged_access"),
    ({"organization_usage": "require"}, "organization_usage"),
    ({"oidc_logout": {"backchannel_logout_urls": [],
                      "backchannel_logout_initiators": {"mode": "custom"}}},
     "oidc_logout.backchannel_logout_initiators.mode"),
    ({"addons": {"firebase": {"secret": "s3cr3t-value"}}}, "addons"),
    ({"custom_login_page": "x" * 70000}, "custom_login_page"),
    ({"session_transfer": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}, "session_transfer"),
    ({"is_global": False}, "is_global"),  # not in Auth0's schema
    ({"client_id": "another-client-id"}, "client_id"),
    ({"global": True}, "global"),
])
def test_client_refusals_change_nothing(api, app_client, body, where):
    path = f"{CLIENTS}/{app_client['client_id']}"
    before = api.call("GET", path).data
    data = _err(api.call("PATCH", path, body=body), 400, "invalid_body", naming=where)
    assert "s3cr3t-value" not in data["message"]
    assert api.call("GET", path).data == before
    if where not in ("client_id", "global"):
        _err(api.call("POST", CLIENTS, body={"name": "refused", **body}), 400, "invalid_body",
             naming=where)


def test_deprecated_oidc_backchannel_logout_is_read_as_oidc_logout(api):
    urls = ["https://rp.example.com/bcl"]
    created = api.call("POST", CLIENTS, body={
        "name": "old-spelling", "oidc_backchannel_logout": {"backchannel_logout_urls": urls}})
    assert created.status_code == 201, created.data
    assert created.data["oidc_logout"]["backchannel_logout_urls"] == urls
    assert "oidc_backchannel_logout" not in created.data
    path = f"{CLIENTS}/{created.data['client_id']}"
    _err(api.call("PATCH", path, body={
        "oidc_logout": {"backchannel_logout_urls": []},
        "oidc_backchannel_logout": {"backchannel_logout_urls": urls}}), 400, "invalid_body",
        naming="oidc_backchannel_logout")
    api.call("DELETE", path)


@pytest.fixture()
def connection(api):
    created = api.call("POST", CONNECTIONS, body={
        "name": f"ref-{uuid.uuid4().hex[:12]}", "strategy": "oidc", "options": _options()}).data
    yield created
    api.call("DELETE", f"{CONNECTIONS}/{created['id']}")


@pytest.mark.parametrize("options,where", [
    ({"token_endpoint_auth_signing_alg": "HS256"}, "options.token_endpoint_auth_signing_alg"),
    ({"token_endpoint_auth_signing_alg": "none"}, "options.token_endpoint_auth_signing_alg"),
    ({"dpop_signing_alg": "ES256"}, "options.dpop_signing_alg"),
    ({"enable_pushed_authorization_requests": True},
     "options.enable_pushed_authorization_requests"),
    ({"non_persistent_attrs": ["ethnicity"]}, "options.non_persistent_attrs"),
    ({"federated_connections_access_tokens": {"client_secret": "s3cr3t-value"}},
     "options.federated_connections_access_tokens"),
    ({"not_an_auth0_option": 1}, "not_an_auth0_option"),
])
def test_connection_option_refusals_change_nothing(api, connection, options, where):
    path = f"{CONNECTIONS}/{connection['id']}"
    before = api.call("GET", path).data
    data = _err(api.call("PATCH", path, body={"options": _options(**options)}), 400,
                "invalid_body", naming=where)
    assert "s3cr3t-value" not in data["message"]
    assert api.call("GET", path).data == before


@pytest.mark.parametrize("body,where", [
    ({"authentication": {"active": False}}, "authentication.active"),
    ({"id": "con_AAAAAAAAAAAAAAAA"}, "id"),
    ({"provisioning_ticket_url": "https://x.example.com"}, "provisioning_ticket_url"),
])
def test_connection_refusals_change_nothing(api, connection, body, where):
    path = f"{CONNECTIONS}/{connection['id']}"
    before = api.call("GET", path).data
    _err(api.call("PATCH", path, body=body), 400, "invalid_body", naming=where)
    assert api.call("GET", path).data == before


def test_connection_null_auth_method_means_the_default(api):
    created = api.call("POST", CONNECTIONS, body={
        "name": f"null-{uuid.uuid4().hex[:12]}", "strategy": "oidc",
        "options": _options(token_endpoint_auth_method=None)})
    assert created.status_code == 201, created.data
    assert created.data["options"]["token_endpoint_auth_method"] == "client_secret_post"
    api.call("DELETE", f"{CONNECTIONS}/{created.data['id']}")


def test_resource_server_identifier_is_read_only(api):
    created = api.call("POST", SERVERS, body={
        "identifier": f"https://ro-{uuid.uuid4().hex[:12]}.example.com/"}).data
    path = f"{SERVERS}/{created['id']}"
    _err(api.call("PATCH", path, body={"identifier": "https://other.example.com/"}), 400,
         "invalid_body", naming="identifier")
    _err(api.call("PATCH", path, body={"id": "0" * 24}), 400, "invalid_body", naming="id")
    _err(api.call("PATCH", path, body={"authorization_policy": {"policy": "x"}}), 400,
         "invalid_body", naming="authorization_policy")
    assert api.call("GET", path).data == created
    api.call("DELETE", path)


# --- list filters ----------------------------------------------------------------------------------

def test_client_list_filters(api):
    first = api.call("POST", CLIENTS, body={"name": "first", "is_first_party": True}).data
    third = api.call("POST", CLIENTS, body={"name": "third", "is_first_party": False}).data
    try:
        def ids(query: str) -> set[str]:
            """Every matching client: the suite has made more than one page of them by now."""
            found: set[str] = set()
            for page in range(100):
                batch = api.call("GET", f"{CLIENTS}{query}&per_page=100&page={page}").data
                found |= {c["client_id"] for c in batch}
                if len(batch) < 100:
                    return found
            raise AssertionError("more than 10,000 clients")

        both = {first["client_id"], third["client_id"]}
        assert both <= ids("?is_global=false")
        assert ids("?is_global=true") == set()
        assert first["client_id"] in ids("?is_first_party=true")
        assert third["client_id"] not in ids("?is_first_party=true")
        assert third["client_id"] in ids("?is_first_party=false")
        assert first["client_id"] not in ids("?is_first_party=false")
        fields = api.call("GET", CLIENTS + "?fields=client_id,oidc_conformant").data
        assert all(set(c) <= {"client_id", "oidc_conformant"} for c in fields)
        for bad in ("?is_global=yes", "?is_first_party=1", "?is_first_party=true&is_first_party=false",
                    "?fields=not_a_field"):
            _err(api.call("GET", CLIENTS + bad), 400, "invalid_query_string")
    finally:
        for c in (first, third):
            api.call("DELETE", f"{CLIENTS}/{c['client_id']}")


def test_resource_server_list_filters(api):
    made = [api.call("POST", SERVERS, body={
        "identifier": f"https://f{i}-{uuid.uuid4().hex[:10]}.example.com/"}).data for i in range(3)]
    try:
        wanted = [made[0]["identifier"], made[2]["identifier"]]
        query = "&".join(f"identifiers={i}" for i in wanted)
        found = api.call("GET", f"{SERVERS}?{query}").data
        assert sorted(s["identifier"] for s in found) == sorted(wanted)
        paged = api.call("GET", f"{SERVERS}?{query}&include_totals=true&per_page=1").data
        assert paged["total"] == 2 and len(paged["resource_servers"]) == 1
        fields = api.call("GET", f"{SERVERS}?{query}&fields=identifier").data
        assert all(set(s) == {"identifier"} for s in fields)
        one = api.call("GET", f"{SERVERS}/{made[1]['id']}?fields=name&include_fields=false").data
        assert "name" not in one and one["identifier"] == made[1]["identifier"]
        _err(api.call("GET", f"{SERVERS}?fields=nope"), 400, "invalid_query_string")
        _err(api.call("GET", f"{SERVERS}?include_fields=maybe&fields=id"), 400,
             "invalid_query_string")
    finally:
        for s in made:
            api.call("DELETE", f"{SERVERS}/{s['id']}")


def test_client_grant_list_filters(api):
    machine = api.call("POST", CLIENTS, body={"name": "m2m", "app_type": "non_interactive"}).data
    server = api.call("POST", SERVERS, body={
        "identifier": f"https://g-{uuid.uuid4().hex[:10]}.example.com/",
        "scopes": [{"value": "read:x"}]}).data
    grant = api.call("POST", GRANTS, body={"client_id": machine["client_id"],
                                           "audience": server["identifier"],
                                           "scope": ["read:x"]}).data
    try:
        mine = f"?client_id={machine['client_id']}"
        assert [g["id"] for g in api.call("GET", GRANTS + mine).data] == [grant["id"]]
        assert [g["id"] for g in api.call(
            "GET", GRANTS + mine + "&allow_any_organization=false&subject_type=client").data] == [
            grant["id"]]
        assert api.call("GET", GRANTS + mine + "&allow_any_organization=true").data == []
        assert api.call("GET", GRANTS + mine + "&subject_type=user").data == []
        _err(api.call("GET", GRANTS + "?subject_type=robot"), 400, "invalid_query_string")
        _err(api.call("GET", GRANTS + "?allow_any_organization=1"), 400, "invalid_query_string")
    finally:
        api.call("DELETE", f"{CLIENTS}/{machine['client_id']}")
        api.call("DELETE", f"{SERVERS}/{server['id']}")
