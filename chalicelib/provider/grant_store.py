"""Token families: grants, authorization codes and refresh tokens (SPEC §4, §7).

A *grant* is one application's authorization from one login: its code, its refresh tokens and
its access tokens (which carry the grant id) all live and die with it. Revoking the grant
(code replay, refresh-token reuse, logout, Global Token Revocation) kills the whole family.
Codes and refresh tokens are stored only as SHA-256 digests and consumed with conditional
writes inside transactions that also check the grant is still active, so a redemption that
races a revocation cannot win. The keys, conditions and transaction items are
chalicelib/store/grants.py's; this module speaks in tokens and lifetimes.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chalicelib.provider import lifetimes
from chalicelib.store import grants as store
from chalicelib.store.grants import Code, Grant, RefreshToken
from chalicelib.store.unit_of_work import UnitOfWork, Write
from chalicelib.tokens import digest, random_token


class Replay(Exception):
    """A consumed code or a rotated refresh token was presented again."""

    def __init__(self, grant_id: str):
        super().__init__("replay")
        self.grant_id = grant_id


class Unusable(Exception):
    """Unknown, expired or revoked."""


MAX_REFRESH_LIFETIME = lifetimes.REFRESH_MAX  # the longest a refresh token family may live
MAX_PRESENTED = 256  # longer codes and refresh tokens are not ours: no lookup


# --- grants ----------------------------------------------------------------------------------

def new_grant_operations(grant_id: str, *, client_id: str, user_id: str, sid: str,
                         expires_at: int) -> list[Write]:
    # The refs let "everything of a user" (Global Token Revocation) and "everything of a client"
    # (client deletion) be found with one query. A grant may later be extended to a refresh
    # token's lifetime, so the refs outlive any grant (≤ 1 year) rather than track its TTL.
    return store.new_grant_operations(grant_id, client_id=client_id, user_id=user_id, sid=sid,
                                      expires_at=expires_at,
                                      ref_ttl=expires_at + MAX_REFRESH_LIFETIME)


def grants_of_client(client_id: str) -> list[str]:
    return store.grant_ids_of_client(client_id)


def grant_is_active_check(grant_id: str, now: int) -> Write:
    return store.grant_is_active_check(grant_id)


def keep_grant_until_operation(grant_id: str, expires_at: int) -> Write:
    """As :func:`grant_is_active_check`, and the grant then lives until ``expires_at``: an API's
    access token may outlive the default one the grant was sized for (/userinfo checks it).
    Only for a later expiry than the grant's (the caller's duty)."""
    return store.keep_grant_until_operation(grant_id, expires_at)


def get_grant(grant_id: str) -> Grant | None:
    if not grant_id or len(grant_id) > 64:
        return None
    return store.get_grant(grant_id)


def grant_is_active(grant_id: str) -> bool:
    grant = get_grant(grant_id)
    return grant is not None and not grant.get("revoked_at")


def revoke_grant(grant_id: str, now: int, reason: str) -> None:
    store.revoke_grant(grant_id, now, reason)


def extend_grant_operation(grant_id: str, expires_at: int) -> Write:
    return store.extend_grant_operation(grant_id, expires_at)


# --- authorization codes ---------------------------------------------------------------------

def new_code_operation(code_fields: dict[str, Any], now: int) -> tuple[str, Write]:
    code = random_token(32)
    return code, store.new_code_operation(digest(code), code_fields,
                                          now + lifetimes.AUTHORIZATION_CODE)


def find_code(code: str, now: int) -> Code | None:
    """The code's record, consumed or not (None when unknown or expired)."""
    if not code or len(code) > MAX_PRESENTED:
        return None
    return store.get_code(digest(code))


def consume_code_operation(code: str, now: int) -> Write:
    return store.consume_code_operation(digest(code), now)


# --- refresh tokens --------------------------------------------------------------------------

def new_refresh_token_operation(fields: dict[str, Any], now: int, *, absolute_expiry: int,
                                idle_lifetime: int,
                                continues: RefreshToken | None = None) -> tuple[str, Write]:
    """A new refresh token. ``continues``: the presented token of an existing family (rotation,
    reissue): the new one keeps the family's creation time and records this exchange, for the
    Management API's view of the family."""
    token = random_token(32)
    family_created_at = last_exchanged_at = None
    if continues is not None:
        family_created_at = int(continues.get("family_created_at") or continues["created_at"])
        last_exchanged_at = now
    return token, store.new_refresh_token_operation(
        digest(token), fields, created_at=now, expires_at=absolute_expiry,
        idle_expires_at=min(now + idle_lifetime, absolute_expiry),
        family_created_at=family_created_at, last_exchanged_at=last_exchanged_at)


def find_refresh_token(token: str) -> RefreshToken | None:
    if not token or len(token) > MAX_PRESENTED:
        return None
    return store.get_refresh_token(digest(token))


def rotate_refresh_token_operation(token: str, now: int) -> Write:
    return store.rotate_refresh_token_operation(digest(token), now)


def rotated_within_check(token: str, now: int, since: int) -> Write:
    """The presented token was rotated at or after ``since`` (the client's reuse leeway) and its
    family has not expired."""
    return store.rotated_within_check(digest(token), now, since)


def slide_refresh_token_operation(token: str, now: int, idle_expires_at: int,
                                  user_snapshot: dict[str, Any] | None = None) -> Write:
    return store.slide_refresh_token_operation(digest(token), now, idle_expires_at,
                                               user_snapshot)


def run(writes: UnitOfWork | Iterable[Write]) -> None:
    """All-or-nothing; :class:`ConditionFailed` when any condition lost."""
    store.run(writes)


# --- the user behind a refresh token -----------------------------------------------------------

def user_snapshot(user: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a refresh token keeps of its user for the next ID tokens (None: nothing to keep)."""
    return store.user_snapshot(user)


def user_from_snapshot(record: RefreshToken) -> dict[str, Any] | None:
    """The user as a refresh token's snapshot has it, enough for its tokens; None when the token
    has no usable snapshot (issued before there were snapshots, or rotated)."""
    snapshot = record.get("user_snapshot")
    if not store.usable_snapshot(snapshot):
        return None
    return {"user_id": record["user_id"], **{k: snapshot[k] for k in store.SNAPSHOT_FIELDS}}


def user_unchanged_check(user: Mapping[str, Any], *, just_read: bool = False) -> Write:
    """Transaction item: ``user`` still exists, is not blocked and its profile is unchanged
    (``just_read``: a profile read for this request, pinned by its ``updated_at`` only)."""
    return store.user_unchanged_check(user["user_id"], store.user_snapshot(user),
                                      compare_attributes=not just_read)
