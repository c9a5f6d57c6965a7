"""Replay markers: a token's ``jti`` recorded once, so a second use is refused.

Each kind of upstream JWT has its own markers, per connection, the ``jti`` hashed (the IdP
chooses it, of any length):

- Global Token Revocation (SPEC §5): ``GTR_JTI#{connection id}#{sha256(jti)}`` / ``GTR_JTI``;
- back-channel logout from an upstream IdP (SPEC §11, OIDC Back-Channel Logout 1.0 §2.6 step 7):
  ``LOGOUT_JTI#{connection id}#{sha256(jti)}`` / ``LOGOUT_JTI``.

Each is recorded with a conditional put, so a replay is refused and of concurrent copies exactly
one wins. The marker expires when the token could no longer be accepted anyway.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from chalicelib.store.dynamo import table

GTR_PREFIX = "GTR_JTI#"
GTR_SK = "GTR_JTI"
LOGOUT_PREFIX = "LOGOUT_JTI#"
LOGOUT_SK = "LOGOUT_JTI"


@dataclass(frozen=True)
class ReplayMarker:
    pk: str
    sk: str


def _marker(prefix: str, sk: str, connection_id: str, jti: str) -> ReplayMarker:
    jti_hash = hashlib.sha256(jti.encode("utf-8", "surrogatepass")).hexdigest()
    return ReplayMarker(f"{prefix}{connection_id}#{jti_hash}", sk)


def _record(marker: ReplayMarker, connection_id: str, now: int, expires_at: int) -> ReplayMarker:
    table().put_new({"pk": marker.pk, "sk": marker.sk, "connection_id": connection_id,
                     "created_at": now, "ttl": expires_at})
    return marker


def gtr_marker(connection_id: str, jti: str) -> ReplayMarker:
    return _marker(GTR_PREFIX, GTR_SK, connection_id, jti)


def record_gtr_jti(connection_id: str, jti: str, now: int, expires_at: int) -> ReplayMarker:
    """Record a Global Token Revocation JWT's ``jti`` as used until ``expires_at``;
    :class:`ConditionFailed` when it is already recorded and not expired (a replay)."""
    return _record(gtr_marker(connection_id, jti), connection_id, now, expires_at)


def logout_marker(connection_id: str, jti: str) -> ReplayMarker:
    return _marker(LOGOUT_PREFIX, LOGOUT_SK, connection_id, jti)


def record_logout_jti(connection_id: str, jti: str, now: int, expires_at: int) -> ReplayMarker:
    """Record an upstream logout token's ``jti`` as used until ``expires_at``;
    :class:`ConditionFailed` when it is already recorded and not expired (a replay)."""
    return _record(logout_marker(connection_id, jti), connection_id, now, expires_at)


def release(marker: ReplayMarker) -> None:
    """Forget the marker, so the same token may be presented again (a failed attempt)."""
    table().delete(marker.pk, marker.sk)
