"""SPEC §5: Global Token Revocation (Universal Logout) through the Lambda handler.

The upstream IdP is the scriptable fake on loopback (tests/support/fake_idp.py): it serves the JWKS
and signs both the front-channel ID tokens that create users and sessions, and the revocation JWTs.
Negative JWT cases name a user that does not exist, so a check that wrongly passed would show as
404 instead of the expected 401/403.
"""
from __future__ import annotations

import json
import logging
import time
import uuid

import pytest

from chalicelib.errors import ServiceUnavailable
from tests.support.fake_idp import DROP, FakeIdp, ec_key, mint, rsa_key
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
BROKER = "http://127.0.0.1:8000/"
GTR_PATH = "/oauth/global-token-revocation/connection/"


# --------------------------------------------------------------------------- fixtures

@pytest.fixture()
def other_idp():
    with FakeIdp() as running:
        yield running


@pytest.fixture()
def make_connection(add_connection):
    def make(idp_: FakeIdp, enabled: list[str], **options) -> dict:
        return add_connection({
            "name": f"gtr-{uuid.uuid4().hex[:8]}", "strategy": "oidc", "enabled_clients": enabled,
            "options": {"type": "front_channel", "issuer": idp_.issuer,
                        "authorization_endpoint": f"{idp_.base_url}/authorize",
                        "jwks_uri": f"{idp_.base_url}/jwks", "client_id": idp_.client_id,
                        **options}})

    return make


@pytest.fixture()
def web(make_app):
    return make_app("gtr-web")


@pytest.fixture()
def conn(make_connection, idp, web):
    return make_connection(idp, [web["client_id"]])


# --------------------------------------------------------------------------- helpers

def endpoint(connection: dict) -> str:
    return BROKER + GTR_PATH.lstrip("/") + connection["name"]


def gtr_jwt(idp_: FakeIdp, connection: dict, *, key=None, alg: str = "RS256",
            header: dict | None = None, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": idp_.issuer, "sub": idp_.client_id, "aud": endpoint(connection),
              "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not DROP}
    return mint(claims, key if key is not None else idp_.signing_key, alg=alg,
                header={"typ": "global-token-revocation+jwt", **(header or {})})


def post(client, name: str, token: str | None, body=None, *, content_type="application/json",
         authorization: str | None = None):
    headers = {"Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = authorization
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body if body is not None else {})
    return client.http.post(GTR_PATH + name, headers=headers, body=raw)


def iss_sub(idp_: FakeIdp, sub: str, key: str = "sub_id") -> dict:
    return {key: {"format": "iss_sub", "iss": idp_.issuer, "sub": sub}}


def nobody(idp_: FakeIdp) -> dict:
    return iss_sub(idp_, "nobody-" + uuid.uuid4().hex[:6])


def login(client, app: dict, connection: dict, idp_: FakeIdp, sub: str = "alice",
          email: str | None = None, browser: Browser | None = None,
          scope: str = "openid profile email offline_access") -> tuple[Browser, dict]:
    """A real front-channel login through the broker; returns (browser, token response)."""
    idp_.user = {"sub": sub, "email": email or f"{sub}@example.com", "email_verified": True,
                 "name": sub.title()}
    browser = browser or Browser(client)
    verifier, challenge = pkce_pair()
    start = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code", scope=scope,
        state="st", nonce="n", code_challenge=challenge, code_challenge_method="S256",
        connection=connection["name"], prompt="login"))
    assert start.status_code == 302, start.body
    method, params = idp_login(start.headers["Location"])
    callback = deliver_callback(browser, method, params)
    assert callback.status_code == 303, callback.body
    code = location_params(callback)["code"]
    tokens = exchange(client, app, code, verifier)
    assert tokens.status_code == 200, tokens.data
    return browser, tokens.data


def exchange(client, app, code, verifier):
    return token_request(client, {"grant_type": "authorization_code", "code": code,
                                  "redirect_uri": APP_CALLBACK, "code_verifier": verifier,
                                  "client_id": app["client_id"],
                                  "client_secret": app["client_secret"]})


def refresh(client, app, refresh_token):
    return token_request(client, {"grant_type": "refresh_token", "refresh_token": refresh_token,
                                  "client_id": app["client_id"],
                                  "client_secret": app["client_secret"]})


def userinfo_status(client, access_token: str) -> int:
    return client.http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}
                           ).status_code


def silent_authorize(browser: Browser, app: dict, connection: dict) -> tuple[dict, str]:
    verifier, challenge = pkce_pair()
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", state="silent", code_challenge=challenge, code_challenge_method="S256",
        connection=connection["name"], prompt="none"))
    assert response.status_code == 302, response.body
    return location_params(response), verifier


def claims_of(jwt: str) -> dict:
    import base64

    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))


def assert_401(response):
    assert response.status_code == 401, response.body
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


# --------------------------------------------------------------------------- authentication

def test_no_token_401(client, conn, idp):
    assert_401(post(client, conn["name"], None, nobody(idp)))


@pytest.mark.parametrize("authorization", [
    "Bearer not-a-jwt", "Bearer a.b", "Bearer a.b.c.d.e", "Bearer !!.??.**", "Bearer ",
    "Basic dXNlcjpwYXNz", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln",  # no typ, bogus signature
])
def test_malformed_token_401(client, conn, idp, authorization):
    assert_401(post(client, conn["name"], None, nobody(idp), authorization=authorization))


def test_token_in_another_scheme_401(client, conn, idp):
    token = gtr_jwt(idp, conn)
    assert_401(post(client, conn["name"], None, nobody(idp), authorization=f"Token {token}"))


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "logout+jwt", "global-token-revocation", DROP])
def test_wrong_typ_401(client, conn, idp, typ):
    assert_401(post(client, conn["name"], gtr_jwt(idp, conn, header={"typ": typ}), nobody(idp)))


@pytest.mark.parametrize("typ", ["Global-Token-Revocation+JWT",
                                 "application/global-token-revocation+jwt"])
def test_typ_is_a_case_insensitive_media_type(client, conn, idp, typ):
    response = post(client, conn["name"], gtr_jwt(idp, conn, header={"typ": typ}), nobody(idp))
    assert response.status_code == 404, response.body  # authenticated; the user is unknown


def test_alg_none_401(client, conn, idp):
    token = gtr_jwt(idp, conn, alg="none", header={"kid": "k1"})
    assert_401(post(client, conn["name"], token, nobody(idp)))


def test_hs256_signed_with_the_idps_public_key_401(client, conn, idp):
    token = gtr_jwt(idp, conn, alg="HS256", key=idp.signing_key, header={"kid": "k1"})
    assert_401(post(client, conn["name"], token, nobody(idp)))


@pytest.mark.parametrize("key,alg", [(rsa_key("evil"), "RS256"), (rsa_key("k1"), "RS256"),
                                     (rsa_key(None), "RS256"), (ec_key("k1"), "ES256")])
def test_key_not_in_the_jwks_401(client, conn, idp, key, alg):
    assert_401(post(client, conn["name"], gtr_jwt(idp, conn, key=key, alg=alg), nobody(idp)))


def test_alg_not_allowed_for_the_connection_401(client, conn, idp):
    # The right key, but RS384 is not in the connection's id_token_signed_response_algs.
    token = gtr_jwt(idp, conn, alg="RS384")
    assert_401(post(client, conn["name"], token, nobody(idp)))


def test_tampered_payload_401(client, conn, idp):
    good = gtr_jwt(idp, conn).split(".")
    forged = gtr_jwt(idp, conn, sub="someone-else").split(".")
    assert_401(post(client, conn["name"], ".".join([good[0], forged[1], good[2]]), nobody(idp)))


@pytest.mark.parametrize("claim,value", [
    ("iss", "https://evil.example"), ("sub", "another-client"),
])
def test_wrong_iss_or_sub_403(client, conn, idp, claim, value):
    response = post(client, conn["name"], gtr_jwt(idp, conn, **{claim: value}), nobody(idp))
    assert response.status_code == 403, response.body


def test_iss_with_trailing_slash_403(client, conn, idp):
    response = post(client, conn["name"], gtr_jwt(idp, conn, iss=idp.issuer + "/"), nobody(idp))
    assert response.status_code == 403, response.body


def test_aud_of_another_connection_403(client, conn, make_connection, idp, web):
    other = make_connection(idp, [web["client_id"]])
    response = post(client, conn["name"], gtr_jwt(idp, conn, aud=endpoint(other)), nobody(idp))
    assert response.status_code == 403, response.body


@pytest.mark.parametrize("aud", [
    "{url}?x=1", "{url}/", "{url}#f", "http://127.0.0.1:8000/oauth/global-token-revocation",
    "http://localhost:8000/oauth/global-token-revocation/connection/{name}",
    "https://127.0.0.1:8000/oauth/global-token-revocation/connection/{name}",
    "broker-client", ["{url}?x=1", "https://other.example"],
])
def test_aud_not_exactly_this_endpoint_403(client, conn, idp, aud):
    def fill(value):
        return value.format(url=endpoint(conn), name=conn["name"])

    aud = [fill(a) for a in aud] if isinstance(aud, list) else fill(aud)
    response = post(client, conn["name"], gtr_jwt(idp, conn, aud=aud), nobody(idp))
    assert response.status_code == 403, response.body


def test_aud_array_containing_the_endpoint_is_accepted(client, conn, idp):
    token = gtr_jwt(idp, conn, aud=["https://other.example", endpoint(conn)])
    assert post(client, conn["name"], token, nobody(idp)).status_code == 404


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "jti", "exp", "iat"])
def test_missing_claim_401(client, conn, idp, claim):
    assert_401(post(client, conn["name"], gtr_jwt(idp, conn, **{claim: DROP}), nobody(idp)))


def test_expired_401(client, conn, idp):
    now = int(time.time())
    assert_401(post(client, conn["name"], gtr_jwt(idp, conn, iat=now - 400, exp=now - 61),
                    nobody(idp)))


def test_expiry_is_judged_by_the_request_clock(client, conn, idp, fixed_clock):
    token = gtr_jwt(idp, conn)  # exp = now + 300
    fixed_clock.advance(300 + 61)
    assert_401(post(client, conn["name"], token, nobody(idp)))


def test_exp_more_than_ten_minutes_ahead_401(client, conn, idp):
    now = int(time.time())
    assert_401(post(client, conn["name"], gtr_jwt(idp, conn, exp=now + 900), nobody(idp)))
    # ten minutes is fine
    assert post(client, conn["name"], gtr_jwt(idp, conn, exp=now + 600), nobody(idp)
                ).status_code == 404


def test_nbf_in_the_future_401(client, conn, idp):
    now = int(time.time())
    assert_401(post(client, conn["name"], gtr_jwt(idp, conn, nbf=now + 300), nobody(idp)))
    assert post(client, conn["name"], gtr_jwt(idp, conn, nbf=now - 5), nobody(idp)
                ).status_code == 404


def test_iat_in_the_future_401(client, conn, idp):
    now = int(time.time())
    assert_401(post(client, conn["name"], gtr_jwt(idp, conn, iat=now + 300), nobody(idp)))


def test_crit_header_401(client, conn, idp):
    token = gtr_jwt(idp, conn, header={"crit": ["kid"]})
    assert_401(post(client, conn["name"], token, nobody(idp)))


def test_replayed_jti_401(client, conn, idp, web):
    login(client, web, conn, idp)
    token = gtr_jwt(idp, conn)
    first = post(client, conn["name"], token, iss_sub(idp, "alice"))
    assert first.status_code == 204, first.body
    assert_401(post(client, conn["name"], token, iss_sub(idp, "alice")))
    # a fresh token with the same jti is a replay as well
    jti = claims_of(token)["jti"]
    assert_401(post(client, conn["name"], gtr_jwt(idp, conn, jti=jti), iss_sub(idp, "alice")))


def test_jti_is_recorded_only_for_a_fully_valid_token(client, conn, idp):
    jti = uuid.uuid4().hex
    assert post(client, conn["name"], gtr_jwt(idp, conn, jti=jti, sub="x"), nobody(idp)
                ).status_code == 403
    assert post(client, conn["name"], gtr_jwt(idp, conn, jti=jti), nobody(idp)).status_code == 404


def test_token_of_connection_a_sent_to_connection_b(client, make_connection, idp, other_idp, web):
    """Own keys: B's JWKS cannot verify A's token (401). Shared JWKS: A's aud is wrong (403)."""
    a = make_connection(idp, [web["client_id"]])
    b = make_connection(other_idp, [web["client_id"]])
    for_a = gtr_jwt(idp, a)
    assert post(client, a["name"], gtr_jwt(idp, a), nobody(idp)).status_code == 404
    assert_401(post(client, b["name"], for_a, nobody(other_idp)))
    assert_401(post(client, b["name"], gtr_jwt(idp, b), nobody(other_idp)))

    shared = make_connection(idp, [web["client_id"]])  # same IdP, same JWKS as a
    response = post(client, shared["name"], gtr_jwt(idp, a), nobody(idp))
    assert response.status_code == 403, response.body


def test_unknown_connection_404(client, conn, idp):
    token = gtr_jwt(idp, conn)
    assert post(client, "no-such-connection", token, nobody(idp)).status_code == 404
    assert post(client, "no-such-connection", None, nobody(idp)).status_code == 404
    assert post(client, "bad_name%21", token, nobody(idp)).status_code == 404


def test_jwks_unavailable_503(client, make_connection, idp, web):
    dead = make_connection(idp, [web["client_id"]], jwks_uri="http://127.0.0.1:9/jwks")
    response = post(client, dead["name"], gtr_jwt(idp, dead), nobody(idp))
    assert response.status_code == 503, response.body


# --------------------------------------------------------------------------- body

@pytest.mark.parametrize("body", [
    b"not json", b"", b"[]", b'"sub_id"', b"{", b'{"sub_id": {"format": "email", "email": '
    b'"a@example.com"}, "sub_id": {"format": "email", "email": "b@example.com"}}',
    b"[" * 5000 + b"]" * 5000,
])
def test_body_not_json_400(client, conn, idp, body):
    response = post(client, conn["name"], gtr_jwt(idp, conn), body)
    assert response.status_code == 400, response.body


def test_form_body_400(client, conn, idp):
    response = post(client, conn["name"], gtr_jwt(idp, conn), b"sub=alice",
                    content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400, response.body


@pytest.mark.parametrize("identifier", [
    {"format": "opaque", "id": "alice"}, {"format": "phone_number", "phone_number": "+1555"},
    {"format": "account", "uri": "acct:alice@example.com"}, {"format": "ISS_SUB"},
    {"iss": "x", "sub": "alice"}, {"format": None},
])
def test_unknown_format_400(client, conn, idp, identifier):
    response = post(client, conn["name"], gtr_jwt(idp, conn), {"sub_id": identifier})
    assert response.status_code == 400, response.body


def test_iss_sub_with_another_issuer_400(client, conn, idp, web):
    login(client, web, conn, idp)
    body = {"sub_id": {"format": "iss_sub", "iss": "https://evil.example", "sub": "alice"}}
    response = post(client, conn["name"], gtr_jwt(idp, conn), body)
    assert response.status_code == 400, response.body


@pytest.mark.parametrize("body", [
    {},
    {"sub_id": {"format": "email", "email": "alice@example.com"},
     "subject": {"format": "email", "email": "alice@example.com"}},
    {"sub_id": "alice"},
    {"sub_id": {"format": "iss_sub", "iss": "ISSUER", "sub": 42}},
    {"sub_id": {"format": "iss_sub", "iss": "ISSUER", "sub": ""}},
    {"sub_id": {"format": "iss_sub", "sub": "alice"}},
    {"sub_id": {"format": "email", "email": ["alice@example.com"]}},
    {"sub_id": {"format": "email"}},
])
def test_wrong_shapes_400(client, conn, idp, body):
    raw = json.dumps(body).replace("ISSUER", idp.issuer)
    response = post(client, conn["name"], gtr_jwt(idp, conn), raw)
    assert response.status_code == 400, response.body


def test_body_too_large_413(client, conn, idp):
    body = {"sub_id": {"format": "email", "email": "a@example.com"}, "pad": "x" * 17000}
    assert post(client, conn["name"], gtr_jwt(idp, conn), body).status_code == 413


def test_jwt_is_checked_before_the_body(client, conn, idp):
    assert_401(post(client, conn["name"], None, b"not json"))
    assert post(client, conn["name"], gtr_jwt(idp, conn, sub="x"), b"not json").status_code == 403


def test_unknown_user_404(client, conn, idp, web, make_connection):
    other = make_connection(idp, [web["client_id"]])
    login(client, web, other, idp)  # alice exists, but on another connection
    assert post(client, conn["name"], gtr_jwt(idp, conn), iss_sub(idp, "alice")).status_code == 404
    body = {"sub_id": {"format": "email", "email": "alice@example.com"}}
    assert post(client, conn["name"], gtr_jwt(idp, conn), body).status_code == 404


# --------------------------------------------------------------------------- effect

def test_revocation_ends_everything(client, conn, idp, web):
    # Session 1: tokens with a refresh token, then a silent SSO code that is never redeemed.
    browser, tokens = login(client, web, conn, idp)
    pending, pending_verifier = silent_authorize(browser, web, conn)
    assert "code" in pending, pending
    # Session 2 ended by a plain logout: its offline refresh token survives that ...
    from chalicelib import revocation

    _, offline = login(client, web, conn, idp)
    revocation.end_session(claims_of(offline["id_token"])["sid"], int(time.time()),
                           reason="rp_logout")
    assert refresh(client, web, offline["refresh_token"]).status_code == 200
    assert refresh(client, web, tokens["refresh_token"]).status_code == 200
    assert userinfo_status(client, tokens["access_token"]) == 200

    response = post(client, conn["name"], gtr_jwt(idp, conn), iss_sub(idp, "alice"))
    assert response.status_code == 204, response.body
    assert response.body in (b"", "", None)

    # ... but not Global Token Revocation.
    for refresh_token in (tokens["refresh_token"], offline["refresh_token"]):
        refused = refresh(client, web, refresh_token)
        assert refused.status_code == 400 and refused.data["error"] == "invalid_grant"
    assert userinfo_status(client, tokens["access_token"]) == 401
    late = exchange(client, web, pending["code"], pending_verifier)
    assert late.status_code == 400 and late.data["error"] == "invalid_grant"
    again, _ = silent_authorize(browser, web, conn)
    assert again.get("error") == "login_required", again
    # A new upstream login works again.
    _, fresh = login(client, web, conn, idp, browser=browser)
    assert userinfo_status(client, fresh["access_token"]) == 200


@pytest.mark.parametrize("form", ["sub_id", "subject"])
def test_both_request_forms(client, conn, idp, web, form):
    _, tokens = login(client, web, conn, idp)
    response = post(client, conn["name"], gtr_jwt(idp, conn), iss_sub(idp, "alice", key=form))
    assert response.status_code == 204, response.body
    assert refresh(client, web, tokens["refresh_token"]).data["error"] == "invalid_grant"


@pytest.mark.parametrize("form", ["sub_id", "subject"])
def test_email_format_revokes_the_matching_users(client, conn, idp, web, make_connection, form):
    other = make_connection(idp, [web["client_id"]])
    _, alice = login(client, web, conn, idp, sub="alice", email="Alice@Example.com")
    _, alias = login(client, web, conn, idp, sub="alice-2", email="alice@example.COM")
    _, bob = login(client, web, conn, idp, sub="bob")
    _, alice_elsewhere = login(client, web, other, idp, sub="alice", email="alice@example.com")
    body = {form: {"format": "email", "email": "ALICE@example.com"}}
    response = post(client, conn["name"], gtr_jwt(idp, conn), body)
    assert response.status_code == 204, response.body
    for dead in (alice, alias):
        assert refresh(client, web, dead["refresh_token"]).status_code == 400
        assert userinfo_status(client, dead["access_token"]) == 401
    for alive in (bob, alice_elsewhere):
        assert refresh(client, web, alive["refresh_token"]).status_code == 200
        assert userinfo_status(client, alive["access_token"]) == 200


def test_failed_revocation_422_and_the_token_may_be_retried(client, conn, idp, web, monkeypatch):
    from chalicelib import revocation

    _, tokens = login(client, web, conn, idp)

    def outage(*args, **kwargs):
        raise ServiceUnavailable("A dependency is temporarily unavailable")

    token = gtr_jwt(idp, conn)
    with monkeypatch.context() as patch:
        patch.setattr(revocation, "revoke_user", outage)
        response = post(client, conn["name"], token, iss_sub(idp, "alice"))
    assert response.status_code == 422, response.body
    assert b"temporarily" not in (response.body or b"")
    assert refresh(client, web, tokens["refresh_token"]).status_code == 200
    retried = post(client, conn["name"], token, iss_sub(idp, "alice"))
    assert retried.status_code == 204, retried.body
    assert refresh(client, web, tokens["refresh_token"]).status_code == 400


def test_one_log_line_per_request_without_the_token(client, conn, idp, web):
    login(client, web, conn, idp)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collect(level=logging.INFO)
    logger = logging.getLogger("chalicelib.logout.gtr")
    logger.addHandler(handler)
    try:
        token = gtr_jwt(idp, conn)
        assert post(client, conn["name"], token, iss_sub(idp, "alice")).status_code == 204
        bad = gtr_jwt(idp, conn, iss="https://evil.example")
        assert post(client, conn["name"], bad, iss_sub(idp, "alice")).status_code == 403
    finally:
        logger.removeHandler(handler)
    outcome_lines = [line for line in lines if "global token revocation for connection" in line]
    assert len(outcome_lines) == 2, lines
    assert conn["name"] in outcome_lines[0] and "204" in outcome_lines[0]
    assert "users: 1" in outcome_lines[0]
    assert "403" in outcome_lines[1]
    for line in lines:
        for secret in (token, bad, token.split(".")[2], claims_of(token)["jti"]):
            assert secret not in line
