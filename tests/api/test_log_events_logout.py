"""SPEC §9 log events of logout (``slo`` / ``flo``) and Global Token Revocation (``sgtr`` /
``fgtr``), read back from the store; and a log store that fails changes no answer.

Real logins through the scriptable fake IdP (tests/support/fake_idp.py, as in test_gtr.py).
Every event looked at names a client, a connection or a path this test created: the log
partitions are shared by every test."""
from __future__ import annotations

import base64
import json
import uuid
from urllib.parse import urlencode

import pytest

from chalicelib.errors import ServiceUnavailable
from tests.api.test_gtr import (  # noqa: F401 - make_connection is a fixture
    claims_of,
    gtr_jwt,
    iss_sub,
    login,
    make_connection,
    post,
    userinfo_status,
)
from tests.api.test_logout import APP_CALLBACK, new_app
from tests.support.log_events import events_since, now_ms, one, text_of

SIGNED_OUT = "https://app.example.com/signed-out"


@pytest.fixture()
def rp(api):
    created = new_app(api, f"logout-events-{uuid.uuid4().hex[:6]}",
                      allowed_logout_urls=[SIGNED_OUT, SIGNED_OUT + "?from=broker"])
    assert APP_CALLBACK in created["callbacks"]
    yield created
    api.call("DELETE", f"/api/v2/clients/{created['client_id']}")


@pytest.fixture()
def conn(make_connection, idp, rp):  # noqa: F811
    return make_connection(idp, [rp["client_id"]])


def unique_sub() -> str:
    return "user-" + uuid.uuid4().hex[:10]


def of_type(*types: str, **fields):
    return lambda e: e.get("type") in types and all(e.get(k) == v for k, v in fields.items())


def logout_path(path: str, **params) -> str:
    return path + "?" + urlencode(params)


# --------------------------------------------------------------------------- slo / flo

def test_rp_initiated_logout_is_slo_with_the_ended_sessions_user_and_connection(
        client, rp, conn, idp):
    sub = unique_sub()
    browser, tokens = login(client, rp, conn, idp, sub=sub, scope="openid profile email")
    user_id = claims_of(tokens["id_token"])["sub"]
    start = now_ms()
    response = browser.get(logout_path("/oidc/logout", id_token_hint=tokens["id_token"],
                                       post_logout_redirect_uri=SIGNED_OUT + "?from=broker",
                                       state="s"))
    assert response.status_code == 302, response.body
    assert userinfo_status(client, tokens["access_token"]) == 401
    event = one(start, of_type("slo", client_id=rp["client_id"]))
    assert event["user_id"] == user_id == f"oidc|{conn['name']}|{sub}"
    assert event["connection"] == conn["name"] and event["connection_id"] == conn["id"]
    assert event["client_name"] == rp["name"]
    assert event["strategy"] == "oidc" and event["strategy_type"] == "enterprise"
    assert event["details"] == {"endpoint": "oidc_logout", "sessions_ended": 1,
                                "return_to": SIGNED_OUT}  # no query: it may carry anything
    text = text_of(event)
    assert tokens["id_token"] not in text and "eyJ" not in text
    assert browser.cookies.get("broker_session") is None
    # The user's own events list it (GET /api/v2/users/{id}/logs reads this index).
    from itertools import islice

    from chalicelib.store import log_events

    assert event["log_id"] in [e["log_id"] for e in islice(log_events.of_user(user_id), 50)]


def test_v2_logout_is_slo(client, rp, conn, idp):
    browser, tokens = login(client, rp, conn, idp, sub=unique_sub())
    start = now_ms()
    response = browser.get(logout_path("/v2/logout", client_id=rp["client_id"],
                                       returnTo=SIGNED_OUT))
    assert response.status_code == 302 and response.headers["Location"] == SIGNED_OUT
    event = one(start, of_type("slo", client_id=rp["client_id"]))
    assert event["user_id"] == claims_of(tokens["id_token"])["sub"]
    assert event["connection"] == conn["name"]
    assert event["details"] == {"endpoint": "v2_logout", "sessions_ended": 1,
                                "return_to": SIGNED_OUT}


def test_logout_without_a_session_is_slo_without_a_user(client, rp):
    start = now_ms()
    response = client.http.get(logout_path("/v2/logout", client_id=rp["client_id"]))
    assert response.status_code == 302
    event = one(start, of_type("slo", client_id=rp["client_id"]))
    assert "user_id" not in event and "connection" not in event
    assert event["details"]["sessions_ended"] == 0


def _forged_hint(tokens) -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    header = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[0] + "=="))
    attacker = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return jwt.encode(header, claims_of(tokens["id_token"]), attacker, algorithms=["RS256"])


@pytest.mark.parametrize("case,check", [
    ("forged_hint", "invalid_id_token_hint"),
    ("garbage_hint", "invalid_id_token_hint"),
    ("unregistered_redirect", "unregistered_post_logout_redirect_uri"),
    ("hint_for_another_client", "id_token_hint_audience"),
    ("v2_unregistered_return_to", "unregistered_return_to"),
])
def test_refused_logout_is_flo_with_the_failed_check(client, api, rp, conn, idp, case,
                                                     check):
    browser, tokens = login(client, rp, conn, idp, sub=unique_sub())
    other = new_app(api, "other-app")
    hint = tokens["id_token"]
    paths = {
        "forged_hint": logout_path("/oidc/logout", id_token_hint=_forged_hint(tokens),
                                   client_id=rp["client_id"]),
        "garbage_hint": logout_path("/oidc/logout", id_token_hint="eyJhbGciOi.x.y",
                                    client_id=rp["client_id"]),
        "unregistered_redirect": logout_path("/oidc/logout", id_token_hint=hint,
                                             post_logout_redirect_uri="https://evil.example/x?t=1"),
        "hint_for_another_client": logout_path("/oidc/logout", id_token_hint=hint,
                                               client_id=other["client_id"]),
        "v2_unregistered_return_to": logout_path("/v2/logout", client_id=rp["client_id"],
                                                 returnTo="https://evil.example/x"),
    }
    start = now_ms()
    try:
        response = browser.get(paths[case])
        assert response.status_code == 400, response.body
        assert userinfo_status(client, tokens["access_token"]) == 200  # nothing was ended
        client_id = other["client_id"] if case == "hint_for_another_client" else rp["client_id"]
        event = one(start, of_type("flo", "slo", client_id=client_id))
    finally:
        api.call("DELETE", f"/api/v2/clients/{other['client_id']}")
    assert event["type"] == "flo"
    assert event["details"]["check"] == check
    assert event["details"]["endpoint"] == ("v2_logout" if case.startswith("v2") else "oidc_logout")
    if case == "unregistered_redirect":
        assert event["details"]["return_to"] == "https://evil.example/x"
    if case == "hint_for_another_client":
        assert event["user_id"] == claims_of(hint)["sub"]
    text = text_of(event)
    assert hint not in text and "eyJ" not in text


def test_unknown_client_is_flo(client):
    unknown = "nope-" + uuid.uuid4().hex
    start = now_ms()
    for path in ("/oidc/logout", "/v2/logout"):
        assert client.http.get(logout_path(path, client_id=unknown)).status_code == 400
    events = events_since(start, of_type("flo", client_id=unknown))
    assert [e["details"]["endpoint"] for e in events] == ["v2_logout", "oidc_logout"]
    assert {e["details"]["check"] for e in events} == {"unknown_client"}
    assert all(e["description"] == "Failed logout: The client_id is unknown." for e in events)


def test_asking_for_confirmation_is_no_event(client, rp, conn, idp):
    browser, _ = login(client, rp, conn, idp, sub=unique_sub())
    start = now_ms()
    asked = browser.get(logout_path("/oidc/logout", client_id=rp["client_id"]))
    assert "Do you want to sign out?" in asked.body.decode()
    assert events_since(start, of_type("flo", "slo", client_id=rp["client_id"])) == []


# --------------------------------------------------------------------------- sgtr / fgtr

def test_global_token_revocation_is_sgtr_with_counts_never_the_token(client, rp, conn,
                                                                     idp):
    sub = unique_sub()
    _, first = login(client, rp, conn, idp, sub=sub)
    login(client, rp, conn, idp, sub=sub)  # a second session, second grant
    token = gtr_jwt(idp, conn)
    start = now_ms()
    response = post(client, conn["name"], token, iss_sub(idp, sub))
    assert response.status_code == 204, response.body
    event = one(start, of_type("sgtr", "fgtr", connection=conn["name"]))
    assert event["type"] == "sgtr"
    assert event["connection_id"] == conn["id"]
    assert event["user_id"] == claims_of(first["id_token"])["sub"]
    details = event["details"]
    assert details["subject_format"] == "iss_sub"
    assert details["status"] == 204 and details["users"] == 1
    assert details["sessions"] == 2 and details["grants"] >= 2
    text = text_of(event)
    assert token not in text and claims_of(token)["jti"] not in text and "eyJ" not in text


def test_email_format_sgtr_names_the_format_not_the_email(client, rp, conn, idp):
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    login(client, rp, conn, idp, sub=unique_sub(), email=email)
    login(client, rp, conn, idp, sub=unique_sub(), email=email.upper())
    start = now_ms()
    response = post(client, conn["name"], gtr_jwt(idp, conn),
                    {"subject": {"format": "email", "email": email}})
    assert response.status_code == 204, response.body
    event = one(start, of_type("sgtr", "fgtr", connection=conn["name"]))
    assert event["type"] == "sgtr" and "user_id" not in event  # two users: listed in details
    assert event["details"]["subject_format"] == "email" and event["details"]["users"] == 2
    assert len(event["details"]["user_ids"]) == 2
    assert email.split("@")[0] not in text_of(event)


@pytest.mark.parametrize("case,status,reason", [
    ("no_token", 401, "no_token"),
    ("bad_token", 401, "typ"),
    ("wrong_issuer", 403, "iss"),
    ("unsupported_format", 400, "unsupported_format"),
    ("unknown_subject", 404, "unknown_user_iss_sub"),
])
def test_refused_revocation_is_fgtr_with_the_reason(client, conn, idp, case, status,
                                                    reason):
    sent = {
        "no_token": dict(token=None, body=iss_sub(idp, "x")),
        "bad_token": dict(token="eyJhbGciOiJSUzI1NiJ9.e30.c2ln", body=iss_sub(idp, "x")),
        "wrong_issuer": dict(token=gtr_jwt(idp, conn, iss="https://evil.example/"),
                             body=iss_sub(idp, "x")),
        "unsupported_format": dict(token=gtr_jwt(idp, conn),
                                   body={"sub_id": {"format": "opaque", "id": "secret-id"}}),
        "unknown_subject": dict(token=gtr_jwt(idp, conn), body=iss_sub(idp, unique_sub())),
    }[case]
    start = now_ms()
    response = post(client, conn["name"], sent["token"], sent["body"])
    assert response.status_code == status, response.body
    event = one(start, of_type("sgtr", "fgtr", connection=conn["name"]))
    assert event["type"] == "fgtr"
    assert event["connection_id"] == conn["id"]
    assert event["details"]["status"] == status and event["details"]["reason"] == reason
    assert "user_id" not in event
    text = text_of(event)
    assert "eyJ" not in text and "secret-id" not in text
    if case == "unknown_subject":
        # The IdP sees a 404 like an unknown connection's; the event says which it was.
        assert event["details"]["subject_format"] == "iss_sub" and event["details"]["users"] == 0


def test_unknown_connection_is_fgtr_naming_what_was_asked(client, idp):
    name = "missing-" + uuid.uuid4().hex[:8]
    start = now_ms()
    assert post(client, name, "x.y.z", iss_sub(idp, "x")).status_code == 404
    event = one(start, of_type("fgtr", connection=name))
    assert event["details"]["reason"] == "unknown_connection" and "connection_id" not in event


def test_failed_revocation_is_fgtr_422(client, rp, conn, idp, monkeypatch):
    from chalicelib import revocation

    sub = unique_sub()
    login(client, rp, conn, idp, sub=sub)

    def outage(*args, **kwargs):
        raise ServiceUnavailable("A dependency is temporarily unavailable")

    monkeypatch.setattr(revocation, "revoke_user", outage)
    start = now_ms()
    assert post(client, conn["name"], gtr_jwt(idp, conn), iss_sub(idp, sub)).status_code == 422
    event = one(start, of_type("sgtr", "fgtr", connection=conn["name"]))
    assert event["type"] == "fgtr"
    assert event["details"]["reason"] == "revocation_failed" and event["details"]["status"] == 422


# --------------------------------------------------------------------------- a failing log store

def test_a_failing_log_store_changes_no_answer(client, api, rp, conn, idp, monkeypatch,
                                               caplog):
    """SPEC §9: a log write that fails never fails the request: logout, Global Token
    Revocation and a Management API write answer as they do with a working store."""
    import logging

    from chalicelib.store import log_events

    sub = unique_sub()
    browser, tokens = login(client, rp, conn, idp, sub=sub)
    _, kept = login(client, rp, conn, idp, sub=sub)
    calls = []

    def down(*args, **kwargs):
        calls.append(args[0]["type"])
        raise ServiceUnavailable("DynamoDB is unavailable")

    monkeypatch.setattr(log_events, "put", down)
    start = now_ms()
    caplog.set_level(logging.INFO, logger="broker.events")
    seen = len(caplog.records)
    logout = browser.get(logout_path("/oidc/logout", id_token_hint=tokens["id_token"],
                                     post_logout_redirect_uri=SIGNED_OUT))
    refused = browser.get(logout_path("/oidc/logout", client_id="nope-" + uuid.uuid4().hex))
    revoked = post(client, conn["name"], gtr_jwt(idp, conn), iss_sub(idp, sub))
    created = api.call("POST", "/api/v2/clients", body={"name": "while-logs-are-down"})
    invalid = api.call("POST", "/api/v2/clients", body={"name": 1})
    assert logout.status_code == 302 and logout.headers["Location"] == SIGNED_OUT
    assert userinfo_status(client, tokens["access_token"]) == 401
    assert refused.status_code == 400
    assert revoked.status_code == 204
    assert userinfo_status(client, kept["access_token"]) == 401
    assert created.status_code == 201 and created.data["client_secret"]
    assert invalid.status_code == 400
    api.call("DELETE", f"/api/v2/clients/{created.data['client_id']}")
    monkeypatch.undo()
    # Each was attempted, none stored; each still went to the log.
    assert {"slo", "flo", "sgtr", "sapi", "fapi"} <= set(calls), calls
    mine = events_since(start, lambda e: e.get("connection") == conn["name"]
                        or e.get("client_id") == rp["client_id"])
    assert [e["type"] for e in mine] == []
    logged = [r for r in caplog.records[seen:] if getattr(r, "log_event", None)]
    assert {r.log_event["type"] for r in logged} >= {"slo", "flo", "sgtr", "sapi", "fapi"}
    assert [r.log_event["type"] for r in logged if r.log_event_stored] == []
