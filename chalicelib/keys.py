"""The broker's own signing keys: generate, publish, sign, verify, rotate.

The key set lives in one Secrets Manager secret as JSON: each key has a ``status`` of ``current``
(signs), ``next`` (published ahead of rotation so relying parties cache it early), ``previous``
(still published so tokens it signed keep verifying) or ``revoked`` (Auth0's revoke: no longer
published nor accepted; kept, public part only, so the Management API can list it). It is
generated on first use; concurrent first uses race on ``CreateSecret`` and the loser reads the
winner's keys.

Each container reads the set through the Secrets Manager cache (minutes), so after a rotation in one
container the others still hold the old set for a while. Verification therefore accepts ``next``
keys as well (another container's new ``current``), and a ``kid`` outside the cached set makes one
re-read of the secret, at most once per :data:`REREAD_SECONDS` per container, so a stream of
random ``kid`` values costs at most one Secrets Manager call per interval.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets as pysecrets
import threading
from dataclasses import dataclass

from chalicelib.secrets import (
    SecretExists,
    SecretNotFound,
    SecretStore,
    secret_store,
    signing_keys_secret_name,
)
from chalicelib.settings import get_settings

ALGORITHM = "RS256"
# Keys whose signatures we accept: a key is `next` here while it may already be `current` in
# another container's fresher copy of the set, and `previous` while tokens it signed still live.
VERIFYING_STATUSES = ("current", "next", "previous")
REREAD_SECONDS = 30
KEPT_REVOKED = 3  # Auth0 lists the last three revoked keys


@dataclass(frozen=True)
class SigningKey:
    kid: str
    status: str
    jwk: dict  # private JWK; never leaves this module except through public_jwk
    cert: str
    created_at: str
    current_since: str | None
    revoked_at: str | None = None

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, status={self.status!r})"

    @property
    def public_jwk(self) -> dict:
        public = {k: v for k, v in self.jwk.items() if k in ("kty", "n", "e", "kid", "use", "alg")}
        public["x5c"] = [_cert_der_b64(self.cert)]
        public["x5t"] = _b64url(hashlib.sha1(base64.b64decode(public["x5c"][0])).digest())
        return public


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _cert_der_b64(pem: str) -> str:
    body = "".join(line for line in pem.strip().splitlines() if "-----" not in line)
    return body


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def generate_key(status: str) -> SigningKey:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    from joserfc.jwk import RSAKey

    kid = _b64url(pysecrets.token_bytes(16))
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": ALGORITHM}, private=True)
    issuer_host = get_settings().issuer.split("//", 1)[1].split("/", 1)[0]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_host[:64] or "broker")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key.private_key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return SigningKey(
        kid=kid,
        status=status,
        jwk=key.as_dict(private=True),
        cert=pem,
        created_at=_iso(now),
        current_since=_iso(now) if status == "current" else None,
    )


def _encode(keys: list[SigningKey]) -> str:
    return json.dumps({"keys": [k.__dict__ for k in keys]})


_parsed: dict[str, tuple[list[SigningKey], dict]] = {}
_parse_lock = threading.Lock()


def _decode(raw: str) -> tuple[list[SigningKey], dict]:
    """Parse the secret once per distinct value: key loading is not repeated per request."""
    found = _parsed.get(raw)
    if found is not None:
        return found
    from joserfc.jwk import RSAKey

    keys = [SigningKey(**item) for item in json.loads(raw)["keys"]]
    loaded = {k.kid: RSAKey.import_key(k.jwk) for k in keys}
    with _parse_lock:
        _parsed.clear()
        _parsed[raw] = (keys, loaded)
    return keys, loaded


def _secret_name() -> str:
    return signing_keys_secret_name(get_settings().secret_prefix)


def load_keys(store: SecretStore | None = None) -> tuple[list[SigningKey], dict]:
    """The key set as this container caches it; ``store`` is the container's secret store."""
    name = _secret_name()
    store = store or secret_store()
    try:
        return _decode(store.get(name))
    except SecretNotFound:
        fresh = _encode([generate_key("current"), generate_key("next")])
        try:
            store.create(name, fresh, description="Identity broker signing keys (JWKS)")
        except SecretExists:
            store.forget(name)
            return _decode(store.get(name))
        return _decode(fresh)


def _reread_keys(store: SecretStore | None) -> tuple[list[SigningKey], dict]:
    """The key set fresh from Secrets Manager, rate-limited per container (see the module doc)."""
    store = store or secret_store()
    try:
        return _decode(store.reread(_secret_name(), at_most_every=REREAD_SECONDS))
    except SecretNotFound:
        raise TokenRejected("Invalid token signing key") from None


def signing_keys(store: SecretStore | None = None) -> list[SigningKey]:
    return load_keys(store)[0]


def current_key() -> SigningKey:
    for key in signing_keys():
        if key.status == "current":
            return key
    raise RuntimeError("no current signing key")


def public_jwks() -> dict:
    order = {"current": 0, "next": 1, "previous": 2}
    keys = sorted(signing_keys(), key=lambda k: order.get(k.status, 3))
    return {"keys": [k.public_jwk for k in keys if k.status in order]}


def sign_jwt(claims: dict, typ: str = "JWT", *, store: SecretStore | None = None) -> str:
    from joserfc import jwt

    keys, loaded = load_keys(store)
    key = next(k for k in keys if k.status == "current")
    return jwt.encode({"alg": ALGORITHM, "kid": key.kid, "typ": typ}, claims, loaded[key.kid],
                      algorithms=[ALGORITHM])


class TokenRejected(Exception):
    """The token is not one of ours, or not valid; the message is safe to show."""


def _verifying(keys: list[SigningKey]) -> set[str]:
    return {k.kid for k in keys if k.status in VERIFYING_STATUSES}


def verify_jwt(token: str, *, typ: str | None = None, store: SecretStore | None = None):
    """Verify a JWT signed by one of our published keys; returns joserfc's token (header, claims)."""
    from joserfc import jwt
    from joserfc.errors import JoseError

    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 8192:
        raise TokenRejected("Invalid token")
    keys, loaded = load_keys(store)
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
    if kid not in _verifying(keys):
        # Perhaps a key another container made current after ours cached the set: one re-read,
        # rate-limited per container, before refusing (SPEC §2.4).
        keys, loaded = _reread_keys(store)
        if kid not in _verifying(keys):
            raise TokenRejected("Invalid token signing key")
    try:
        return jwt.decode(token, loaded[kid], algorithms=[ALGORITHM])
    except (JoseError, ValueError, RecursionError):
        raise TokenRejected("Invalid token signature") from None


def rotate(store: SecretStore | None = None) -> SigningKey:
    """next → current, current → previous, a new next; older previous keys are retired.

    Read-modify-write on the secret: rotations are rare admin actions. The set is read past this
    container's cache, so a rotation builds on the latest one made anywhere, and the write leaves
    the new set in this container's cache at once.
    """
    name = _secret_name()
    store = store or secret_store()
    store.forget(name)
    keys = signing_keys(store)
    now = _iso(_now())
    rotated: list[SigningKey] = []
    promoted = None
    for key in keys:
        if key.status == "current":
            rotated.append(SigningKey(**{**key.__dict__, "status": "previous"}))
        elif key.status == "next":
            promoted = SigningKey(**{**key.__dict__, "status": "current", "current_since": now})
            rotated.append(promoted)
    if promoted is None:
        promoted = generate_key("current")
        rotated.append(promoted)
    rotated.append(generate_key("next"))
    store.put(name, _encode(rotated + _recently_revoked(keys)))
    return promoted


def _recently_revoked(keys: list[SigningKey]) -> list[SigningKey]:
    revoked = sorted((k for k in keys if k.status == "revoked"), key=lambda k: k.revoked_at or "")
    return revoked[-KEPT_REVOKED:]


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
    name = _secret_name()
    store = store or secret_store()
    store.forget(name)
    keys = signing_keys(store)
    target = next((k for k in keys if k.kid == kid), None)
    if target is None:
        raise SigningKeyNotFound(kid)
    if target.status == "revoked":
        raise SigningKeyNotRevocable("The signing key is already revoked")
    if target.status != "previous":
        raise SigningKeyNotRevocable(
            f"The {target.status} signing key cannot be revoked; only a previously used key can "
            "be revoked (rotate first)")
    public = {k: v for k, v in target.jwk.items() if k in ("kty", "n", "e", "kid", "use", "alg")}
    revoked = SigningKey(**{**target.__dict__, "status": "revoked", "jwk": public,
                            "revoked_at": _iso(_now())})
    kept = [k for k in keys if k.status != "revoked" and k.kid != kid]
    store.put(name, _encode(kept + _recently_revoked(
        [k for k in keys if k.status == "revoked"] + [revoked])))
    return revoked


def key_view(key: SigningKey) -> dict:
    """Auth0's signing-key object."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

    der = base64.b64decode(_cert_der_b64(key.cert))
    certificate = x509.load_der_x509_certificate(der)
    view = {
        "kid": key.kid,
        "cert": key.cert,
        "pkcs7": pkcs7.serialize_certificates([certificate], Encoding.PEM).decode(),
        "fingerprint": ":".join(f"{b:02X}" for b in hashlib.sha1(der).digest()),
        "thumbprint": hashlib.sha1(der).hexdigest(),
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
