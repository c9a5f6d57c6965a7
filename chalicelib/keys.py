"""The broker's own signing keys: publish, sign, verify, rotate, revoke.

A key set of the one engine, :mod:`chalicelib.keysets` (statuses, generation on first use,
rotation, parsing and caching are described there), in one Secrets Manager secret. Broker keys
are RS256 with random kids; Auth0's revoke takes a ``previous`` key out of the published and
accepted set (kept, public part only, so the Management API can list it).

Each container reads the set through the Secrets Manager cache (minutes), so after a rotation in one
container the others still hold the old set for a while. Verification therefore accepts ``next``
keys as well (another container's new ``current``), and a ``kid`` outside the cached set makes one
re-read of the secret, at most once per :data:`REREAD_SECONDS` per container, so a stream of
random ``kid`` values costs at most one Secrets Manager call per interval.
"""
from __future__ import annotations

import base64
import json

from chalicelib.keysets import Key, KeySet, KeySets, certificate_facts, iso, recently_revoked, utc_now
from chalicelib.keysets import generate_key as generate_set_key
from chalicelib.secrets import SecretStore, secret_store, signing_keys_secret_name
from chalicelib.settings import get_settings

ALGORITHM = "RS256"
REREAD_SECONDS = 30
DESCRIPTION = "Identity broker signing keys (JWKS)"


class SigningKey(Key):
    """A broker signing key; its secret keeps the format it always had (no ``algorithm``)."""

    STORED = ("kid", "status", "jwk", "cert", "created_at", "current_since", "revoked_at")
    DEFAULT_ALGORITHM = ALGORITHM
    PUBLISH_X5T_S256 = False


_SETS = KeySets(SigningKey)


def generate_key(status: str) -> SigningKey:
    issuer_host = get_settings().issuer.split("//", 1)[1].split("/", 1)[0]
    return generate_set_key(SigningKey, status, algorithm=ALGORITHM, random_kid=True,
                     subject=[("CN", issuer_host[:64] or "broker")])


def _first_keys() -> list[SigningKey]:
    return [generate_key("current"), generate_key("next")]


def _secret_name() -> str:
    return signing_keys_secret_name(get_settings().secret_prefix)


def load_keys(store: SecretStore | None = None) -> KeySet[SigningKey]:
    """The key set as this container caches it (generated on first use); ``store`` is the
    container's secret store. A ``(keys, loaded)`` pair."""
    return _SETS.ensure(_secret_name(), store or secret_store(), _first_keys,
                        description=DESCRIPTION)


def signing_keys(store: SecretStore | None = None) -> list[SigningKey]:
    return load_keys(store).keys


def _current(keys: KeySet[SigningKey]) -> SigningKey:
    key = keys.current()
    if key is None:
        raise RuntimeError("no current signing key")
    return key


def current_key() -> SigningKey:
    return _current(load_keys())


def public_jwks() -> dict:
    return load_keys().public_jwks()


def sign_jwt(claims: dict, typ: str = "JWT", *, store: SecretStore | None = None) -> str:
    from joserfc import jwt

    keys = load_keys(store)
    key = _current(keys)
    return jwt.encode({"alg": ALGORITHM, "kid": key.kid, "typ": typ}, claims, keys.loaded[key.kid],
                      algorithms=[ALGORITHM])


class TokenRejected(Exception):
    """The token is not one of ours, or not valid; the message is safe to show."""


def verify_jwt(token: str, *, typ: str | None = None, store: SecretStore | None = None):
    """Verify a JWT signed by one of our published keys; returns joserfc's token (header, claims)."""
    from joserfc import jwt
    from joserfc.errors import JoseError

    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 8192:
        raise TokenRejected("Invalid token")
    keys = load_keys(store)
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".", 1)[0] + "==="))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise TokenRejected("Invalid token") from None
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        raise TokenRejected("Invalid token algorithm")
    if typ is not None and header.get("typ") != typ:
        raise TokenRejected("Invalid token type")
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= 128:
        raise TokenRejected("Invalid token signing key")
    if not keys.verifies(kid):
        # Perhaps a key another container made current after ours cached the set: one re-read,
        # rate-limited per container, before refusing (SPEC §2.4).
        fresh = _SETS.reread(_secret_name(), store or secret_store(), at_most_every=REREAD_SECONDS)
        if fresh is None or not fresh.verifies(kid):
            raise TokenRejected("Invalid token signing key")
        keys = fresh
    try:
        return jwt.decode(token, keys.loaded[kid], algorithms=[ALGORITHM])
    except (JoseError, ValueError, RecursionError):
        raise TokenRejected("Invalid token signature") from None


def _latest(store: SecretStore) -> KeySet[SigningKey]:
    return _SETS.latest(_secret_name(), store, _first_keys, description=DESCRIPTION)


def rotate(store: SecretStore | None = None) -> SigningKey:
    """next → current, current → previous, a new next; older previous keys are retired (the
    engine's rotation). Returns the new current key. Read-modify-write on the secret past this
    container's cache: rotations are rare admin actions."""
    store = store or secret_store()
    promoted, _ = _SETS.rotate(_secret_name(), store, _latest(store), generate_key)
    return promoted


class SigningKeyNotFound(LookupError):
    pass


class SigningKeyNotRevocable(ValueError):
    """Only a previously used key can be revoked; the message is safe to show."""


def revoke(kid: str, store: SecretStore | None = None) -> SigningKey:
    """Auth0's revoke: a ``previous`` key leaves the published set and stops verifying at once in
    this container (the write refreshes its cache) and on the next key-set read elsewhere. The
    current and next keys cannot be revoked (rotate first). The private part is dropped.

    Read-modify-write on the secret, past this container's cache, like :func:`rotate`.
    """
    store = store or secret_store()
    keys = _latest(store).keys
    target = next((k for k in keys if k.kid == kid), None)
    if target is None:
        raise SigningKeyNotFound(kid)
    if target.status == "revoked":
        raise SigningKeyNotRevocable("The signing key is already revoked")
    if target.status != "previous":
        raise SigningKeyNotRevocable(
            f"The {target.status} signing key cannot be revoked; only a previously used key can "
            "be revoked (rotate first)")
    revoked = target.public_part().with_status("revoked", revoked_at=iso(utc_now()))
    kept = [k for k in keys if k.status != "revoked" and k.kid != kid]
    _SETS.write(_secret_name(), store, kept + recently_revoked(
        [k for k in keys if k.status == "revoked"] + [revoked]))
    return revoked


def key_view(key: SigningKey) -> dict:
    """Auth0's signing-key object."""
    pkcs7, fingerprint, thumbprint = certificate_facts(key)
    view = {
        "kid": key.kid,
        "cert": key.cert,
        "pkcs7": pkcs7,
        "fingerprint": fingerprint,
        "thumbprint": thumbprint,
        "current": key.status == "current",
        "next": key.status == "next",
        "previous": key.status == "previous",
        "revoked": key.status == "revoked",
    }
    if key.current_since:
        view["current_since"] = key.current_since
    if key.revoked_at:
        view["revoked_at"] = key.revoked_at
    return view
