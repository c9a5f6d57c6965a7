"""Every token and session lifetime in one place (seconds)."""
from __future__ import annotations

from typing import Any

AUTHORIZATION_CODE = 60          # SPEC §3.3 step 7: ≤ 60 s
ACCESS_TOKEN = 3600              # user access tokens (RFC 9068 JWTs)
ID_TOKEN_DEFAULT = 36000         # per client: jwt_configuration.lifetime_in_seconds
# The broker session: the tenant settings' session_lifetime and idle_session_lifetime (hours,
# Auth0's names and ranges) decide; these are their defaults (Auth0's: 168 h and 72 h).
SESSION_ABSOLUTE = 7 * 24 * 3600
SESSION_IDLE = 3 * 24 * 3600
SESSION_HOURS_MIN = 1
SESSION_HOURS_MAX = 8760        # Auth0's longest "require log in after": 365 days
IDLE_SESSION_HOURS_MAX = 2400   # Auth0's longest inactivity timeout: 100 days
LOGIN_TRANSACTION = 600          # SPEC §3.2: 10 minutes


def session_lifetimes(session_hours: float, idle_hours: float) -> tuple[int, int]:
    """(absolute, idle) lifetime in seconds of a broker session under the tenant settings; the
    idle lifetime never outlasts the absolute one."""
    absolute = int(session_hours * 3600)
    return absolute, min(int(idle_hours * 3600), absolute)


REFRESH_ABSOLUTE_DEFAULT = 2_592_000   # per client: refresh_token.token_lifetime (30 days)
REFRESH_IDLE_DEFAULT = 1_296_000       # per client: refresh_token.idle_token_lifetime (15 days)
REFRESH_MAX = 31_557_600               # one year: the longest any refresh token family lives


def refresh_token_lifetimes(settings: dict[str, Any]) -> tuple[int, int]:
    """(absolute, idle) lifetime of a client's refresh tokens. Auth0's ``expiration_type:
    non-expiring`` and ``infinite_*`` flags are honoured as "the longest the broker allows": one
    year, so no token lives forever and every stored item has a TTL."""
    non_expiring = settings.get("expiration_type") == "non-expiring"
    if non_expiring or settings.get("infinite_token_lifetime"):
        absolute = REFRESH_MAX
    else:
        absolute = int(settings.get("token_lifetime") or REFRESH_ABSOLUTE_DEFAULT)
    if non_expiring or settings.get("infinite_idle_token_lifetime"):
        idle = absolute
    else:
        idle = int(settings.get("idle_token_lifetime") or REFRESH_IDLE_DEFAULT)
    return absolute, min(idle, absolute)
