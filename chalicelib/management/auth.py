"""Bearer-token authentication and scope checks for the Management API (SPEC §2.1)."""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib import clock
from chalicelib.errors import InsufficientScope, InvalidToken
from chalicelib.keys import TokenRejected, verify_jwt
from chalicelib.settings import get_settings

MANAGEMENT_SCOPES = (
    "create:connections", "read:connections", "update:connections", "delete:connections",
    "read:connections_options", "update:connections_options",
    "create:clients", "read:clients", "update:clients", "delete:clients",
    "create:client_grants", "read:client_grants", "update:client_grants", "delete:client_grants",
    "read:users", "update:users", "delete:users",
    "read:refresh_tokens", "delete:refresh_tokens",
    "read:sessions", "delete:sessions",
    "read:signing_keys", "create:signing_keys", "update:signing_keys",
    # Auth0's scopes for the connection key routes; read:/update:connections work there too.
    "read:connections_keys", "create:connections_keys", "update:connections_keys",
    "read:resource_servers", "create:resource_servers", "update:resource_servers",
    "delete:resource_servers",
    "read:tenant_settings", "update:tenant_settings",
    # Log events (SPEC §9): every event, or (users/{id}/logs) a user's.
    "read:logs", "read:logs_users",
)

LEEWAY_SECONDS = 0  # our own tokens: our own clock


@dataclass(frozen=True)
class Caller:
    client_id: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes


def authenticate(authorization: str | None, now: float | None = None) -> Caller:
    if not authorization:
        raise InvalidToken("Missing authentication")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("Bad HTTP authentication header format")
    settings = get_settings()
    try:
        decoded = verify_jwt(token.strip(), typ="at+jwt")
    except TokenRejected as exc:
        raise InvalidToken(str(exc)) from None
    claims = decoded.claims
    now = clock.now() if now is None else now
    if claims.get("iss") != settings.issuer:
        raise InvalidToken("Invalid token issuer")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if settings.management_audience not in audiences:
        raise InvalidToken("Invalid token audience")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now - LEEWAY_SECONDS:
        raise InvalidToken("Expired token")
    iat = claims.get("iat")
    if not isinstance(iat, int) or iat > now + 60:
        raise InvalidToken("Invalid token issue time")
    if claims.get("gty") != "client-credentials":
        # Only machine tokens from the client-credentials grant manage the broker; a user's
        # access token never does, whatever scopes it carries.
        raise InvalidToken("Invalid token grant type")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidToken("Invalid token scope")
    client_id = claims.get("azp") or claims.get("client_id") or ""
    # Cold start: ``import app`` loads this module; the clients module (its pydantic models)
    # loads only when a Management API token is checked.
    from chalicelib.management import clients as clients_module

    if not clients_module.client_is_active(client_id):
        raise InvalidToken("The token's client no longer exists")
    return Caller(client_id=client_id, scopes=frozenset(scope.split()))


def require_any(caller: Caller, *scopes: str) -> None:
    """Any one of the listed scopes is enough."""
    if not any(caller.has(s) for s in scopes):
        raise InsufficientScope(f"Insufficient scope, expected any of: {' '.join(scopes)}")


def require(caller: Caller, *scopes: str) -> None:
    """Every listed scope is required."""
    missing = [s for s in scopes if not caller.has(s)]
    if missing:
        raise InsufficientScope(f"Insufficient scope, expected all of: {' '.join(scopes)}")
