"""Per-connection key pairs for ``private_key_jwt`` client authentication to upstream IdPs.

The broker authenticates to a connection's token endpoint with a signed JWT (RFC 7523) instead of
a client secret. Each connection has its own key set — a key set of the one engine,
:mod:`chalicelib.keysets`, as the broker's own signing keys are — in ONE Secrets Manager secret
``{prefix}connections/{id}/keys``. Each key: ``kid`` (its RFC 7638 thumbprint), ``status``
(``current`` signs assertions, ``next`` and ``previous`` are published: see the engine),
``algorithm``, ``created_at``, ``current_since``, the private ``jwk`` and a self-signed X.509
``cert`` (IdPs such as Entra ID register a certificate rather than a JWKS URL).

Keys are RS256 (RSA 2048) by default: the one algorithm every IdP that supports private_key_jwt
accepts (Entra ID, for one, takes RSA only); ``signing_alg`` may pick RS512, PS256 or ES256.

Private key material never leaves the engine and this module except as a joserfc key object
handed to :mod:`chalicelib.login.client_assertion`.
"""
from __future__ import annotations

from chalicelib.errors import Conflict, InvalidBody
from chalicelib.keysets import Key, KeySet, KeySets, certificate_facts, subject_dn
from chalicelib.keysets import generate_key as generate_set_key
from chalicelib.secrets import secret_store
from chalicelib.settings import get_settings

DEFAULT_ALGORITHM = "RS256"
ALGORITHMS = ("RS256", "RS512", "PS256", "ES256")
# An unauthenticated JWKS request for a connection without keys must not cost a Secrets Manager
# call each time: misses are remembered this long (per container).
MISS_SECONDS = 60


class ConnectionKey(Key):
    """A connection's key; its secret keeps the format it always had (no ``revoked_at``)."""

    STORED = ("kid", "status", "algorithm", "jwk", "cert", "created_at", "current_since")


_SETS = KeySets(ConnectionKey, miss_seconds=MISS_SECONDS)


def keys_secret_name(prefix: str, connection_id: str) -> str:
    return f"{prefix}connections/{connection_id}/keys"


def _secret_name(connection_id: str) -> str:
    return keys_secret_name(get_settings().secret_prefix, connection_id)


def _description(connection: dict) -> str:
    return f"private_key_jwt keys of connection {connection['name']}"


def generate_key(connection: dict, status: str, algorithm: str = DEFAULT_ALGORITHM) -> ConnectionKey:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm}")
    host = get_settings().issuer.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0] or "broker"
    return generate_set_key(ConnectionKey, status, algorithm=algorithm,
                            subject=[("O", host[:64]), ("CN", connection["name"][:64])])


def _first_keys(connection: dict, algorithm: str = DEFAULT_ALGORITHM):
    return lambda: [generate_key(connection, "current", algorithm),
                    generate_key(connection, "next", algorithm)]


def load_keys(connection: dict, *, trust_miss: bool = True) -> KeySet[ConnectionKey] | None:
    """The connection's keys and their loaded joserfc keys (a ``(keys, loaded)`` pair), or None
    when it has none yet."""
    return _SETS.read(_secret_name(connection["id"]), secret_store(), trust_miss=trust_miss)


def create_keys(connection: dict, algorithm: str = DEFAULT_ALGORITHM,
                ) -> tuple[list[ConnectionKey], dict, bool]:
    """Create the key set (current + next); ``(keys, loaded, created)`` — False when it existed."""
    found, created = _SETS.create(_secret_name(connection["id"]), secret_store(),
                                  _first_keys(connection, algorithm)(),
                                  description=_description(connection))
    return found.keys, found.loaded, created


def ensure_keys(connection: dict) -> KeySet[ConnectionKey]:
    """Keys on first use: load them, or generate them when there are none."""
    return _SETS.ensure(_secret_name(connection["id"]), secret_store(), _first_keys(connection),
                        description=_description(connection))


def uses_private_key_jwt(connection: dict) -> bool:
    return connection.get("options", {}).get("token_endpoint_auth_method") == "private_key_jwt"


def signing_key(connection: dict):
    """``(ConnectionKey, joserfc key)`` of the current key, generating the set on first use."""
    keys = ensure_keys(connection)
    key = keys.current()
    if key is None:
        raise RuntimeError("the connection's key set has no current key")
    return key, keys.loaded[key.kid]


def public_jwks(connection: dict) -> dict | None:
    """The published JWKS (current, next, previous), or None when the connection has no keys.

    Generated on first use only for connections that authenticate with private_key_jwt: the route
    is public, and an anonymous caller must not create secrets for other connections."""
    found = ensure_keys(connection) if uses_private_key_jwt(connection) else load_keys(connection)
    return None if found is None else found.public_jwks()


def list_keys(connection: dict) -> list[ConnectionKey]:
    return ensure_keys(connection).published()


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
    keys, loaded, created = create_keys(connection, algorithm)
    if not created:
        raise Conflict("The connection already has keys: rotate them instead",
                       error_code="connection_keys_exist")
    return KeySet(keys, loaded).published()


def rotate(connection: dict, body: dict | None) -> ConnectionKey:
    """The engine's rotation (next → current, current → previous, a new next); returns the new
    next key (Auth0's response). The new key keeps the current key's algorithm unless
    ``signing_alg`` says otherwise. Read-modify-write on the secret, built on the set read past
    this container's cache."""
    _check_algorithm(body)
    name, store = _secret_name(connection["id"]), secret_store()
    latest = _SETS.latest(name, store, _first_keys(connection),
                          description=_description(connection))
    current = latest.current()
    algorithm = _check_algorithm(body, current.algorithm if current else DEFAULT_ALGORITHM)
    _, new_next = _SETS.rotate(name, store, latest,
                               lambda status: generate_key(connection, status, algorithm))
    return new_next


def delete_keys(connection_id: str) -> None:
    """Schedule the key secret's deletion (a no-op when the connection never had keys)."""
    name = _secret_name(connection_id)
    _SETS.forget(name)
    secret_store().schedule_deletion(name)


def key_view(key: ConnectionKey, *, rotate_response: bool = False) -> dict:
    """Auth0's connection key object: public certificate material only."""
    pkcs7, fingerprint, thumbprint = certificate_facts(key)
    view: dict[str, str | bool] = {
        "kid": key.kid,
        "cert": key.cert,
        "pkcs": pkcs7,
        "fingerprint": fingerprint,
        "thumbprint": thumbprint.upper(),
        "algorithm": key.algorithm,
        "key_use": "signing",
        "subject_dn": subject_dn(key),
    }
    if rotate_response:
        view["next"] = True
        return view
    view.update({"current": key.status == "current", "next": key.status == "next",
                 "previous": key.status == "previous"})
    if key.current_since:
        view["current_since"] = key.current_since
    return view
