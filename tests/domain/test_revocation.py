"""Revocation (SPEC §2.4, §4, §5): ``/oauth/revoke`` kills a token family and nothing else; ending
a session kills its online grants (a plain logout) or all of them (session deletion, Global Token
Revocation); revoking, blocking or deleting a user ends everything it has."""
from __future__ import annotations

import pytest

from chalicelib import revocation
from chalicelib.errors import OAuthError
from chalicelib.provider import grant_store


@pytest.fixture()
def sent(monkeypatch):
    """Back-channel logout messages, caught where they would go to SQS."""
    from chalicelib.logout import backchannel

    messages: list[dict] = []
    monkeypatch.setattr(backchannel, "_send", lambda message, **_: messages.append(message))
    return messages


def refused(call, error: str = "invalid_grant") -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call()
    assert caught.value.error == error, caught.value
    return caught.value


def revoked_for(domain, grant_id: str) -> str | None:
    return (domain.grant(grant_id) or {}).get("revoked_for")


def code_is_dead(domain, login) -> bool:
    try:
        domain.exchange(login)
    except OAuthError as exc:
        assert exc.error == "invalid_grant"
        return True
    return False


def revoke(domain, app, token: str, hint: str | None = None) -> None:
    from chalicelib.provider.revoke import revoke_request

    form = {"client_id": app.client_id, "token": token}
    if hint:
        form["token_type_hint"] = hint
    revoke_request(form, None, domain.now)


# --------------------------------------------------------------------------- /oauth/revoke

@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token"])
def test_revoking_a_refresh_token_revokes_its_family(domain, hint):
    app = domain.app("spa")
    tokens = domain.tokens(app)
    rotated = domain.refresh(app, tokens["refresh_token"])
    grant_id = domain.refresh_item(rotated["refresh_token"])["grant_id"]
    revoke(domain, app, rotated["refresh_token"], hint)
    assert revoked_for(domain, grant_id) == "token_revoked"
    refused(lambda: domain.refresh(app, rotated["refresh_token"]))
    for access in (tokens["access_token"], rotated["access_token"]):
        refused(lambda access=access: domain.userinfo(access), "invalid_token")
    revoke(domain, app, rotated["refresh_token"], hint)  # idempotent


def test_revoking_an_access_token_revokes_its_grant(domain):
    app = domain.app("spa")
    tokens = domain.tokens(app)
    revoke(domain, app, tokens["access_token"], "refresh_token")  # a wrong hint still finds it
    refused(lambda: domain.refresh(app, tokens["refresh_token"]))
    refused(lambda: domain.userinfo(tokens["access_token"]), "invalid_token")


def test_another_clients_token_revokes_nothing(domain):
    app, other = domain.app("spa"), domain.app("spa")
    tokens = domain.tokens(app)
    for token in (tokens["refresh_token"], tokens["access_token"]):
        refused(lambda token=token: revoke(domain, other, token), "invalid_request")
    assert domain.userinfo(tokens["access_token"])
    assert domain.refresh(app, tokens["refresh_token"])["refresh_token"]


@pytest.mark.parametrize("token", ["garbage", "a.b.c", pytest.param("x" * 9000, id="oversize")])
def test_an_unknown_token_is_not_an_error(domain, token):
    app = domain.app("spa")
    tokens = domain.tokens(app)
    revoke(domain, app, token)
    assert domain.refresh(app, tokens["refresh_token"])["refresh_token"]


def test_revoking_a_token_ends_no_session_and_notifies_no_one(domain, sent):
    app = domain.app("spa")
    other = domain.app("regular_web",
                       oidc_logout={"backchannel_logout_urls": ["https://rp.example/bcl"]})
    tokens = domain.tokens(app)
    cookie = tokens["login"].cookie
    domain.exchange(domain.sso(other, cookie))
    revoke(domain, app, tokens["refresh_token"])
    assert sent == []
    assert domain.session(tokens["login"].sid) is not None
    assert domain.exchange(domain.sso(app, cookie))["access_token"]  # SSO still works


# --------------------------------------------------------------------------- ending a session

def test_a_plain_logout_revokes_online_grants_and_offline_ones_survive(domain, sent):
    web = domain.app("regular_web")
    other = domain.app("regular_web",
                       oidc_logout={"backchannel_logout_urls": ["https://rp.example/bcl"]})
    online = domain.tokens(web, scope="openid")
    offline = domain.exchange(domain.sso(other, online["login"].cookie,
                                         scope="openid offline_access"))
    sid = online["login"].sid

    ended = revocation.end_session(sid, domain.now, reason="rp_logout", initiator_client=web.client_id)
    assert ended["sid"] == sid
    assert domain.session(sid) is None
    refused(lambda: domain.userinfo(online["access_token"]), "invalid_token")
    # offline_access survives a plain logout, as Keycloak's offline sessions do.
    assert domain.refresh(other, offline["refresh_token"])["access_token"]
    assert sent == [{"client_id": other.client_id, "url": "https://rp.example/bcl",
                     "sub": online["login"].user_id, "sid": sid, "attempt": 0}]
    assert revocation.end_session(sid, domain.now, reason="rp_logout") is None  # once


def test_ending_a_session_notifies_every_application_but_the_initiator(domain, sent):
    urls = {"oidc_logout": {"backchannel_logout_urls": ["https://rp.example/bcl"]}}
    first, second = domain.app("regular_web", **urls), domain.app("regular_web", **urls)
    login = domain.tokens(first)["login"]
    domain.exchange(domain.sso(second, login.cookie))
    revocation.end_session(login.sid, domain.now, reason="rp_logout",
                           initiator_client=first.client_id)
    assert [m["client_id"] for m in sent] == [second.client_id]


def test_deleting_a_session_revokes_its_offline_grants_too(domain):
    app, other = domain.app("spa"), domain.app("spa")
    first = domain.tokens(app)
    second = domain.tokens(other)  # another session of the same user
    revocation.end_session(first["login"].sid, domain.now, reason="session_deleted",
                           include_offline=True, finish_interrupted=True)
    refused(lambda: domain.refresh(app, first["refresh_token"]))
    assert domain.session(second["login"].sid) is not None
    assert domain.refresh(other, second["refresh_token"])["refresh_token"]


def test_an_interrupted_end_is_finished_by_a_retry(domain, sent, monkeypatch):
    """The tombstone is written first; a failure before the grants are revoked leaves a revoked
    session without ``end_completed_at``, and a retry finishes the job."""
    from chalicelib.errors import ServiceUnavailable
    from chalicelib.logout import backchannel

    app = domain.app("regular_web",
                     oidc_logout={"backchannel_logout_urls": ["https://rp.example/bcl"]})
    tokens = domain.tokens(app, scope="openid")
    sid = tokens["login"].sid

    def outage(*_args, **_kwargs):
        raise ServiceUnavailable("sqs is down")

    monkeypatch.setattr(backchannel, "queue_for_session", outage)
    with pytest.raises(ServiceUnavailable):
        revocation.end_session(sid, domain.now, reason="rp_logout")
    monkeypatch.undo()
    from chalicelib import sessions

    assert domain.session(sid) is None  # ended for the browser at once
    assert sessions.unfinished_end(sid) is not None
    assert revocation.end_session(sid, domain.now, reason="rp_logout") is None  # not a retry
    monkeypatch.setattr(backchannel, "_send", lambda message, **_: sent.append(message))
    assert revocation.end_session(sid, domain.now, reason="rp_logout", finish_interrupted=True)
    assert sessions.unfinished_end(sid) is None
    assert [m["sid"] for m in sent] == [sid]
    refused(lambda: domain.userinfo(tokens["access_token"]), "invalid_token")


# --------------------------------------------------------------------------- a user

def test_revoking_a_user_ends_every_session_and_grant(domain, sent):
    web = domain.app("regular_web",
                     oidc_logout={"backchannel_logout_urls": ["https://rp.example/bcl"]})
    spa = domain.app("spa")
    first = domain.tokens(web)
    second = domain.tokens(spa)  # a second session
    pending = domain.sso(spa, first["login"].cookie)  # a code never redeemed
    bob = domain.tokens(spa, sub="bob")

    result = revocation.revoke_user(first["login"].user_id, domain.now, "sessions_deleted")
    assert {s["sid"] for s in result["sessions"]} == {first["login"].sid, second["login"].sid}
    for tokens, app in ((first, web), (second, spa)):
        assert domain.session(tokens["login"].sid) is None
        refused(lambda app=app, tokens=tokens: domain.refresh(app, tokens["refresh_token"]))
        refused(lambda tokens=tokens: domain.userinfo(tokens["access_token"]), "invalid_token")
    assert code_is_dead(domain, pending)
    assert [m["sid"] for m in sent] == [first["login"].sid]
    # Idempotent: nothing left to end.
    again = revocation.revoke_user(first["login"].user_id, domain.now, "sessions_deleted")
    assert again["sessions"] == []
    # Someone else is untouched, and the user may sign in again.
    assert domain.refresh(spa, bob["refresh_token"])["refresh_token"]
    fresh = domain.tokens(spa)
    assert domain.refresh(spa, fresh["refresh_token"])["refresh_token"]


def test_blocking_a_user_ends_everything_and_refuses_logins_until_unblocked(domain):
    from chalicelib import cascades, users
    from chalicelib.login.callback import LoginFailed

    app = domain.app("spa")
    tokens = domain.tokens(app)
    user_id = tokens["login"].user_id
    logins = users.get_user(user_id)["logins_count"]
    cascades.update_user(user_id, {"blocked": True}, domain.now)
    assert domain.session(tokens["login"].sid) is None
    refused(lambda: domain.refresh(app, tokens["refresh_token"]))
    refused(lambda: domain.userinfo(tokens["access_token"]), "invalid_token")
    with pytest.raises(LoginFailed) as caught:
        domain.login(app)
    assert caught.value.error == "access_denied"
    from chalicelib import sessions

    assert sessions.sessions_of_user(user_id, domain.now) == []  # nothing stored for it
    assert users.get_user(user_id)["logins_count"] == logins

    cascades.update_user(user_id, {"blocked": False}, domain.now)
    refused(lambda: domain.refresh(app, tokens["refresh_token"]))  # revoked stays revoked
    assert domain.refresh(app, domain.tokens(app)["refresh_token"])["refresh_token"]


def test_the_blocked_flag_alone_refuses_sso_and_userinfo(domain):
    """Without the revocation (a block whose revocation is still in flight)."""
    from chalicelib.login.authorize import AppError
    from chalicelib.store.dynamo import table
    from chalicelib.store.users import key

    app = domain.app("spa")
    tokens = domain.tokens(app)
    table().update(*key(tokens["login"].user_id), "SET blocked = :b", values={":b": True})
    refused(lambda: domain.userinfo(tokens["access_token"]), "invalid_token")
    with pytest.raises(AppError) as caught:
        domain.sso(app, tokens["login"].cookie)
    assert caught.value.error == "access_denied"
    table().update(*key(tokens["login"].user_id), "SET blocked = :b", values={":b": False})
    assert domain.userinfo(tokens["access_token"])
    assert domain.exchange(domain.sso(app, tokens["login"].cookie))["access_token"]


def test_revoke_grant_is_idempotent_and_keeps_the_first_reason(domain):
    app = domain.app("spa")
    tokens = domain.tokens(app)
    grant_id = domain.refresh_item(tokens["refresh_token"])["grant_id"]
    grant_store.revoke_grant(grant_id, domain.now, "token_revoked")
    domain.advance(5)
    grant_store.revoke_grant(grant_id, domain.now, "user_deleted")
    assert revoked_for(domain, grant_id) == "token_revoked"
    assert domain.grant(grant_id)["revoked_at"] == domain.now - 5
