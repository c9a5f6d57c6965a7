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

Global Token Revocation, deleting (also with its connection) and blocking a user also record the
moment up to which the user's upstream ID tokens no longer count for the token exchange
(store/upstream_cutoff.py) and empty the user's upstream token vault (SPEC §10,
``forget_upstream_tokens``): the entries are deleted and
each upstream refresh token revoked at the IdP when it advertises a ``revocation_endpoint``
(chalicelib/login/upstream_revocation.py), best effort: a failure there is logged, never the
revocation's failure. Deleting a user's sessions alone keeps them, as Auth0 keeps federated tokens.
"""
from __future__ import annotations

import logging

from chalicelib import sessions, vault
from chalicelib.errors import ServiceUnavailable
from chalicelib.login import upstream_revocation
from chalicelib.logout import backchannel
from chalicelib.provider import grant_store
from chalicelib.store import upstream_cutoff, user_refs
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


def revoke_user(user_id: str, now: int, reason: str, *,
                forget_upstream_tokens: bool = False) -> dict:
    """Revoke every session and every grant (offline ones too) of ``user_id``; with
    ``forget_upstream_tokens``, empty its token vault too (:func:`forget_vaulted_tokens`), and
    the user must log in upstream again before new tokens are issued (SPEC §5): upstream ID tokens
    issued until ``now`` are refused by the token exchange (store/upstream_cutoff.py). That moment
    is recorded first, so an exchange racing the revocation either is refused or creates a
    session that the query below finds and ends."""
    if forget_upstream_tokens:
        upstream_cutoff.record(user_id, now)  # a storage failure fails the revocation (retried)
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
    forgotten = forget_vaulted_tokens(user_id, now, reason) if forget_upstream_tokens else 0
    return {"sessions": ended, "grants": revoked, "vault_entries": forgotten}


def forget_vaulted_tokens(user_id: str, now: int, reason: str) -> int:
    """Delete the user's vault entries and revoke their upstream refresh tokens (SPEC §10); how
    many entries went. The upstream revocation is best effort; a storage failure raises
    :class:`ServiceUnavailable`, so that the revocation fails and is retried rather than leaving
    upstream tokens behind (Global Token Revocation then answers 422)."""
    try:
        return vault.forget_user(user_id, now, revoker=upstream_revocation.revoke_refresh_token,
                                 reason=reason)
    except ServiceUnavailable:
        raise
    except Exception:  # noqa: BLE001 - best effort (logged), never the revocation's failure
        log.exception("the vault of user %s was not emptied (%s)", user_id[:80], reason)
        return 0
