"""The token exchange (SPEC §10) against what ends a user's tokens, against the in-memory table:

- an upstream ID token issued before Global Token Revocation, a block, or the IdP's back-channel
  logout of the user (``sub``) opens nothing afterwards (SPEC §5: the user logs in upstream again);
  one issued later does;
- the sessions the exchange creates are indexed by the upstream ``sid``, so a sid-only logout
  token from the IdP ends them (SPEC §11);
- an ID token of an upstream session the IdP logged out (its ``sid``) opens nothing afterwards
  (``upstream_session_ended``), while the user's other upstream sessions still do;
- a subject token nested too deeply to parse is a ``format`` refusal, not a crash;
- the refresh lease runs from the moment it is taken and covers the whole upstream call;
- an application the administrator disabled for the connection (``enabled_clients``) exchanges
  nothing through it, in either direction, even when ``token_exchange_clients`` lists it;
- an ID token signed by one connection's IdP claiming another's issuer is refused (signature),
  and a ``sub``-only logout token at one connection ends nothing of another connection's user.

The fake IdP, the ``Setup`` / ``Inbound`` helpers and the fixtures are
tests/domain/test_token_exchange.py's; here every connection is also enabled for the
applications it lists (``enabled_clients``), as an administrator's would be.
"""
from __future__ import annotations

import base64
import json
import uuid
from urllib.parse import urlencode

import pytest

from chalicelib import clock as broker_clock
from chalicelib.errors import OAuthError
from chalicelib.login import upstream_logout
from chalicelib.store import upstream_cutoff
from chalicelib.login.jwks_cache import jwks_cache
from tests.domain import test_token_exchange as tx
from tests.domain.test_token_exchange import Inbound, checks, events, refused
from tests.support.fake_idp import FakeIdp

FORM = "application/x-www-form-urlencoded"


@pytest.fixture()
def idp(monkeypatch):
    """tests/domain/test_token_exchange.py's: the fake IdP, its client secret as Secrets Manager
    would hand it to the refresh."""
    jwks_cache().clear()
    with FakeIdp(client_secret=tx.SECRET) as running:
        monkeypatch.setattr("chalicelib.registry.connections.connection_secret",
                            lambda connection: tx.SECRET)
        yield running
    jwks_cache().clear()


@pytest.fixture()
def setup(domain, idp) -> tx.Setup:
    return tx.Setup(domain, idp)


@pytest.fixture()
def inbound(domain, idp) -> Inbound:
    idp.clock = lambda: domain.now
    return Inbound(domain, idp)


def user_of(exchanger: Inbound, sub: str = "alice") -> str:
    return f"oidc|{exchanger.connection['name']}|{sub}"


def logout_token(upstream: FakeIdp, domain, **claims) -> str:
    body = {"iss": upstream.issuer, "aud": upstream.client_id, "iat": domain.now, "exp": domain.now + 120,
            "jti": uuid.uuid4().hex, "events": {upstream_logout.EVENT: {}}, **claims}
    return upstream.mint(body, header={"typ": "logout+jwt"})


def upstream_logout_of(connection: dict, token: str) -> upstream_logout.Outcome:
    from chalicelib import revocation

    return upstream_logout.handle(connection["name"], FORM,
                                  urlencode({"logout_token": token}).encode(),
                                  end_session=revocation.end_session)


def dead(domain, access_token: str) -> bool:
    try:
        domain.userinfo(access_token)
    except OAuthError:
        return True
    return False


def sessions_of(user_id: str, now: int) -> list:
    from chalicelib import sessions

    return sessions.sessions_of_user(user_id, now)


# --------------------------------------------------------------------------- SPEC §5: log in again

def test_global_token_revocation_makes_an_earlier_upstream_id_token_worthless(inbound, domain):
    from chalicelib import revocation

    kept = inbound.idp.mint(inbound.idp.claims())  # the application keeps the upstream ID token
    first = inbound.exchange(kept)
    user_id = user_of(inbound)
    domain.advance(5)
    revocation.revoke_user(user_id, domain.now, "global_token_revocation",
                           forget_upstream_tokens=True)
    assert dead(domain, first["access_token"])
    domain.advance(5)
    before = len(sessions_of(user_id, domain.now))

    failure = refused(lambda: inbound.exchange(kept))
    assert checks(domain) == ["issued_before_revocation"]
    assert "sign in again" in failure.description
    assert len(sessions_of(user_id, domain.now)) == before  # nothing written
    (event,) = events(domain, "ftx")
    assert event["user_id"] == user_id and kept not in json.dumps(event)
    # An ID token issued at the very second of the revocation is refused too ("at or before").
    refused(lambda: inbound.exchange(inbound.idp.mint(inbound.idp.claims(iat=domain.now - 5))))
    # Once the user signed in upstream again, its new ID token works.
    fresh = inbound.exchange(inbound.idp.mint(inbound.idp.claims()))
    assert domain.userinfo(fresh["access_token"])["sub"] == user_id


def test_revoking_without_forgetting_upstream_tokens_records_no_moment(inbound, domain):
    """Deleting a user's sessions (the Management API) keeps its upstream tokens, as Auth0 does."""
    from chalicelib import revocation

    kept = inbound.idp.mint(inbound.idp.claims())
    inbound.exchange(kept)
    revocation.revoke_user(user_of(inbound), domain.now, "sessions_deleted")
    assert upstream_cutoff.get(user_of(inbound)) is None
    assert inbound.exchange(kept)["access_token"]


def test_a_later_moment_is_never_replaced_by_an_earlier_one(domain):
    upstream_cutoff.record("oidc|c|moments", domain.now)
    upstream_cutoff.record("oidc|c|moments", domain.now - 100)
    assert upstream_cutoff.get("oidc|c|moments") == domain.now
    upstream_cutoff.record("oidc|c|moments", domain.now + 0.9)  # whole seconds
    upstream_cutoff.record("oidc|c|moments", domain.now + 7)
    assert upstream_cutoff.get("oidc|c|moments") == domain.now + 7


def test_a_blocked_user_gets_nothing_and_after_unblocking_only_a_new_login_counts(inbound,
                                                                                  domain):
    from chalicelib import cascades

    kept = inbound.idp.mint(inbound.idp.claims())
    inbound.exchange(kept)
    user_id = user_of(inbound)
    domain.advance(1)
    cascades.update_user(user_id, {"blocked": True}, domain.now)  # as PATCH /api/v2/users does
    refused(lambda: inbound.exchange(kept))
    refused(lambda: inbound.exchange(inbound.idp.mint(inbound.idp.claims())))
    assert checks(domain) == ["blocked", "blocked"]
    assert sessions_of(user_id, domain.now) == []

    domain.advance(5)
    cascades.update_user(user_id, {"blocked": False}, domain.now)
    refused(lambda: inbound.exchange(kept))
    assert "issued_before_revocation" in checks(domain)
    assert inbound.exchange(inbound.idp.mint(inbound.idp.claims()))["access_token"]


def test_the_idps_logout_of_the_user_makes_its_earlier_id_tokens_worthless(inbound, domain):
    inbound.idp.clock = lambda: domain.now
    kept = inbound.idp.mint(inbound.idp.claims())
    first = inbound.exchange(kept)
    user_id = user_of(inbound)
    domain.advance(3)

    outcome = upstream_logout_of(inbound.connection,
                                 logout_token(inbound.idp, domain, sub="alice"))
    assert outcome == upstream_logout.Outcome(200, None, 1)
    assert dead(domain, first["access_token"])
    assert upstream_cutoff.get(user_id) == domain.now  # the logout token's iat
    domain.advance(3)
    refused(lambda: inbound.exchange(kept))
    assert checks(domain) == ["issued_before_revocation"]
    assert inbound.exchange(inbound.idp.mint(inbound.idp.claims()))["access_token"]


def test_a_logout_of_one_upstream_session_records_no_moment(inbound, domain):
    """``sid`` (with or without ``sub``) ends one upstream session, not the user's others."""
    kept = inbound.idp.mint(inbound.idp.claims(sid="up-other"))
    inbound.exchange(inbound.idp.mint(inbound.idp.claims(sid="up-1")))
    for claims in ({"sid": "up-1"}, {"sid": "up-1", "sub": "alice"}):
        assert upstream_logout_of(inbound.connection,
                                  logout_token(inbound.idp, domain, **claims)).status == 200
    assert upstream_cutoff.get(user_of(inbound)) is None
    assert inbound.exchange(kept)["access_token"]


@pytest.mark.parametrize("named", [{}, {"sub": "alice"}], ids=["sid_only", "sid_and_sub"])
def test_an_id_token_of_an_upstream_session_the_idp_logged_out_opens_nothing(inbound, domain,
                                                                             named):
    """The logout ended that upstream session's broker sessions; its ID tokens, kept by the
    application or minted later, exchange for nothing more. The user's other upstream session
    and an ID token without ``sid`` still work."""
    from chalicelib.store import upstream_sessions

    kept = inbound.idp.mint(inbound.idp.claims(sid="up-1"))
    other = inbound.idp.mint(inbound.idp.claims(sid="up-2"))
    no_sid = inbound.idp.mint(inbound.idp.claims())
    first = inbound.exchange(kept)  # works until the logout
    user_id = user_of(inbound)
    domain.advance(3)

    outcome = upstream_logout_of(inbound.connection,
                                 logout_token(inbound.idp, domain, sid="up-1", **named))
    assert outcome == upstream_logout.Outcome(200, None, 1)
    assert dead(domain, first["access_token"])
    marker = upstream_sessions.ended(inbound.connection["id"], "up-1")
    assert marker is not None and marker["iat"] == domain.now  # the logout token's iat
    domain.advance(3)
    before = len(sessions_of(user_id, domain.now))
    entries = len(upstream_sessions.broker_sessions(inbound.connection["id"], "up-1"))

    failure = refused(lambda: inbound.exchange(kept))
    assert checks(domain) == ["upstream_session_ended"]
    assert "sign in again" in failure.description and kept not in failure.description
    # Issued after the logout, same upstream session: refused too (nothing but the sid counts).
    refused(lambda: inbound.exchange(inbound.idp.mint(inbound.idp.claims(sid="up-1"))))
    assert checks(domain) == ["upstream_session_ended"] * 2
    assert len(sessions_of(user_id, domain.now)) == before  # nothing written
    assert len(upstream_sessions.broker_sessions(inbound.connection["id"], "up-1")) == entries
    assert upstream_cutoff.get(user_id) is None

    assert domain.userinfo(inbound.exchange(other)["access_token"])["sub"] == user_id
    assert domain.userinfo(inbound.exchange(no_sid)["access_token"])["sub"] == user_id
    # The same sid at another connection is another upstream session.
    assert upstream_sessions.ended("con_elsewhere", "up-1") is None


def test_an_ended_marker_that_cannot_be_written_is_a_503_that_ends_nothing(inbound, domain,
                                                                         monkeypatch):
    """Written before any session ends: the IdP's retry (the jti given back) finishes the job."""
    from chalicelib.errors import ServiceUnavailable
    from chalicelib.store import upstream_sessions

    kept = inbound.idp.mint(inbound.idp.claims(sid="up-1"))
    first = inbound.exchange(kept)
    token = logout_token(inbound.idp, domain, sid="up-1")
    real = upstream_sessions.record_ended

    def unavailable(*args, **kwargs):
        raise ServiceUnavailable("A dependency is temporarily unavailable")

    monkeypatch.setattr(upstream_sessions, "record_ended", unavailable)
    with pytest.raises(ServiceUnavailable):
        upstream_logout_of(inbound.connection, token)
    assert not dead(domain, first["access_token"])
    monkeypatch.setattr(upstream_sessions, "record_ended", real)
    assert upstream_logout_of(inbound.connection, token) == upstream_logout.Outcome(200, None, 1)
    assert dead(domain, first["access_token"])
    refused(lambda: inbound.exchange(kept))
    assert checks(domain) == ["upstream_session_ended"]


@pytest.mark.parametrize("sid", ["up-live", None], ids=["with_sid", "without_sid"])
def test_a_failed_audience_check_is_told_apart_from_the_session_check(inbound, domain,
                                                                      monkeypatch, sid):
    """The API deleted while the exchange ran: ``audience``, whether or not the ID token has a
    ``sid`` check in the transaction before it."""
    from chalicelib.management.resource_servers import create_resource_server
    from chalicelib.store import resource_servers

    api = create_resource_server({"name": "orders", "identifier": "https://orders.example.com/",
                                  "scopes": [{"value": "read:orders"}]})
    real = resource_servers.still_exists_check
    monkeypatch.setattr(resource_servers, "still_exists_check",
                        lambda identifier, server_id: real(identifier, "rs_deleted"))
    claims = inbound.idp.claims(sid=sid) if sid else inbound.idp.claims()
    refused(lambda: inbound.exchange(inbound.idp.mint(claims), audience=api["identifier"]),
            "invalid_target")
    assert checks(domain) == ["audience"]


# --------------------------------------------------------------------------- SPEC §11: by sid

def test_a_sid_only_logout_from_the_idp_ends_a_session_the_exchange_created(inbound, domain):
    from chalicelib.store import upstream_sessions

    answer = inbound.exchange(inbound.idp.mint(inbound.idp.claims(sid="up-session-1")))
    other = inbound.exchange(inbound.idp.mint(inbound.idp.claims(sid="up-session-2")))
    sid = tx._claims(answer["access_token"])["sid"]
    (ref,) = upstream_sessions.broker_sessions(inbound.connection["id"], "up-session-1")
    assert ref["sid"] == sid and ref["user_id"] == user_of(inbound)

    outcome = upstream_logout_of(inbound.connection,
                                 logout_token(inbound.idp, domain, sid="up-session-1"))
    assert outcome == upstream_logout.Outcome(200, None, 1)
    assert domain.session(sid) is None and dead(domain, answer["access_token"])
    assert domain.userinfo(other["access_token"])["sub"] == user_of(inbound)


def test_the_sid_entry_rides_in_the_exchanges_transaction(inbound, domain):
    """Refused (a blocked user): no index entry either."""
    from chalicelib.store import upstream_sessions
    from chalicelib.store import users as user_records

    inbound.exchange()
    domain.table.update(*user_records.key(user_of(inbound)), "SET blocked = :t",
                        values={":t": True}, return_values="NONE")
    refused(lambda: inbound.exchange(inbound.idp.mint(inbound.idp.claims(sid="up-blocked"))))
    assert upstream_sessions.broker_sessions(inbound.connection["id"], "up-blocked") == []


# --------------------------------------------------------------------------- the subject's format

def test_a_deeply_nested_subject_token_is_a_format_refusal(inbound, domain):
    payload = base64.urlsafe_b64encode(b"[" * 100_000).rstrip(b"=").decode()
    token = "eyJhbGciOiJSUzI1NiJ9." + payload + ".c2ln"
    refused(lambda: inbound.exchange(token[:16 * 1024]))  # the size limit is invalid_request's
    # Within the 16 KiB limit: nested deeper than the interpreter's recursion limit.
    payload = base64.urlsafe_b64encode(b"[" * 10_000).rstrip(b"=").decode()
    failure = refused(lambda: inbound.exchange("eyJhbGciOiJSUzI1NiJ9." + payload + ".c2ln"))
    assert failure.error == "invalid_grant"
    assert checks(domain)[0] == "format"
    assert len(events(domain, "ftx")) == 2


# --------------------------------------------------------------------------- the refresh lease

def _expiring(vaulted: tx.Setup) -> None:
    vaulted.store(expires_in=30)  # within the 60 s margin: the exchange refreshes first


def _lease_until(vaulted: tx.Setup) -> int:
    from chalicelib.store import vault as vault_records

    record = vault_records.get(vaulted.user_id, vaulted.connection["id"], vaulted.domain.now)
    return int(record["lease_until"])


def test_the_lease_runs_from_when_it_is_taken_not_from_the_requests_start(setup, domain,
                                                                         monkeypatch):
    """A slow first read (KMS) then a slow upstream: a second caller, arriving when a lease
    counted from the request's start would have run out, cannot take it over."""
    from chalicelib import vault
    from chalicelib.login import upstream

    _expiring(setup)
    real_read, real_refresh = vault.read, upstream.refresh_tokens
    reads = []

    def slow_first_read(*args, **kwargs):
        if not reads:
            domain.advance(8)
        reads.append(1)
        return real_read(*args, **kwargs)

    second_caller = []

    def slow_upstream(*args, **kwargs):
        domain.advance(8)  # request start + 16 s: inside the lease's 15 s from when it was taken
        second_caller.append(vault.take_refresh_lease(setup.connection, setup.user_id,
                                                      broker_clock.now_int()))
        return real_refresh(*args, **kwargs)

    monkeypatch.setattr(vault, "read", slow_first_read)
    monkeypatch.setattr(upstream, "refresh_tokens", slow_upstream)
    answer = setup.exchange()
    assert second_caller == [None]
    assert setup.idp.refresh_calls == 1 and answer["access_token"] == setup.idp.access_tokens[-1]


def test_a_lease_too_short_for_the_upstream_call_is_taken_again(setup, domain, monkeypatch):
    """A slow secret read leaves less of the lease than the upstream call's deadline: given back,
    taken again, and the upstream call then has the whole deadline under its lease."""
    from chalicelib.login import token_exchange, upstream
    from chalicelib.netguard import TOTAL_TIMEOUT

    _expiring(setup)
    secret_reads = []

    def slow_first_secret(connection):
        if not secret_reads:
            domain.advance(6)  # 15 - 6 = 9 s left: less than the 10 s deadline
        secret_reads.append(1)
        return tx.SECRET

    left_at_call = []
    real_refresh = upstream.refresh_tokens

    def upstream_call(*args, **kwargs):
        left_at_call.append(_lease_until(setup) - broker_clock.now())
        return real_refresh(*args, **kwargs)

    monkeypatch.setattr("chalicelib.registry.connections.connection_secret", slow_first_secret)
    monkeypatch.setattr(upstream, "refresh_tokens", upstream_call)
    answer = setup.exchange()
    assert len(secret_reads) == 2 and len(left_at_call) == 1
    assert left_at_call[0] >= token_exchange.LEASE_LEFT_FOR_UPSTREAM > TOTAL_TIMEOUT
    assert setup.idp.refresh_calls == 1 and answer["access_token"] == setup.idp.access_tokens[-1]


def test_a_lease_that_keeps_running_short_is_a_503_without_an_upstream_call(setup, domain,
                                                                           monkeypatch):
    from chalicelib import vault

    stored = setup.store(expires_in=30)

    def slow_secret(connection):
        domain.advance(6)
        return tx.SECRET

    monkeypatch.setattr("chalicelib.registry.connections.connection_secret", slow_secret)
    refused(setup.exchange, "temporarily_unavailable")
    assert checks(domain) == ["refresh_lease"] and setup.idp.refresh_calls == 0
    # The lease was given back: the next caller may refresh at once.
    assert vault.take_refresh_lease(setup.connection, setup.user_id, domain.now) is not None
    assert stored["refresh_token"] in setup.idp.refresh_tokens  # never spent


def test_the_lease_outlasts_the_upstream_deadline():
    from chalicelib import vault
    from chalicelib.login import token_exchange
    from chalicelib.netguard import TOTAL_TIMEOUT

    assert vault.LEASE_SECONDS > token_exchange.LEASE_LEFT_FOR_UPSTREAM > TOTAL_TIMEOUT


# --------------------------------------------------------------------------- enabled_clients

def test_an_application_disabled_for_the_connection_gets_no_upstream_token(domain, idp,
                                                                          monkeypatch):
    """Listed in ``token_exchange_clients``, not in ``enabled_clients``."""
    original = tx.new_connection
    monkeypatch.setattr(tx, "new_connection", lambda *args, **kwargs: original(
        *args, enabled=[], **kwargs))
    disabled = tx.Setup(domain, idp)
    disabled.store(expires_in=30)  # would be refreshed upstream
    failure = refused(disabled.exchange, "unauthorized_client")
    assert checks(domain) == ["enabled_clients"]
    assert disabled.access_token not in failure.description and idp.refresh_calls == 0


def test_an_application_disabled_for_the_connection_gets_no_broker_tokens(domain, idp):
    idp.clock = lambda: domain.now
    app = domain.app("regular_web", grant_types=["authorization_code"])
    connection = tx.new_connection(domain, idp, allowed=[app.client_id], enabled=[],
                                    storage=None)
    disabled = Inbound.__new__(Inbound)
    disabled.domain, disabled.idp, disabled.app, disabled.connection = domain, idp, app, connection
    refused(disabled.exchange, "unauthorized_client")
    assert checks(domain) == ["enabled_clients"]
    assert not tx._users_of(domain, connection)


def test_enabled_but_not_listed_is_still_refused(domain, idp):
    idp.clock = lambda: domain.now
    app = domain.app("regular_web", grant_types=["authorization_code"])
    tx.new_connection(domain, idp, allowed=[], enabled=[app.client_id], storage=None)
    unlisted = Inbound.__new__(Inbound)
    unlisted.domain, unlisted.idp, unlisted.app = domain, idp, app
    refused(unlisted.exchange, "unauthorized_client")
    assert checks(domain) == ["token_exchange_clients"]


# --------------------------------------------------------------------------- across connections

def test_an_id_token_signed_by_a_claiming_bs_issuer_is_refused(domain, idp):
    """A client allowed on both connections; A's IdP mints a token with B's ``iss`` and ``aud``:
    B's keys verify it, and refuse it."""
    from chalicelib.keys import verify_jwt

    idp.clock = lambda: domain.now
    with FakeIdp(client_id="broker-at-b") as idp_b:
        idp_b.clock = idp.clock
        app = domain.app("regular_web", grant_types=["authorization_code"])
        conn_a = tx.new_connection(domain, idp, allowed=[app.client_id], storage=None)
        conn_b = tx.new_connection(domain, idp_b, allowed=[app.client_id], storage=None)
        both = Inbound.__new__(Inbound)
        both.domain, both.idp, both.app = domain, idp, app
        forged = idp.mint(idp.claims(iss=idp_b.issuer, aud=idp_b.client_id))
        refused(lambda: both.exchange(forged))
        assert checks(domain) == ["signature"]
        assert tx._users_of(domain, conn_b) == []
        # A's own token maps to A's user, never B's.
        answer = both.exchange(idp.mint(idp.claims()))
        assert verify_jwt(answer["access_token"], typ="at+jwt").claims["sub"] == (
            f"oidc|{conn_a['name']}|alice")


def test_a_sub_only_logout_at_a_ends_nothing_of_bs_user_with_that_sub(domain, idp):
    """Same ``sub`` at two connections: two users. A's logout token, at A's URL, ends A's user's
    sessions only; the same token at B's URL is refused (B's issuer and keys)."""
    idp.clock = lambda: domain.now
    with FakeIdp() as idp_b:
        idp_b.clock = idp.clock
        app = domain.app("regular_web", grant_types=["authorization_code"])
        ina = Inbound.__new__(Inbound)
        ina.domain, ina.idp, ina.app = domain, idp, app
        ina.connection = tx.new_connection(domain, idp, allowed=[app.client_id], storage=None)
        inb = Inbound.__new__(Inbound)
        inb.domain, inb.idp, inb.app = domain, idp_b, app
        inb.connection = tx.new_connection(domain, idp_b, allowed=[app.client_id], storage=None)
        at_a, at_b = ina.exchange(), inb.exchange()
        assert user_of(ina) != user_of(inb)

        token = logout_token(idp, domain, sub="alice")
        assert upstream_logout_of(inb.connection, token).status == 400
        assert upstream_logout_of(ina.connection, token) == upstream_logout.Outcome(200, None, 1)
        assert dead(domain, at_a["access_token"])
        assert domain.userinfo(at_b["access_token"])["sub"] == user_of(inb)
        assert len(sessions_of(user_of(inb), domain.now)) == 1
        assert upstream_cutoff.get(user_of(inb)) is None
        assert inb.exchange()["access_token"]
