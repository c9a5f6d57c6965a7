"""Ending sessions and revoking token grants (SPEC §2.4, §4 logout, §5, §6).

Two strengths:
- ``end_session`` (RP-initiated or Auth0 logout): the session ends, its online grants are revoked,
  offline grants (those holding refresh tokens) survive, like Keycloak's offline sessions.
- ``revoke_user`` / ``revoke_session`` (Global Token Revocation, deleting or blocking a user,
  deleting its sessions):
  everything ends, offline refresh tokens too.
Either way the applications that got tokens in an ended session are notified by back-channel
logout. Refs in the user's partition name every session and grant of a user
(chalicelib/store/user_refs.py), so revoking a user is one query plus one conditional update per
item; every step is idempotent, so a retry after a partial failure finishes the job. Deleting and
blocking a user are chalicelib/cascades.py.
"""
from __future__ import annotations

import logging

from chalicelib import sessions
from chalicelib.logout import backchannel
from chalicelib.provider import grant_store
from chalicelib.store import user_refs
from chalicelib.store.sessions import SessionRecord

log = logging.getLogger(__name__)


def _revoke_session_grants(session: SessionRecord, now: int, reason: str, include_offline: bool) -> int:
    revoked = 0
    for grant_id in session.get("grants") or []:
        if not include_offline:
            grant = grant_store.get_grant(grant_id)
            if grant is not None and grant.get("offline"):
                continue
        grant_store.revoke_grant(grant_id, now, reason)
        revoked += 1
    return revoked


def _notify(session: SessionRecord, exclude_client: str | None) -> None:
    backchannel.queue_for_session(session, exclude_client=exclude_client)


def end_session(sid: str, now: int, *, reason: str, initiator_client: str | None = None,
                include_offline: bool = False, finish_interrupted: bool = False) -> SessionRecord | None:
    """End one session; returns its item, or None when it was already over.

    Three steps that cannot share one transaction (the grants are many items, the notifications
    go to SQS): the tombstone first (so nothing new joins the session), then the grants, then
    the back-channel logout messages, and last ``end_completed_at``. A dependency failure in
    between leaves a revoked session without that mark; a retry with ``finish_interrupted``
    (Global Token Revocation, a repeated logout from the same browser) redoes the idempotent
    grant revocations and the notifications. Safely retryable rather than atomic; a retry may
    notify an application twice for one ``sid``, which Back-Channel Logout receivers tolerate.
    """
    session = sessions.revoke_session(sid, now)
    if session is None:
        if not finish_interrupted:
            return None
        session = sessions.unfinished_end(sid)
        if session is None:
            return None
        log.info("finishing the interrupted end of session %s", sid[:8])
    return _finish_end(session, now, reason=reason, initiator_client=initiator_client,
                       include_offline=include_offline)


def finish_interrupted_end(session: SessionRecord, now: int, *, reason: str,
                           initiator_client: str | None = None) -> SessionRecord:
    """Complete the end of a session found by :func:`sessions.unfinished_end_from_cookie`."""
    log.info("finishing the interrupted end of session %s", session["sid"][:8])
    return _finish_end(session, now, reason=reason, initiator_client=initiator_client,
                       include_offline=False)


def _finish_end(session: SessionRecord, now: int, *, reason: str, initiator_client: str | None,
                include_offline: bool) -> SessionRecord:
    _revoke_session_grants(session, now, reason, include_offline)
    _notify(session, initiator_client)
    sessions.mark_end_completed(session["sid"], now)
    log.info("session %s of %s ended (%s)", session["sid"][:8], session["user_id"][:80], reason)
    return session


def revoke_user(user_id: str, now: int, reason: str) -> dict:
    """Revoke every session and every grant (offline ones too) of ``user_id``."""
    ended, revoked = [], []
    for kind, ref_id in user_refs.refs_of(user_id):
        if kind == "session":
            session = end_session(ref_id, now, reason=reason, include_offline=True,
                                  finish_interrupted=True)
            if session is not None:
                ended.append(session)
        else:
            grant_store.revoke_grant(ref_id, now, reason)
            revoked.append(ref_id)
    log.info("revoked user %s: %d sessions, %d grants (%s)", user_id[:80], len(ended),
             len(revoked), reason)
    return {"sessions": ended, "grants": revoked}
