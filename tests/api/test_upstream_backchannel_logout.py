"""SPEC §11: back-channel logout from an upstream IdP (OIDC Back-Channel Logout 1.0 §2.5-2.8, the
broker as relying party) through the Lambda handler, and ``options.backchannel_logout_url``.

The upstream IdP is the scriptable fake on loopback (tests/support/fake_idp.py): it serves the JWKS
and signs the front-channel ID tokens that create the broker sessions, and the logout tokens. Each
refused token names the upstream session of a live broker session (the *victim*), so a check that
wrongly passed would show as an ended session, not only as another status.

The callback records the upstream ``sid`` in the login's transaction
(``upstream_sessions.record_operations``): ``test_a_real_login_then_its_upstream_logout`` goes
through it end to end; the other tests record the victim's upstream session with that same store
function directly, to name it without scripting the IdP's ``sid`` for each login.
"""
from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
import requests

from chalicelib.errors import ServiceUnavailable
from chalicelib.login.jwks_cache import jwks_cache
from tests.api.test_gtr import (  # noqa: F401 - other_idp, make_connection, web, conn are fixtures
    APP_CALLBACK,
    claims_of,
    conn,
    login,
    make_connection,
    other_idp,
    userinfo_status,
    web,
)
from tests.support import log_events
from tests.support.fake_idp import DROP, FakeIdp, _raw_jws, ec_key, mint, rsa_key
from tests.support.live_fixtures import live_url  # noqa: F401

PATH = "/login/backchannel-logout/"
FORM = "application/x-www-form-urlencoded"
EVENT = "http://schemas.openid.net/event/backchannel-logout"
INVALID = {"error": "invalid_request", "error_description": "The logout request is not valid"}
PARALLEL = 20


# --------------------------------------------------------------------------- helpers

def logout_token(idp_: FakeIdp, *, key=None, alg: str = "RS256", header: dict | None = None,
                 **overrides) -> str:
    now = int(time.time())
    claims = {"iss": idp_.issuer, "aud": idp_.client_id, "iat": now, "exp": now + 120,
              "jti": uuid.uuid4().hex, "events": {EVENT: {}}}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not DROP}
    header = {"typ": "logout+jwt", **(header or {})}
    signer = key if key is not None else idp_.signing_key
    if header["typ"] is DROP or "crit" in header:
        # Headers joserfc's encoder would not write (it adds typ JWT, refuses crit): RS256 by hand.
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"alg": "RS256", "kid": signer.kid,
                  **{k: v for k, v in header.items() if v is not DROP}}
        return _raw_jws(header, claims, lambda data: signer.private_key.sign(
            data, padding.PKCS1v15(), hashes.SHA256()))
    return mint(claims, signer, alg=alg, header=header)


def post(client, name: str, token: str | None = None, *, body: str | bytes | None = None,
         content_type: str = FORM):
    if body is None:
        body = urlencode({"logout_token": token}) if token is not None else ""
    return client.http.post(PATH + name, headers={"Content-Type": content_type}, body=body)


def assert_refused(response) -> None:
    assert response.status_code == 400, response.body
    assert json.loads(response.body) == INVALID
    assert response.headers["Cache-Control"] == "no-store"


def flo_check(start_ms: int, connection_name: str) -> str:
    event = log_events.one(start_ms, lambda e: e["type"] == "flo"
                           and e.get("connection") == connection_name)
    assert event["details"]["source"] == "upstream_backchannel_logout"
    return event["details"]["check"]


def remember(connection: dict, sid: str, user_id: str, upstream_sid: str) -> None:
    """What the callback records for a login whose ID token carried ``sid``."""
    from chalicelib.store import sessions, upstream_sessions
    from chalicelib.store.unit_of_work import UnitOfWork

    expires_at = sessions.get(sid)["expires_at"]
    UnitOfWork(upstream_sessions.record_operations(connection["id"], upstream_sid, sid, user_id,
                                                   expires_at)).commit()


@dataclass
class Victim:
    """A live broker session from a real login, recorded as from upstream session ``up_sid``."""
    connection: dict
    sid: str
    user_id: str
    access_token: str
    up_sid: str

    def alive(self, client) -> bool:
        from chalicelib import sessions

        live = sessions.get_session(self.sid, int(time.time())) is not None
        assert live == (userinfo_status(client, self.access_token) == 200)
        return live


def sign_in(client, app: dict, connection: dict, idp_: FakeIdp, sub: str = "alice",
            up_sid: str | None = None) -> Victim:
    # No offline_access: the grant is an online one, which a logout ends with the session.
    _, tokens = login(client, app, connection, idp_, sub=sub, scope="openid profile email")
    sid = claims_of(tokens["id_token"])["sid"]
    user_id = f"oidc|{connection['name']}|{sub}"
    up_sid = up_sid or "up-" + uuid.uuid4().hex
    remember(connection, sid, user_id, up_sid)
    return Victim(connection, sid, user_id, tokens["access_token"], up_sid)


@pytest.fixture()
def victim(client, web, conn, idp) -> Victim:  # noqa: F811
    return sign_in(client, web, conn, idp)


@pytest.fixture()
def sent(monkeypatch):
    """Back-channel logout messages to applications, caught where they would go to SQS."""
    from chalicelib.logout import backchannel

    messages: list[dict] = []
    monkeypatch.setattr(backchannel, "_send", lambda message, **_: messages.append(message))
    return messages


# --------------------------------------------------------------------------- accepted

def test_a_logout_token_ends_the_broker_session_of_that_upstream_session(client, api, web, conn,  # noqa: F811
                                                                          idp, victim, sent):
    patched = api.call("PATCH", f"/api/v2/clients/{web['client_id']}",
                       body={"oidc_logout": {"backchannel_logout_urls": ["https://rp.example/bcl"]}})
    assert patched.status_code == 200, patched.data
    bob = sign_in(client, web, conn, idp, sub="bob")
    start = log_events.now_ms()

    response = post(client, conn["name"], logout_token(idp, sid=victim.up_sid))

    assert response.status_code == 200, response.body
    assert response.body in (b"", "")
    assert response.headers["Cache-Control"] == "no-store"
    assert not victim.alive(client)
    assert bob.alive(client)
    # Back-channel logout to the application that got tokens in the ended session (SPEC §6).
    assert sent == [{"client_id": web["client_id"], "url": "https://rp.example/bcl",
                     "sub": victim.user_id, "sid": victim.sid, "attempt": 0}]
    event = log_events.one(start, lambda e: e["type"] == "slo"
                           and e.get("connection") == conn["name"])
    assert event["user_id"] == victim.user_id
    assert event["details"] == {"source": "upstream_backchannel_logout", "sessions": 1,
                                "identified_by": "sid"}


def test_a_sub_alone_ends_every_session_of_the_upstream_user(client, web, conn, idp):  # noqa: F811
    first, second = sign_in(client, web, conn, idp), sign_in(client, web, conn, idp)
    bob = sign_in(client, web, conn, idp, sub="bob")
    assert post(client, conn["name"], logout_token(idp, sub="alice")).status_code == 200
    assert not first.alive(client) and not second.alive(client)
    assert bob.alive(client)


@pytest.mark.parametrize("typ", ["logout+jwt", "application/logout+jwt", "Logout+JWT", DROP])
def test_typ_is_logout_jwt_as_a_media_type_or_absent(client, conn, idp, victim, typ):  # noqa: F811
    response = post(client, conn["name"], logout_token(idp, sid=victim.up_sid, header={"typ": typ}))
    assert response.status_code == 200, response.body
    assert not victim.alive(client)


@pytest.mark.parametrize("aud", ["{client_id}", ["other-rp", "{client_id}"]])
def test_aud_is_the_client_id_or_an_array_holding_it(client, conn, idp, victim, aud):  # noqa: F811
    aud = [a.format(client_id=idp.client_id) for a in aud] if isinstance(aud, list) else (
        aud.format(client_id=idp.client_id))
    response = post(client, conn["name"], logout_token(idp, sid=victim.up_sid, aud=aud))
    assert response.status_code == 200, response.body
    assert not victim.alive(client)


def test_an_es256_token_from_a_jwks_of_several_keys(client, make_connection, web, idp):  # noqa: F811
    idp.keys.append(ec_key("ec-1"))
    connection = make_connection(idp, [web["client_id"]],
                                 id_token_signed_response_algs=["RS256", "ES256"])
    victim = sign_in(client, web, connection, idp)
    response = post(client, connection["name"],
                    logout_token(idp, key=idp.keys[-1], alg="ES256", sid=victim.up_sid))
    assert response.status_code == 200, response.body
    assert not victim.alive(client)


def test_an_unknown_sid_or_sub_is_a_200_that_ends_nothing(client, conn, idp, victim):  # noqa: F811
    """§2.8 and the standard's idempotence: nothing left to end is not an error."""
    for claims in ({"sid": "never-seen"}, {"sub": "nobody"}, {"sid": victim.up_sid, "sub": "bob"}):
        response = post(client, conn["name"], logout_token(idp, **claims))
        assert response.status_code == 200, (claims, response.body)
        assert victim.alive(client)


# --------------------------------------------------------------------------- refused tokens

def _now() -> int:
    return int(time.time())


# (failed check, claim overrides, header overrides, alg) — each token names the victim's
# upstream session, so only the broken rule stands between it and a 200.
REFUSED_CLAIMS = {
    "nonce": ("nonce", {"nonce": "n-1"}),
    "no events": ("events", {"events": DROP}),
    "events without the member": ("events", {"events": {"http://schemas.openid.net/event/x": {}}}),
    "events member not an object": ("events", {"events": {EVENT: "yes"}}),
    "events as a list (draft 00)": ("events", {"events": [EVENT]}),
    "wrong aud": ("aud", {"aud": "another-rp"}),
    "aud array without the client": ("aud", {"aud": ["another-rp", "third"]}),
    "no aud": ("aud", {"aud": DROP}),
    "wrong iss": ("iss", {"iss": "https://evil.example"}),
    "iss with a trailing slash": ("iss", {"iss": "{issuer}/"}),
    "no iss": ("iss", {"iss": DROP}),
    "expired": ("exp", {"iat": -200, "exp": -61}),
    "exp not a number": ("exp", {"exp": "soon"}),
    "iat too old": ("iat_too_old", {"iat": -301, "exp": 60}),
    "iat in the future": ("iat", {"iat": 120, "exp": 240}),
    "no iat": ("iat", {"iat": DROP}),
    "nbf in the future": ("nbf", {"nbf": 120}),
    "no jti": ("jti", {"jti": DROP}),
    "empty jti": ("jti", {"jti": ""}),
    "neither sid nor sub": ("sid_or_sub", {"sid": DROP}),
    "sid not a string": ("sid_or_sub", {"sid": 42}),
}
TIMES = ("iat", "exp", "nbf")


def _claims(overrides: dict, victim: Victim, idp_: FakeIdp) -> dict:
    claims = {"sid": victim.up_sid}
    for name, value in overrides.items():
        if name in TIMES and isinstance(value, int):
            value = _now() + value
        elif isinstance(value, str):
            value = value.format(issuer=idp_.issuer)
        claims[name] = value
    return claims


@pytest.mark.parametrize("case", list(REFUSED_CLAIMS))
def test_a_refused_claim_is_a_400_that_ends_nothing(client, conn, idp, victim, case):  # noqa: F811
    check, overrides = REFUSED_CLAIMS[case]
    start = log_events.now_ms()
    assert_refused(post(client, conn["name"], logout_token(idp, **_claims(overrides, victim, idp))))
    assert victim.alive(client)
    assert flo_check(start, conn["name"]) == check


REFUSED_HEADERS = {
    "typ JWT (an ID token's)": ("typ", {"typ": "JWT"}, "RS256", None),
    "typ at+jwt": ("typ", {"typ": "at+jwt"}, "RS256", None),
    "typ global-token-revocation+jwt": ("typ", {"typ": "global-token-revocation+jwt"}, "RS256",
                                        None),
    "alg none": ("alg", {}, "none", None),
    "HS256 with the IdP's public key": ("alg", {}, "HS256", "public"),
    "RS384, not allowed for the connection": ("alg", {}, "RS384", None),
    "crit": ("crit", {"crit": ["exp"]}, "RS256", None),
    "unknown kid": ("unknown_key", {}, "RS256", rsa_key("evil")),
    "the IdP's kid, another key": ("signature", {}, "RS256", rsa_key("k1")),
    "no kid, another key": ("signature", {}, "RS256", rsa_key(None)),
}


@pytest.mark.parametrize("case", list(REFUSED_HEADERS))
def test_a_refused_header_or_signature_is_a_400_that_ends_nothing(client, conn, idp, victim,  # noqa: F811
                                                                  case):
    check, header, alg, key = REFUSED_HEADERS[case]
    if key == "public":
        key = idp.signing_key  # HS256 keyed with its public PEM: algorithm confusion
    token = logout_token(idp, key=key, alg=alg, header=header, sid=victim.up_sid)
    start = log_events.now_ms()
    assert_refused(post(client, conn["name"], token))
    assert victim.alive(client)
    assert flo_check(start, conn["name"]) == check


def test_a_tampered_payload_is_a_bad_signature(client, conn, idp, victim):  # noqa: F811
    good = logout_token(idp, sub="nobody").split(".")
    forged = logout_token(idp, sid=victim.up_sid).split(".")
    start = log_events.now_ms()
    assert_refused(post(client, conn["name"], ".".join([good[0], forged[1], good[2]])))
    assert victim.alive(client)
    assert flo_check(start, conn["name"]) == "signature"


@pytest.mark.parametrize("token,check", [
    ("not-a-jwt", "format"), ("a.b", "format"), ("a.b.c.d.e", "format"), ("!!.??.**", "format"),
    ("eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "signature"),  # no typ: checked; a bogus signature
])
def test_a_token_that_is_no_valid_jws_is_a_400(client, conn, victim, token, check):  # noqa: F811
    start = log_events.now_ms()
    assert_refused(post(client, conn["name"], token))
    assert victim.alive(client)
    assert flo_check(start, conn["name"]) == check


def test_a_replayed_token_is_refused(client, web, conn, idp):  # noqa: F811
    first = sign_in(client, web, conn, idp, up_sid="up-replay-" + uuid.uuid4().hex)
    token = logout_token(idp, sid=first.up_sid)
    assert post(client, conn["name"], token).status_code == 200
    again = sign_in(client, web, conn, idp, up_sid=first.up_sid)
    start = log_events.now_ms()
    assert_refused(post(client, conn["name"], token))
    assert again.alive(client)
    assert flo_check(start, conn["name"]) == "jti_replayed"


def test_another_connections_token_ends_nothing_there(client, make_connection, web, conn, idp,  # noqa: F811
                                                      other_idp):  # noqa: F811
    """A token signed by IdP A, posted to connection B's URL, naming B's upstream session."""
    conn_b = make_connection(other_idp, [web["client_id"]])
    on_b = sign_in(client, web, conn_b, other_idp)
    on_a = sign_in(client, web, conn, idp, up_sid=on_b.up_sid)  # the same sid at both IdPs
    # Both fake IdPs use the client_id "broker-client" and the kid "k1": only the key differs.
    for token in (logout_token(idp, sid=on_b.up_sid),
                  logout_token(idp, sid=on_b.up_sid, iss=other_idp.issuer)):
        start = log_events.now_ms()
        assert_refused(post(client, conn_b["name"], token))
        assert flo_check(start, conn_b["name"]) == "signature"
    assert on_b.alive(client) and on_a.alive(client)
    # A's own URL takes it, and ends only A's session.
    assert post(client, conn["name"], logout_token(idp, sid=on_b.up_sid)).status_code == 200
    assert on_b.alive(client) and not on_a.alive(client)


def test_a_connection_to_the_same_idp_with_another_client_refuses_its_tokens(
        client, make_connection, web, idp):  # noqa: F811
    """Same issuer and keys, another client registration: the aud tells them apart."""
    other_client = make_connection(idp, [web["client_id"]], client_id="another-client")
    idp.script(aud="another-client")  # its ID tokens are for that client
    victim = sign_in(client, web, other_client, idp)
    start = log_events.now_ms()
    assert_refused(post(client, other_client["name"], logout_token(idp, sid=victim.up_sid)))
    assert flo_check(start, other_client["name"]) == "aud"
    assert victim.alive(client)


# --------------------------------------------------------------------------- refused requests

def test_request_shape(client, conn, idp, victim):  # noqa: F811
    token = logout_token(idp, sid=victim.up_sid)
    cases = [
        ("logout_token_missing", dict(body=urlencode({"token": token}))),
        ("logout_token_missing", dict(body=urlencode({"logout_token": ""}))),
        ("logout_token_missing", dict(body="")),
        ("form", dict(body=urlencode([("logout_token", token), ("logout_token", token)]))),
        ("form", dict(body=b"logout_token=\xff\xfe")),
        ("content_type", dict(body=json.dumps({"logout_token": token}),
                              content_type="application/json")),
        ("content_type", dict(body=urlencode({"logout_token": token}), content_type="text/plain")),
        ("body_too_large", dict(body=urlencode({"logout_token": token, "pad": "x" * 17000}))),
    ]
    for check, request in cases:
        start = log_events.now_ms()
        assert_refused(post(client, conn["name"], **request))
        assert flo_check(start, conn["name"]) == check, request
    assert victim.alive(client)
    # A charset parameter is fine.
    response = post(client, conn["name"], token, content_type=FORM + "; charset=UTF-8")
    assert response.status_code == 200, response.body
    assert not victim.alive(client)


@pytest.mark.parametrize("name", ["no-such-connection", "bad%20name", "x" * 129])
def test_an_unknown_connection_answers_as_a_bad_token_does(client, idp, name):
    assert_refused(post(client, name, logout_token(idp, sub="alice")))


# --------------------------------------------------------------------------- outages

def test_a_dependency_failure_is_a_503(client, conn, idp, victim, monkeypatch):  # noqa: F811
    from chalicelib.registry import connections

    def down(_name):
        raise ServiceUnavailable("A dependency is temporarily unavailable")

    monkeypatch.setattr(connections, "cached_connection_by_name", down)
    start = log_events.now_ms()
    response = post(client, conn["name"], logout_token(idp, sid=victim.up_sid))
    monkeypatch.undo()
    assert response.status_code == 503, response.body
    assert json.loads(response.body)["error"] == "temporarily_unavailable"
    assert response.headers["Cache-Control"] == "no-store"
    assert victim.alive(client)
    assert flo_check(start, conn["name"]) == "dependency"


def test_an_unreachable_jwks_is_a_503(client, make_connection, web, idp):  # noqa: F811
    with FakeIdp() as gone:
        connection = make_connection(gone, [web["client_id"]])
        token = logout_token(gone, sub="alice")
    jwks_cache().clear()  # nothing cached, and the IdP is gone
    response = post(client, connection["name"], token)
    assert response.status_code == 503, response.body
    assert json.loads(response.body)["error"] == "temporarily_unavailable"


# --------------------------------------------------------------------------- concurrency

def test_concurrent_copies_over_http_have_exactly_one_winner(client, web, conn, idp,  # noqa: F811
                                                             live_url):  # noqa: F811
    victim = sign_in(client, web, conn, idp)
    body = urlencode({"logout_token": logout_token(idp, sid=victim.up_sid)})

    def send() -> int:
        return requests.post(f"{live_url}{PATH}{conn['name']}", data=body,
                             headers={"Content-Type": FORM}, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        statuses = sorted(pool.map(lambda _: send(), range(PARALLEL)))
    assert statuses == [200] + [400] * (PARALLEL - 1), statuses
    assert not victim.alive(client)


# --------------------------------------------------------------------------- a real login
# The callback (login/callback.py ``_finish``) records the ID token's sid in the login's
# transaction: a real login, then its upstream logout.

def test_a_real_login_then_its_upstream_logout(client, web, conn, idp):  # noqa: F811
    first_upstream, second_upstream = "kc-" + uuid.uuid4().hex, "kc-" + uuid.uuid4().hex
    idp.script(sid=first_upstream)   # the IdP's ID tokens carry its session id (OIDC §2.1 of BCL)
    _, first = login(client, web, conn, idp, sub="carol", scope="openid")
    idp.script(sid=second_upstream)  # another browser, another upstream session
    _, second = login(client, web, conn, idp, sub="carol", scope="openid")
    assert userinfo_status(client, first["access_token"]) == 200

    response = post(client, conn["name"], logout_token(idp, sid=first_upstream, sub="carol"))

    assert response.status_code == 200, response.body
    assert userinfo_status(client, first["access_token"]) == 401
    assert userinfo_status(client, second["access_token"]) == 200


# --------------------------------------------------------------------------- the URL to register

def test_connection_answers_show_the_backchannel_logout_url_read_only(api, conn):  # noqa: F811
    from chalicelib.store.dynamo import table

    url = f"http://127.0.0.1:8000{PATH}{conn['name']}"  # BROKER_ISSUER + the route's path
    assert conn["options"]["backchannel_logout_url"] == url  # the POST's answer
    fetched = api.call("GET", f"/api/v2/connections/{conn['id']}").data
    assert fetched["options"]["backchannel_logout_url"] == url
    listed = api.call("GET", f"/api/v2/connections?name={conn['name']}").data
    assert listed[0]["options"]["backchannel_logout_url"] == url
    assert "backchannel_logout_url" not in table().get("CONNECTIONS", conn["id"])["options"]
    # A GET sent back by PATCH keeps working: the unchanged value is ignored.
    patched = api.call("PATCH", f"/api/v2/connections/{conn['id']}",
                       body={"options": fetched["options"]})
    assert patched.status_code == 200, patched.data
    assert patched.data == fetched


@pytest.mark.parametrize("value", ["https://elsewhere.example.com/logout",
                                   "http://127.0.0.1:8000/login/backchannel-logout/other-name",
                                   "", 42])
def test_the_backchannel_logout_url_cannot_be_set(api, conn, idp, value):  # noqa: F811
    options = {k: v for k, v in conn["options"].items() if k != "oidc_metadata"}
    patched = api.call("PATCH", f"/api/v2/connections/{conn['id']}",
                       body={"options": {**options, "backchannel_logout_url": value}})
    assert patched.status_code == 400, patched.data
    assert "backchannel_logout_url is read-only" in patched.data["message"]
    created = api.call("POST", "/api/v2/connections", body={
        "name": f"bcl-{uuid.uuid4().hex[:8]}", "strategy": "oidc",
        "options": {"type": "front_channel", "issuer": idp.issuer, "client_id": idp.client_id,
                    "authorization_endpoint": f"{idp.base_url}/authorize",
                    "jwks_uri": f"{idp.base_url}/jwks", "backchannel_logout_url": value}})
    assert created.status_code == 400, created.data
    assert "backchannel_logout_url is read-only" in created.data["message"]
