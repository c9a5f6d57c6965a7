"""Log events of logins and token grants (SPEC §9), against the in-memory table: a login, a
single sign-on, a code exchange and a refresh carry their success event in the transaction they
commit anyway (no write more), every refusal is one failure event naming the rule that refused it,
and a log write that fails never fails the request. The HTTP side (the callback's failures, client
authentication, client credentials) is tests/api/test_log_events_login.py's."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from chalicelib.errors import OAuthError
from chalicelib.store import log_events
from chalicelib.store.unit_of_work import Write

DAY = 86400


def events(domain, type_: str | None = None) -> list[dict]:
    """Every stored event of this test's own table (of the last week), newest first; events of
    one millisecond (the fixed clock) in no particular order."""
    found = log_events.newest_first(log_events.days_back(domain.now, 7))
    return [e for e in found if type_ is None or e["type"] == type_]


def by_check(found: list[dict]) -> dict[str, dict]:
    checks = {e["details"]["check"]: e for e in found}
    assert len(checks) == len(found), found
    return checks


class Writes:
    """The table's write calls, by method: a success event must add none."""

    def __init__(self, table, monkeypatch):
        self.calls: Counter = Counter()
        for name in ("put", "put_new", "update", "delete", "transact"):
            original = getattr(table, name)

            def counting(*args, _name=name, _original=original, **kwargs):
                self.calls[_name] += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(table, name, counting)


def refused(call, error: str = "invalid_grant") -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call()
    assert caught.value.error == error, caught.value
    return caught.value


# --------------------------------------------------------------------------- logins

def test_a_login_is_one_transaction_with_its_s_event_in_it(domain, monkeypatch):
    app = domain.app("spa")
    assert domain.connection  # stored before counting
    writes = Writes(domain.table, monkeypatch)
    login = domain.login(app, email="alice@corp.example")
    assert writes.calls == {"transact": 1}, writes.calls  # the event rode along
    (event,) = events(domain, "s")
    assert event["connection"] == domain.connection["name"]
    assert event["connection_id"] == domain.connection["id"]
    assert event["client_id"] == app.client_id and event["client_name"] == "domain-spa"
    assert event["user_id"] == login.user_id
    assert event["user_name"] == "alice@corp.example"
    assert event["details"]["silent"] is False
    assert event["strategy"] == "oidc" and event["strategy_type"] == "enterprise"
    # Found through the user, too (the users index).
    assert [e["log_id"] for e in log_events.of_user(login.user_id)] == [event["log_id"]]
    assert login.code not in json.dumps(event)


def test_a_blocked_users_login_stores_no_s_event(domain):
    from chalicelib import cascades
    from chalicelib.login.callback import LoginFailed

    app = domain.app("spa")
    user_id = domain.login(app).user_id
    cascades.update_user(user_id, {"blocked": True}, domain.now)
    with pytest.raises(LoginFailed) as caught:
        domain.login(app)
    # The cancelled transaction took its event with it; the callback records the f event
    # (tests/api/test_log_events_login.py) from this check.
    assert caught.value.check == "blocked"
    assert len(events(domain, "s")) == 1


def test_single_sign_on_rides_a_silent_s_event_and_a_blocked_user_is_an_f(domain, monkeypatch):
    from chalicelib import sessions
    from chalicelib.login.authorize import AppError
    from chalicelib.store.dynamo import table
    from chalicelib.store.users import key

    app, other = domain.app("spa"), domain.app("regular_web")
    login = domain.login(app)
    session = sessions.session_from_cookie(login.cookie, domain.now)
    writes = Writes(domain.table, monkeypatch)
    sso = domain.sso(other, login.cookie, session=session)
    assert writes.calls == {"transact": 1}, writes.calls
    (event,) = [e for e in events(domain, "s") if e["client_id"] == other.client_id]
    assert event["user_id"] == login.user_id
    assert event["connection"] == domain.connection["name"]
    assert event["connection_id"] == domain.connection["id"]
    assert event["details"]["silent"] is True
    assert sso.code not in json.dumps(event)

    table().update(*key(login.user_id), "SET blocked = :b", values={":b": True})
    with pytest.raises(AppError):
        domain.sso(other, login.cookie)
    (failed,) = events(domain, "f")
    assert failed["details"]["check"] == "blocked" and failed["details"]["silent"] is True
    assert failed["user_id"] == login.user_id and failed["client_id"] == other.client_id
    assert len(events(domain, "s")) == 2  # the refused SSO stored no success


# --------------------------------------------------------------------------- code exchange

def test_a_code_exchange_rides_seacft(domain, monkeypatch):
    app = domain.app("spa")
    login = domain.login(app, email="alice@corp.example")
    writes = Writes(domain.table, monkeypatch)
    tokens = domain.exchange(login)
    assert writes.calls == {"transact": 1}, writes.calls
    (event,) = events(domain, "seacft")
    assert event["client_id"] == app.client_id and event["user_id"] == login.user_id
    assert event["connection"] == domain.connection["name"]
    assert event["user_name"] == "alice@corp.example"
    assert event["details"]["scope"] == "openid profile email offline_access"
    text = json.dumps(event)
    for secret in (login.code, login.verifier, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in text


def test_code_exchange_failures_are_feacft_naming_the_check(domain):
    app, other = domain.app("spa"), domain.app("spa")
    login = domain.login(app)
    refused(lambda: domain.exchange(login, verifier="x" * 43))
    refused(lambda: domain.exchange(login, redirect_uri="https://app.example.com/other"))
    refused(lambda: domain.exchange(login, app=other))
    refused(lambda: domain.exchange(login, code="not-a-code"))
    assert domain.exchange(login)["access_token"]
    refused(lambda: domain.exchange(login))  # replayed: the grant is revoked
    failures = events(domain, "feacft")
    checks = by_check(failures)
    assert set(checks) == {"pkce", "redirect_uri", "client", "code", "code_reuse"}
    assert all(e["details"]["error"] == "invalid_grant" for e in failures)
    pkce = checks["pkce"]
    assert pkce["details"]["reason"] == "code_verifier does not match the code_challenge"
    assert pkce["user_id"] == login.user_id and pkce["client_id"] == app.client_id
    assert pkce["connection"] == domain.connection["name"]
    assert checks["client"]["client_id"] == other.client_id
    assert "user_id" not in checks["code"]  # an unknown code names nobody
    replay = checks["code_reuse"]["details"]
    assert replay["reuse_detected"] is True and replay["grant_revoked"] is True
    assert len(events(domain, "seacft")) == 1
    for event in failures:
        assert login.code not in json.dumps(event) and login.verifier not in json.dumps(event)


# --------------------------------------------------------------------------- refresh

def test_a_refresh_rides_sertft(domain, monkeypatch):
    app = domain.app("spa")
    tokens = domain.tokens(app)
    writes = Writes(domain.table, monkeypatch)
    refreshed = domain.refresh(app, tokens["refresh_token"])
    assert writes.calls == {"transact": 1}, writes.calls
    (event,) = events(domain, "sertft")
    assert event["client_id"] == app.client_id
    assert event["user_id"] == tokens["login"].user_id
    assert event["details"]["rotating"] is True
    text = json.dumps(event)
    assert tokens["refresh_token"] not in text and refreshed["refresh_token"] not in text


def test_refresh_reuse_is_an_fertft_saying_the_family_was_revoked(domain):
    app = domain.app("spa")
    tokens = domain.tokens(app)
    domain.refresh(app, tokens["refresh_token"])
    refused(lambda: domain.refresh(app, tokens["refresh_token"]))
    (event,) = events(domain, "fertft")
    assert event["details"]["check"] == "reuse"
    assert event["details"]["reuse_detected"] is True
    assert event["details"]["family_revoked"] is True
    assert event["details"]["error"] == "invalid_grant"
    assert event["user_id"] == tokens["login"].user_id and event["client_id"] == app.client_id
    assert tokens["refresh_token"] not in json.dumps(event)


def test_refresh_of_a_blocked_user_and_of_an_expired_token_are_fertft(domain):
    from chalicelib.store.dynamo import table
    from chalicelib.store.users import key

    app = domain.set_refresh_policy(domain.app("regular_web"), rotation_type="non-rotating",
                                    token_lifetime=10 * DAY, idle_token_lifetime=2 * DAY)
    tokens = domain.tokens(app)
    user_id = tokens["login"].user_id
    # Blocked without the revocation (still in flight): the transaction's user check refuses,
    # the user is read, found blocked.
    table().update(*key(user_id), "SET blocked = :b", values={":b": True})
    refused(lambda: domain.refresh(app, tokens["refresh_token"]))
    table().update(*key(user_id), "SET blocked = :b", values={":b": False})
    domain.advance(2 * DAY + 1)
    refused(lambda: domain.refresh(app, tokens["refresh_token"]))
    checks = by_check(events(domain, "fertft"))
    assert set(checks) == {"blocked", "expired"}, checks
    assert checks["blocked"]["user_id"] == user_id
    assert checks["blocked"]["details"]["reason"] == "user is blocked"
    assert not events(domain, "sertft")


# --------------------------------------------------------------------------- log writes failing

def _oversized_rider(event, expires_at):
    """A log write that DynamoDB refuses (over 400 KB): the transaction carrying it fails."""
    return Write.put({"pk": "LOGS#x", "sk": event["log_id"], "pad": "x" * 500_000})


def test_a_failing_log_write_fails_no_login_exchange_or_refresh(domain, monkeypatch):
    monkeypatch.setattr(log_events, "put_operation", _oversized_rider)
    app = domain.app("spa")
    login = domain.login(app)
    tokens = domain.exchange(login)
    assert domain.refresh(app, tokens["refresh_token"])["access_token"]
    assert domain.userinfo(tokens["access_token"])["sub"] == login.user_id
    assert events(domain) == []  # nothing stored, nothing broken
