"""CORS at the OAuth endpoints (chalicelib/provider/cors.py): a single-page application redeems its
code, refreshes and revokes from its own origin; any other origin is refused before anything is
consumed. Real logins through oidc-provider, the broker through Chalice's test client."""
from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from tests.api import test_logout as flows
from tests.api.test_logout import APP_CALLBACK, claims_of, new_app, new_connection
from tests.support.flow import (
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
)

idp = flows.idp

APP_ORIGIN = "https://app.example.com"  # the origin of APP_CALLBACK
EXTRA_ORIGIN = "https://spa.example.org"
EVIL_ORIGIN = "https://evil.example.net"
BROKER_ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture()
def spa(api, idp):
    app = new_app(api, "cors-spa", app_type="spa", allowed_origins=[EXTRA_ORIGIN + "/"])
    connection = new_connection(api, idp, "cors", [app["client_id"]])
    yield app, connection
    api.call("DELETE", f"/api/v2/connections/{connection['id']}")
    api.call("DELETE", f"/api/v2/clients/{app['client_id']}")


def code_for(client, app, connection, scope="openid offline_access") -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    browser = Browser(client)
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code", scope=scope,
        state="st", nonce="n", code_challenge=challenge, code_challenge_method="S256",
        connection=connection["name"]))
    method, params = idp_login(response.headers["Location"])
    result = location_params(deliver_callback(browser, method, params))
    return result["code"], verifier


def post(client, path: str, form: dict, origin: str | None = None, **headers):
    all_headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    if origin is not None:
        all_headers["Origin"] = origin
    response = client.http.post(path, body=urlencode(form), headers=all_headers)
    response.data = json.loads(response.body) if response.body else None
    return response


def exchange(client, app, code, verifier, origin):
    return post(client, "/oauth/token", {
        "grant_type": "authorization_code", "code": code, "redirect_uri": APP_CALLBACK,
        "code_verifier": verifier, "client_id": app["client_id"]}, origin)


def acao(response) -> str | None:
    return response.headers.get("Access-Control-Allow-Origin")


def test_preflight_is_answered_without_touching_anything(client):
    response = client.http.request("OPTIONS", "/oauth/token", headers={
        "Origin": EVIL_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,auth0-client"})
    assert response.status_code == 204 and not response.body
    assert acao(response) == EVIL_ORIGIN  # the POST decides, per client
    assert response.headers["Access-Control-Allow-Methods"] == "POST"
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "auth0-client"} <= allowed
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.headers["Vary"] == "Origin"
    for path, methods in (("/oauth/revoke", "POST"), ("/userinfo", "GET, POST"),
                          ("/.well-known/openid-configuration", "GET"),
                          ("/.well-known/jwks.json", "GET")):
        answer = client.http.request("OPTIONS", path, headers={"Origin": EVIL_ORIGIN})
        assert answer.status_code == 204, path
        assert answer.headers["Access-Control-Allow-Methods"] == methods, path


def test_spa_redeems_and_refreshes_from_its_origins(client, spa):
    app, connection = spa
    code, verifier = code_for(client, app, connection)
    tokens = exchange(client, app, code, verifier, APP_ORIGIN)  # the callback's origin
    assert tokens.status_code == 200, tokens.data
    assert acao(tokens) == APP_ORIGIN and tokens.headers["Vary"] == "Origin"
    assert tokens.headers["Cache-Control"] == "no-store"
    refreshed = post(client, "/oauth/token", {"grant_type": "refresh_token", "client_id": app["client_id"],
                                              "refresh_token": tokens.data["refresh_token"]},
                     EXTRA_ORIGIN)  # allowed_origins
    assert refreshed.status_code == 200, refreshed.data
    assert acao(refreshed) == EXTRA_ORIGIN
    # An error the SPA must act on (a rotated token used again) is readable by it too.
    reused = post(client, "/oauth/token", {"grant_type": "refresh_token", "client_id": app["client_id"],
                                           "refresh_token": tokens.data["refresh_token"]}, APP_ORIGIN)
    assert reused.status_code == 400 and reused.data["error"] == "invalid_grant"
    assert acao(reused) == APP_ORIGIN


@pytest.mark.parametrize("origin", [EVIL_ORIGIN, "null", APP_ORIGIN + ":8443", "http://app.example.com",
                                    "https://app.example.com.evil.net", "not an origin"])
def test_a_foreign_origin_is_refused_and_consumes_nothing(client, spa, origin):
    app, connection = spa
    code, verifier = code_for(client, app, connection)
    refused = exchange(client, app, code, verifier, origin)
    assert refused.status_code == 400, refused.data
    assert refused.data["error"] == "invalid_request" and "origin" in refused.data["error_description"]
    assert acao(refused) is None
    # The code was not consumed: the application's own origin still redeems it, once.
    tokens = exchange(client, app, code, verifier, APP_ORIGIN)
    assert tokens.status_code == 200, tokens.data
    # Nor is a refresh token.
    stolen = post(client, "/oauth/token", {"grant_type": "refresh_token", "client_id": app["client_id"],
                                           "refresh_token": tokens.data["refresh_token"]}, origin)
    assert stolen.status_code == 400 and acao(stolen) is None
    again = post(client, "/oauth/token", {"grant_type": "refresh_token", "client_id": app["client_id"],
                                          "refresh_token": tokens.data["refresh_token"]})
    assert again.status_code == 200, again.data  # no Origin: a server or native app


def test_revocation_follows_the_same_rule(client, spa):
    app, connection = spa
    code, verifier = code_for(client, app, connection)
    tokens = exchange(client, app, code, verifier, APP_ORIGIN).data
    form = {"token": tokens["refresh_token"], "client_id": app["client_id"]}
    refused = post(client, "/oauth/revoke", form, EVIL_ORIGIN)
    assert refused.status_code == 400 and acao(refused) is None
    still = post(client, "/oauth/token", {"grant_type": "refresh_token", "client_id": app["client_id"],
                                          "refresh_token": tokens["refresh_token"]})
    assert still.status_code == 200  # not revoked by the refused request
    revoked = post(client, "/oauth/revoke", {"token": still.data["refresh_token"],
                                             "client_id": app["client_id"]}, APP_ORIGIN)
    assert revoked.status_code == 200 and acao(revoked) == APP_ORIGIN
    dead = post(client, "/oauth/token", {"grant_type": "refresh_token", "client_id": app["client_id"],
                                         "refresh_token": still.data["refresh_token"]})
    assert dead.status_code == 400


def test_same_origin_and_servers_are_not_cors(client):
    from tests.conftest import ADMIN_CLIENT_ID as ADMIN_ID, ADMIN_CLIENT_SECRET as ADMIN_SECRET

    form = {"grant_type": "client_credentials", "client_id": ADMIN_ID, "client_secret": ADMIN_SECRET,
            "audience": BROKER_ORIGIN + "/api/v2/"}
    # The admin console: the broker's own origin, or what the browser marks same-origin.
    assert post(client, "/oauth/token", form, BROKER_ORIGIN).status_code == 200
    assert post(client, "/oauth/token", form, "http://localhost:8000",
                **{"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert post(client, "/oauth/token", form).status_code == 200
    # The admin client allows no other origin.
    foreign = post(client, "/oauth/token", form, EVIL_ORIGIN)
    assert foreign.status_code == 400 and acao(foreign) is None


def test_userinfo_discovery_and_jwks_answer_every_origin(client, spa):
    app, connection = spa
    code, verifier = code_for(client, app, connection)
    tokens = exchange(client, app, code, verifier, APP_ORIGIN).data
    info = client.http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}",
                                                  "Origin": EVIL_ORIGIN})
    assert info.status_code == 200 and acao(info) == "*"
    assert json.loads(info.body)["sub"] == claims_of(tokens["id_token"])["sub"]
    denied = client.http.get("/userinfo", headers={"Authorization": "Bearer nope", "Origin": APP_ORIGIN})
    assert denied.status_code == 401 and acao(denied) == "*"
    assert "WWW-Authenticate" in denied.headers["Access-Control-Expose-Headers"]
    for path in ("/.well-known/openid-configuration", "/.well-known/jwks.json"):
        assert acao(client.http.get(path, headers={"Origin": EVIL_ORIGIN})) == "*"
    assert "Access-Control-Allow-Credentials" not in info.headers


def test_origins_are_validated_and_normalised(api):
    created = new_app(api, "cors-fields", allowed_origins=["https://App.Example.COM:443/"],
                      web_origins=["https://a.example.com", "https://a.example.com"])
    try:
        assert created["allowed_origins"] == ["https://app.example.com"]
        assert created["web_origins"] == ["https://a.example.com"]
        read = api.call("GET", f"/api/v2/clients/{created['client_id']}").data
        assert read["allowed_origins"] == ["https://app.example.com"]
        for field in ("allowed_origins", "web_origins"):
            for bad in ("https://app.example.com/path", "https://*.example.com", "http://app.example.com",
                        "https://app.example.com?x=1", "https://user@app.example.com", "ftp://x.example",
                        "app.example.com", "https://app.example.com#f"):
                response = api.call("PATCH", f"/api/v2/clients/{created['client_id']}",
                                    body={field: [bad]})
                assert response.status_code == 400, (field, bad, response.data)
                assert response.data["errorCode"] == "invalid_body"
                assert field in response.data["message"]
        unchanged = api.call("GET", f"/api/v2/clients/{created['client_id']}").data
        assert unchanged["allowed_origins"] == ["https://app.example.com"]
    finally:
        api.call("DELETE", f"/api/v2/clients/{created['client_id']}")
