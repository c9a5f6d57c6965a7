"""Random values and their storage hashes: codes, refresh tokens, states and cookies are stored
only as SHA-256 digests, so a DynamoDB read never yields a usable credential (SPEC §4)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def s256(verifier: str) -> str:
    """RFC 7636 §4.2 code challenge: the broker's one PKCE implementation, for the challenge it
    sends upstream (/authorize) and the check of an application's verifier (/oauth/token, with
    :func:`same`). authlib's ``create_s256_code_challenge`` computes the same value (a test
    compares them) but would load authlib on /authorize, and its ``compare_s256_code_challenge``
    compares with ``==``, not in constant time."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(
        b"=").decode()


def half_hash(value: str, alg: str = "RS256") -> str:
    """OIDC Core §3.1.3.6 at_hash / c_hash: left half of the hash, base64url."""
    bits = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
    hasher = hashlib.sha512 if alg == "EdDSA" else bits[alg[-3:]]
    raw = hasher(value.encode()).digest()
    return base64.urlsafe_b64encode(raw[: len(raw) // 2]).rstrip(b"=").decode()


def preview(value: str) -> str:
    """What logs may show of a credential: a short digest prefix, never the value."""
    return digest(value)[:12]


# The one list of JWS algorithms accepted from upstream IdPs (ID tokens, logout and GTR tokens,
# a connection's declared algorithms): asymmetric only, never none or HMAC.
# alg -> (kty, allowed curves or None), in the order shown to administrators.
SIGNING_ALG_KEYS: dict[str, tuple[str, frozenset[str] | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
ASYMMETRIC_ALGS = tuple(SIGNING_ALG_KEYS)
