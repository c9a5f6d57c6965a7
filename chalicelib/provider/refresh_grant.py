"""``grant_type=refresh_token`` (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14).

Rotating clients get a new refresh token each time; the old one is marked rotated in the same
transaction that checks the grant is active and stores the new one. A rotated token presented
again revokes the whole family (the grant), unless it comes within the client's
``refresh_token.leeway`` seconds of its rotation (Auth0's reuse interval: a retried request, or two
tabs refreshing at once): then it gets another new token of the same family. Non-rotating
(confidential) clients keep their token and slide its idle expiry. Either way the family dies
with its grant (logout, Global Token Revocation, user or client deletion).

A warm refresh is two DynamoDB round trips: the token is read, then one transaction does the rest.
The user is not read: the token carries a snapshot of the profile its ID token is made from, and
the transaction checks the user still exists, is not blocked and still has that profile. Only when
that check fails (or the token has no snapshot) is the user read and the transaction run again.

Log events (SPEC §9): ``sertft`` rides in the transaction that commits; every refusal is one
``fertft`` naming the rule that refused it (``check``; reuse says the family was revoked).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chalicelib.errors import OAuthError
from chalicelib.provider import grant_store, issue, lifetimes, token_events
from chalicelib.provider.client_auth import AuthenticatedClient
from chalicelib.provider.code_grant import _new_refresh_token, _token_response, resource_server_of
from chalicelib.provider.token_events import GrantRefused
from chalicelib.registry.resource_servers import token_scope
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.store.grants import RefreshToken
from chalicelib.store.resource_servers import ResourceServer, still_exists_check
from chalicelib.store.unit_of_work import UnitOfWork
from chalicelib.tokens import preview

log = logging.getLogger(__name__)


def _invalid(check: str, description: str = "Invalid refresh token", **details: Any
             ) -> OAuthError:
    return GrantRefused("invalid_grant", description, check, **details)


class _Conflict(Exception):
    """DynamoDB cancelled the transaction only because another one held an item (concurrent
    uses of one family touch the same grant item): a lost race, not a failed condition."""


def refresh(client: AuthenticatedClient, form: dict[str, Any], now: int) -> dict[str, Any]:
    """New tokens for a refresh token; a refusal is also a ``fertft`` event."""
    return token_events.refusals_recorded(
        "fertft", client, lambda seen: _refresh(client, form, now, seen))


def _refresh(client: AuthenticatedClient, form: dict[str, Any], now: int,
             seen: dict[str, Any]) -> dict[str, Any]:
    """One retry after a transaction conflict (it re-reads the token, so a concurrent rotation is
    then seen for what it is); a second conflict is a 503 the client may retry."""
    for _ in range(2):
        try:
            return _refresh_once(client, form, now, seen)
        except _Conflict:
            log.info("refresh transaction conflicted with a concurrent one; retrying")
    raise GrantRefused("temporarily_unavailable", "Concurrent use of this token family; retry",
                       "conflict", 503)


class _ProfileChanged(Exception):
    """The transaction's user check failed: the user changed (or was blocked or deleted) since
    the snapshot the refresh token carries."""


def _refresh_once(client: AuthenticatedClient, form: dict[str, Any], now: int,
                  seen: dict[str, Any]) -> dict[str, Any]:
    token = form.get("refresh_token")
    if not token:
        raise GrantRefused("invalid_request", "refresh_token is required", "refresh_token")
    if "refresh_token" not in client.grant_types or client.record is None:
        raise GrantRefused("unauthorized_client", "The client may not use this grant",
                           "grant_type")
    record = grant_store.find_refresh_token(token)
    if record is None:
        raise _invalid("refresh_token")
    if record["client_id"] != client.client_id:
        # RFC 6749 §6: bound to the client it was issued to. Not treated as reuse: the
        # legitimate client's family stays intact. Nor is the user named: the caller is not
        # theirs.
        raise _invalid("client")
    seen["user_id"] = record["user_id"]
    app = client.record
    settings = app.get("refresh_token") or {}
    rotating = settings.get("rotation_type", "rotating") == "rotating"
    leeway = int(settings.get("leeway") or 0) if rotating else 0
    if record.get("rotated_at") and not _within_leeway(record, now, leeway):
        _reused(token, record, now)
    if int(record["idle_expires_at"]) <= now:
        raise _invalid("expired", "Refresh token expired")
    # No pre-read of the grant: the transaction below refuses a revoked grant atomically.
    scope = record["scope"]
    server = resource_server_of(record)
    if server is not None and not server.allow_offline_access:
        raise _invalid("offline_access", "The API no longer allows refresh tokens")
    requested = form.get("scope")
    if requested is not None:
        wanted = requested.split()
        if not set(wanted) <= set(scope.split()):
            raise GrantRefused("invalid_scope", "The requested scope exceeds the original grant",
                               "scope")
        scope = " ".join(s for s in scope.split() if s in wanted)
    if server is not None:
        # Only the scopes the API still defines (SPEC §2.5).
        scope = token_scope(scope, server)
    # The user as the token's snapshot has it: no read. The transaction checks the user still
    # exists, is not blocked and is unchanged; when that check fails (or there is no snapshot:
    # a token issued before snapshots, or a rotated one within the leeway) the user is read,
    # refused if gone or blocked, and the transaction runs again with the fresh profile, which
    # the token (or its successor) then carries.
    user: Mapping[str, Any] | None = grant_store.user_from_snapshot(record)
    fresh = False
    for _ in range(2):
        if user is None:
            user, fresh = _read_user(record["user_id"]), True
        try:
            new_token = _redeem(app, record, token, user, fresh, now, rotating, leeway, server,
                                scope)
        except _ProfileChanged:
            user = None
            continue
        return _token_response(app, user, record, scope, now, new_token, nonce=None,
                               server=server)
    raise GrantRefused("temporarily_unavailable", "The user is being changed; retry",
                       "user_changing", 503)


def _read_user(user_id: str) -> Mapping[str, Any]:
    from chalicelib.users import get_user, is_blocked  # the slow path only

    user = get_user(user_id)
    if user is None:
        raise _invalid("user")
    if is_blocked(user):
        # SPEC §2.4: refused until unblocked. Blocking writes the flag first, then revokes the
        # grants, so a refresh racing it fails here, or in the transaction (the user check or
        # the grant check), or wins a token that the revocation kills right after.
        raise _invalid("blocked", "user is blocked")
    return user


def _redeem(app: dict[str, Any], record: RefreshToken, token: str, user: Mapping[str, Any],
            fresh: bool, now: int, rotating: bool, leeway: int,
            server: ResourceServer | None, scope: str) -> str | None:
    """The one transaction of a refresh: the presented token rotated (or slid), the successor
    written, the grant, the user and the API checked, the ``sertft`` event along. Returns the
    new refresh token, if any. ``fresh``: ``user`` was just read, so the token or its successor
    takes its snapshot."""
    settings = app.get("refresh_token") or {}
    _, idle = lifetimes.refresh_token_lifetimes(settings)
    snapshot = grant_store.user_snapshot(user)
    new_token = None
    if rotating and record.get("rotated_at"):
        # Within the leeway: the token stays rotated; the check pins "rotated recently".
        new_token, operations = _reissue(app, record, token, now, leeway, snapshot)
    elif rotating:
        # The grant update in ops carries the "grant still active" condition.
        new_token, ops = _new_refresh_token(app, record, record["scope"], now,
                                            absolute_expiry=int(record["family_expires_at"]),
                                            user_snapshot=snapshot, continues=record)
        operations = UnitOfWork([grant_store.rotate_refresh_token_operation(token, now), *ops])
    else:
        idle_expiry = min(now + idle, int(record["family_expires_at"]))
        operations = UnitOfWork([
            grant_store.slide_refresh_token_operation(
                token, now, idle_expiry, user_snapshot=snapshot if fresh else None),
            grant_store.grant_is_active_check(record["grant_id"], now)])
    checks = _checks(operations, user, fresh, server)

    def with_event(writes: UnitOfWork) -> None:
        """The success event rides in whichever transaction commits."""
        token_events.ride_success(writes, "sertft", client=app, user_id=record["user_id"],
                                  user=user, scope=scope, rotating=rotating)

    with_event(operations)
    # As for codes: the keys are loaded before the transaction rotates (or slides) the token, so
    # a dependency failure leaves the presented refresh token usable.
    issue.prepare_signing()
    try:
        grant_store.run(operations)
    except ConditionFailed as exc:
        _raise_for_checks(exc, checks)
        fresh_record = grant_store.find_refresh_token(token)
        if not (rotating and fresh_record is not None and fresh_record.get("rotated_at")):
            # The grant was revoked (logout, revocation, a blocked user) or the token is gone.
            raise _invalid("grant") from None
        if record.get("rotated_at") or not _within_leeway(fresh_record, now, leeway):
            # A concurrent use of the same token: one wins, the other is reuse.
            _reused(token, fresh_record, now)
        # Lost the race to a concurrent use, but within the leeway: another token of the family.
        new_token, operations = _reissue(app, fresh_record, token, now, leeway, snapshot)
        checks = _checks(operations, user, fresh, server)
        with_event(operations)
        try:
            grant_store.run(operations)
        except ConditionFailed as again:
            _raise_for_checks(again, checks)
            raise _invalid("grant") from None
    return new_token


def _checks(operations: UnitOfWork, user: Mapping[str, Any], fresh: bool,
            server: ResourceServer | None) -> dict[str, int]:
    """Append the user check and (last) the API check; returns their positions, by which the
    transaction's cancellation reasons tell which condition failed."""
    positions = {"user": len(operations)}
    operations.add(grant_store.user_unchanged_check(user, just_read=fresh))
    if server is not None:
        # A deleted API gets no more tokens, even if this container's cache still has it.
        positions["server"] = len(operations)
        operations.add(still_exists_check(server.identifier, server.id))
    return positions


def _raise_for_checks(exc: ConditionFailed, checks: dict[str, int]) -> None:
    if exc.lost_race:
        raise _Conflict() from None

    def failed(name: str) -> bool:
        index = checks.get(name)
        return index is not None and index < len(exc.reasons) and (
            exc.reasons[index] == "ConditionalCheckFailed")

    if failed("server"):
        raise _invalid("resource_server", "The API this grant was issued for no longer exists"
                       ) from None
    if failed("user"):
        raise _ProfileChanged() from None


def _reissue(app: dict[str, Any], record: RefreshToken, token: str, now: int, leeway: int,
             snapshot: dict[str, Any] | None) -> tuple[str, UnitOfWork]:
    """Another token of the family for a token rotated within the leeway. The grant is only
    checked, not updated (its expiry cannot change), so concurrent reissues touch no common item
    for writing."""
    new_token, (put, _extend) = _new_refresh_token(
        app, record, record["scope"], now, absolute_expiry=int(record["family_expires_at"]),
        user_snapshot=snapshot, continues=record)
    return new_token, UnitOfWork([grant_store.rotated_within_check(token, now, now - leeway), put,
                                  grant_store.grant_is_active_check(record["grant_id"], now)])


def _within_leeway(record: RefreshToken, now: int, leeway: int) -> bool:
    return leeway > 0 and now - int(record["rotated_at"]) <= leeway


def _reused(token: str, record: RefreshToken, now: int) -> None:
    """RFC 9700 §4.14.2: a rotated token presented again revokes its whole family."""
    grant_store.revoke_grant(record["grant_id"], now, "refresh_token_reuse")
    log.warning("rotated refresh token %s reused: grant %s revoked", preview(token),
                record["grant_id"][:8])
    raise _invalid("reuse", reuse_detected=True, family_revoked=True)
