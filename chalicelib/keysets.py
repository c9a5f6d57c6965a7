"""The one key-set engine: the broker's own signing keys (:mod:`chalicelib.keys`) and each
connection's ``private_key_jwt`` keys (:mod:`chalicelib.management.connection_keys`) are both key
sets built, stored, read, rotated and published here.

A key set lives in ONE Secrets Manager secret as JSON ``{"keys": [...]}``. Each key has a status:

- ``current`` signs;
- ``next`` is published ahead of rotation, so relying parties (or upstream IdPs) that cache the
  JWKS already know it — and another container's fresher copy may already sign with it;
- ``previous`` is still published after a rotation, so what it signed keeps verifying (and a
  warm container whose secret cache predates the rotation may still sign with it);
- ``revoked`` (broker keys only, Auth0's revoke) is neither published nor accepted; the last
  :data:`KEPT_REVOKED` are kept, public part only, so they can still be listed.

The set is generated on first use; concurrent first uses race on ``CreateSecret`` and the loser
reads the winner's keys. Reads go through the container's secret store cache (minutes); a parsed
set is kept per secret value, so private keys are not re-imported per request. A change (rotate,
revoke) reads the set past the cache, so it builds on the latest change made anywhere, and its
write leaves the new set in this container's cache at once. Two rules bound what input can cost:
a re-read past the cache (an unknown ``kid``) happens at most once per interval per container,
and a remembered miss (a set that does not exist) is trusted for a while.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets as pysecrets
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, ClassVar, Generic, NamedTuple, Self, Sequence, TypeVar

from chalicelib import clock
from chalicelib.secrets import SecretExists, SecretNotFound, SecretStore

if TYPE_CHECKING:
    from joserfc.jwk import ECKey, KeyParameters, RSAKey

# Published (in this order) and accepted for verification.
STATUS_ORDER = {"current": 0, "next": 1, "previous": 2}
VERIFYING_STATUSES = tuple(STATUS_ORDER)
KEPT_REVOKED = 3  # Auth0 lists the last three revoked keys
PUBLIC_MEMBERS = {"RSA": ("kty", "n", "e"), "EC": ("kty", "crv", "x", "y")}
# Parsed sets kept per container (one per secret); more than this and the cache starts over.
MAX_PARSED = 512


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def utc_now() -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.now(), dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Key:
    """One key of a set. ``jwk`` is the private JWK: it never leaves the engine and its two users
    except through :attr:`public_jwk` (or as a joserfc key to sign with) — never in a response, a
    log line or DynamoDB."""

    kid: str
    status: str
    algorithm: str
    jwk: dict
    cert: str  # self-signed X.509, PEM (IdPs such as Entra ID register a certificate)
    created_at: str
    current_since: str | None = None
    revoked_at: str | None = None

    # What a kind of key writes to its secret, in this order (the stored format of each kind).
    STORED: ClassVar[tuple[str, ...]] = ("kid", "status", "algorithm", "jwk", "cert", "created_at",
                                         "current_since", "revoked_at")
    # The algorithm of stored keys that do not name one.
    DEFAULT_ALGORITHM: ClassVar[str] = "RS256"
    # Whether the public JWK carries the SHA-256 certificate thumbprint as well as the SHA-1 one.
    PUBLISH_X5T_S256: ClassVar[bool] = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kid={self.kid!r}, status={self.status!r})"

    @classmethod
    def from_stored(cls, item: dict) -> Self:
        return cls(**{"algorithm": cls.DEFAULT_ALGORITHM, **item})

    def stored(self) -> dict:
        return {name: getattr(self, name) for name in self.STORED}

    @property
    def cert_der(self) -> bytes:
        body = "".join(line for line in self.cert.strip().splitlines() if "-----" not in line)
        return base64.b64decode(body)

    @property
    def x5t(self) -> str:
        return b64url(hashlib.sha1(self.cert_der).digest())  # noqa: S324 - RFC 7515 x5t is SHA-1

    @property
    def x5t_s256(self) -> str:
        return b64url(hashlib.sha256(self.cert_der).digest())

    @property
    def public_jwk(self) -> dict:
        public = {k: self.jwk[k] for k in PUBLIC_MEMBERS[self.jwk["kty"]]}
        public.update({"kid": self.kid, "use": "sig", "alg": self.algorithm,
                       "x5c": [base64.b64encode(self.cert_der).decode()], "x5t": self.x5t})
        if self.PUBLISH_X5T_S256:
            public["x5t#S256"] = self.x5t_s256
        return public

    def with_status(self, status: str, **changes) -> Self:
        return replace(self, status=status, **changes)

    def public_part(self) -> Self:
        """The key without its private members (what a revoked key keeps)."""
        members = PUBLIC_MEMBERS[self.jwk["kty"]] + ("kid", "use", "alg")
        return replace(self, jwk={k: v for k, v in self.jwk.items() if k in members})


# A kind of key (Key or a subclass): the engine hands back keys of the kind it was given.
K = TypeVar("K", bound=Key)


def certificate_facts(key: Key) -> tuple[str, str, str]:
    """Auth0's certificate fields of a key object: (PKCS#7 PEM, SHA-1 fingerprint as colon-separated
    upper-case hex pairs, SHA-1 as lower-case hex)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

    der = key.cert_der
    certificate = x509.load_der_x509_certificate(der)
    digest = hashlib.sha1(der).hexdigest()  # noqa: S324 - Auth0's SHA-1 thumbprint
    upper = digest.upper()
    return (pkcs7.serialize_certificates([certificate], Encoding.PEM).decode(),
            ":".join(upper[i:i + 2] for i in range(0, len(upper), 2)), digest)


def subject_dn(key: Key) -> str:
    from cryptography import x509

    return x509.load_der_x509_certificate(key.cert_der).subject.rfc4514_string()


def generate_key(key_class: type[K], status: str, *, algorithm: str,
                 subject: Sequence[tuple[str, str]], random_kid: bool = False) -> K:
    """A new key and its self-signed certificate (valid from 5 minutes ago for 10 years).

    ``subject``: (attribute, value) pairs, attribute ``"O"`` or ``"CN"``. The kid is the key's
    RFC 7638 thumbprint, or with ``random_kid`` 128 random bits (the JWK then names its kid, use
    and alg too).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    from joserfc.jwk import ECKey, RSAKey

    parameters: KeyParameters | None
    if random_kid:
        kid = b64url(pysecrets.token_bytes(16))
        parameters = {"kid": kid, "use": "sig", "alg": algorithm}
    else:
        parameters = None
    key: ECKey | RSAKey
    if algorithm == "ES256":
        key = ECKey.generate_key("P-256", parameters=parameters, private=True)
    else:
        key = RSAKey.generate_key(2048, parameters=parameters, private=True)
    if not random_kid:
        kid = key.thumbprint()
    private_key = key.private_key
    if private_key is None:  # generated with private=True: always there
        raise RuntimeError("generated key has no private part")
    oids = {"O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME}
    name = x509.Name([x509.NameAttribute(oids[attribute], value) for attribute, value in subject])
    now = utc_now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(private_key, hashes.SHA256())
    )
    return key_class(
        kid=kid,
        status=status,
        algorithm=algorithm,
        jwk=key.as_dict(private=True),
        cert=cert.public_bytes(serialization.Encoding.PEM).decode(),
        created_at=iso(now),
        current_since=iso(now) if status == "current" else None,
    )


class KeySet(NamedTuple, Generic[K]):
    """A parsed key set: its keys (stored order) and their joserfc keys by kid."""

    keys: list[K]
    loaded: dict[str, ECKey | RSAKey]

    def current(self) -> K | None:
        return next((k for k in self.keys if k.status == "current"), None)

    def find(self, kid: str) -> K | None:
        return next((k for k in self.keys if k.kid == kid), None)

    def verifies(self, kid: str) -> bool:
        """Whether signatures by ``kid`` are accepted (current, next or previous)."""
        return any(k.kid == kid and k.status in VERIFYING_STATUSES for k in self.keys)

    def published(self) -> list[K]:
        """current, next, previous — the JWKS order; revoked keys are left out."""
        return sorted((k for k in self.keys if k.status in STATUS_ORDER),
                      key=lambda k: STATUS_ORDER[k.status])

    def public_jwks(self) -> dict:
        return {"keys": [k.public_jwk for k in self.published()]}


def rotated(keys: Sequence[K], new_key: Callable[[str], K]) -> tuple[list[K], K, K]:
    """next → current, current → previous, a new next; older previous keys are retired and the
    last :data:`KEPT_REVOKED` revoked keys kept. ``(keys, promoted, new next)``."""
    now = iso(utc_now())
    result: list[K] = []
    promoted = None
    for key in keys:
        if key.status == "current":
            result.append(key.with_status("previous"))
        elif key.status == "next":
            promoted = key.with_status("current", current_since=now)
            result.append(promoted)
    if promoted is None:
        promoted = new_key("current")
        result.append(promoted)
    new_next = new_key("next")
    result.append(new_next)
    return result + recently_revoked(keys), promoted, new_next


def recently_revoked(keys: Sequence[K]) -> list[K]:
    revoked = sorted((k for k in keys if k.status == "revoked"), key=lambda k: k.revoked_at or "")
    return revoked[-KEPT_REVOKED:]


class KeySets(Generic[K]):
    """The key sets of one kind of key: their secrets, the parsed sets and the remembered misses
    of this container.

    ``miss_seconds``: how long a set found missing is trusted to be missing by reads that allow it
    (None: misses are not remembered).
    """

    def __init__(self, key_class: type[K], *, miss_seconds: float | None = None):
        self.key_class = key_class
        self.miss_seconds = miss_seconds
        self._parsed: dict[str, tuple[str, KeySet[K]]] = {}
        self._missing: dict[str, float] = {}
        self._lock = threading.Lock()

    # --- serialization -----------------------------------------------------------------------

    @staticmethod
    def encode(keys: Sequence[Key]) -> str:
        return json.dumps({"keys": [k.stored() for k in keys]})

    def decode(self, name: str, raw: str) -> KeySet[K]:
        """Parse a secret value once: private keys are not re-imported per request."""
        found = self._parsed.get(name)
        if found is not None and found[0] == raw:
            return found[1]
        from joserfc.jwk import ECKey, RSAKey

        keys = [self.key_class.from_stored(item) for item in json.loads(raw)["keys"]]
        loaded = {k.kid: (RSAKey if k.jwk["kty"] == "RSA" else ECKey).import_key(k.jwk)
                  for k in keys}
        parsed = KeySet(keys, loaded)
        with self._lock:
            if len(self._parsed) >= MAX_PARSED:
                self._parsed.clear()
            self._parsed[name] = (raw, parsed)
        return parsed

    # --- reads -------------------------------------------------------------------------------

    def read(self, name: str, store: SecretStore, *, trust_miss: bool = False) -> KeySet[K] | None:
        """The set as this container caches it, or None when there is none (remembered when
        misses are; ``trust_miss`` answers None from a remembered miss without a call)."""
        if trust_miss:
            missed = self._missing.get(name)
            if missed is not None and missed > clock.monotonic():
                return None
        try:
            raw = store.get(name)
        except SecretNotFound:
            if self.miss_seconds is not None:
                with self._lock:
                    self._missing[name] = clock.monotonic() + self.miss_seconds
            return None
        return self.decode(name, raw)

    def reread(self, name: str, store: SecretStore, *, at_most_every: float) -> KeySet[K] | None:
        """The set fresh from Secrets Manager, at most once per ``at_most_every`` seconds per
        container (otherwise the cached set): for a ``kid`` the cached set does not know."""
        try:
            return self.decode(name, store.reread(name, at_most_every=at_most_every))
        except SecretNotFound:
            return None

    def create(self, name: str, store: SecretStore, keys: Sequence[K], *,
               description: str) -> tuple[KeySet[K], bool]:
        """Store a new set; ``(set, created)`` — False, with the winner's set, when another writer
        created it first."""
        raw = self.encode(keys)
        with self._lock:
            self._missing.pop(name, None)
        try:
            store.create(name, raw, description=description)
        except SecretExists:
            store.forget(name)
            return self.decode(name, store.get(name)), False
        return self.decode(name, raw), True

    def ensure(self, name: str, store: SecretStore, first_keys: Callable[[], Sequence[K]], *,
               description: str) -> KeySet[K]:
        """The set, generated (``first_keys()``: current and next) on first use."""
        found = self.read(name, store)
        if found is not None:
            return found
        return self.create(name, store, first_keys(), description=description)[0]

    # --- changes -----------------------------------------------------------------------------

    def latest(self, name: str, store: SecretStore, first_keys: Callable[[], Sequence[K]], *,
               description: str) -> KeySet[K]:
        """The set read past this container's cache: what a change builds on."""
        store.forget(name)
        return self.ensure(name, store, first_keys, description=description)

    def write(self, name: str, store: SecretStore, keys: Sequence[K]) -> None:
        """Read-modify-write's write: two changes at the same moment leave one of them, still a
        consistent set; the new set is in this container's cache at once."""
        store.put(name, self.encode(keys))

    def rotate(self, name: str, store: SecretStore, latest: KeySet[K],
               new_key: Callable[[str], K]) -> tuple[K, K]:
        """Rotate ``latest`` (see :func:`rotated`) and write it; ``(promoted, new next)``."""
        keys, promoted, new_next = rotated(latest.keys, new_key)
        self.write(name, store, keys)
        return promoted, new_next

    def forget(self, name: str) -> None:
        """Drop what this container remembers of the set (it is being deleted)."""
        with self._lock:
            self._parsed.pop(name, None)
            self._missing.pop(name, None)

