"""``grant_type=refresh_token`` (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14).

Rotating clients get a new refresh token each time; the old one is marked rotated in the same
transaction that checks the grant is active and stores the new one. A rotated token presented
again revokes the whole family (the grant). Non-rotating (confidential) clients keep their token
and slide its idle expiry. Either way the family dies with its grant (logout, Global Token
Revocation, user or client deletion).
"""
from __future__ import annotations

import logging

from chalicelib.errors import OAuthError
from chalicelib.provider import grant_store, issue
from chalicelib.provider.client_auth import AuthenticatedClient
from chalicelib.provider.code_grant import _new_refresh_token, _token_response
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.tokens import preview

log = logging.getLogger(__name__)


def _invalid(description: str = "Invalid refresh token") -> OAuthError:
    return OAuthError("invalid_grant", description)


def refresh(client: AuthenticatedClient, form: dict, now: int) -> dict:
    from chalicelib.users import get_user

    token = form.get("refresh_token")
    if not token:
        raise OAuthError("invalid_request", "refresh_token is required")
    if "refresh_token" not in client.grant_types or client.record is None:
        raise OAuthError("unauthorized_client", "The client may not use this grant")
    record = grant_store.find_refresh_token(token)
    if record is None:
        raise _invalid()
    if record["client_id"] != client.client_id:
        # RFC 6749 §6: bound to the client it was issued to. Not treated as reuse: the
        # legitimate client's family stays intact.
        raise _invalid()
    if record.get("rotated_at"):
        grant_store.revoke_grant(record["grant_id"], now, "refresh_token_reuse")
        log.warning("rotated refresh token %s reused: grant %s revoked", preview(token),
                    record["grant_id"][:8])
        raise _invalid()
    if int(record["idle_expires_at"]) <= now:
        raise _invalid("Refresh token expired")
    # No pre-read of the grant: the transaction below refuses a revoked grant atomically.
    scope = record["scope"]
    requested = form.get("scope")
    if requested is not None:
        wanted = requested.split()
        if not set(wanted) <= set(scope.split()):
            raise OAuthError("invalid_scope", "The requested scope exceeds the original grant")
        scope = " ".join(s for s in scope.split() if s in wanted)
    user = get_user(record["user_id"])
    if user is None:
        raise _invalid()
    app = client.record
    settings = app.get("refresh_token") or {}
    idle = int(settings.get("idle_token_lifetime") or 1_296_000)
    rotating = settings.get("rotation_type", "rotating") == "rotating"
    new_token = None
    if rotating:
        # The grant update in ops carries the "grant still active" condition.
        new_token, ops = _new_refresh_token(app, record, record["scope"], now,
                                            absolute_expiry=int(record["family_expires_at"]))
        operations = [grant_store.rotate_refresh_token_operation(token, now), *ops]
    else:
        idle_expiry = min(now + idle, int(record["family_expires_at"]))
        operations = [grant_store.slide_refresh_token_operation(token, now, idle_expiry),
                      grant_store.grant_is_active_check(record["grant_id"], now)]
    # As for codes: the keys are loaded before the transaction rotates (or slides) the token, so
    # a dependency failure leaves the presented refresh token usable.
    issue.prepare_signing()
    try:
        grant_store.run(operations)
    except ConditionFailed:
        fresh = grant_store.find_refresh_token(token)
        if rotating and fresh is not None and fresh.get("rotated_at"):
            # A concurrent use of the same token: one wins, the other is reuse.
            grant_store.revoke_grant(record["grant_id"], now, "refresh_token_reuse")
        raise _invalid() from None
    return _token_response(app, user, record, scope, now, new_token, nonce=None)
