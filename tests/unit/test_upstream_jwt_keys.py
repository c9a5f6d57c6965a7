"""One key lookup for every JWT an upstream IdP signs (chalicelib/login/id_token.py
``verify_signature``): ID tokens, Global Token Revocation JWTs (chalicelib/logout/gtr.py) and
back-channel logout tokens (chalicelib/login/upstream_logout.py). The broker picks the key from
the connection's JWKS; a key rotated in at the IdP is found after one refetch; a kid the JWKS does
not hold refetches at most once a minute and is then refused, by each caller in its own words.

No sockets, no sleep: the JWKS comes from an injected function, time from an injected clock."""
from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from chalicelib.login import upstream_logout
from chalicelib.login.id_token import IdTokenError, UnknownKey, validate_id_token, verify_signature
from chalicelib.login.jwks_cache import JwksCache
from chalicelib.logout import gtr

ISSUER = "https://idp.example/"
CLIENT_ID = "broker-client"
JWKS_URI = "https://idp.example/jwks"
NOW = 1_700_000_000
OLD = RSAKey.generate_key(2048, parameters={"kid": "old", "use": "sig"})
NEW = RSAKey.generate_key(2048, parameters={"kid": "new", "use": "sig"})
STRANGER = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
CONNECTION = {"id": "con_keys", "name": "keys", "strategy": "oidc",
              "options": {"issuer": ISSUER, "client_id": CLIENT_ID, "jwks_uri": JWKS_URI,
                          "id_token_signed_response_algs": ["RS256"]}}


class Idp:
    """The IdP's JWKS endpoint: the keys it publishes, and how often it was fetched."""

    def __init__(self) -> None:
        self.keys = [OLD]
        self.fetches = 0
        self.t = float(NOW)

    def fetch(self, uri: str) -> dict:
        assert uri == JWKS_URI
        self.fetches += 1
        return {"keys": [k.as_dict(private=False) for k in self.keys]}

    def clock(self) -> float:
        return self.t


@pytest.fixture
def idp():
    return Idp()


@pytest.fixture
def cache(idp):
    cache = JwksCache(fetch=idp.fetch, clock=idp.clock)
    cache.key_set(JWKS_URI)  # warm: the old key set
    assert idp.fetches == 1
    return cache


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    """gtr checks ``aud`` against its endpoint's URL, built from the issuer."""
    monkeypatch.setenv("BROKER_ISSUER", "http://127.0.0.1:8000/")
    monkeypatch.setenv("BROKER_ALLOW_INSECURE_LOOPBACK", "true")


def sign(key, typ: str, **claims) -> str:
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": typ},
                      {"iss": ISSUER, "iat": NOW - 5, "exp": NOW + 300, "jti": "j1", **claims},
                      key, algorithms=["RS256"])


def id_token(key) -> str:
    return sign(key, "JWT", aud=CLIENT_ID, sub="alice", nonce="n")


def gtr_jwt(key) -> str:
    return sign(key, gtr.TYP, sub=CLIENT_ID, aud=gtr.endpoint_url(CONNECTION["name"]))


def logout_token(key) -> str:
    return sign(key, upstream_logout.TYP, aud=CLIENT_ID, sub="alice",
                events={upstream_logout.EVENT: {}})


def check_id_token(token: str, cache: JwksCache) -> dict:
    return validate_id_token(token, issuer=ISSUER, client_id=CLIENT_ID, nonce="n",
                             jwks_uri=JWKS_URI, allowed_algs=["RS256"], cache=cache, now=NOW)


def check_gtr(token: str, cache: JwksCache) -> dict:
    return gtr._verify_token(token, CONNECTION, NOW, cache)


def check_logout_token(token: str, cache: JwksCache) -> dict:
    return upstream_logout._verify_token(token, CONNECTION, NOW, cache)


def refusal(call) -> str:
    """The check each caller names for a token it refuses."""
    try:
        call()
    except IdTokenError as exc:
        return exc.check
    except gtr.GtrError as exc:
        return exc.reason
    except upstream_logout.LogoutRefused as exc:
        return exc.check
    raise AssertionError("accepted")


CALLERS = [
    pytest.param(id_token, check_id_token, "kid", id="id_token"),
    pytest.param(gtr_jwt, check_gtr, "unknown_key", id="global_token_revocation"),
    pytest.param(logout_token, check_logout_token, "unknown_key", id="backchannel_logout"),
]


@pytest.mark.parametrize(("make", "check", "unknown"), CALLERS)
def test_a_key_rotated_in_at_the_idp_is_found_with_one_refetch(idp, cache, make, check, unknown):
    idp.keys = [OLD, NEW]
    idp.t += 60  # the cache refetches for an unknown kid at most once a minute
    assert check(make(NEW), cache)["iss"] == ISSUER
    assert idp.fetches == 2
    assert check(make(NEW), cache)["iss"] == ISSUER  # now cached
    assert idp.fetches == 2


@pytest.mark.parametrize(("make", "check", "unknown"), CALLERS)
def test_an_unknown_kid_refetches_at_most_once_a_minute_then_is_refused(idp, cache, make, check,
                                                                        unknown):
    idp.t += 60
    assert refusal(lambda: check(make(STRANGER), cache)) == unknown
    assert idp.fetches == 2
    for _ in range(5):  # a flood of forged kids within the minute: no fetch more
        assert refusal(lambda: check(make(STRANGER), cache)) == unknown
    assert idp.fetches == 2
    idp.t += 60
    assert refusal(lambda: check(make(STRANGER), cache)) == unknown
    assert idp.fetches == 3


@pytest.mark.parametrize(("make", "check", "unknown"), CALLERS)
def test_a_known_kid_with_a_forged_signature_is_a_bad_signature(idp, cache, make, check, unknown):
    forged = make(RSAKey.generate_key(2048, parameters={"kid": "old"}))
    assert refusal(lambda: check(forged, cache)) == "signature"
    assert idp.fetches == 1  # the kid is known: nothing refetched


def test_the_helper_returns_the_claims_and_the_key_that_verified_them(idp, cache):
    idp.keys = [OLD, NEW]
    idp.t += 60
    claims, key = verify_signature(id_token(NEW), jwks_uri=JWKS_URI, alg="RS256", kid="new",
                                   cache=cache)
    assert claims["sub"] == "alice" and key.kid == "new" and not key.is_private
    with pytest.raises(UnknownKey) as caught:
        verify_signature(id_token(STRANGER), jwks_uri=JWKS_URI, alg="RS256", kid="stranger",
                         cache=cache)
    # Still an IdTokenError of check "kid", as ID token validation has always raised it.
    assert isinstance(caught.value, IdTokenError) and caught.value.check == "kid"
