"""SPEC §2.3–2.4: applications, hashed secrets, rotate-secret, client grants, signing keys."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import get_token


def _err(response, status, code):
    assert response.status_code == status, response.data
    assert response.data["errorCode"] == code
    assert response.data["statusCode"] == status
    return response.data


def _new(api, **fields):
    body = {"name": f"app-{uuid.uuid4().hex[:8]}", **fields}
    response = api.call("POST", "/api/v2/clients", body=body)
    assert response.status_code == 201, response.data
    return response.data


def test_create_regular_web_app_defaults(api):
    created = _new(api, callbacks=["https://app.example.com/cb"])
    assert len(created["client_id"]) == 32
    assert created["app_type"] == "regular_web"
    assert created["token_endpoint_auth_method"] == "client_secret_post"
    assert created["grant_types"] == ["authorization_code", "refresh_token"]
    assert created["refresh_token"]["rotation_type"] == "non-rotating"
    assert len(created["client_secret"]) >= 48
    fetched = api.call("GET", f"/api/v2/clients/{created['client_id']}").data
    assert "client_secret" not in fetched
    assert "client_secret_hash" not in fetched
    listed = api.call("GET", "/api/v2/clients").data
    assert all("client_secret" not in c and "client_secret_hash" not in c for c in listed)


def test_secret_is_stored_only_as_a_salted_hash(api):
    from chalicelib.store.dynamo import table

    created = _new(api)
    item = table().get("CLIENTS", created["client_id"])
    assert created["client_secret"] not in json.dumps(item)
    assert item["client_secret_hash"].startswith("sha256$")


def test_public_apps(api):
    spa = _new(api, app_type="spa", callbacks=["https://spa.example.com/cb"])
    assert spa["token_endpoint_auth_method"] == "none"
    assert "client_secret" not in spa
    assert spa["refresh_token"]["rotation_type"] == "rotating"
    native = _new(api, app_type="native", callbacks=["com.example.app:/callback",
                                                      "http://127.0.0.1/cb"])
    assert native["token_endpoint_auth_method"] == "none"


@pytest.mark.parametrize("body,where", [
    ({"app_type": "spa", "token_endpoint_auth_method": "client_secret_post"},
     "token_endpoint_auth_method"),
    ({"app_type": "regular_web", "token_endpoint_auth_method": "none"}, "token_endpoint_auth_method"),
    ({"app_type": "spa", "refresh_token": {"rotation_type": "non-rotating"}},
     "refresh_token.rotation_type"),
    ({"app_type": "spa", "grant_types": ["client_credentials"]}, "grant_types"),
    ({"app_type": "desktop"}, "app_type"),
    ({"grant_types": ["implicit"]}, "grant_types"),
    ({"grant_types": ["password"]}, "grant_types"),
    ({"callbacks": ["http://app.example.com/cb"]}, "callbacks"),
    ({"callbacks": ["https://app.example.com/cb#frag"]}, "callbacks"),
    ({"callbacks": ["https://*.example.com/cb"]}, "callbacks"),
    ({"callbacks": ["/relative"]}, "callbacks"),
    ({"callbacks": ["javascript:alert(1)"]}, "callbacks"),
    ({"allowed_logout_urls": ["ftp://x.example.com/"]}, "allowed_logout_urls"),
    ({"oidc_logout": {"backchannel_logout_urls": ["http://rp.example.com/bcl"]}},
     "oidc_logout.backchannel_logout_urls"),
    ({"jwt_configuration": {"lifetime_in_seconds": 5}}, "jwt_configuration.lifetime_in_seconds"),
    ({"jwt_configuration": {"alg": "HS256"}}, "jwt_configuration.alg"),
    ({"refresh_token": {"token_lifetime": 100, "idle_token_lifetime": 200}},
     "refresh_token.idle_token_lifetime"),
    ({"client_secret": "chosen-by-me"}, "client_secret"),
    ({"unknown": 1}, "unknown"),
    ({"name": ""}, "name"),
    ({"name": 42}, "name"),
])
def test_client_validation(api, body, where):
    body = {"name": "validation", **body}
    response = api.call("POST", "/api/v2/clients", body=body)
    data = _err(response, 400, "invalid_body")
    assert where.split(".")[0] in data["message"]


def test_name_is_required(api):
    _err(api.call("POST", "/api/v2/clients", body={"app_type": "spa"}), 400, "invalid_body")


def test_update_client_and_404s(api):
    created = _new(api)
    cid = created["client_id"]
    updated = api.call("PATCH", f"/api/v2/clients/{cid}",
                       body={"callbacks": ["https://app.example.com/new"], "name": "renamed"})
    assert updated.status_code == 200
    assert updated.data["callbacks"] == ["https://app.example.com/new"]
    assert "client_secret" not in updated.data
    bad = api.call("PATCH", f"/api/v2/clients/{cid}", body={"callbacks": ["http://evil.example"]})
    _err(bad, 400, "invalid_body")
    assert api.call("GET", f"/api/v2/clients/{cid}").data["callbacks"] == [
        "https://app.example.com/new"]
    _err(api.call("GET", "/api/v2/clients/doesnotexist"), 404, "inexistent_client")
    _err(api.call("PATCH", "/api/v2/clients/doesnotexist", body={"name": "x"}), 404,
         "inexistent_client")
    _err(api.call("DELETE", "/api/v2/clients/doesnotexist"), 404, "inexistent_client")


def test_rotate_secret_invalidates_the_old_one(client, api):
    created = _new(api, app_type="non_interactive")
    cid, old = created["client_id"], created["client_secret"]
    api.call("POST", "/api/v2/client-grants", body={
        "client_id": cid, "audience": "http://127.0.0.1:8000/api/v2/", "scope": ["read:clients"]})
    assert get_token(client, cid, old).status_code == 200
    rotated = api.call("POST", f"/api/v2/clients/{cid}/rotate-secret")
    assert rotated.status_code == 200
    new = rotated.data["client_secret"]
    assert new != old
    assert get_token(client, cid, old).status_code == 401
    assert get_token(client, cid, new).status_code == 200
    spa = _new(api, app_type="spa")
    _err(api.call("POST", f"/api/v2/clients/{spa['client_id']}/rotate-secret"), 400, "invalid_body")


def test_client_credentials_needs_the_grant_type_and_a_grant(client, api):
    web = _new(api)  # regular_web: no client_credentials grant type
    response = get_token(client, web["client_id"], web["client_secret"])
    assert response.status_code == 400
    assert json.loads(response.body)["error"] == "unauthorized_client"
    machine = _new(api, app_type="non_interactive")
    response = get_token(client, machine["client_id"], machine["client_secret"])
    assert response.status_code == 403  # no client grant for the audience yet
    assert json.loads(response.body)["error"] == "access_denied"


def test_client_auth_method_is_enforced(client, api):
    machine = _new(api, app_type="non_interactive", token_endpoint_auth_method="client_secret_basic")
    api.call("POST", "/api/v2/client-grants", body={
        "client_id": machine["client_id"], "audience": "http://127.0.0.1:8000/api/v2/",
        "scope": ["read:clients"]})
    # registered for HTTP Basic: the secret in the body is refused
    assert get_token(client, machine["client_id"], machine["client_secret"]).status_code == 401


def test_client_grants_crud_and_scopes(client, api):
    machine = _new(api, app_type="non_interactive")
    cid = machine["client_id"]
    audience = "http://127.0.0.1:8000/api/v2/"
    grant = api.call("POST", "/api/v2/client-grants",
                     body={"client_id": cid, "audience": audience,
                           "scope": ["read:connections", "read:clients"]})
    assert grant.status_code == 201
    assert grant.data["id"].startswith("cgr_")
    _err(api.call("POST", "/api/v2/client-grants",
                  body={"client_id": cid, "audience": audience, "scope": []}), 409,
         "client_grant_conflict")
    _err(api.call("POST", "/api/v2/client-grants",
                  body={"client_id": cid, "audience": "https://api.example.com/",
                        "scope": ["bad scope"]}), 400, "invalid_body")
    # SPEC §2.5: an audience must be a registered API (Auth0's 404), nothing is written.
    _err(api.call("POST", "/api/v2/client-grants",
                  body={"client_id": cid, "audience": "https://unregistered.example.com/",
                        "scope": ["read:x"]}), 404, "inexistent_resource_server")
    assert api.call("GET", "/api/v2/client-grants?audience=https://unregistered.example.com/"
                    ).data == []
    _err(api.call("POST", "/api/v2/client-grants",
                  body={"client_id": "nobody", "audience": audience, "scope": []}), 404,
         "inexistent_client")
    _err(api.call("POST", "/api/v2/client-grants",
                  body={"client_id": cid, "audience": "https://api2.example.com/",
                        "scope": ["read:x"], "extra": True}), 400, "invalid_body")
    listed = api.call("GET", f"/api/v2/client-grants?client_id={cid}").data
    assert [g["id"] for g in listed] == [grant.data["id"]]
    token = json.loads(get_token(client, cid, machine["client_secret"]).body)
    assert sorted(token["scope"].split()) == ["read:clients", "read:connections"]
    narrowed = json.loads(get_token(client, cid, machine["client_secret"],
                                    scope="read:clients").body)
    assert narrowed["scope"] == "read:clients"
    patched = api.call("PATCH", f"/api/v2/client-grants/{grant.data['id']}",
                       body={"scope": ["read:clients"]})
    assert patched.data["scope"] == ["read:clients"]
    assert api.call("DELETE", f"/api/v2/client-grants/{grant.data['id']}").status_code == 204
    assert get_token(client, cid, machine["client_secret"]).status_code == 403
    _err(api.call("DELETE", f"/api/v2/client-grants/{grant.data['id']}"), 404,
         "inexistent_client_grant")


def test_management_scopes_must_exist(api):
    machine = _new(api, app_type="non_interactive")
    _err(api.call("POST", "/api/v2/client-grants", body={
        "client_id": machine["client_id"], "audience": "http://127.0.0.1:8000/api/v2/",
        "scope": ["delete:everything"]}), 400, "invalid_body")


def test_deleting_a_client_removes_its_grants_and_enablements(api):
    machine = _new(api, app_type="non_interactive")
    cid = machine["client_id"]
    audience = f"https://api-{uuid.uuid4().hex[:8]}.example.com/"
    assert api.call("POST", "/api/v2/resource-servers", body={
        "identifier": audience, "scopes": [{"value": "read:x"}]}).status_code == 201
    assert api.call("POST", "/api/v2/client-grants", body={
        "client_id": cid, "audience": audience, "scope": ["read:x"]}).status_code == 201
    connection = api.call("POST", "/api/v2/connections", body={
        "name": f"del-{uuid.uuid4().hex[:8]}", "strategy": "oidc", "enabled_clients": [cid],
        "options": {"client_id": "c", "issuer": "http://127.0.0.1:9/",
                    "authorization_endpoint": "http://127.0.0.1:9/auth",
                    "jwks_uri": "http://127.0.0.1:9/jwks"}})
    assert connection.status_code == 201, connection.data
    assert api.call("DELETE", f"/api/v2/clients/{cid}").status_code == 204
    assert api.call("GET", f"/api/v2/client-grants?client_id={cid}").data == []
    after = api.call("GET", f"/api/v2/connections/{connection.data['id']}").data
    assert cid not in after["enabled_clients"]
    api.call("DELETE", f"/api/v2/connections/{connection.data['id']}")


def test_client_list_paging(api):
    for _ in range(3):
        _new(api)
    totals = api.call("GET", "/api/v2/clients?include_totals=true&per_page=2&page=0").data
    assert totals["limit"] == 2 and totals["start"] == 0 and len(totals["clients"]) == 2
    assert totals["total"] >= 3
    seen, cursor = [], None
    while True:
        query = "take=2" + (f"&from={cursor}" if cursor else "")
        chunk = api.call("GET", f"/api/v2/clients?{query}").data
        seen += [c["client_id"] for c in chunk["clients"]]
        cursor = chunk.get("next")
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == totals["total"]
    fields = api.call("GET", "/api/v2/clients?fields=client_id,name").data
    assert all(set(c) <= {"client_id", "name"} for c in fields)
    _err(api.call("GET", "/api/v2/clients?per_page=101"), 400, "invalid_query_string")
    _err(api.call("GET", "/api/v2/clients?bogus=1"), 400, "invalid_query_string")


def test_signing_keys_current_and_next(client, api):
    keys = api.call("GET", "/api/v2/keys/signing").data
    # One current and one next; a previous key too when another test rotated before this one.
    assert [k["current"] for k in keys].count(True) == 1
    assert [k["next"] for k in keys].count(True) == 1
    assert len(keys) in (2, 3)
    for key in keys:
        assert key["cert"].startswith("-----BEGIN CERTIFICATE-----")
        assert "PKCS7" in key["pkcs7"]
        assert "d" not in key and "p" not in key  # no private parts
    jwks = json.loads(client.http.get("/.well-known/jwks.json").body)
    assert {k["kid"] for k in jwks["keys"]} == {k["kid"] for k in keys}
    assert all(set(k) >= {"kty", "n", "e", "kid"} and "d" not in k for k in jwks["keys"])
    one = api.call("GET", f"/api/v2/keys/signing/{keys[0]['kid']}")
    assert one.status_code == 200
    _err(api.call("GET", "/api/v2/keys/signing/nope"), 404, "inexistent_signing_key")


def test_signing_key_rotation_keeps_old_tokens_valid(client, api):
    before = {k["kid"]: k for k in api.call("GET", "/api/v2/keys/signing").data}
    old_token = api.token
    next_kid = next(k for k, v in before.items() if v["next"])
    rotated = api.call("POST", "/api/v2/keys/signing/rotate")
    assert rotated.status_code == 201
    assert rotated.data["kid"] == next_kid
    after = {k["kid"]: k for k in api.call("GET", "/api/v2/keys/signing").data}
    assert after[next_kid]["current"]
    previous = [k for k, v in after.items() if v["previous"]]
    assert previous and all(before[k]["current"] for k in previous)
    # a token signed before the rotation still works, a new one uses the new key
    assert api.call("GET", "/api/v2/clients").status_code == 200
    fresh = json.loads(get_token(client).body)["access_token"]
    import base64

    header = json.loads(base64.urlsafe_b64decode(fresh.split(".")[0] + "=="))
    assert header["kid"] == next_kid
    assert old_token != fresh


# --- every stored URL: raw characters, userinfo, fragment (SPEC §8) ---------------------------

def _url_body(field: str, url: str) -> dict:
    if field == "oidc_logout.backchannel_logout_urls":
        return {"oidc_logout": {"backchannel_logout_urls": [url]}}
    if field == "logo_uri":
        return {"logo_uri": url}
    return {field: [url]}


# Parsers drop TAB/CR/LF and fold the rest; each value below is refused only for its bad part.
BAD_URLS = {
    "CR": "https://app.example.com/c\rb",
    "LF": "https://app.example.com/c\nb",
    "CRLF header": "https://app.example.com/cb\r\nSet-Cookie: x=1",
    "TAB": "https://app.example.com/c\tb",
    "NUL": "https://app.example.com/c\x00b",
    "DEL": "https://app.example.com/c\x7fb",
    "trailing LF": "https://app.example.com/cb\n",
    "space": "https://app.example.com/c b",
    "leading space": " https://app.example.com/cb",
    "NEL U+0085": "https://app.example.com/c\u0085b",
    "C1 U+009F": "https://app.example.com/c\u009fb",
    "NBSP": "https://app.example.com/c\u00a0b",
    "line separator": "https://app.example.com/c\u2028b",
    "userinfo": "https://user@app.example.com/cb",
    "user and password": "https://user:pw@app.example.com/cb",
    "empty userinfo": "https://@app.example.com/cb",
    "fragment": "https://app.example.com/cb#frag",
    "empty fragment": "https://app.example.com/cb#",
    "backslash": "https://app.example.com\\@evil.example.com/cb",
    "no host": "https:///cb",
}
BAD_ORIGINS = {
    "CR in host": "https://app.exa\rmple.com",
    "LF": "https://app.example.com\n",
    "TAB": "https://app.example.com\t",
    "NUL": "https://app.example.com\x00",
    "space": "https://app.example.com ",
    "NEL U+0085": "https://app.example.com\u0085",
    "userinfo": "https://user@app.example.com",
    "fragment": "https://app.example.com#",
}
URL_FIELDS = ("callbacks", "allowed_logout_urls", "oidc_logout.backchannel_logout_urls",
              "logo_uri")
CASES = ([(f, u) for f in URL_FIELDS for u in BAD_URLS.values()]
         + [(f, u) for f in ("web_origins", "allowed_origins") for u in BAD_ORIGINS.values()]
         + [("callbacks", u) for u in ("com.example.app:/cb\r", "com.example.app:/c b",
                                       "com.example.app:/cb#x", "com.example.app:/c\u0085b")])
CASE_IDS = ([f"{f}-{k}" for f in URL_FIELDS for k in BAD_URLS]
            + [f"{f}-{k}" for f in ("web_origins", "allowed_origins") for k in BAD_ORIGINS]
            + [f"native-{i}" for i in range(4)])


def _names(api) -> list[str]:
    return [c["name"] for c in api.call("GET", "/api/v2/clients").data]


@pytest.mark.parametrize("field,url", CASES, ids=CASE_IDS)
def test_bad_url_is_refused_on_create(api, field, url):
    name = f"bad-url-{uuid.uuid4().hex[:8]}"
    app_type = "native" if url.startswith("com.example.app:") else "regular_web"
    response = api.call("POST", "/api/v2/clients",
                        body={"name": name, "app_type": app_type, **_url_body(field, url)})
    data = _err(response, 400, "invalid_body")
    assert f"on property {field}" in data["message"], data["message"]
    assert name not in _names(api)


@pytest.mark.parametrize("field,url", CASES, ids=CASE_IDS)
def test_bad_url_is_refused_on_patch(api, field, url):
    app_type = "native" if url.startswith("com.example.app:") else "regular_web"
    good = {"callbacks": ["https://app.example.com/cb"],
            "allowed_logout_urls": ["https://app.example.com/bye"],
            "oidc_logout": {"backchannel_logout_urls": ["https://app.example.com/bcl"]},
            "logo_uri": "https://app.example.com/logo.png",
            "web_origins": ["https://app.example.com"],
            "allowed_origins": ["https://app.example.com"]}
    if app_type == "native":
        good["callbacks"] = ["com.example.app:/cb"]
        good.pop("oidc_logout")
    created = _new(api, app_type=app_type, **good)
    path = f"/api/v2/clients/{created['client_id']}"
    before = api.call("GET", path).data
    data = _err(api.call("PATCH", path, body=_url_body(field, url)), 400, "invalid_body")
    assert f"on property {field}" in data["message"], data["message"]
    assert api.call("GET", path).data == before
    api.call("DELETE", path)


def test_good_urls_of_every_kind_are_kept_as_given(api):
    created = _new(api, app_type="native",
                    callbacks=["com.example.app:/cb", "http://127.0.0.1:7777/cb?x=1",
                               "https://app.example.com/cb?a=%0D%0A"],
                    allowed_logout_urls=["https://app.example.com/bye"])
    assert created["callbacks"] == ["com.example.app:/cb", "http://127.0.0.1:7777/cb?x=1",
                                    "https://app.example.com/cb?a=%0D%0A"]
