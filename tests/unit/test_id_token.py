"""ID token validation (SPEC §3.3 step 4): one negative test per check, plus key rotation and kid rules.

JWKS fetches use an injected function and time an injected clock: no sockets, no sleep.
"""
from __future__ import annotations

import base64
import hashlib
import json

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from chalicelib.login.id_token import IdTokenError, validate_id_token
from chalicelib.login.jwks_cache import JwksCache

ISSUER = "https://idp.example/"
CLIENT_ID = "broker-client"
JWKS_URI = "https://idp.example/jwks"
NONCE = "n-0S6_WzA2Mj"
NOW = 1_700_000_000

RSA_1 = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig", "alg": "RS256"})
RSA_2 = RSAKey.generate_key(2048, parameters={"kid": "rsa-2", "use": "sig"})
RSA_OTHER = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, not the IdP's key
EC_1 = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
ED_1 = OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def half(value: str, hasher=hashlib.sha256) -> str:
    raw = hasher(value.encode()).digest()
    return b64(raw[: len(raw) // 2])


def claims(**over) -> dict:
    base = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "user-123",
        "iat": NOW - 10,
        "exp": NOW + 300,
        "nonce": NONCE,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()


def sign(payload: dict, key=RSA_1, *, alg="RS256", kid: object = "default", **header) -> str:
    hdr = {"alg": alg, **header}
    if kid == "default":
        kid = key.kid
    if kid is not None:
        hdr["kid"] = kid
    return jwt.encode(hdr, payload, key, algorithms=[alg])


def raw_token(header: dict, payload: dict, signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Fetcher:
    def __init__(self, *keys) -> None:
        self.set(*keys)
        self.calls = 0

    def set(self, *keys) -> None:
        self.doc = {"keys": [k.as_dict(private=False) for k in keys]}

    def __call__(self, uri: str) -> dict:
        assert uri == JWKS_URI
        self.calls += 1
        return self.doc


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fetch():
    return Fetcher(RSA_1, EC_1, ED_1)


@pytest.fixture
def cache(fetch, clock):
    return JwksCache(fetch=fetch, clock=clock)


def validate(token, cache, **kw):
    args = dict(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        nonce=NONCE,
        jwks_uri=JWKS_URI,
        allowed_algs=["RS256"],
        cache=cache,
        now=NOW,
    )
    args.update(kw)
    return validate_id_token(token, **args)


def fails(check, token, cache, **kw) -> IdTokenError:
    with pytest.raises(IdTokenError) as info:
        validate(token, cache, **kw)
    assert info.value.check == check, str(info.value)
    return info.value


# ----------------------------------------------------------------------------- accepted


def test_valid_token_returns_claims(cache):
    assert validate(sign(claims()), cache)["sub"] == "user-123"


def test_public_message_has_no_token_contents(cache):
    err = fails("sub", sign(claims(sub="x" * 300)), cache)
    assert "x" * 10 not in str(err) and "user" not in str(err)
    err = fails("iss", sign(claims(iss="https://evil.example/")), cache)
    assert "evil" not in str(err)


def test_es256_accepted_when_allowed(cache):
    token = sign(claims(), EC_1, alg="ES256")
    assert validate(token, cache, allowed_algs=["RS256", "ES256"])["sub"] == "user-123"


def test_es256_refused_when_not_listed(cache):
    fails("alg", sign(claims(), EC_1, alg="ES256"), cache, allowed_algs=["RS256"])


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # signing side (the test's IdP)
def test_eddsa_accepted_with_sha512_at_hash(cache):
    token = sign(claims(at_hash=half("AT", hashlib.sha512)), ED_1, alg="EdDSA")
    assert validate(token, cache, allowed_algs=["EdDSA"], access_token="AT")["sub"] == "user-123"


def test_key_rotated_at_idp_unknown_kid_refetch_accepted(cache, fetch, clock):
    assert validate(sign(claims()), cache)  # warms the cache with the old set
    fetch.set(RSA_1, RSA_2)  # IdP rotates in a new key
    clock.t += 120
    token = sign(claims(), RSA_2)
    assert validate(token, cache)["sub"] == "user-123"
    assert fetch.calls == 2


def test_kid_absent_with_single_key_of_type_accepted(cache):
    # The JWKS also holds EC and OKP keys: only RSA keys count for RS256.
    assert validate(sign(claims(), kid=None), cache)["sub"] == "user-123"


def test_kid_absent_with_two_rsa_keys_refused(fetch, clock):
    fetch.set(RSA_1, RSA_2)
    fails("kid", sign(claims(), kid=None), JwksCache(fetch=fetch, clock=clock))


def test_exp_within_leeway_accepted(cache):
    assert validate(sign(claims(exp=NOW - 59)), cache)


def test_nonce_ignored_when_not_expected(cache):
    assert validate(sign(claims(nonce="whatever")), cache, nonce=None)
    assert validate(sign(claims(nonce=DROP)), cache, nonce=None)


def test_matching_hashes_accepted(cache):
    token = sign(claims(at_hash=half("AT"), c_hash=half("CODE")))
    assert validate(token, cache, access_token="AT", code="CODE")


def test_several_audiences_with_matching_azp_accepted(cache):
    assert validate(sign(claims(aud=[CLIENT_ID, "other"], azp=CLIENT_ID)), cache)


def test_typ_jwt_accepted(cache):
    assert validate(sign(claims(), typ="JWT"), cache)
    assert validate(sign(claims(), typ="application/jwt"), cache)


def test_unknown_header_parameters_ignored(cache):
    # Non-critical header parameters an IdP adds must be ignored (RFC 7515 §4); x5c is never a key source.
    header = {"alg": "RS256", "kid": "rsa-1", "foo": "bar", "x5c": ["A" * 1500], "jku": "https://evil/"}
    registry = JWSRegistry(algorithms=["RS256"], strict_check_header=False)
    registry.max_header_length = 8192
    token = jws.serialize_compact(header, json.dumps(claims()).encode(), RSA_1, registry=registry)
    assert validate(token, cache)["sub"] == "user-123"


# ----------------------------------------------------------------------------- signature and keys


def test_tampered_payload_bad_signature(cache):
    header, _, signature = sign(claims()).split(".")
    forged = b64(json.dumps(claims(sub="admin")).encode())
    fails("signature", f"{header}.{forged}.{signature}", cache)


def test_key_not_in_jwks_refetches_once_a_minute(cache, fetch, clock):
    stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
    token = sign(claims(), stranger)
    assert validate(sign(claims()), cache)  # warm the cache
    fails("kid", token, cache)
    assert fetch.calls == 1  # just fetched: no refetch within a minute
    clock.t += 60
    fails("kid", token, cache)
    assert fetch.calls == 2  # initial fetch + one refetch for the unknown kid
    clock.t += 30
    fails("kid", token, cache)
    fails("kid", sign(claims(), stranger, kid="another-forged-kid"), cache)
    assert fetch.calls == 2  # no refetch within a minute
    clock.t += 30
    fails("kid", token, cache)
    assert fetch.calls == 3


def test_same_kid_different_key_bad_signature(cache):
    fails("signature", sign(claims(), RSA_OTHER), cache)


def test_alg_none_refused(cache):
    token = raw_token({"alg": "none", "kid": "rsa-1"}, claims())
    fails("alg", token, cache)
    fails("alg", token, cache, allowed_algs=["RS256", "none"])
    fails("alg", raw_token({"alg": "none"}, claims()), cache, allowed_algs=["none"])


@pytest.mark.filterwarnings("ignore:This key should not be used as an oct key")  # the attacker's side
def test_hs256_with_rsa_public_key_bytes_refused_even_if_listed(cache, fetch):
    pem = RSA_1.as_pem(private=False)
    token = jws.serialize_compact(
        {"alg": "HS256", "kid": "rsa-1"}, json.dumps(claims()).encode(), OctKey.import_key(pem),
        algorithms=["HS256"],
    )
    fails("alg", token, cache, allowed_algs=["HS256", "RS256"])
    assert fetch.calls == 0  # refused before any key is looked at


def test_key_with_use_enc_not_used(fetch, clock):
    enc = RSAKey.generate_key(2048, parameters={"kid": "k", "use": "enc"})
    fetch.set(enc)
    signer = RSAKey.import_key(enc.as_dict(private=True) | {"use": "sig"})
    fails("kid", sign(claims(), signer), JwksCache(fetch=fetch, clock=clock))


def test_key_with_other_alg_not_used(cache):
    # RSA_1 is published with alg RS256: a PS256 signature by it is not accepted.
    signer = RSAKey.import_key({k: v for k, v in RSA_1.as_dict(private=True).items() if k != "alg"})
    fails("kid", sign(claims(), signer, alg="PS256"), cache, allowed_algs=["RS256", "PS256"])


def test_ec_key_curve_must_match_alg(fetch, clock):
    p384 = ECKey.generate_key("P-384", parameters={"kid": "ec-1"})
    fetch.set(p384)
    token = sign(claims(), EC_1, alg="ES256")
    fails("kid", token, JwksCache(fetch=fetch, clock=clock), allowed_algs=["ES256"])


def test_typ_at_jwt_refused(cache):
    fails("typ", sign(claims(), typ="at+jwt"), cache)
    fails("typ", sign(claims(), typ="logout+jwt"), cache)
    fails("typ", sign(claims(), typ="global-token-revocation+jwt"), cache)


def test_crit_refused(cache):
    token = raw_token({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}, claims(), b"x")
    fails("crit", token, cache)


def test_jwe_and_oversize_refused(cache):
    fails("format", "a.b.c.d.e", cache)
    fails("format", sign(claims(pad="x" * 17000)), cache)
    fails("format", "not-a-jwt", cache)
    fails("format", "%%%.e30.e30", cache)


# ----------------------------------------------------------------------------- claims


def test_wrong_iss(cache):
    fails("iss", sign(claims(iss="https://other.example/")), cache)
    fails("iss", sign(claims(iss=ISSUER.rstrip("/"))), cache)


def test_wrong_aud(cache):
    fails("aud", sign(claims(aud="someone-else")), cache)


def test_missing_aud(cache):
    fails("aud", sign(claims(aud=DROP)), cache)


def test_several_audiences_without_azp(cache):
    fails("azp", sign(claims(aud=[CLIENT_ID, "other"])), cache)


def test_azp_mismatch(cache):
    fails("azp", sign(claims(azp="other")), cache)
    fails("azp", sign(claims(aud=[CLIENT_ID, "other"], azp="other")), cache)


def test_missing_sub(cache):
    fails("sub", sign(claims(sub=DROP)), cache)


def test_empty_sub(cache):
    fails("sub", sign(claims(sub="")), cache)


def test_missing_iat(cache):
    fails("iat", sign(claims(iat=DROP)), cache)


def test_iat_in_future(cache):
    fails("iat", sign(claims(iat=NOW + 61)), cache)


def test_expired_beyond_leeway(cache):
    fails("exp", sign(claims(exp=NOW - 60)), cache)
    fails("exp", sign(claims(exp=DROP)), cache)


def test_boolean_is_not_a_number(cache):
    fails("exp", sign(claims(exp=True)), cache)
    fails("iat", sign(claims(iat=False)), cache)


def test_nbf_in_future(cache):
    fails("nbf", sign(claims(nbf=NOW + 61)), cache)


def test_wrong_nonce(cache):
    fails("nonce", sign(claims(nonce="other")), cache)


def test_missing_nonce(cache):
    fails("nonce", sign(claims(nonce=DROP)), cache)


def test_wrong_at_hash(cache):
    fails("at_hash", sign(claims(at_hash=half("other"))), cache, access_token="AT")


def test_wrong_c_hash(cache):
    fails("c_hash", sign(claims(c_hash=half("other"))), cache, code="CODE")


def test_required_hashes(cache):
    fails("at_hash", sign(claims()), cache, access_token="AT", require_at_hash=True)
    fails("c_hash", sign(claims()), cache, code="CODE", require_c_hash=True)
