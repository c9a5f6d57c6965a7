"""Per-connection key pairs for ``private_key_jwt`` client authentication to upstream IdPs.

The broker authenticates to a connection's token endpoint with a signed JWT (RFC 7523) instead of
a client secret. Each connection has its own key set, in ONE Secrets Manager secret
``{prefix}connections/{id}/keys`` (JSON, as :mod:`chalicelib.keys` stores the broker's own signing
keys). Each key: ``kid`` (its RFC 7638 thumbprint), ``status`` — ``current`` (signs assertions),
``next`` (published ahead of rotation, so IdPs that cache the JWKS already know it) or ``previous``
(still published after a rotation: another warm container may sign with it until its secret cache
expires) — ``algorithm``, ``created_at``, ``current_since``, the private ``jwk`` and a self-signed
X.509 ``cert`` (IdPs such as Entra ID register a certificate rather than a JWKS URL).

Keys are RS256 (RSA 2048) by default: the one algorithm every IdP that supports private_key_jwt
accepts (Entra ID, for one, takes RSA only); ``signing_alg`` may pick RS512, PS256 or ES256.

The set is generated on first use; concurrent first uses race on ``CreateSecret`` and the loser
reads the winner's keys. Private key material never leaves this module except as a joserfc key
object handed to :mod:`chalicelib.login.client_assertion`.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
import time
from dataclasses import dataclass

from chalicelib.errors import Conflict, InvalidBody
from chalicelib.secrets import SecretExists, SecretNotFound, secret_store
from chalicelib.settings import get_settings

DEFAULT_ALGORITHM = "RS256"
ALGORITHMS = ("RS256", "RS512", "PS256", "ES256")
STATUS_ORDER = {"current": 0, "next": 1, "previous": 2}
# An unauthenticated JWKS request for a connection without keys must not cost a Secrets Manager
# call each time: misses are remembered this long (per container).
MISS_SECONDS = 60


def keys_secret_name(prefix: str, connection_id: str) -> str:
    return f"{prefix}connections/{connection_id}/keys"


def _secret_name(connection_id: str) -> str:
    return keys_secret_name(get_settings().secret_prefix, connection_id)


@dataclass(frozen=True)
class ConnectionKey:
    kid: str
    status: str
    algorithm: str
    jwk: dict  # private JWK: never in a response, a log line or DynamoDB
    cert: str
    created_at: str
    current_since: str | None = None

    def __repr__(self) -> str:
        return f"ConnectionKey(kid={self.kid!r}, status={self.status!r})"

    @property
    def cert_der(self) -> bytes:
        body = "".join(line for line in self.cert.strip().splitlines() if "-----" not in line)
        return base64.b64decode(body)

    @property
    def x5t(self) -> str:
        return _b64url(hashlib.sha1(self.cert_der).digest())  # noqa: S324 - RFC 7515 x5t is SHA-1

    @property
    def x5t_s256(self) -> str:
        return _b64url(hashlib.sha256(self.cert_der).digest())

    @property
    def public_jwk(self) -> dict:
        public_fields = ("kty", "n", "e") if self.jwk["kty"] == "RSA" else ("kty", "crv", "x", "y")
        public = {k: self.jwk[k] for k in public_fields}
        public.update({"kid": self.kid, "use": "sig", "alg": self.algorithm,
                       "x5c": [base64.b64encode(self.cert_der).decode()], "x5t": self.x5t,
                       "x5t#S256": self.x5t_s256})
        return public


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _subject(connection: dict):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    host = get_settings().issuer.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0] or "broker"
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, host[:64]),
        x509.NameAttribute(NameOID.COMMON_NAME, connection["name"][:64]),
    ])


def generate_key(connection: dict, status: str, algorithm: str = DEFAULT_ALGORITHM) -> ConnectionKey:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from joserfc.jwk import ECKey, RSAKey

    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm}")
    if algorithm == "ES256":
        key = ECKey.generate_key("P-256", private=True)
    else:
        key = RSAKey.generate_key(2048, private=True)
    kid = key.thumbprint()
    name = _subject(connection)
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
    return ConnectionKey(
        kid=kid,
        status=status,
        algorithm=algorithm,
        jwk=key.as_dict(private=True),
        cert=cert.public_bytes(serialization.Encoding.PEM).decode(),
        created_at=_iso(now),
        current_since=_iso(now) if status == "current" else None,
    )


def _encode(keys: list[ConnectionKey]) -> str:
    return json.dumps({"keys": [k.__dict__ for k in keys]})


_parsed: dict[str, tuple[str, list[ConnectionKey], dict]] = {}
_missing: dict[str, float] = {}
_lock = threading.Lock()


def _decode(connection_id: str, raw: str) -> tuple[list[ConnectionKey], dict]:
    """Parse a secret value once: private keys are not re-imported per request."""
    found = _parsed.get(connection_id)
    if found is not None and found[0] == raw:
        return found[1], found[2]
    from joserfc.jwk import ECKey, RSAKey

    keys = [ConnectionKey(**item) for item in json.loads(raw)["keys"]]
    loaded = {k.kid: (RSAKey if k.jwk["kty"] == "RSA" else ECKey).import_key(k.jwk) for k in keys}
    with _lock:
        if len(_parsed) > 512:
            _parsed.clear()
        _parsed[connection_id] = (raw, keys, loaded)
    return keys, loaded


def _sorted(keys: list[ConnectionKey]) -> list[ConnectionKey]:
    return sorted((k for k in keys if k.status in STATUS_ORDER), key=lambda k: STATUS_ORDER[k.status])


def load_keys(connection: dict, *, trust_miss: bool = True,
              ) -> tuple[list[ConnectionKey], dict] | None:
    """The connection's keys and their loaded joserfc keys, or None when it has none yet."""
    connection_id = connection["id"]
    missed = _missing.get(connection_id)
    if trust_miss and missed is not None and missed > time.monotonic():
        return None
    try:
        raw = secret_store().get(_secret_name(connection_id))
    except SecretNotFound:
        with _lock:
            _missing[connection_id] = time.monotonic() + MISS_SECONDS
        return None
    return _decode(connection_id, raw)


def create_keys(connection: dict, algorithm: str = DEFAULT_ALGORITHM,
                ) -> tuple[list[ConnectionKey], dict, bool]:
    """Create the key set (current + next); ``(keys, loaded, created)`` — False when it existed."""
    connection_id = connection["id"]
    name = _secret_name(connection_id)
    fresh = _encode([generate_key(connection, "current", algorithm),
                     generate_key(connection, "next", algorithm)])
    store = secret_store()
    with _lock:
        _missing.pop(connection_id, None)
    try:
        store.create(name, fresh,
                     description=f"private_key_jwt keys of connection {connection['name']}")
    except SecretExists:
        store.forget(name)
        keys, loaded = _decode(connection_id, store.get(name))
        return keys, loaded, False
    keys, loaded = _decode(connection_id, fresh)
    return keys, loaded, True


def ensure_keys(connection: dict) -> tuple[list[ConnectionKey], dict]:
    """Keys on first use: load them, or generate them when there are none."""
    found = load_keys(connection, trust_miss=False)
    if found is not None:
        return found
    keys, loaded, _ = create_keys(connection)
    return keys, loaded


def uses_private_key_jwt(connection: dict) -> bool:
    return connection.get("options", {}).get("token_endpoint_auth_method") == "private_key_jwt"


def signing_key(connection: dict):
    """``(ConnectionKey, joserfc key)`` of the current key, generating the set on first use."""
    keys, loaded = ensure_keys(connection)
    for key in keys:
        if key.status == "current":
            return key, loaded[key.kid]
    raise RuntimeError("the connection's key set has no current key")


def public_jwks(connection: dict) -> dict | None:
    """The published JWKS (current, next, previous), or None when the connection has no keys.

    Generated on first use only for connections that authenticate with private_key_jwt: the route
    is public, and an anonymous caller must not create secrets for other connections."""
    found = ensure_keys(connection) if uses_private_key_jwt(connection) else load_keys(connection)
    if found is None:
        return None
    return {"keys": [k.public_jwk for k in _sorted(found[0])]}


def list_keys(connection: dict) -> list[ConnectionKey]:
    return _sorted(ensure_keys(connection)[0])


def _check_algorithm(body: dict | None, default: str = DEFAULT_ALGORITHM) -> str:
    body = body or {}
    unknown = set(body) - {"signing_alg"}
    if unknown:
        raise InvalidBody("Payload validation error: 'Additional properties not allowed: "
                          f"{sorted(unknown)[0]}'")
    algorithm = body.get("signing_alg", default)
    if algorithm not in ALGORITHMS:
        raise InvalidBody("Payload validation error: 'signing_alg must be one of "
                          f"{', '.join(ALGORITHMS)}' on property signing_alg")
    return algorithm


def provision(connection: dict, body: dict | None) -> list[ConnectionKey]:
    """Auth0's ``POST /connections/{id}/keys``: the initial keys; 409 when there are keys already."""
    algorithm = _check_algorithm(body)
    if load_keys(connection, trust_miss=False) is not None:
        raise Conflict("The connection already has keys: rotate them instead",
                       error_code="connection_keys_exist")
    keys, _, created = create_keys(connection, algorithm)
    if not created:
        raise Conflict("The connection already has keys: rotate them instead",
                       error_code="connection_keys_exist")
    return _sorted(keys)


def rotate(connection: dict, body: dict | None) -> ConnectionKey:
    """next → current, current → previous (still published), a new next; older previous keys are
    retired. Returns the new next key (Auth0's response). The new key keeps the current key's
    algorithm unless ``signing_alg`` says otherwise. Read-modify-write on the secret: two
    rotations at the same moment leave one of them, still with a consistent key set; the write
    leaves the new set in this container's cache."""
    _check_algorithm(body)
    # Read past this container's cache: a rotation builds on the latest one made anywhere.
    secret_store().forget(_secret_name(connection["id"]))
    keys, _ = ensure_keys(connection)
    current = next((k.algorithm for k in keys if k.status == "current"), DEFAULT_ALGORITHM)
    algorithm = _check_algorithm(body, current)
    now = _iso(_now())
    rotated: list[ConnectionKey] = []
    promoted = None
    for key in keys:
        if key.status == "current":
            rotated.append(ConnectionKey(**{**key.__dict__, "status": "previous"}))
        elif key.status == "next":
            promoted = ConnectionKey(**{**key.__dict__, "status": "current", "current_since": now})
            rotated.append(promoted)
    if promoted is None:
        rotated.append(generate_key(connection, "current", algorithm))
    new_next = generate_key(connection, "next", algorithm)
    rotated.append(new_next)
    secret_store().put(_secret_name(connection["id"]), _encode(rotated))
    return new_next


def delete_keys(connection_id: str) -> None:
    """Schedule the key secret's deletion (a no-op when the connection never had keys)."""
    with _lock:
        _parsed.pop(connection_id, None)
        _missing.pop(connection_id, None)
    secret_store().schedule_deletion(_secret_name(connection_id))


def key_view(key: ConnectionKey, *, rotate_response: bool = False) -> dict:
    """Auth0's connection key object: public certificate material only."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

    der = key.cert_der
    certificate = x509.load_der_x509_certificate(der)
    digest = hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - Auth0's SHA-1 thumbprint
    view = {
        "kid": key.kid,
        "cert": key.cert,
        "pkcs": pkcs7.serialize_certificates([certificate], Encoding.PEM).decode(),
        "fingerprint": ":".join(digest[i:i + 2] for i in range(0, len(digest), 2)),
        "thumbprint": digest,
        "algorithm": key.algorithm,
        "key_use": "signing",
        "subject_dn": certificate.subject.rfc4514_string(),
    }
    if rotate_response:
        view["next"] = True
        return view
    view.update({"current": key.status == "current", "next": key.status == "next",
                 "previous": key.status == "previous"})
    if key.current_since:
        view["current_since"] = key.current_since
    return view
