"""Back-channel logout from an upstream IdP (SPEC §11): what a logout token ends, against the
in-memory table. Run through ``login.upstream_logout.handle`` with tokens the connection's key
signed (the JWKS served from memory), then read the table: the broker sessions of the upstream
session (``sid``) or of the upstream user (``sub``) end as a plain logout ends them (online grants
die, offline ones survive, back-channel logout to the applications is queued), and nothing else.
Every refusal of a token is tests/api/test_upstream_backchannel_logout.py's.

Most tests record the upstream ``sid`` with the store function the callback calls
(:func:`remember`); ``test_the_callback_records_the_upstream_sid_in_the_logins_transaction`` pins
that the callback itself records it in the login's transaction.
"""
from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlencode

import pytest

from chalicelib import revocation
from chalicelib.errors import OAuthError, ServiceUnavailable
from chalicelib.login import upstream_logout
from chalicelib.store import log_events, replay, upstream_sessions
from chalicelib.store.unit_of_work import UnitOfWork
from tests.domain.conftest import ISSUER, Login, race

FORM = "application/x-www-form-urlencoded"
_KEY = None


def signing_key():
    global _KEY
    if _KEY is None:
        from joserfc.jwk import ECKey

        _KEY = ECKey.generate_key("P-256", parameters={"kid": "bcl-1"}, auto_kid=False)
    return _KEY


def logout_token(domain, **overrides) -> str:
    from joserfc import jwt

    now = domain.now
    claims = {"iss": ISSUER, "aud": domain.connection["options"]["client_id"], "iat": now,
              "exp": now + 120, "jti": uuid.uuid4().hex,
              "events": {upstream_logout.EVENT: {}}, **overrides}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "ES256", "kid": "bcl-1", "typ": "logout+jwt"}, claims,
                      signing_key(), algorithms=["ES256"])


def cache():
    from chalicelib.login.jwks_cache import JwksCache

    jwks = {"keys": [signing_key().as_dict(private=False)]}
    return JwksCache(fetch=lambda uri: jwks)


def post(domain, token: str, *, end_session=revocation.end_session,
         connection_name: str | None = None) -> upstream_logout.Outcome:
    return upstream_logout.handle(connection_name or domain.connection["name"], FORM,
                                  urlencode({"logout_token": token}).encode(),
                                  end_session=end_session, cache=cache())


def remember(domain, login: Login, upstream_sid: str) -> None:
    """What the callback records for a login whose ID token carried ``sid`` (the write it adds
    to the login's transaction), done here after the login."""
    from chalicelib.store import sessions

    expires_at = sessions.get(login.sid)["expires_at"]
    UnitOfWork(upstream_sessions.record_operations(
        domain.connection["id"], upstream_sid, login.sid, login.user_id, expires_at)).commit()


def alive(domain, login: Login) -> bool:
    return domain.session(login.sid) is not None


def dead(call) -> bool:
    try:
        call()
    except OAuthError as exc:
        assert exc.error in ("invalid_grant", "invalid_token"), exc
        return True
    return False


def events(domain, type_: str) -> list[dict]:
    return [e for e in log_events.newest_first(log_events.days_back(domain.now, 1))
            if e["type"] == type_]


@pytest.fixture()
def sent(monkeypatch):
    """Back-channel logout messages to applications, caught where they would go to SQS."""
    from chalicelib.logout import backchannel

    messages: list[dict] = []
    monkeypatch.setattr(backchannel, "_send", lambda message, **_: messages.append(message))
    return messages


BCL = {"oidc_logout": {"backchannel_logout_urls": ["https://rp.example/bcl"]}}


# --------------------------------------------------------------------------- sid

def test_a_sid_ends_the_broker_sessions_of_that_upstream_session_and_nothing_else(domain, sent):
    web, spa = domain.app("regular_web", **BCL), domain.app("spa")
    online = domain.tokens(web, scope="openid")               # upstream session "up-1"
    offline = domain.tokens(spa)                              # "up-1" too (another browser)
    elsewhere = domain.tokens(web, scope="openid")            # alice, upstream session "up-2"
    bob = domain.tokens(web, sub="bob", scope="openid")       # bob, "up-3"
    for tokens, upstream_sid in ((online, "up-1"), (offline, "up-1"), (elsewhere, "up-2"),
                                 (bob, "up-3")):
        remember(domain, tokens["login"], upstream_sid)

    outcome = post(domain, logout_token(domain, sid="up-1"))

    assert outcome == upstream_logout.Outcome(200, None, 2)
    assert not alive(domain, online["login"]) and not alive(domain, offline["login"])
    assert dead(lambda: domain.userinfo(online["access_token"]))
    # A plain logout: the offline grant (offline_access) survives, as after /oidc/logout.
    assert domain.refresh(spa, offline["refresh_token"])["access_token"]
    assert domain.grant(domain.refresh_item(offline["refresh_token"])["grant_id"]).get(
        "revoked_for") is None
    # The applications that got tokens in the ended sessions hear of it (SPEC §6).
    assert sent == [{"client_id": web.client_id, "url": "https://rp.example/bcl",
                     "sub": online["login"].user_id, "sid": online["login"].sid, "attempt": 0}]
    # The same user's other upstream session and another user are untouched.
    assert alive(domain, elsewhere["login"]) and alive(domain, bob["login"])
    assert domain.userinfo(elsewhere["access_token"])["sub"] == elsewhere["login"].user_id


def test_sid_and_sub_end_only_that_users_sessions_of_that_upstream_session(domain):
    app = domain.app("spa")
    alice, bob = domain.login(app, sub="alice"), domain.login(app, sub="bob")
    remember(domain, alice, "shared-up")
    remember(domain, bob, "shared-up")  # an IdP reusing a sid across users: never trusted blindly
    outcome = post(domain, logout_token(domain, sid="shared-up", sub="bob"))
    assert (outcome.status, outcome.sessions) == (200, 1)
    assert alive(domain, alice) and not alive(domain, bob)


def test_a_sid_of_another_connection_ends_nothing_here(domain):
    app = domain.app("spa")
    login = domain.login(app)
    UnitOfWork(upstream_sessions.record_operations(
        "con_someotherconn0", "up-1", login.sid, login.user_id, domain.now + 3600)).commit()
    assert post(domain, logout_token(domain, sid="up-1")) == upstream_logout.Outcome(200, None, 0)
    assert alive(domain, login)


# --------------------------------------------------------------------------- sub

def test_a_sub_alone_ends_every_session_of_that_upstream_user(domain, sent):
    app = domain.app("regular_web", **BCL)
    first, second = domain.tokens(app, scope="openid"), domain.tokens(app, scope="openid")
    bob = domain.tokens(app, sub="bob", scope="openid")
    outcome = post(domain, logout_token(domain, sub="alice"))
    assert outcome == upstream_logout.Outcome(200, None, 2)
    assert not alive(domain, first["login"]) and not alive(domain, second["login"])
    assert dead(lambda: domain.userinfo(second["access_token"]))
    assert sorted(m["sid"] for m in sent) == sorted([first["login"].sid, second["login"].sid])
    assert alive(domain, bob["login"])


def test_the_same_sub_at_another_connection_is_another_user(domain):
    from chalicelib.store import connections

    app = domain.app("spa")
    here = domain.login(app, sub="alice")
    other = dict(domain.connection, id=f"con_other{uuid.uuid4().hex[:8]}",
                 name=f"other-{uuid.uuid4().hex[:8]}")
    connections.create(other)
    mine = domain.connection
    domain._connection = other
    there = domain.login(app, sub="alice")
    domain._connection = mine
    assert post(domain, logout_token(domain, sub="alice")).sessions == 1
    assert not alive(domain, here) and alive(domain, there)


# --------------------------------------------------------------------------- nothing to end

@pytest.mark.parametrize("claims", [{"sid": "never-seen"}, {"sub": "nobody"},
                                    {"sid": "never-seen", "sub": "alice"}])
def test_a_valid_token_with_nothing_to_end_is_a_200_that_ends_nothing(domain, claims):
    """Back-Channel Logout treats logouts as idempotent: nothing left to end is a success."""
    app = domain.app("spa")
    login = domain.login(app)
    remember(domain, login, "up-1")
    assert post(domain, logout_token(domain, **claims)) == upstream_logout.Outcome(200, None, 0)
    assert alive(domain, login)
    (event,) = events(domain, "slo")
    assert event["details"]["sessions"] == 0


def test_a_second_token_for_an_ended_session_ends_nothing_more(domain):
    app = domain.app("spa")
    login = domain.login(app)
    remember(domain, login, "up-1")
    assert post(domain, logout_token(domain, sid="up-1")).sessions == 1
    assert post(domain, logout_token(domain, sid="up-1")) == upstream_logout.Outcome(200, None, 0)


# --------------------------------------------------------------------------- jti

def test_a_replayed_token_is_refused_and_ends_nothing_more(domain):
    app = domain.app("spa")
    first = domain.login(app)
    remember(domain, first, "up-1")
    token = logout_token(domain, sid="up-1")
    assert post(domain, token).sessions == 1
    second = domain.login(app)
    remember(domain, second, "up-1")  # a new broker session from the same upstream session
    assert post(domain, token) == upstream_logout.Outcome(400, "jti_replayed", 0)
    assert alive(domain, second)


def test_concurrent_copies_of_a_token_end_the_sessions_once(domain):
    app = domain.app("spa")
    logins = [domain.login(app) for _ in range(3)]
    for login in logins:
        remember(domain, login, "up-1")
    token = logout_token(domain, sid="up-1")
    outcomes = race(lambda: post(domain, token))
    assert sorted(o.status for o in outcomes) == [200] + [400] * (len(outcomes) - 1), outcomes
    assert [o.sessions for o in outcomes if o.status == 200] == [3]
    assert {o.check for o in outcomes if o.status == 400} == {"jti_replayed"}
    assert not any(alive(domain, login) for login in logins)


def test_the_jti_is_kept_exactly_while_the_token_could_be_accepted(domain):
    app = domain.app("spa")
    domain.login(app)
    now = domain.now
    iat_bound = {"iat": now - 100, "exp": now + 3600, "jti": "j-iat"}   # iat + 300 comes first
    exp_bound = {"iat": now, "exp": now + 30, "jti": "j-exp"}           # exp + 60 comes first
    no_exp = {"iat": now - 10, "exp": None, "jti": "j-none"}
    for claims, until in ((iat_bound, now + 200 + 1), (exp_bound, now + 90 + 1),
                          (no_exp, now + 290 + 1)):
        assert post(domain, logout_token(domain, sub="alice", **claims)).status == 200
        marker = replay.logout_marker(domain.connection["id"], claims["jti"])
        assert domain.table.get(marker.pk, marker.sk)["ttl"] == until, claims
    # The last second the iat-bound token passes the age check, it is still a replay ...
    domain.advance(200)
    assert post(domain, logout_token(domain, sub="alice", **iat_bound)).check == "jti_replayed"
    # ... and a moment later it is too old anyway.
    domain.advance(1)
    assert post(domain, logout_token(domain, sub="alice", **iat_bound)).check == "iat_too_old"


# --------------------------------------------------------------------------- outages

def test_an_outage_while_ending_releases_the_jti_and_the_retry_finishes(domain, sent,
                                                                        monkeypatch):
    from chalicelib.logout import backchannel

    app = domain.app("regular_web", **BCL)
    logins = [domain.tokens(app, scope="openid")["login"] for _ in range(2)]
    for login in logins:
        remember(domain, login, "up-1")
    token = logout_token(domain, sid="up-1")
    queued = backchannel.queue_for_session
    calls = []

    def sqs_fails_for_the_second(session, **kwargs):
        calls.append(session["sid"])
        if len(calls) == 2:
            raise ServiceUnavailable("SQS is down")
        return queued(session, **kwargs)

    monkeypatch.setattr(backchannel, "queue_for_session", sqs_fails_for_the_second)
    with pytest.raises(ServiceUnavailable):
        post(domain, token)
    monkeypatch.setattr(backchannel, "queue_for_session", queued)
    # Both sessions are over for the browser (the tombstone comes first), one end unfinished.
    assert not any(alive(domain, login) for login in logins)
    assert [m["sid"] for m in sent] == calls[:1]
    (failed,) = events(domain, "flo")
    assert failed["details"]["check"] == "dependency"
    # The IdP retries the same token: accepted (the jti was released), and it finishes the job.
    assert post(domain, token) == upstream_logout.Outcome(200, None, 1)
    assert sorted(m["sid"] for m in sent) == sorted(login.sid for login in logins)


def test_an_outage_before_the_jti_is_used_leaves_it_unused(domain, monkeypatch):
    from chalicelib.store import dynamo

    app = domain.app("spa")
    login = domain.login(app)
    remember(domain, login, "up-1")
    token = logout_token(domain, sid="up-1")

    def throttled(*_args, **_kwargs):
        raise ServiceUnavailable("throttled")

    monkeypatch.setattr(dynamo.table(), "put_new", throttled)
    with pytest.raises(ServiceUnavailable):
        post(domain, token)
    monkeypatch.undo()
    assert alive(domain, login)
    assert post(domain, token).sessions == 1


# --------------------------------------------------------------------------- log events

def test_each_request_is_one_event_without_the_token_the_jti_or_the_upstream_sid(domain):
    app = domain.app("spa")
    login = domain.login(app)
    remember(domain, login, "upstream-sid-secretish")
    token = logout_token(domain, sid="upstream-sid-secretish", sub="alice", jti="jti-marker-1")
    assert post(domain, token).sessions == 1
    refused = logout_token(domain, sid="upstream-sid-secretish", nonce="n", jti="jti-marker-2")
    assert post(domain, refused) == upstream_logout.Outcome(400, "nonce", 0)

    (ok,) = events(domain, "slo")
    assert ok["connection"] == domain.connection["name"]
    assert ok["connection_id"] == domain.connection["id"]
    assert ok["user_id"] == login.user_id
    assert ok["details"] == {"source": "upstream_backchannel_logout", "sessions": 1,
                             "identified_by": "sid+sub"}
    (failed,) = events(domain, "flo")
    assert failed["connection"] == domain.connection["name"] and "user_id" not in failed
    assert failed["details"] == {"source": "upstream_backchannel_logout", "sessions": 0,
                                 "check": "nonce", "status": 400}
    for event in (ok, failed):
        text = json.dumps(event)
        for secret in (token, refused, "jti-marker", "upstream-sid-secretish", login.sid):
            assert secret not in text


def test_an_unknown_connection_is_an_flo_naming_it(domain):
    token = logout_token(domain, sub="alice")
    outcome = upstream_logout.handle("no-such-connection", FORM,
                                     urlencode({"logout_token": token}).encode(),
                                     end_session=revocation.end_session, cache=cache())
    assert outcome == upstream_logout.Outcome(400, "connection", 0)
    (failed,) = events(domain, "flo")
    assert failed["connection"] == "no-such-connection" and "connection_id" not in failed


# --------------------------------------------------------------------------- the callback
# NEEDS THE CALLBACK DIFF (login/callback.py ``_finish`` adds
# ``upstream_sessions.record_operations(...)`` to the login's transaction): fails until applied.

def test_the_callback_records_the_upstream_sid_in_the_logins_transaction(domain, monkeypatch):
    from chalicelib.login.callback import _finish
    from chalicelib.login.freshness import UpstreamAuthentication
    from chalicelib.store.login_transactions import LoginTransaction
    from tests.domain.test_log_events_login import Writes

    app = domain.app("spa")
    assert domain.connection  # stored before counting
    now = domain.now
    tx = LoginTransaction(
        connection_id=domain.connection["id"], client_id=app.client_id,
        redirect_uri="https://app.example.com/callback", response_mode="query", scope="openid",
        upstream_nonce="n", browser_digest="-", created_at=now, state="s", nonce="app-nonce")
    claims = {"iss": ISSUER, "sub": "alice", "sid": "up-from-the-id-token"}
    writes = Writes(domain.table, monkeypatch)
    answer = _finish(tx, domain.connection, app.record, claims, None, now, None,
                     UpstreamAuthentication(now, None, None))
    assert writes.calls == {"transact": 1}, writes.calls  # no round trip more
    monkeypatch.undo()
    (ref,) = upstream_sessions.broker_sessions(domain.connection["id"], "up-from-the-id-token")
    cookie = next(c for c in answer.cookies if "broker_session=" in c)
    assert cookie.split("broker_session=", 1)[1].startswith(ref["sid"] + ".")
    assert ref["user_id"] == f"oidc|{domain.connection['name']}|alice"
    assert post(domain, logout_token(domain, sid="up-from-the-id-token")).sessions == 1
    assert domain.session(ref["sid"]) is None


def test_a_login_without_a_sid_claim_records_nothing(domain):
    app = domain.app("spa")
    login = domain.login(app)  # the ID token of Domain.login has no sid
    assert post(domain, logout_token(domain, sid="anything")).sessions == 0
    assert alive(domain, login)


def test_time_comes_from_the_broker_clock(domain):
    """The fixed clock is an hour ahead of the wall clock: a token issued at the broker's now
    passes, one issued at the wall clock's now is an hour old."""
    domain.advance(3600)
    app = domain.app("spa")
    domain.login(app)
    assert post(domain, logout_token(domain, sub="alice")).status == 200
    stale = logout_token(domain, sub="alice", iat=int(time.time()), exp=int(time.time()) + 120)
    assert post(domain, stale).check == "iat_too_old"
