"""Ending everything a user holds: sessions and token grants (SPEC §2.4, §5).

Refs under ``USER#{user_id}`` name every session and grant of the user, so this is one query
plus one conditional update per item. Each step is idempotent: a retry after a partial failure
finishes the job.
"""
from __future__ import annotations

import logging

from chalicelib import sessions
from chalicelib.provider import grant_store
from chalicelib.store.dynamo import table

log = logging.getLogger(__name__)


def revoke_user(user_id: str, now: int, reason: str) -> dict:
    """Revoke every session and grant of ``user_id``; returns what was ended."""
    ended_sessions, revoked_grants = [], []
    for ref in list(table().query(f"USER#{user_id}")):
        if ref["sk"].startswith("SESSION#"):
            item = sessions.revoke_session(ref["sid"], now)
            if item is not None:
                ended_sessions.append(item)
                for grant_id in item.get("grants") or []:
                    grant_store.revoke_grant(grant_id, now, reason)
        elif ref["sk"].startswith("GRANT#"):
            grant_store.revoke_grant(ref["grant_id"], now, reason)
            revoked_grants.append(ref["grant_id"])
    log.info("revoked user %s: %d sessions, %d grants (%s)", user_id[:80], len(ended_sessions),
             len(revoked_grants), reason)
    return {"sessions": ended_sessions, "grants": revoked_grants}


def delete_user(user_id: str, now: int) -> None:
    from chalicelib.users import PK

    revoke_user(user_id, now, "user_deleted")
    table().delete(PK, user_id)
