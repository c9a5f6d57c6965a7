"""Authorization codes (SPEC §3.3 step 7, §4 ``authorization_code``; RFC 6749 §4.1.2, RFC 7636,
RFC 9700 §4.5): single use, short-lived, bound to the client, the redirect_uri and the PKCE
challenge; a second use revokes every token the first one issued."""
from __future__ import annotations

import uuid

import pytest

from chalicelib.errors import OAuthError
from chalicelib.provider import lifetimes
from tests.domain.conftest import OTHER_CALLBACK, race
from tests.support.flow import pkce_pair


def refused(call, description: str | None = None) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call()
    assert caught.value.error == "invalid_grant", caught.value
    if description is not None:
        assert caught.value.description == description
    return caught.value


def revoked_for(domain, grant_id: str) -> str | None:
    grant = domain.grant(grant_id)
    return grant.get("revoked_for") if grant else "gone"


# --------------------------------------------------------------------------- single use

def test_a_code_is_redeemed_once_and_a_replay_revokes_what_it_issued(domain):
    app = domain.app("regular_web")
    login = domain.login(app)
    tokens = domain.exchange(login)
    assert {"access_token", "id_token", "refresh_token"} <= set(tokens)
    grant_id = domain.refresh_item(tokens["refresh_token"])["grant_id"]
    assert domain.userinfo(tokens["access_token"])["sub"] == login.user_id

    refused(lambda: domain.exchange(login), "Authorization code already used")
    assert revoked_for(domain, grant_id) == "code_reuse"
    refused(lambda: domain.refresh(app, tokens["refresh_token"]))
    with pytest.raises(OAuthError) as caught:
        domain.userinfo(tokens["access_token"])
    assert caught.value.error == "invalid_token"


def test_concurrent_redemptions_of_one_code_have_exactly_one_winner(domain):
    app = domain.app("spa")
    login = domain.login(app)
    results = race(lambda: domain.exchange(login), read_before_write=True)
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if not isinstance(r, dict)]
    assert len(winners) == 1, results
    assert all(isinstance(r, OAuthError) and r.error == "invalid_grant" for r in losers), losers
    # The losers are replays: the family the winner got is revoked (RFC 9700 §4.5).
    grant_id = domain.refresh_item(winners[0]["refresh_token"])["grant_id"]
    assert revoked_for(domain, grant_id) == "code_reuse"
    refused(lambda: domain.refresh(app, winners[0]["refresh_token"]))


# --------------------------------------------------------------------------- expiry

def test_a_code_lives_sixty_seconds(domain):
    """SPEC §3.3 step 7: at most 60 s (the figure, not the constant: raising it must fail)."""
    assert lifetimes.AUTHORIZATION_CODE <= 60
    app = domain.app("spa")
    in_time = domain.login(app)
    late = domain.login(app)
    domain.advance(59)
    assert "access_token" in domain.exchange(in_time)
    domain.advance(1)
    refused(lambda: domain.exchange(late), "Invalid or expired authorization code")


def test_unknown_and_oversized_codes(domain):
    app = domain.app("spa")
    login = domain.login(app)
    refused(lambda: domain.exchange(login, code="no-such-code"))
    refused(lambda: domain.exchange(login, code=login.code + "x"))
    refused(lambda: domain.exchange(login, code="x" * 300))
    assert "access_token" in domain.exchange(login)


# --------------------------------------------------------------------------- bindings

def test_a_code_is_bound_to_its_client_and_a_wrong_client_consumes_nothing(domain):
    app, other = domain.app("regular_web"), domain.app("regular_web")
    login = domain.login(app)
    refused(lambda: domain.exchange(login, app=other), "The code was issued to another client")
    assert domain.exchange(login)["access_token"]


@pytest.mark.parametrize("redirect_uri", [OTHER_CALLBACK, OTHER_CALLBACK + "/", None])
def test_a_code_is_bound_to_its_redirect_uri(domain, redirect_uri):
    app = domain.app("regular_web")
    login = domain.login(app)
    refused(lambda: domain.exchange(login, redirect_uri=redirect_uri),
            "redirect_uri does not match the authorization request")
    assert domain.exchange(login)["access_token"]  # nothing was consumed


@pytest.mark.parametrize("kind", ["regular_web", "spa"])
def test_a_code_is_bound_to_its_pkce_challenge(domain, kind):
    app = domain.app(kind)
    login = domain.login(app)
    refused(lambda: domain.exchange(login, verifier=pkce_pair()[0]),
            "code_verifier does not match the code_challenge")
    refused(lambda: domain.exchange(login, verifier=None), "code_verifier is required")
    refused(lambda: domain.exchange(login, verifier="short"), "code_verifier is malformed")
    refused(lambda: domain.exchange(login, verifier=login.verifier[:-1] + "!"),
            "code_verifier is malformed")
    assert domain.exchange(login)["access_token"]  # none of the failures consumed it


def test_a_verifier_without_a_challenge_is_refused(domain):
    """RFC 9700 §2.1.1: a verifier for a code issued without a challenge is an injection."""
    app = domain.app("regular_web")
    login = domain.login(app, pkce=False)
    refused(lambda: domain.exchange(login, verifier=pkce_pair()[0]),
            "code_verifier sent but no code_challenge was used")
    assert domain.exchange(login)["access_token"]


def test_a_public_client_must_use_pkce(domain):
    app = domain.app("spa")
    login = domain.login(app, pkce=False)
    refused(lambda: domain.exchange(login), "Public clients must use PKCE")


def test_a_client_without_the_grant_type_is_refused(domain):
    app = domain.app("regular_web", grant_types=["client_credentials"])
    login = domain.login(app)
    with pytest.raises(OAuthError) as caught:
        domain.exchange(login)
    assert caught.value.error == "unauthorized_client"


# --------------------------------------------------------------------------- what a code yields

def test_a_refresh_token_needs_offline_access_and_the_grant_type(domain):
    app = domain.app("regular_web")
    assert "refresh_token" not in domain.tokens(app, scope="openid profile")
    no_refresh = domain.app("regular_web", grant_types=["authorization_code"])
    assert "refresh_token" not in domain.tokens(no_refresh)
    assert "refresh_token" in domain.tokens(app)


def test_a_code_of_a_revoked_grant_is_refused_and_stays_unconsumed(domain):
    """The consuming transaction checks the grant: a code whose grant was revoked meanwhile
    (logout, Global Token Revocation) yields nothing."""
    from chalicelib.provider import grant_store

    app = domain.app("spa")
    login = domain.login(app)
    grant_id = grant_store.find_code(login.code, domain.now)["grant_id"]
    grant_store.revoke_grant(grant_id, domain.now, "test")
    refused(lambda: domain.exchange(login), "Invalid or expired authorization code")
    assert not grant_store.find_code(login.code, domain.now).get("consumed_at")


def test_a_code_for_a_deleted_api_is_refused(domain):
    from chalicelib.registry.resource_servers import forget_cached_resource_servers
    from chalicelib.store import resource_servers

    server = resource_servers.ResourceServer(id=f"rs_{uuid.uuid4().hex[:20]}",
                                             identifier=f"https://api.example/{uuid.uuid4().hex}",
                                             name="api", allow_offline_access=True,
                                             scopes=[{"value": "read:things"}])
    resource_servers.create(server)
    app = domain.app("spa")
    login = domain.login(app, audience=server.identifier, scope="openid read:things")
    kept = domain.login(app, audience=server.identifier, scope="openid read:things")
    assert domain.exchange(kept)["scope"] == "openid read:things"
    resource_servers.delete(server)
    # This container's cache still has it: the transaction's check refuses all the same.
    refused(lambda: domain.exchange(login), "The API this code was issued for no longer exists")
    forget_cached_resource_servers()
    refused(lambda: domain.exchange(login), "The API this grant was issued for no longer exists")
