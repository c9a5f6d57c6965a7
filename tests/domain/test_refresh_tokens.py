"""Refresh tokens (SPEC §4 ``refresh_token``; RFC 6749 §6, RFC 9700 §4.14): rotation, reuse
detection, Auth0's reuse leeway, absolute and idle lifetimes, non-rotating tokens, and the user,
client and API a token depends on."""
from __future__ import annotations

import pytest

from chalicelib.errors import OAuthError
from chalicelib.provider import lifetimes
from tests.domain.conftest import PARALLEL, race

DAY = 86400


def refused(call, error: str = "invalid_grant", description: str | None = None) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call()
    assert caught.value.error == error, caught.value
    if description is not None:
        assert caught.value.description == description, caught.value
    return caught.value


def family_of(domain, token: str) -> str:
    return domain.refresh_item(token)["grant_id"]


def revoked_for(domain, grant_id: str) -> str | None:
    return (domain.grant(grant_id) or {}).get("revoked_for")


# --------------------------------------------------------------------------- rotation and reuse

def test_rotation_gives_a_new_token_and_reuse_revokes_the_family(domain):
    app = domain.app("spa")
    tokens = domain.tokens(app)
    first = tokens["refresh_token"]
    grant_id = family_of(domain, first)
    second = domain.refresh(app, first)
    assert second["refresh_token"] not in (None, first)
    assert domain.refresh_item(first)["rotated_at"] == domain.now
    assert domain.userinfo(second["access_token"])["sub"] == tokens["login"].user_id

    refused(lambda: domain.refresh(app, first))
    assert revoked_for(domain, grant_id) == "refresh_token_reuse"
    # The whole family: the newest token and every access token of the grant.
    refused(lambda: domain.refresh(app, second["refresh_token"]))
    for access in (tokens["access_token"], second["access_token"]):
        refused(lambda access=access: domain.userinfo(access), "invalid_token")


def test_a_rotated_family_keeps_its_absolute_expiry(domain):
    app = domain.set_refresh_policy(domain.app("spa"), token_lifetime=10 * DAY,
                                    idle_token_lifetime=3 * DAY)
    token = domain.tokens(app)["refresh_token"]
    born = domain.now
    for _ in range(4):  # used every 2 days: never idle, yet the family ends at 10 days
        domain.advance(2 * DAY)
        token = domain.refresh(app, token)["refresh_token"]
        assert domain.refresh_item(token)["family_expires_at"] == born + 10 * DAY
    domain.advance(2 * DAY)  # 10 days
    refused(lambda: domain.refresh(app, token))


def test_reuse_within_the_leeway_gets_another_token_and_after_it_revokes(domain):
    """Auth0's reuse interval: a rotated token presented again within ``leeway`` seconds of its
    rotation is a retry (another token of the family); later it is reuse."""
    app = domain.set_refresh_policy(domain.app("spa"), rotation_type="rotating", leeway=30)
    first = domain.tokens(app)["refresh_token"]
    second = domain.refresh(app, first)["refresh_token"]
    domain.advance(10)
    third = domain.refresh(app, first)["refresh_token"]  # 10 s after the rotation
    assert third not in (first, second)
    assert domain.refresh(app, second)["refresh_token"]  # the family is alive
    fourth = domain.refresh(app, third)["refresh_token"]
    domain.advance(21)  # 31 s after the first rotation
    grant_id = family_of(domain, first)
    refused(lambda: domain.refresh(app, first))
    assert revoked_for(domain, grant_id) == "refresh_token_reuse"
    refused(lambda: domain.refresh(app, fourth))


def test_the_leeway_boundary_is_inclusive(domain):
    app = domain.set_refresh_policy(domain.app("spa"), rotation_type="rotating", leeway=30)
    first = domain.tokens(app)["refresh_token"]
    domain.refresh(app, first)
    domain.advance(30)
    assert domain.refresh(app, first)["refresh_token"]
    domain.advance(1)
    refused(lambda: domain.refresh(app, first))


def test_without_leeway_the_first_reuse_revokes(domain):
    app = domain.app("spa")  # leeway 0 by default
    first = domain.tokens(app)["refresh_token"]
    second = domain.refresh(app, first)["refresh_token"]
    refused(lambda: domain.refresh(app, first))
    refused(lambda: domain.refresh(app, second))


def test_concurrent_refreshes_of_one_token_have_exactly_one_winner(domain):
    app = domain.app("spa")
    token = domain.tokens(app)["refresh_token"]
    grant_id = family_of(domain, token)
    results = race(lambda: domain.refresh(app, token), read_before_write=True)
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1, results
    assert all(isinstance(r, OAuthError) and r.error == "invalid_grant"
               for r in results if not isinstance(r, dict)), results
    # Every loser presented a rotated token outside any leeway: reuse, the family is revoked.
    assert revoked_for(domain, grant_id) == "refresh_token_reuse"
    refused(lambda: domain.refresh(app, winners[0]["refresh_token"]))


def test_concurrent_refreshes_within_the_leeway_all_succeed(domain):
    """Two tabs (here twenty) refreshing with one token at once, with a leeway: each gets a
    distinct new token of the family, and every one of them works."""
    app = domain.set_refresh_policy(domain.app("spa"), rotation_type="rotating", leeway=60)
    token = domain.tokens(app)["refresh_token"]
    results = race(lambda: domain.refresh(app, token), read_before_write=True)
    assert all(isinstance(r, dict) for r in results), results
    issued = {r["refresh_token"] for r in results}
    assert len(issued) == PARALLEL
    grant_id = family_of(domain, token)
    assert not revoked_for(domain, grant_id)
    for new in issued:
        assert domain.refresh(app, new)["refresh_token"]


def test_a_transaction_conflict_is_a_lost_race_not_reuse(domain):
    """DynamoDB cancels concurrent transactions on one item with TransactionConflict: one retry,
    then 503 temporarily_unavailable; never counted as reuse."""
    app = domain.set_refresh_policy(domain.app("spa"), rotation_type="rotating", leeway=30)
    first = domain.tokens(app)["refresh_token"]
    second = domain.refresh(app, first)["refresh_token"]
    domain.table.conflict_next(1)
    assert domain.refresh(app, first)["refresh_token"]  # retried once, then won
    domain.table.conflict_next(2)
    unavailable = refused(lambda: domain.refresh(app, first), "temporarily_unavailable")
    assert unavailable.status == 503
    assert not revoked_for(domain, family_of(domain, first))
    assert domain.refresh(app, second)["refresh_token"]


# --------------------------------------------------------------------------- binding

def test_a_refresh_token_is_bound_to_its_client_and_a_thief_revokes_nothing(domain):
    spa, web, other = domain.app("spa"), domain.app("regular_web"), domain.app("regular_web")
    token = domain.tokens(spa)["refresh_token"]
    refused(lambda: domain.refresh(web, token))
    refused(lambda: domain.refresh(other, token))
    assert domain.refresh_item(token).get("rotated_at") is None
    assert domain.refresh(spa, token)["refresh_token"] != token


def test_unknown_tokens_and_clients_without_the_grant(domain):
    app = domain.app("spa")
    refused(lambda: domain.refresh(app, "no-such-token"))
    refused(lambda: domain.refresh(app, "x" * 300))
    refused(lambda: domain.refresh(app, ""), "invalid_request")
    token = domain.tokens(app)["refresh_token"]
    from chalicelib.provider.client_auth import AuthenticatedClient

    no_grant = AuthenticatedClient(app.client_id, {**app.record, "grant_types": [
        "authorization_code"]}, app.method)
    refused(lambda: domain.refresh(no_grant, token), "unauthorized_client")


def test_scope_narrows_per_request_but_never_widens(domain):
    app = domain.app("regular_web")
    token = domain.tokens(app, scope="openid profile email offline_access")["refresh_token"]
    narrow = domain.refresh(app, token, scope="openid")
    assert narrow["scope"] == "openid"
    refused(lambda: domain.refresh(app, token, scope="openid phone"), "invalid_scope")
    full = domain.refresh(app, token)
    assert set(full["scope"].split()) == {"openid", "profile", "email", "offline_access"}


# --------------------------------------------------------------------------- lifetimes

def test_non_rotating_tokens_slide_their_idle_expiry_up_to_the_absolute_one(domain):
    app = domain.set_refresh_policy(domain.app("regular_web"), rotation_type="non-rotating",
                                    token_lifetime=10 * DAY, idle_token_lifetime=2 * DAY)
    token = domain.tokens(app)["refresh_token"]
    born = domain.now
    for _ in range(6):  # every 1.5 days: the same token, its idle expiry pushed each time
        domain.advance(int(1.5 * DAY))
        assert "refresh_token" not in domain.refresh(app, token)
        item = domain.refresh_item(token)
        assert item["idle_expires_at"] == min(domain.now + 2 * DAY, born + 10 * DAY)
        assert not item.get("rotated_at")
    domain.advance(DAY)  # 10 days since issue: the absolute lifetime ends it
    refused(lambda: domain.refresh(app, token))


def test_an_idle_token_expires(domain):
    app = domain.set_refresh_policy(domain.app("regular_web"), rotation_type="non-rotating",
                                    token_lifetime=10 * DAY, idle_token_lifetime=2 * DAY)
    token = domain.tokens(app)["refresh_token"]
    domain.advance(2 * DAY - 1)
    domain.refresh(app, token)
    domain.advance(2 * DAY)
    refused(lambda: domain.refresh(app, token), description="Refresh token expired")


def test_an_idle_rotating_token_expires(domain):
    app = domain.set_refresh_policy(domain.app("spa"), token_lifetime=10 * DAY,
                                    idle_token_lifetime=DAY)
    token = domain.tokens(app)["refresh_token"]
    domain.advance(DAY)
    refused(lambda: domain.refresh(app, token), description="Refresh token expired")


def test_non_expiring_means_one_year(domain):
    app = domain.set_refresh_policy(domain.app("regular_web"), rotation_type="non-rotating",
                                    expiration_type="non-expiring")
    token = domain.tokens(app)["refresh_token"]
    domain.advance(200 * DAY)  # far beyond the 30- and 15-day defaults
    domain.refresh(app, token)
    domain.advance(lifetimes.REFRESH_MAX - 200 * DAY)
    refused(lambda: domain.refresh(app, token))


def test_the_default_lifetimes(domain):
    app = domain.app("spa")
    token = domain.tokens(app)["refresh_token"]
    item = domain.refresh_item(token)
    assert item["ttl"] == domain.now + lifetimes.REFRESH_ABSOLUTE_DEFAULT
    assert item["idle_expires_at"] == domain.now + lifetimes.REFRESH_IDLE_DEFAULT


# --------------------------------------------------------------------------- what a token depends on

def _block(user_id: str, blocked: bool) -> None:
    """The flag alone, as when the revocation that follows it in a PATCH is still in flight."""
    from chalicelib.store.dynamo import table
    from chalicelib.store.users import key

    table().update(*key(user_id), "SET blocked = :b", values={":b": blocked})


@pytest.mark.parametrize("kind", ["regular_web", "spa"])
def test_a_blocked_user_is_refused_until_unblocked_and_nothing_is_consumed(domain, kind):
    app = domain.app(kind)
    tokens = domain.tokens(app)
    _block(tokens["login"].user_id, True)
    refused(lambda: domain.refresh(app, tokens["refresh_token"]), description="user is blocked")
    assert not domain.refresh_item(tokens["refresh_token"]).get("rotated_at")
    _block(tokens["login"].user_id, False)
    assert domain.refresh(app, tokens["refresh_token"])["access_token"]


@pytest.mark.parametrize("kind", ["regular_web", "spa"])
def test_a_deleted_profile_is_refused(domain, kind):
    """The profile alone deleted (the grants' revocation still in flight)."""
    from chalicelib.store import users

    app = domain.app(kind)
    tokens = domain.tokens(app)
    users.delete(tokens["login"].user_id)
    refused(lambda: domain.refresh(app, tokens["refresh_token"]))


def test_a_profile_change_reaches_the_next_id_token(domain):
    """The token's snapshot of the user is checked in the transaction: a new login with other
    claims shows in the next refresh's ID token, and the token then carries the new profile."""
    from chalicelib.keys import verify_jwt

    app = domain.app("regular_web")
    tokens = domain.tokens(app)
    domain.advance(5)
    domain.login(app, email="alice@new.example")
    refreshed = domain.refresh(app, tokens["refresh_token"])
    assert verify_jwt(refreshed["id_token"]).claims["email"] == "alice@new.example"
    snapshot = domain.refresh_item(tokens["refresh_token"])["user_snapshot"]
    assert snapshot["attributes"]["email"] == "alice@new.example"


def test_a_rotated_token_keeps_no_copy_of_the_profile(domain):
    app = domain.app("spa")
    first = domain.tokens(app)["refresh_token"]
    second = domain.refresh(app, first)["refresh_token"]
    assert "user_snapshot" not in domain.refresh_item(first)
    assert "user_snapshot" in domain.refresh_item(second)


@pytest.mark.parametrize("kind", ["regular_web", "spa"])
def test_deleting_the_user_revokes_and_deletes_its_tokens(domain, kind):
    from chalicelib import cascades

    app = domain.app(kind)
    tokens = domain.tokens(app)
    token = tokens["refresh_token"]
    if kind == "spa":
        token = domain.refresh(app, token)["refresh_token"]
    grant_id = family_of(domain, token)
    cascades.delete_user(tokens["login"].user_id, domain.now)
    assert domain.refresh_item(token) is None  # no copy of the profile outlives the user
    assert revoked_for(domain, grant_id) == "user_deleted"
    refused(lambda: domain.refresh(app, token))


def test_deleting_the_client_revokes_its_families(domain):
    from chalicelib import cascades

    app, other = domain.app("regular_web"), domain.app("regular_web")
    tokens, kept = domain.tokens(app), domain.tokens(other)
    cascades.delete_client(app.client_id)
    assert revoked_for(domain, family_of(domain, tokens["refresh_token"])) == "client_deleted"
    refused(lambda: domain.refresh(app, tokens["refresh_token"]))
    refused(lambda: domain.userinfo(tokens["access_token"]), "invalid_token")
    assert domain.refresh(other, kept["refresh_token"])["access_token"]


def _api(domain, *, offline: bool = True, identifier: str | None = None):
    import uuid

    from chalicelib.store import resource_servers

    server = resource_servers.ResourceServer(
        id=f"rs_{uuid.uuid4().hex[:20]}", name="api",
        identifier=identifier or f"https://api.example/{uuid.uuid4().hex[:8]}",
        allow_offline_access=offline, scopes=[{"value": "read:things"}])
    resource_servers.create(server)
    return server


def test_a_deleted_api_refuses_refreshes_even_through_a_warm_cache(domain):
    from chalicelib.registry.resource_servers import forget_cached_resource_servers
    from chalicelib.store import resource_servers

    server = _api(domain)
    app = domain.app("regular_web")
    token = domain.tokens(app, audience=server.identifier,
                          scope="openid offline_access read:things")["refresh_token"]
    assert domain.refresh(app, token)["scope"] == "openid offline_access read:things"
    resource_servers.delete(server)
    refused(lambda: domain.refresh(app, token),
            description="The API this grant was issued for no longer exists")
    forget_cached_resource_servers()
    # Registered again under the same identifier: another API, the old tokens stay refused.
    _api(domain, identifier=server.identifier)
    refused(lambda: domain.refresh(app, token),
            description="The API this grant was issued for no longer exists")


def test_an_api_that_stops_allowing_offline_access_refuses_refreshes(domain):
    from chalicelib.registry.resource_servers import forget_cached_resource_servers
    from chalicelib.store import resource_servers

    server = _api(domain)
    app = domain.app("regular_web")
    token = domain.tokens(app, audience=server.identifier,
                          scope="openid offline_access read:things")["refresh_token"]
    resource_servers.replace(resource_servers.ResourceServer(
        **{**server.__dict__, "allow_offline_access": False}))
    forget_cached_resource_servers()
    refused(lambda: domain.refresh(app, token),
            description="The API no longer allows refresh tokens")
