"""Replay markers: a token's ``jti`` recorded once, so a second use is refused.

Global Token Revocation (SPEC §5) records each accepted JWT's ``jti`` per connection under
``GTR_JTI#{connection id}#{sha256(jti)}`` / ``GTR_JTI`` (the ``jti`` is hashed: it is chosen by
the IdP, of any length), with a conditional put, so a replay is refused and of concurrent copies
exactly one wins. The marker expires when the token could no longer be accepted anyway.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from chalicelib.store.dynamo import table

GTR_PREFIX = "GTR_JTI#"
GTR_SK = "GTR_JTI"


@dataclass(frozen=True)
class ReplayMarker:
    pk: str
    sk: str


def gtr_marker(connection_id: str, jti: str) -> ReplayMarker:
    jti_hash = hashlib.sha256(jti.encode("utf-8")).hexdigest()
    return ReplayMarker(f"{GTR_PREFIX}{connection_id}#{jti_hash}", GTR_SK)


def record_gtr_jti(connection_id: str, jti: str, now: int, expires_at: int) -> ReplayMarker:
    """Record a Global Token Revocation JWT's ``jti`` as used until ``expires_at``;
    :class:`ConditionFailed` when it is already recorded and not expired (a replay)."""
    marker = gtr_marker(connection_id, jti)
    table().put_new({"pk": marker.pk, "sk": marker.sk, "connection_id": connection_id,
                     "created_at": now, "ttl": expires_at})
    return marker


def release(marker: ReplayMarker) -> None:
    """Forget the marker, so the same token may be presented again (a failed attempt)."""
    table().delete(marker.pk, marker.sk)
