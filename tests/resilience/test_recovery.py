"""SPEC §8 recovery: when DynamoDB, Secrets Manager or the upstream IdP comes back, logins and
refreshes work again at once (no poisoned cache, no stuck state), and tokens issued before the
outage still work."""
from __future__ import annotations

import pytest

from chalicelib.login.jwks_cache import jwks_cache
from tests.resilience.helpers import (
    AwsFaults,
    assert_app_redirect,
    assert_oauth_unavailable,
    assert_unavailable_page,
    authorize,
    callback,
    code_of,
    cold_caches,
    exchange,
    login,
    refresh,
    upstream_answer,
    userinfo,
)


def _still_valid(client, app, tokens) -> dict:
    """The pre-outage tokens: the access token at /userinfo, the refresh token at /oauth/token."""
    assert userinfo(client, tokens["access_token"]).status_code == 200
    refreshed = refresh(client, app, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.data
    # a non-rotating client keeps its refresh token
    return {"refresh_token": tokens["refresh_token"], **refreshed.data}


@pytest.mark.parametrize("kind", ["unreachable", "throttle", "server_error", "timeout"])
def test_dynamodb_outage_and_back(mclient, world, idp, kind):
    web, spa, connection = world["web"], world["spa"], world["back"]
    before = {"web": login(mclient, web, connection), "spa": login(mclient, spa, connection)}
    # a login in flight when the outage starts: its code is issued, not yet redeemed
    pending = authorize(mclient, web, connection)
    pending_code = code_of(callback(pending, upstream_answer(pending)))

    with AwsFaults() as faults:
        faults.outage("dynamodb", kind=kind)
        cold_caches()
        assert_unavailable_page(authorize(mclient, web, connection).response)
        assert_oauth_unavailable(exchange(mclient, web, pending_code, pending.verifier))
        assert_oauth_unavailable(refresh(mclient, web, before["web"]["refresh_token"]))
        assert_oauth_unavailable(refresh(mclient, spa, before["spa"]["refresh_token"]))
        assert_oauth_unavailable(userinfo(mclient, before["web"]["access_token"]))
    assert faults.injected > 0

    # DynamoDB is back: nothing was lost or poisoned by the outage.
    redeemed = exchange(mclient, web, pending_code, pending.verifier)
    assert redeemed.status_code == 200, redeemed.data
    for name, app in (("web", web), ("spa", spa)):
        _still_valid(mclient, app, before[name])
    fresh = login(mclient, web, connection)
    assert refresh(mclient, web, fresh["refresh_token"]).status_code == 200


def test_dynamodb_throttling_storm_is_absorbed_by_retries(mclient, world, idp):
    """Every call's first attempt is throttled: the bounded retries make every request succeed."""
    web, connection = world["web"], world["front"]
    with AwsFaults() as faults:
        faults.fail("dynamodb", "*", nth=1, count=None, kind="throttle", attempts=1)
        tokens = login(mclient, web, connection)
        _still_valid(mclient, web, tokens)
    assert faults.injected >= 8


def test_secrets_manager_outage_and_back(mclient, world, idp):
    web, connection = world["web"], world["back"]
    before = login(mclient, web, connection)
    pending = authorize(mclient, web, connection)
    pending_code = code_of(callback(pending, upstream_answer(pending)))
    with AwsFaults() as faults:
        faults.outage("secretsmanager")
        cold_caches()  # a cold container: signing keys and upstream secrets must be fetched
        assert_oauth_unavailable(exchange(mclient, web, pending_code, pending.verifier))
        assert_oauth_unavailable(refresh(mclient, web, before["refresh_token"]))
        started = authorize(mclient, web, connection)
        assert_app_redirect(callback(started, upstream_answer(started)), status=(303,))
    cold_caches()
    assert exchange(mclient, web, pending_code, pending.verifier).status_code == 200
    _still_valid(mclient, web, before)
    login(mclient, web, connection)


@pytest.mark.parametrize("channel", ["front", "back"])
def test_idp_outage_and_back(mclient, world, idp, channel, monkeypatch):
    """While the IdP is down, logins fail cleanly, but tokens the broker issued keep working
    (refresh and userinfo never call the IdP); when it is back, logins work again.

    With no JWKS copy at all, the failed fetch is not retried for a minute (SPEC §3.3: at most
    one refetch a minute), so the first logins after the IdP returns may still fail for up to
    60 s; the cache's clock is moved past that minute instead of waiting."""
    web, connection = world["web"], world[channel]
    before = login(mclient, web, connection)
    cache = jwks_cache()
    cache.clear()  # nothing cached: the outage is total
    for path in ("/token", "/jwks", "/userinfo"):
        idp.faults[path] = "drop"
    try:
        started = authorize(mclient, web, connection)
        assert_app_redirect(callback(started, upstream_answer(started)), status=(303,))
        before = _still_valid(mclient, web, before)

        idp.faults.clear()
        real_clock = cache._clock
        monkeypatch.setattr(cache, "_clock", lambda: real_clock() + 61)
        after = login(mclient, web, connection)
        _still_valid(mclient, web, after)
        _still_valid(mclient, web, before)
    finally:
        cache.clear()


def test_sqs_outage_and_back_for_global_token_revocation(mclient, world, idp):
    """The revocation cannot queue its back-channel logouts: 422, and the IdP's retry after the
    outage completes it."""
    from tests.resilience.helpers import gtr, gtr_jwt

    connection = world["front"]
    idp.user = {"sub": "recovery-sqs", "email": "r@example.com", "email_verified": True}
    tokens = login(mclient, world["web"], connection)
    body = {"sub_id": {"format": "iss_sub", "iss": idp.issuer, "sub": "recovery-sqs"}}
    patched = _with_backchannel_url(mclient, world)
    try:
        with AwsFaults() as faults:
            faults.outage("sqs")
            failed = gtr(mclient, connection, gtr_jwt(idp, connection), body)
        assert failed.status_code == 422, failed.body
        done = gtr(mclient, connection, gtr_jwt(idp, connection), body)
        assert done.status_code == 204, done.body
        assert refresh(mclient, world["web"], tokens["refresh_token"]).status_code == 400
    finally:
        patched()


def _with_backchannel_url(mclient, world):
    """Give the web app a back-channel logout URL (nothing listens: only the queueing matters)."""
    from tests.conftest import Api, get_token

    import json

    api = Api(mclient, json.loads(get_token(mclient).body)["access_token"])
    client_id = world["web"]["client_id"]
    api.call("PATCH", f"/api/v2/clients/{client_id}", body={
        "oidc_logout": {"backchannel_logout_urls": ["http://127.0.0.1:9/bcl"]}})
    return lambda: api.call("PATCH", f"/api/v2/clients/{client_id}", body={
        "oidc_logout": {"backchannel_logout_urls": []}})
