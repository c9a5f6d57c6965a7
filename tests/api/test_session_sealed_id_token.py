"""The broker session keeps the login's upstream ID token only sealed under its cookie secret.

The token exchange (SPEC §10) accepts an upstream ID token as ``subject_token`` and issues broker
tokens for it, so an upstream ID token readable in the table (a backup, an IAM reader) would be a
credential. The session item holds ``upstream_id_token_sealed`` (AES-256-GCM under a key derived
from the cookie secret, which only the browser holds); Auth0's federated logout (``/v2/logout``
with ``federated``) unseals it with the request's session cookie for ``id_token_hint``, and goes
upstream without a hint when it cannot. The console's Try flow, which has no session cookie,
shows the upstream claims the callback kept for its own sessions only, gone once it revoked them.
"""
from __future__ import annotations

import base64
import json
import logging
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from chalicelib import aws
from chalicelib.store import sessions as session_records
from chalicelib.store.dynamo import table
from tests.support.fake_idp import FakeIdp, connection_body
from tests.support.flow import Browser, deliver_callback, federated_login, idp_login

SIGNED_OUT = "https://app.example.com/signed-out"
END_SESSION = "/end-session"
ISSUER = "http://127.0.0.1:8000/"


@pytest.fixture()
def issued(idp: FakeIdp) -> list[str]:
    """Every ID token the IdP issues (front channel's form POST or back channel's token
    response), oldest first; the IdP advertises an ``end_session_endpoint``."""
    tokens: list[str] = []

    def recording(idp_: FakeIdp, ctx: dict) -> str:
        token = FakeIdp.default_id_token(idp_, ctx)
        tokens.append(token)
        return token

    idp.id_token = recording
    idp.discovery_extra = {"end_session_endpoint": idp.base_url + END_SESSION}
    return tokens


@pytest.fixture()
def web(make_app):
    return make_app("sealed-web", allowed_logout_urls=[SIGNED_OUT])


@pytest.fixture()
def connect(add_connection, web, idp, issued):
    def make(channel: str = "back", **options) -> dict:
        return add_connection(connection_body(idp, f"sealed-{uuid.uuid4().hex[:8]}",
                                              channel=channel, enabled_clients=[web["client_id"]],
                                              **options))

    return make


def sign_in(client, app: dict, connection: dict, idp: FakeIdp) -> tuple[Browser, str]:
    """A whole login of a new upstream user; the browser and its broker session's sid."""
    user = f"sealed-{uuid.uuid4().hex[:10]}"
    idp.user = {"sub": user, "email": f"{user}@example.com", "email_verified": True}
    browser, answer, _ = federated_login(client, app, connection, state="st", nonce="n")
    assert answer.status_code == 303 and "code=" in answer.headers["Location"], answer.body
    return browser, browser.cookies["broker_session"].split(".", 1)[0]


def session_item(sid: str) -> dict:
    item = table().get(*session_records.key(sid))
    assert item is not None
    return item


def federated_logout(browser: Browser, app: dict):
    return browser.get("/v2/logout?" + urlencode({"client_id": app["client_id"],
                                                  "returnTo": SIGNED_OUT}) + "&federated")


def upstream_query(response, idp: FakeIdp) -> dict[str, str]:
    assert response.status_code == 302, response.body
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == idp.base_url + END_SESSION
    return {k: v[0] for k, v in parse_qs(location.query).items()}


# --- at rest ------------------------------------------------------------------------------------

@pytest.mark.parametrize("channel,options", [("front", {}), ("back", {}),
                                             ("back", {"token_storage": "vault"})])
def test_a_full_table_scan_after_a_login_finds_no_part_of_the_upstream_id_token(
        client, web, connect, idp, issued, channel, options):
    connection = connect(channel, **options)
    _, sid = sign_in(client, web, connection, idp)
    (id_token,) = issued
    _, payload, signature = id_token.split(".")
    # The header segment ({"alg", "kid"}) is the same for every token of this key: not a part
    # that tells this token apart. The payload and the signature are.
    needles = {"token": id_token, "payload": payload, "signature": signature}
    found = []
    for page in aws.client("dynamodb").get_paginator("scan").paginate(TableName=table().name):
        for item in page["Items"]:
            text = json.dumps(item)
            found += [(item["pk"]["S"][:40], name) for name, value in needles.items()
                      if value in text]
    assert found == []
    # What the session keeps instead: not a mere encoding of the token either.
    item = session_item(sid)
    assert "upstream_id_token" not in item and "upstream_claims" not in item
    sealed = item["upstream_id_token_sealed"]
    raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    assert payload.encode() not in raw and signature.encode() not in raw
    assert base64.urlsafe_b64decode(payload + "==") not in raw  # the claims' JSON
    assert len(raw) == 12 + len(id_token) + 16  # nonce, ciphertext, tag: nothing else


# --- federated logout ----------------------------------------------------------------------------

@pytest.mark.parametrize("channel", ["front", "back"])
def test_federated_logout_sends_the_upstream_id_token_as_hint(client, web, connect, idp, issued,
                                                               channel):
    connection = connect(channel)
    browser, _ = sign_in(client, web, connection, idp)
    query = upstream_query(federated_logout(browser, web), idp)
    assert query == {"id_token_hint": issued[-1], "client_id": idp.client_id,
                     "post_logout_redirect_uri": SIGNED_OUT}
    assert "broker_session" not in browser.cookies  # the broker session ended first


def test_a_cookie_that_cannot_unseal_sends_the_upstream_logout_without_hint(
        client, web, connect, idp, issued, caplog):
    """Session B holds what was sealed for session A: B's cookie cannot open it. The logout
    still goes upstream (client_id identifies the RP), without a hint, and says so in a WARNING
    that holds neither token nor cookie."""
    connection = connect()
    browser_a, sid_a = sign_in(client, web, connection, idp)
    browser_b, sid_b = sign_in(client, web, connection, idp)
    table().update(*session_records.key(sid_b), "SET upstream_id_token_sealed = :s",
                   values={":s": session_item(sid_a)["upstream_id_token_sealed"]})
    cookie_b = browser_b.cookies["broker_session"]
    with caplog.at_level(logging.WARNING, logger="chalicelib.logout.rp_logout"):
        query = upstream_query(federated_logout(browser_b, web), idp)
    assert query == {"client_id": idp.client_id, "post_logout_redirect_uri": SIGNED_OUT}
    warnings = [r.getMessage() for r in caplog.records if r.name == "chalicelib.logout.rp_logout"]
    assert len(warnings) == 1 and "without id_token_hint" in warnings[0]
    for secret in (*issued, browser_a.cookies["broker_session"], cookie_b):
        assert secret not in warnings[0] and secret.split(".")[-1] not in warnings[0]
    # A's own cookie still opens A's.
    assert upstream_query(federated_logout(browser_a, web), idp)["id_token_hint"] == issued[0]


def test_a_logout_without_the_session_cookie_sends_nothing_upstream(client, web, connect, idp,
                                                                     issued):
    connection = connect()
    browser, sid = sign_in(client, web, connection, idp)
    stranger = Browser(client)  # no cookie: nothing to end, no upstream logout, no hint
    response = federated_logout(stranger, web)
    assert response.status_code == 302 and response.headers["Location"] == SIGNED_OUT
    # A forged cookie naming the session, with another secret, neither.
    stranger.cookies["broker_session"] = sid + ".x" + browser.cookies["broker_session"][-10:]
    response = federated_logout(stranger, web)
    assert response.status_code == 302 and response.headers["Location"] == SIGNED_OUT
    assert "revoked_at" not in session_item(sid)


def test_a_session_from_before_sealing_still_gives_its_hint(client, web, connect, idp, issued):
    connection = connect()
    browser, sid = sign_in(client, web, connection, idp)
    table().update(*session_records.key(sid),
                   "SET upstream_id_token = :t REMOVE upstream_id_token_sealed",
                   values={":t": issued[-1]})
    assert upstream_query(federated_logout(browser, web), idp)["id_token_hint"] == issued[-1]


# --- the console's Try flow ----------------------------------------------------------------------

def test_the_try_flow_shows_the_upstream_claims_and_keeps_none_of_them(
        client, api, connect, idp, issued, web, make_app, add_connection):
    connection = connect()
    url = api.call("GET", f"/api/v2/connections/{connection['id']}/try").data["url"]
    browser = Browser(client)
    start = browser.get(url[len(ISSUER) - 1:])
    authorize = browser.get(start.headers["Location"][len(ISSUER) - 1:])
    method, params = idp_login(authorize.headers["Location"])
    callback = deliver_callback(browser, method, params)
    assert callback.status_code == 303, callback.body
    sid = browser.cookies["broker_session"].split(".", 1)[0]
    # Until the inspection, the Try session holds the decoded claims (no signature, no token).
    claims = json.loads(session_item(sid)["upstream_claims"])
    assert claims["sub"] == idp.user["sub"] and claims["iss"] == idp.issuer
    finish = browser.get(callback.headers["Location"][len(ISSUER) - 1:])
    assert finish.status_code == 303, finish.body
    body = browser.get(finish.headers["Location"][len(ISSUER) - 1:]).body.decode()
    assert "It works!" in body
    assert "&quot;sub&quot;: &quot;" + idp.user["sub"] in body        # the upstream claims
    assert "&quot;iss&quot;: &quot;" + idp.issuer in body
    assert "eyJ" not in body
    # The inspection revoked the session, and the claims went with it.
    item = session_item(sid)
    assert item.get("revoked_at") and "upstream_claims" not in item
    assert "upstream_id_token" not in item
    # An ordinary application's session never holds them, nor one that only claims to be
    # the built-in Try application in its metadata.
    _, other = sign_in(client, web, connection, idp)
    assert "upstream_claims" not in session_item(other)
    pretender = make_app("sealed-pretender", client_metadata={"broker_builtin": "try"})
    elsewhere = add_connection(connection_body(idp, f"sealed-{uuid.uuid4().hex[:8]}",
                                               enabled_clients=[pretender["client_id"]]))
    _, pretended = sign_in(client, pretender, elsewhere, idp)
    assert "upstream_claims" not in session_item(pretended)
