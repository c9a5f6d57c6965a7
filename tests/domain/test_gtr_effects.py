"""Global Token Revocation's effect on what the broker holds (SPEC §5): run through
``logout.gtr.handle`` with a revocation JWT the connection's key signed (the JWKS served from
memory), then read the table: the subject's sessions end, every refresh token (offline ones too)
and pending code dies, back-channel logout is queued, and nobody else is touched. The JWT and
body checks and the status codes are tests/api/test_gtr.py's."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from chalicelib.errors import OAuthError, ServiceUnavailable
from chalicelib.logout import gtr
from tests.domain.conftest import ISSUER

_KEY = None


def signing_key():
    global _KEY
    if _KEY is None:
        from joserfc.jwk import ECKey

        _KEY = ECKey.generate_key("P-256", parameters={"kid": "gtr-1"}, auto_kid=False)
    return _KEY


def revocation_jwt(connection: dict, **overrides) -> str:
    from joserfc import jwt

    now = int(time.time())
    claims = {"iss": ISSUER, "sub": connection["options"]["client_id"],
              "aud": gtr.endpoint_url(connection["name"]), "iat": now, "exp": now + 300,
              "jti": uuid.uuid4().hex, **overrides}
    return jwt.encode({"alg": "ES256", "kid": "gtr-1", "typ": "global-token-revocation+jwt"},
                      claims, signing_key(), algorithms=["ES256"])


def revoke(domain, subject: dict, token: str | None = None) -> gtr.Outcome:
    from chalicelib.login.jwks_cache import JwksCache

    jwks = {"keys": [signing_key().as_dict(private=False)]}
    cache = JwksCache(fetch=lambda uri: jwks)
    connection = domain.connection
    return gtr.handle(connection["name"], f"Bearer {token or revocation_jwt(connection)}",
                      lambda: json.dumps({"sub_id": subject}).encode(), cache=cache)


def iss_sub(sub: str) -> dict:
    return {"format": "iss_sub", "iss": ISSUER, "sub": sub}


@pytest.fixture()
def sent(monkeypatch):
    from chalicelib.logout import backchannel

    messages: list[dict] = []
    monkeypatch.setattr(backchannel, "_send", lambda message, **_: messages.append(message))
    return messages


def dead(call) -> bool:
    try:
        call()
    except OAuthError as exc:
        assert exc.error in ("invalid_grant", "invalid_token"), exc
        return True
    return False


def test_revocation_ends_everything_of_the_subject_and_nothing_else(domain, sent):
    from chalicelib import revocation, sessions

    web = domain.app("regular_web",
                     oidc_logout={"backchannel_logout_urls": ["https://rp.example/bcl"]})
    spa = domain.app("spa")
    first = domain.tokens(web)
    pending = domain.sso(spa, first["login"].cookie)  # a code never redeemed
    # A second session, ended by a plain logout: its offline refresh token survives that ...
    offline = domain.tokens(spa)
    revocation.end_session(offline["login"].sid, domain.now, reason="rp_logout")
    offline_token = domain.refresh(spa, offline["refresh_token"])["refresh_token"]
    bob = domain.tokens(spa, sub="bob")
    sent.clear()

    outcome = revoke(domain, iss_sub("alice"))
    assert (outcome.status, outcome.users) == (204, 1)

    # ... but not Global Token Revocation.
    user_id = first["login"].user_id
    assert sessions.sessions_of_user(user_id, domain.now) == []
    assert sessions.session_from_cookie(first["login"].cookie, domain.now) is None
    assert dead(lambda: domain.refresh(web, first["refresh_token"]))
    assert dead(lambda: domain.refresh(spa, offline_token))
    assert dead(lambda: domain.userinfo(first["access_token"]))
    assert dead(lambda: domain.exchange(pending))
    for token in (first["refresh_token"], offline_token):
        grant = domain.grant(domain.refresh_item(token)["grant_id"])
        assert grant["revoked_for"] == "global_token_revocation"
    assert [(m["client_id"], m["sid"]) for m in sent] == [(web.client_id, first["login"].sid)]
    # Bob is untouched; Alice may sign in upstream again.
    assert domain.refresh(spa, bob["refresh_token"])["refresh_token"]
    assert domain.session(bob["login"].sid) is not None
    fresh = domain.tokens(web)
    assert domain.userinfo(fresh["access_token"])["sub"] == user_id


def test_the_email_format_revokes_every_user_of_the_connection_with_that_email(domain):
    app = domain.app("spa")
    alice = domain.tokens(app, sub="alice", email="Shared@Example.com")
    alias = domain.tokens(app, sub="alice-2", email="shared@example.com")
    carol = domain.tokens(app, sub="carol")
    outcome = revoke(domain, {"format": "email", "email": "SHARED@example.COM"})
    assert (outcome.status, outcome.users) == (204, 2)
    assert dead(lambda: domain.refresh(app, alice["refresh_token"]))
    assert dead(lambda: domain.refresh(app, alias["refresh_token"]))
    assert domain.refresh(app, carol["refresh_token"])["refresh_token"]


def test_an_unknown_subject_changes_nothing(domain):
    app = domain.app("spa")
    alice = domain.tokens(app)
    before = [i for i in domain.table.dump() if not i["pk"].startswith("LOGS#")]
    outcome = revoke(domain, iss_sub("nobody"))
    assert outcome.status == 404
    after = [i for i in domain.table.dump() if not i["pk"].startswith(("GTR_JTI#", "LOGS#"))]
    assert after == before  # only the token's replay marker and its log event were added
    assert domain.refresh(app, alice["refresh_token"])["refresh_token"]


def test_a_replayed_revocation_token_ends_nothing_new(domain):
    app = domain.app("spa")
    domain.tokens(app)
    token = revocation_jwt(domain.connection)
    assert revoke(domain, iss_sub("alice"), token).status == 204
    again = domain.tokens(app)  # Alice signs in again
    replayed = revoke(domain, iss_sub("alice"), token)
    assert (replayed.status, replayed.reason) == (401, "jti_replayed")
    assert domain.refresh(app, again["refresh_token"])["refresh_token"]
    assert domain.session(again["login"].sid) is not None


def test_an_interrupted_revocation_is_422_and_the_same_token_finishes_it(domain, monkeypatch):
    """A dependency failing half-way (here SQS, after the session's tombstone and its grants)
    answers 422 and releases the ``jti``: the IdP's retry with the same token completes the end
    of the session, notifications included."""
    from chalicelib import sessions
    from chalicelib.logout import backchannel

    web = domain.app("regular_web",
                     oidc_logout={"backchannel_logout_urls": ["https://rp.example/bcl"]})
    tokens = domain.tokens(web)
    sid = tokens["login"].sid
    delivered: list[dict] = []

    def sqs_down(message, **_):
        raise ServiceUnavailable("sqs is down")

    monkeypatch.setattr(backchannel, "_send", sqs_down)
    token = revocation_jwt(domain.connection)
    failed = revoke(domain, iss_sub("alice"), token)
    assert (failed.status, failed.reason) == (422, "revocation_failed")
    assert sessions.session_from_cookie(tokens["login"].cookie, domain.now) is None
    assert sessions.unfinished_end(sid) is not None

    monkeypatch.setattr(backchannel, "_send", lambda message, **_: delivered.append(message))
    assert revoke(domain, iss_sub("alice"), token).status == 204
    assert sessions.unfinished_end(sid) is None
    assert [m["sid"] for m in delivered] == [sid]
    assert dead(lambda: domain.refresh(web, tokens["refresh_token"]))
