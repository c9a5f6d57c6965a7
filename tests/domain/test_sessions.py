"""Broker sessions (SPEC §2.4 session lifetimes, §3.3 step 6, §4 logout): created by a login,
reused by single sign-on (which records the application and slides the idle expiry), ended by
idleness, by their absolute lifetime and by logout, and never revived once ended."""
from __future__ import annotations

import pytest

from chalicelib import sessions
from chalicelib.login.authorize import AppError
from chalicelib.provider import lifetimes

HOUR = 3600


def sso_refused(domain, app, cookie=None, *, session=None) -> AppError:
    with pytest.raises(AppError) as caught:
        domain.sso(app, cookie, session=session)
    return caught.value


def test_a_login_creates_a_session_the_cookie_names(domain):
    app = domain.app("spa")
    login = domain.login(app)
    session = sessions.session_from_cookie(login.cookie, domain.now)
    assert session.sid == login.sid and session.user_id == login.user_id
    assert session.connection_id == domain.connection["id"]
    assert session.clients == (app.client_id,)
    assert session.expires_at == domain.now + lifetimes.SESSION_ABSOLUTE
    assert session.idle_expires_at == domain.now + lifetimes.SESSION_IDLE
    item = domain.table.get(*sessions.session_records.key(login.sid))
    assert login.cookie.partition(".")[2] not in str(item)  # only the secret's digest is kept


@pytest.mark.parametrize("forge", [
    lambda cookie: cookie.partition(".")[0] + ".not-the-secret",
    lambda cookie: cookie.partition(".")[0],
    lambda cookie: "no-such-sid." + cookie.partition(".")[2],
    lambda cookie: cookie + "x" * 200,
    lambda cookie: "",
])
def test_a_forged_cookie_names_no_session(domain, forge):
    login = domain.login(domain.app("spa"))
    assert sessions.session_from_cookie(forge(login.cookie), domain.now) is None


def test_single_sign_on_records_the_application_and_slides_the_idle_expiry(domain):
    web, spa = domain.app("regular_web"), domain.app("spa")
    login = domain.login(web)
    started = domain.now
    domain.advance(2 * 24 * HOUR)
    reused = domain.sso(spa, login.cookie, scope="openid offline_access")
    assert reused.sid == login.sid and reused.user_id == login.user_id
    session = sessions.session_from_cookie(login.cookie, domain.now)
    assert set(session.clients) == {web.client_id, spa.client_id}
    assert session.idle_expires_at == domain.now + lifetimes.SESSION_IDLE
    assert session.expires_at == started + lifetimes.SESSION_ABSOLUTE  # never slides
    assert session.auth_time == started  # the upstream login's, for max_age
    tokens = domain.exchange(reused)
    grant_id = domain.refresh_item(tokens["refresh_token"])["grant_id"]
    assert grant_id in domain.session(login.sid)["grants"]


def test_an_idle_session_ends(domain):
    app = domain.app("spa")
    login = domain.login(app)
    domain.advance(lifetimes.SESSION_IDLE - 1)
    assert domain.sso(app, login.cookie).sid == login.sid  # used: slides again
    domain.advance(lifetimes.SESSION_IDLE - 1)
    stale = sessions.session_from_cookie(login.cookie, domain.now)
    assert stale is not None
    domain.advance(1)
    assert sessions.session_from_cookie(login.cookie, domain.now) is None
    # /authorize read it a moment earlier: the SSO transaction's own condition refuses it.
    assert sso_refused(domain, app, session=stale).error == "login_required"


def test_a_session_ends_at_its_absolute_lifetime_however_often_it_is_used(domain):
    app = domain.app("spa")
    login = domain.login(app)
    for _ in range(3):  # every two days: never idle
        domain.advance(2 * 24 * HOUR)
        domain.sso(app, login.cookie)
    domain.advance(24 * HOUR - 1)  # 7 days less a second
    stale = sessions.session_from_cookie(login.cookie, domain.now)
    assert stale is not None
    assert min(stale.idle_expires_at, stale.expires_at) == domain.now + 1
    domain.advance(1)
    assert sessions.session_from_cookie(login.cookie, domain.now) is None
    assert sso_refused(domain, app, session=stale).error == "login_required"


def test_the_tenant_settings_decide_the_lifetimes(domain):
    from chalicelib.management.tenant_settings import update_tenant_settings

    update_tenant_settings({"session_lifetime": 2, "idle_session_lifetime": 1})
    app = domain.app("spa")
    login = domain.login(app)
    session = sessions.session_from_cookie(login.cookie, domain.now)
    assert (session.expires_at, session.idle_expires_at) == (domain.now + 2 * HOUR,
                                                            domain.now + HOUR)
    domain.advance(HOUR)
    assert sessions.session_from_cookie(login.cookie, domain.now) is None


def test_logout_ends_the_session_and_it_cannot_be_revived(domain):
    from chalicelib.logout import rp_logout

    app = domain.app("regular_web", allowed_logout_urls=["https://app.example.com/bye"])
    login = domain.login(app, scope="openid")
    tokens = domain.exchange(login)
    stale = sessions.session_from_cookie(login.cookie, domain.now)
    answer = rp_logout.auth0_logout({"client_id": [app.client_id],
                                     "returnTo": ["https://app.example.com/bye"]},
                                    login.cookie, domain.now)
    assert answer.location == "https://app.example.com/bye"
    assert domain.session(login.sid) is None
    assert sessions.session_from_cookie(login.cookie, domain.now) is None
    with pytest.raises(Exception) as caught:
        domain.userinfo(tokens["access_token"])
    assert caught.value.error == "invalid_token"
    # An /authorize that read the session just before the logout cannot add to the tombstone.
    grants_before = set(domain.table.get(*sessions.session_records.key(login.sid))["grants"])
    assert sso_refused(domain, app, session=stale).error == "login_required"
    item = domain.table.get(*sessions.session_records.key(login.sid))
    assert set(item["grants"]) == grants_before and item["revoked_at"]
    assert item["end_completed_at"]


def test_a_users_session_list_holds_only_live_sessions(domain):
    from chalicelib import revocation

    app = domain.app("spa")
    first, second = domain.login(app), domain.login(app)
    domain.login(app, sub="bob")
    listed = {s["sid"] for s in sessions.sessions_of_user(first.user_id, domain.now)}
    assert listed == {first.sid, second.sid}
    revocation.end_session(first.sid, domain.now, reason="rp_logout")
    assert [s["sid"] for s in sessions.sessions_of_user(first.user_id, domain.now)] == [second.sid]
    domain.advance(lifetimes.SESSION_IDLE)
    assert sessions.sessions_of_user(first.user_id, domain.now) == []
