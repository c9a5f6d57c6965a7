"""RFC 8693 token exchange at ``POST /oauth/token`` (SPEC §10), through the broker's routes with a
scriptable upstream IdP (tests/support/fake_idp.py: refresh tokens that rotate, a count of refresh
calls): a back-channel login through a vault connection keeps the upstream tokens; the application
exchanges its broker access token for the upstream access token (refreshed upstream first when it
expires within 60 s, once for 20 concurrent exchanges against DynamoDB), and an upstream ID token
for broker tokens. Errors are RFC 8693 §2.2.2's / RFC 6749 §5.2's, with no internals, and every
exchange is an ``stx`` or ``ftx`` log event without a token. Each rule's domain tests are
tests/domain/test_token_exchange.py's."""
from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from tests.support.fake_idp import connection_body, rsa_key
from tests.support.flow import APP_CALLBACK, federated_login, location_params, token_request
from tests.support.log_events import events_since, now_ms, text_of

# /oauth/token (chalicelib/api/oauth.py) hands this grant type to chalicelib/login/token_exchange.py.
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


@pytest.fixture()
def idp(idp):
    """tests/api/conftest.py's fake IdP, answering code exchanges with a refresh token too."""
    idp.issue_refresh_tokens = True
    return idp


@pytest.fixture()
def setup(idp, make_app, add_connection):
    """A confidential application allowed to exchange, another one that is not, a public one,
    and a back-channel vault connection to the fake IdP listing the first."""
    apps = {key: make_app(f"tx-{key}", app_type, grant_types=["authorization_code"])
            for key, app_type in (("app", "regular_web"), ("other", "regular_web"), ("spa", "spa"))}
    enabled = [a["client_id"] for a in apps.values()]
    connection = add_connection(connection_body(
        idp, f"tx-{uuid.uuid4().hex[:8]}", channel="back", enabled_clients=enabled,
        token_storage="vault", token_exchange_clients=[apps["app"]["client_id"]]))
    return {**apps, "connection": connection}


def broker_tokens(client, app: dict, connection: dict) -> dict:
    """A federated login through ``connection`` and its code exchange: the application's tokens."""
    _, answer, verifier = federated_login(client, app, connection)
    assert answer.status_code == 303, answer.body
    code = location_params(answer)["code"]
    tokens = token_request(client, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": APP_CALLBACK,
        "code_verifier": verifier, "client_id": app["client_id"],
        "client_secret": app["client_secret"]})
    assert tokens.status_code == 200, tokens.data
    return tokens.data


def exchange(client, app: dict, **form):
    fields = {"grant_type": GRANT, "client_id": app["client_id"], **form}
    if app.get("token_endpoint_auth_method") != "none":
        fields["client_secret"] = app["client_secret"]
    return token_request(client, {k: v for k, v in fields.items() if v is not None})


def upstream_form(setup, subject: str, **overrides) -> dict:
    return {"subject_token": subject, "subject_token_type": ACCESS,
            "resource": f"urn:connection:{setup['connection']['name']}", **overrides}


def assert_refused(response, status: int, error: str, *secrets: str) -> None:
    assert response.status_code == status, response.body
    assert response.data["error"] == error, response.data
    assert set(response.data) <= {"error", "error_description"}
    assert response.headers.get("Cache-Control") == "no-store"
    for secret in secrets:
        assert secret.encode() not in response.body


# --------------------------------------------------------------------------- discovery

def test_discovery_lists_the_token_exchange_grant(client):
    document = json.loads(client.http.get("/.well-known/openid-configuration").body)
    assert GRANT in document["grant_types_supported"]


# --------------------------------------------------------------------------- upstream token out

def test_the_application_exchanges_its_access_token_for_the_upstream_one(client, api, setup, idp):
    start = now_ms()
    tokens = broker_tokens(client, setup["app"], setup["connection"])
    upstream_access = idp.access_tokens[-1]  # what the login's code exchange got upstream
    response = exchange(client, setup["app"], **upstream_form(setup, tokens["access_token"]))
    assert response.status_code == 200, response.body
    assert response.headers.get("Cache-Control") == "no-store"
    body = response.data
    assert body["access_token"] == upstream_access
    assert body["issued_token_type"] == ACCESS and body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= idp.access_token_lifetime
    assert idp.refresh_calls == 0
    # The same through Basic authentication and a JSON body (Auth0's SDKs), audience for resource.
    response = client.http.post("/oauth/token", headers={"Content-Type": "application/json"},
                                body=json.dumps({
                                    "grant_type": GRANT, "client_id": setup["app"]["client_id"],
                                    "client_secret": setup["app"]["client_secret"],
                                    "subject_token": tokens["access_token"],
                                    "subject_token_type": ACCESS,
                                    "audience": f"urn:connection:{setup['connection']['name']}"}))
    assert json.loads(response.body)["access_token"] == upstream_access
    found = events_since(start, lambda e: e.get("client_id") == setup["app"]["client_id"]
                         and e["type"] == "stx")
    assert len(found) == 2
    assert found[0]["connection"] == setup["connection"]["name"]
    assert found[0]["details"]["direction"] == "upstream_access_token"
    for event in found:
        assert upstream_access not in text_of(event)
        assert tokens["access_token"] not in text_of(event)
    # Listed by the Management API's log routes.
    logs = api.call("GET", "/api/v2/logs?q=" + quote(
        f"type:stx AND client_id:{setup['app']['client_id']}"))
    assert logs.status_code == 200 and len(logs.data) == 2


def test_an_expiring_upstream_token_is_refreshed_first(client, setup, idp):
    idp.access_token_lifetime = 30  # the login's upstream token expires within 60 s
    tokens = broker_tokens(client, setup["app"], setup["connection"])
    login_access = idp.access_tokens[-1]
    idp.access_token_lifetime = 3600
    response = exchange(client, setup["app"], **upstream_form(setup, tokens["access_token"]))
    assert response.status_code == 200, response.body
    assert idp.refresh_calls == 1
    assert response.data["access_token"] == idp.access_tokens[-1] != login_access
    assert response.data["expires_in"] == 3600
    [refresh] = [r for r in idp.requests_to("/token") if r.form.get("grant_type") ==
                 "refresh_token"]
    assert refresh.form["client_secret"] == idp.client_secret  # the connection's client auth
    again = exchange(client, setup["app"], **upstream_form(setup, tokens["access_token"]))
    assert again.data["access_token"] == response.data["access_token"]
    assert idp.refresh_calls == 1


def test_twenty_concurrent_exchanges_against_dynamodb_refresh_upstream_once(client, setup, idp):
    """SPEC §10 with the real table: the lease is one conditional write in DynamoDB (moto), the
    upstream refresh token rotates; exactly one refresh, and every caller gets the new token."""
    from chalicelib.login.token_exchange import token_exchange_request

    idp.access_token_lifetime = 30
    tokens = broker_tokens(client, setup["app"], setup["connection"])
    idp.access_token_lifetime = 3600
    idp.refresh_delay = 0.3
    form = {"grant_type": GRANT, "client_id": setup["app"]["client_id"],
            "client_secret": setup["app"]["client_secret"],
            **upstream_form(setup, tokens["access_token"])}
    start = threading.Barrier(20)

    def one(_):
        start.wait(timeout=30)
        try:
            return token_exchange_request(dict(form), None)
        except Exception as exc:  # noqa: BLE001 - a refusal is a result
            return exc

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20), timeout=120))
    assert [r for r in results if isinstance(r, Exception)] == []
    assert idp.refresh_calls == 1
    assert {r["access_token"] for r in results} == {idp.access_tokens[-1]}
    assert len(idp.refresh_tokens) == 1  # the rotated one, live


def test_an_upstream_refusal_of_the_refresh_token_is_invalid_grant(client, setup, idp):
    idp.access_token_lifetime = 30
    tokens = broker_tokens(client, setup["app"], setup["connection"])
    idp.refresh_tokens.clear()  # the upstream revoked it
    response = exchange(client, setup["app"], **upstream_form(setup, tokens["access_token"]))
    assert_refused(response, 400, "invalid_grant", tokens["access_token"])
    assert idp.refresh_calls == 1


def test_each_refusal_of_the_upstream_direction(client, api, setup, idp):
    start = now_ms()
    tokens = broker_tokens(client, setup["app"], setup["connection"])
    subject = tokens["access_token"]
    other_tokens = broker_tokens(client, setup["other"], setup["connection"])
    name = setup["connection"]["name"]
    cases = [
        # A client the connection does not list, with its own valid token.
        (exchange(client, setup["other"], **upstream_form(setup, other_tokens["access_token"])),
         400, "unauthorized_client"),
        # A public client.
        (exchange(client, setup["spa"], **upstream_form(setup, subject)), 400,
         "unauthorized_client"),
        # A wrong client secret.
        (exchange(client, {**setup["app"], "client_secret": "wrong"},
                  **upstream_form(setup, subject)), 401, "invalid_client"),
        # Another application's access token.
        (exchange(client, setup["app"], **upstream_form(setup, other_tokens["access_token"])),
         400, "invalid_grant"),
        # Targets: unknown connection, not a connection, none.
        (exchange(client, setup["app"], **upstream_form(
            setup, subject, resource="urn:connection:no-such-connection")), 400, "invalid_target"),
        (exchange(client, setup["app"], **upstream_form(
            setup, subject, resource="https://api.example.com/")), 400, "invalid_target"),
        (exchange(client, setup["app"], **upstream_form(setup, subject, resource=None)), 400,
         "invalid_request"),
        # Token types.
        (exchange(client, setup["app"], **upstream_form(
            setup, subject, subject_token_type="urn:ietf:params:oauth:token-type:jwt")), 400,
         "invalid_request"),
        (exchange(client, setup["app"], **upstream_form(
            setup, subject, requested_token_type="urn:ietf:params:oauth:token-type:refresh_token")),
         400, "invalid_request"),
        (exchange(client, setup["app"], **upstream_form(setup, subject, subject_token=None)), 400,
         "invalid_request"),
        # A forged access token.
        (exchange(client, setup["app"], **upstream_form(setup, subject[:-6] + "AAAAAA")), 400,
         "invalid_grant"),
    ]
    for response, status, error in cases:
        assert_refused(response, status, error, subject, setup["app"]["client_secret"])
    # A repeated parameter (RFC 6749 §3.1).
    body = (f"grant_type={quote(GRANT)}&client_id={setup['app']['client_id']}"
            f"&client_secret={setup['app']['client_secret']}&subject_token={subject}"
            f"&subject_token_type={quote(ACCESS)}&resource=urn:connection:{name}"
            f"&resource=urn:connection:{name}")
    response = client.http.post("/oauth/token", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    response.data = json.loads(response.body)
    assert_refused(response, 400, "invalid_request", subject)
    # Every refusal after client authentication is an ftx naming its check, without a token.
    found = events_since(start, lambda e: e["type"] == "ftx" and e.get("client_id") in (
        setup["app"]["client_id"], setup["other"]["client_id"], setup["spa"]["client_id"]))
    assert len(found) == len(cases)
    for event in found:
        for secret in (subject, other_tokens["access_token"], setup["app"]["client_secret"]):
            assert secret not in text_of(event)
    checks = sorted(e["details"].get("check", e["details"]["error"]) for e in found)
    assert checks == sorted(["token_exchange_clients", "public_client", "invalid_client",
                             "subject_client", "target", "target", "target",
                             "subject_token_type", "requested_token_type", "subject_token",
                             "subject_signature"])


def test_a_revoked_subject_token_is_refused(client, api, setup, idp):
    tokens = broker_tokens(client, setup["app"], setup["connection"])
    user_id = f"oidc|{setup['connection']['name']}|{idp.user['sub']}"
    assert exchange(client, setup["app"], **upstream_form(
        setup, tokens["access_token"])).status_code == 200
    response = api.call("DELETE", f"/api/v2/users/{quote(user_id, safe='')}/sessions")
    assert response.status_code in (200, 202, 204), response.data
    response = exchange(client, setup["app"], **upstream_form(setup, tokens["access_token"]))
    assert_refused(response, 400, "invalid_grant", tokens["access_token"])


# --------------------------------------------------------------------------- broker tokens in

def test_an_upstream_id_token_becomes_broker_tokens(client, setup, idp):
    start = now_ms()
    response = exchange(client, setup["app"], subject_token=idp.mint(idp.claims()),
                        subject_token_type=ID_TOKEN, scope="openid email")
    assert response.status_code == 200, response.body
    assert response.headers.get("Cache-Control") == "no-store"
    body = response.data
    assert body["issued_token_type"] == ACCESS and body["token_type"] == "Bearer"
    assert body["scope"] == "openid email" and "id_token" in body
    userinfo = client.http.get("/userinfo", headers={
        "Authorization": f"Bearer {body['access_token']}"})
    assert userinfo.status_code == 200, userinfo.body
    assert json.loads(userinfo.body) == {
        "sub": f"oidc|{setup['connection']['name']}|{idp.user['sub']}",
        "email": idp.user["email"], "email_verified": True}
    [event] = events_since(start, lambda e: e["type"] == "stx"
                           and e.get("client_id") == setup["app"]["client_id"])
    assert event["details"]["direction"] == "broker_tokens"
    assert body["access_token"] not in text_of(event)


def test_bad_upstream_id_tokens_are_refused(client, setup, idp):
    import time

    now = int(time.time())
    expired = idp.mint(idp.claims(iat=now - 600, exp=now - 120))
    forged = idp.mint(idp.claims(), rsa_key("k1"))
    for token in (expired, forged, "not.a.jwt"):
        response = exchange(client, setup["app"], subject_token=token,
                            subject_token_type=ID_TOKEN)
        assert_refused(response, 400, "invalid_grant", token)
    # A client the connection does not list.
    response = exchange(client, setup["other"], subject_token=idp.mint(idp.claims()),
                        subject_token_type=ID_TOKEN)
    assert_refused(response, 400, "unauthorized_client")
    # An audience that is no registered API.
    response = exchange(client, setup["app"], subject_token=idp.mint(idp.claims()),
                        subject_token_type=ID_TOKEN, audience="https://unknown.example.com/")
    assert_refused(response, 400, "invalid_target")
