"""``grant_type=authorization_code`` (RFC 6749 §4.1.3, RFC 7636 §4.6, OIDC Core §3.1.3).

Checks run against the stored code first; only then is the code consumed, in one transaction
with the grant's liveness check and the refresh token's creation, so a request either returns
working tokens or consumes nothing (SPEC §8). A consumed code presented again revokes the grant:
every token issued from the first redemption stops working (RFC 6749 §4.1.2, RFC 9700 §4.5).

Log events (SPEC §9): ``seacft`` rides in that transaction; every refusal is one ``feacft``
naming the rule that refused it (``check``), never the code or the verifier.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chalicelib.errors import OAuthError
from chalicelib.provider import grant_store, issue, lifetimes, token_events
from chalicelib.provider.client_auth import AuthenticatedClient
from chalicelib.provider.token_events import GrantRefused
from chalicelib.registry.resource_servers import token_scope
from chalicelib.store.grants import Code, RefreshToken
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.store.resource_servers import ResourceServer, still_exists_check
from chalicelib.store.unit_of_work import UnitOfWork, Write
from chalicelib.tokens import preview, s256, same

log = logging.getLogger(__name__)
VERIFIER_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _invalid_grant(description: str, check: str, **details: Any) -> OAuthError:
    return GrantRefused("invalid_grant", description, check, **details)


def _check_verifier(record: Code, verifier: str | None) -> None:
    challenge = record.get("code_challenge")
    if challenge is None:
        if verifier is not None:
            # A verifier without a challenge is an injection attempt (RFC 9700 §2.1.1).
            raise _invalid_grant("code_verifier sent but no code_challenge was used", "pkce")
        return
    if verifier is None:
        raise _invalid_grant("code_verifier is required", "pkce")
    if not 43 <= len(verifier) <= 128 or not set(verifier) <= VERIFIER_CHARS:
        raise _invalid_grant("code_verifier is malformed", "pkce")
    if not same(s256(verifier), challenge):
        raise _invalid_grant("code_verifier does not match the code_challenge", "pkce")


def exchange(client: AuthenticatedClient, form: dict[str, Any], now: int) -> dict[str, Any]:
    """The tokens for an authorization code; a refusal is also a ``feacft`` event."""
    return token_events.refusals_recorded(
        "feacft", client, lambda seen: _exchange(client, form, now, seen))


def _exchange(client: AuthenticatedClient, form: dict[str, Any], now: int,
              seen: dict[str, Any]) -> dict[str, Any]:
    from chalicelib.registry.clients import get_client
    from chalicelib.users import get_user

    code = form.get("code")
    if not code:
        raise GrantRefused("invalid_request", "code is required", "code")
    if "authorization_code" not in client.grant_types:
        raise GrantRefused("unauthorized_client", "The client may not use this grant", "grant_type")
    record = grant_store.find_code(code, now)
    if record is None:
        raise _invalid_grant("Invalid or expired authorization code", "code")
    seen["user_id"] = record["user_id"]
    if record.get("consumed_at"):
        grant_store.revoke_grant(record["grant_id"], now, "code_reuse")
        log.warning("authorization code %s reused: grant %s revoked", preview(code),
                    record["grant_id"][:8])
        raise _invalid_grant("Authorization code already used", "code_reuse",
                             reuse_detected=True, grant_revoked=True)
    if record["client_id"] != client.client_id:
        raise _invalid_grant("The code was issued to another client", "client")
    if form.get("redirect_uri") != record["redirect_uri"]:
        raise _invalid_grant("redirect_uri does not match the authorization request",
                             "redirect_uri")
    _check_verifier(record, form.get("code_verifier"))
    if client.method == "none" and not record.get("code_challenge"):
        raise _invalid_grant("Public clients must use PKCE", "pkce")
    user = record.get("user_snapshot") or get_user(record["user_id"])
    app = client.record or get_client(client.client_id)
    if user is None or app is None:
        raise _invalid_grant("The user or client no longer exists", "user_or_client")
    server = resource_server_of(record)
    scope = record["scope"] if server is None else token_scope(record["scope"], server)
    if server is not None:
        record = {**record, "audience_id": server.id}  # rides on the refresh tokens
    operations = UnitOfWork([grant_store.consume_code_operation(code, now)])
    refresh_token = None
    if "offline_access" in scope.split() and "refresh_token" in app.get("grant_types", []):
        # The grant update in rt_ops carries the "grant still active" condition.
        refresh_token, rt_ops = _new_refresh_token(app, record, scope, now,
                                                   user_snapshot=grant_store.user_snapshot(user))
        operations.add(*rt_ops)
    elif server is not None and (server.access_token_lifetime(app.get("app_type"))
                                 > lifetimes.ACCESS_TOKEN + lifetimes.AUTHORIZATION_CODE):
        operations.add(grant_store.keep_grant_until_operation(
            record["grant_id"], now + server.access_token_lifetime(app.get("app_type"))))
    else:
        operations.add(grant_store.grant_is_active_check(record["grant_id"], now))
    server_check = len(operations)
    if server is not None:
        # Last, so a failure here is told apart: the API was deleted (SPEC §2.5).
        operations.add(still_exists_check(server.identifier, server.id))
    # The success event goes along, after every write: the writes' cancellation reasons keep
    # their places (the event's own comes after them).
    token_events.ride_success(operations, "seacft", client=app, user_id=record["user_id"],
                              user=user, scope=scope, audience=record.get("audience"))
    # Everything that can fail on a dependency runs before the one transaction that consumes the
    # code, so a failure leaves the code redeemable; after it only local work (signing) remains.
    issue.prepare_signing()
    try:
        grant_store.run(operations)
    except ConditionFailed as exc:
        if (server is not None
                and exc.reasons[server_check:server_check + 1] == ["ConditionalCheckFailed"]):
            raise _invalid_grant("The API this code was issued for no longer exists",
                                 "resource_server") from None
        # Lost a race: another redemption won, or the grant was revoked meanwhile.
        fresh = grant_store.find_code(code, now)
        if fresh is not None and fresh.get("consumed_at"):
            grant_store.revoke_grant(record["grant_id"], now, "code_reuse")
            raise _invalid_grant("Invalid or expired authorization code", "code_reuse",
                                 reuse_detected=True, grant_revoked=True) from None
        raise _invalid_grant("Invalid or expired authorization code", "grant") from None
    return _token_response(app, user, record, scope, now, refresh_token, nonce=record.get("nonce"),
                           server=server)


def resource_server_of(record: Code | RefreshToken) -> ResourceServer | None:
    """The API a code's or refresh token's tokens are for; a deleted one (or one deleted and
    registered again: another id) gives no more tokens (SPEC §2.5). Read through the login
    cache; the token transaction re-checks it (still_exists_check)."""
    from chalicelib.registry.resource_servers import cached_resource_server

    audience = record.get("audience")
    if not audience:
        return None
    server = cached_resource_server(audience)
    expected = record.get("audience_id")
    if server is None or (expected is not None and server.id != expected):
        raise _invalid_grant("The API this grant was issued for no longer exists",
                             "resource_server")
    return server


def _new_refresh_token(app: dict[str, Any], record: Code | RefreshToken, scope: str, now: int,
                       absolute_expiry: int | None = None,
                       user_snapshot: dict[str, Any] | None = None,
                       continues: RefreshToken | None = None) -> tuple[str, list[Write]]:
    """``user_snapshot``: the profile the token's refreshes build ID tokens from without reading
    the user while it is unchanged (chalicelib/provider/refresh_grant.py). ``continues``: the
    presented token whose family the new one continues (rotation, reissue)."""
    lifetime, idle = lifetimes.refresh_token_lifetimes(app.get("refresh_token") or {})
    expiry = absolute_expiry or now + lifetime
    fields = {"grant_id": record["grant_id"], "client_id": app["client_id"],
              "user_id": record["user_id"], "sid": record["sid"], "scope": scope,
              "auth_time": record["auth_time"], "audience": record.get("audience"),
              "audience_id": record.get("audience_id"), "family_expires_at": expiry,
              "acr": record.get("acr"), "amr": record.get("amr"), "user_snapshot": user_snapshot}
    token, op = grant_store.new_refresh_token_operation(
        {k: v for k, v in fields.items() if v is not None}, now, absolute_expiry=expiry,
        idle_lifetime=idle, continues=continues)
    return token, [op, grant_store.extend_grant_operation(record["grant_id"], expiry)]


def _token_response(app: dict[str, Any], user: Mapping[str, Any], record: Code | RefreshToken,
                    scope: str, now: int, refresh_token: str | None, nonce: str | None,
                    server: ResourceServer | None = None) -> dict[str, Any]:
    access, expires_in = issue.access_token(
        user_id=user["user_id"], client_id=app["client_id"], scope=scope,
        audience=record.get("audience"), sid=record["sid"], grant_id=record["grant_id"],
        auth_time=int(record["auth_time"]), now=now,
        lifetime=server.access_token_lifetime(app.get("app_type")) if server else None)
    body = {"access_token": access, "token_type": "Bearer", "expires_in": expires_in,
            "scope": scope}
    if "openid" in scope.split():
        body["id_token"] = issue.id_token(user=user, client=app, scope=scope, nonce=nonce,
                                          sid=record["sid"], auth_time=int(record["auth_time"]),
                                          now=now, access_token_value=access,
                                          acr=record.get("acr"), amr=record.get("amr"))
    if refresh_token:
        body["refresh_token"] = refresh_token
    return body
