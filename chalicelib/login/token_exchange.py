"""RFC 8693 token exchange (SPEC §10): the flow, in both directions.

It lives with the login flows because both directions reach an upstream IdP: the vaulted upstream
access token is refreshed at the upstream's token endpoint (chalicelib/login/upstream.py), and an
upstream ID token is validated against the connection's keys exactly as at the callback
(chalicelib/login/id_token.py, §3.3 step 4, without ``nonce``). The request's parameters, the
broker's access token as a subject and the broker's tokens as an answer are the provider's
(chalicelib/provider/token_exchange.py).

**Upstream access token out** (``subject_token_type`` access_token, target
``urn:connection:{name}``): the connection keeps tokens (``token_storage: vault``), lists the
client in ``token_exchange_clients`` and is enabled for it (``enabled_clients``, as Auth0's Token
Vault requires); the broker access token is ours, live, issued to this client, for a user of that
connection who has a vault entry. The stored access token is answered as is while it lives more
than :data:`REFRESH_MARGIN` seconds; else it is refreshed upstream first, once across concurrent
exchanges: the caller that wins the vault's lease (``vault.take_refresh_lease``, a conditional
write, running :data:`~chalicelib.vault.LEASE_SECONDS` from the moment it is taken) reads the
entry again (a refresh may have landed between its read and its lease), spends the refresh token
and ``vault.replace`` s the entry; the others read the entry every :data:`POLL_INTERVAL` seconds,
for :data:`POLL_FOR` seconds at most, until its version changes, and answer the new token. Just
before the upstream call the holder checks that the lease still covers the call's whole deadline
(:data:`LEASE_LEFT_FOR_UPSTREAM`); else it gives it back and starts over once (a slow secret
read), so nobody can take the lease over while the refresh token is in flight. So a rotating
upstream refresh token is never presented twice. An upstream that refuses the refresh token
(``invalid_grant``) makes the entry useless: it is replaced by one that is expired and has no
refresh token (waiting callers and later exchanges answer ``invalid_grant`` at once, no upstream
call) until the user signs in again.

**Broker tokens in** (``subject_token_type`` id_token): the connection is the one whose issuer is
the token's ``iss``, that lists the client and is enabled for it; once the ID token is valid, the
user is mapped and written as at the callback (the same claim mapping, root-attribute policy and
conditional user update, which refuses a blocked user), and one transaction writes the user, a
broker session and a grant that live as long as the access token, the upstream ``sid`` index
entry (store/upstream_sessions.py, as the callback writes it), with the ``stx`` event. The same
transaction checks that the ID token was issued after the user's last Global Token Revocation,
block or logout at the IdP (store/upstream_cutoff.py, a ``ConditionCheck``: no round trip more),
so an ID token kept from before opens nothing (SPEC §5: the user logs in upstream again); and,
for an ID token with a ``sid``, that the IdP did not log that upstream session out (the "ended"
marker of store/upstream_sessions.py, another ``ConditionCheck``; ``upstream_session_ended``),
while the user's other upstream sessions keep working. The
session gives the ``sid`` of the tokens and lets logout, session deletion and upstream
back-channel logout (by ``sub`` or by ``sid``) end them like any login's; it has no cookie anyone
holds. No refresh token is issued.

Log events: ``stx`` / ``ftx`` (the integrator's audit types), with the direction, the connection,
what happened upstream and, on failure, the rule that refused (``check``); never a token.
"""
from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chalicelib import clock
from chalicelib.errors import ApiError, OAuthError
from chalicelib.provider import token_events
from chalicelib.provider import token_exchange as protocol
from chalicelib.provider.token_events import GrantRefused

if TYPE_CHECKING:
    from chalicelib.provider.client_auth import AuthenticatedClient
    from chalicelib.provider.cors import ClientCors
    from chalicelib.vault import UpstreamTokens

log = logging.getLogger(__name__)

REFRESH_MARGIN = 60  # SPEC §10: refresh first when the stored token expires within 60 s
POLL_INTERVAL = 0.05  # a waiting exchange reads the entry again this often (seconds)
POLL_FOR = 5.0  # and gives up after this long (broker clock's monotonic), answering 503
SUCCESS, FAILURE = "stx", "ftx"
# The upstream call's whole deadline (SPEC §8, netguard.TOTAL_TIMEOUT: 10 s) and a second for the
# write after it: a lease with less left is not used for an upstream call.
LEASE_LEFT_FOR_UPSTREAM = 11.0
LEASE_ATTEMPTS = 2  # a lease that ran short is taken once more, then 503


def token_exchange_request(form: dict[str, Any], authorization: str | None, *,
                           cors: ClientCors | None = None,
                           now: float | None = None) -> dict[str, Any]:
    """``POST /oauth/token`` with the token exchange grant: the client authenticated as for
    every grant (a failure is an ``ftx``), then :func:`exchange`."""
    from chalicelib.provider.token import authenticated

    client = authenticated(form, authorization, cors, FAILURE)
    return exchange(client, form, int(clock.now() if now is None else now))


def exchange(client: AuthenticatedClient, form: Mapping[str, Any], now: int) -> dict[str, Any]:
    """The exchange's answer; every refusal is also one ``ftx`` event."""
    seen: dict[str, Any] = {}  # what the request got to know, for its event
    try:
        protocol.check_client(client)
        request = protocol.parse_request(form)
        seen["direction"] = ("upstream_access_token" if request.subject_type == "access_token"
                             else "broker_tokens")
        if request.subject_type == "access_token":
            return _upstream_access_token(client, request, now, seen)
        return _broker_tokens(client, request, now, seen)
    except (OAuthError, ApiError) as exc:
        token_events.record_failure(
            FAILURE, exc, client=client.record, client_id=client.client_id,
            user_id=seen.get("user_id"), connection=seen.get("connection"),
            direction=seen.get("direction"), upstream=seen.get("upstream"))
        raise


# --- upstream access token out ------------------------------------------------------------------

def _target_connection(client: AuthenticatedClient, target: str | None) -> dict[str, Any]:
    from chalicelib import vault
    from chalicelib.registry.connections import cached_connection_by_name

    if target is None:
        raise GrantRefused("invalid_request", "resource or audience is required", "target")
    name = protocol.connection_name_of(target)
    connection = cached_connection_by_name(name) if name else None
    if connection is None:
        raise GrantRefused("invalid_target", "Unknown target", "target")
    if not protocol.client_may_exchange(connection, client):
        raise protocol.refuse_client(connection, client,
                                     "The client may not exchange tokens for this connection")
    if not vault.enabled(connection):
        raise GrantRefused("unauthorized_client", "The connection keeps no upstream tokens",
                           "token_storage")
    return connection


def _upstream_access_token(client: AuthenticatedClient, request: protocol.ExchangeRequest,
                           now: int, seen: dict[str, Any]) -> dict[str, Any]:
    from chalicelib import vault

    connection = _target_connection(client, request.target)
    seen["connection"] = connection
    subject = protocol.subject_of_access_token(request.subject_token, client, now)
    seen["user_id"] = subject.user_id
    if token_events.connection_of(subject.user_id) != connection["name"]:
        raise GrantRefused("invalid_grant", "The subject token's user is not of this connection",
                           "subject_connection")
    found = vault.read(connection, subject.user_id, now)
    if found is None:
        raise GrantRefused("invalid_grant", "No upstream tokens are stored for this user",
                           "vault_entry")
    tokens, version = found
    if not _fresh(tokens, now):
        if tokens.refresh_token:
            tokens = _refreshed(connection, subject.user_id, tokens, version, now, seen)
        elif tokens.expires_at is not None and tokens.expires_at <= now:
            raise GrantRefused("invalid_grant", "The upstream token expired and cannot be "
                               "refreshed: sign in again", "upstream_expired")
    seen.setdefault("upstream", "stored")
    token_events.record_success(SUCCESS, client=client.record, client_id=client.client_id,
                                connection=connection, user_id=subject.user_id,
                                user=subject.user, direction=seen["direction"],
                                upstream=seen["upstream"])
    return protocol.upstream_token_response(
        access_token=tokens.access_token, token_type=tokens.token_type,
        expires_at=tokens.expires_at, scope=tokens.scope, now=now)


def _fresh(tokens: UpstreamTokens, now: int) -> bool:
    """Lives more than the margin (an upstream that gave no expiry: as far as we know)."""
    return tokens.expires_at is None or tokens.expires_at - now > REFRESH_MARGIN


def _refuse_dead_entry() -> GrantRefused:
    return GrantRefused("invalid_grant", "The identity provider refused the stored refresh "
                        "token: sign in again", "upstream_refresh_refused")


class _LeaseRunningOut(Exception):
    """Too little of the lease is left to cover an upstream call: treated as lost."""


def _refreshed(connection: dict[str, Any], user_id: str, stale: UpstreamTokens, version: int,
               now: int, seen: dict[str, Any]) -> UpstreamTokens:
    """The entry's tokens after one upstream refresh, whoever makes it (see the module's doc)."""
    from chalicelib import vault

    for _ in range(LEASE_ATTEMPTS):
        # The lease runs from the moment it is taken, not from the request's start: whatever ran
        # before (KMS, the first read) does not eat into the time the upstream call needs.
        taken_at = clock.now_int()
        lease = vault.take_refresh_lease(connection, user_id, taken_at)
        if lease is None:
            seen["upstream"] = "waited"
            return _after_refresh_by_another(connection, user_id, version, now)
        try:
            # A refresh may have landed between our read and our lease: then nothing is left.
            current = vault.read(connection, user_id, now)
        except BaseException:
            _release(connection, user_id, lease)
            raise
        if current is None or current[1] != version:
            _release(connection, user_id, lease)
            if current is None:
                raise GrantRefused("invalid_grant", "No upstream tokens are stored for this "
                                   "user", "vault_entry")
            seen["upstream"] = "waited"
            return _settled(current[0], now)
        try:
            fresh = _refresh_upstream(connection, user_id, current[0], lease,
                                      taken_at + vault.LEASE_SECONDS, now, seen)
        except _LeaseRunningOut:
            log.warning("refresh lease of %s at %s ran short before the upstream call; taken "
                        "again", user_id[:80], connection["name"])
            continue  # released: read the entry again under a new lease
        seen["upstream"] = "refreshed"
        return fresh
    raise GrantRefused("temporarily_unavailable", "The upstream token could not be refreshed in "
                       "time; retry", "refresh_lease", 503)


def _refresh_upstream(connection: dict[str, Any], user_id: str, stale: UpstreamTokens,
                      lease: str, lease_until: int, now: int,
                      seen: dict[str, Any]) -> UpstreamTokens:
    """Spend the refresh token at the upstream, the lease held, and store what it answers
    (``vault.replace`` gives the lease back); any other way out releases the lease. When less
    than :data:`LEASE_LEFT_FOR_UPSTREAM` seconds of the lease are left just before the upstream
    call (a slow secret read), :class:`_LeaseRunningOut`: another caller could take the lease
    over while the refresh token is in flight and spend it too."""
    from chalicelib import vault
    from chalicelib.login import upstream
    from chalicelib.registry.connections import connection_secret
    from chalicelib.secrets import SecretNotFound
    from chalicelib.store.dynamo import ConditionFailed

    lease_held = True

    def store(tokens: UpstreamTokens) -> None:
        nonlocal lease_held
        lease_held = False  # replaced, or lost to a login that wrote newer tokens
        try:
            vault.replace(connection, user_id, tokens, lease, now)
        except ConditionFailed:
            log.warning("vault entry of %s at %s changed during an upstream refresh",
                        user_id[:80], connection["name"])

    try:
        try:
            secret = connection_secret(connection)
        except SecretNotFound:
            log.error("connection %s has no client secret for the upstream refresh",
                      connection["name"])
            raise GrantRefused("temporarily_unavailable", "The connection cannot refresh "
                               "upstream tokens", "connection_secret", 503) from None
        if lease_until - clock.now() < LEASE_LEFT_FOR_UPSTREAM:
            raise _LeaseRunningOut()
        try:
            answer = upstream.refresh_tokens(connection, stale.refresh_token or "", secret)
        except upstream.UpstreamError as exc:
            seen["upstream"] = f"refresh_{exc.error}"
            if exc.error != "invalid_grant":
                raise GrantRefused("temporarily_unavailable", "The identity provider could not "
                                   "refresh the token; retry", "upstream_refresh", 503,
                                   upstream_error=exc.error) from None
            # The entry is useless from now on: expired, no refresh token. The callers waiting
            # on its version wake up to it, and later exchanges refuse at once.
            store(vault.UpstreamTokens(access_token=stale.access_token, expires_at=now,
                                       refresh_token=None, id_token=stale.id_token,
                                       token_type=stale.token_type, scope=stale.scope))
            raise _refuse_dead_entry() from None
        fresh = vault.UpstreamTokens(
            access_token=answer["access_token"], expires_at=_expires_at(answer, now),
            # RFC 6749 §6: without a new refresh token in the answer, the one presented stays.
            refresh_token=answer.get("refresh_token") or stale.refresh_token,
            # The ID token stays the one validated at login: a refreshed one is not checked here.
            id_token=stale.id_token, token_type=answer["token_type"],
            scope=answer.get("scope") or stale.scope)
        store(fresh)
        return fresh
    finally:
        if lease_held:
            _release(connection, user_id, lease)


def _expires_at(answer: Mapping[str, Any], now: int) -> int | None:
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)  # some IdPs send it as a string
    if isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in >= 0:
        return now + expires_in
    return None


def _release(connection: dict[str, Any], user_id: str, lease: str) -> None:
    from chalicelib import vault

    try:
        vault.release_lease(connection, user_id, lease)
    except Exception:  # noqa: BLE001 - the lease expires anyway; the answer stands
        log.exception("refresh lease of %s at %s not released", user_id[:80], connection["name"])


def _after_refresh_by_another(connection: dict[str, Any], user_id: str, version: int,
                              now: int) -> UpstreamTokens:
    """Wait for the lease holder's ``replace`` (the entry's version moves), bounded."""
    from chalicelib import vault

    deadline = clock.monotonic() + POLL_FOR
    for _ in range(int(POLL_FOR / POLL_INTERVAL)):  # also bounds a clock that stands still
        time.sleep(POLL_INTERVAL)
        current = vault.read(connection, user_id, now)
        if current is None:
            raise GrantRefused("invalid_grant", "No upstream tokens are stored for this user",
                               "vault_entry")
        if current[1] != version:
            return _settled(current[0], now)
        if clock.monotonic() >= deadline:
            break
    raise GrantRefused("temporarily_unavailable", "The upstream token is being refreshed; retry",
                       "upstream_refresh_wait", 503)


def _settled(tokens: UpstreamTokens, now: int) -> UpstreamTokens:
    """Tokens another caller's refresh left: good, or the dead entry of a refused refresh."""
    if _fresh(tokens, now) or tokens.refresh_token:
        return tokens
    raise _refuse_dead_entry()


# --- broker tokens in -----------------------------------------------------------------------------

def _unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified: only to choose the connection whose keys and
    issuer then verify it."""
    parts = token.split(".")
    if len(parts) != 3:
        raise GrantRefused("invalid_grant", "The subject token is not a signed JWT", "format")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise GrantRefused("invalid_grant", "The subject token is not a signed JWT",
                           "format") from None
    if not isinstance(payload, dict):
        raise GrantRefused("invalid_grant", "The subject token is not a signed JWT", "format")
    return payload


def _issuer_connection(client: AuthenticatedClient, claims: Mapping[str, Any]) -> dict[str, Any]:
    """The connection of the token's ``iss`` that lists the client; of several (one IdP, several
    registrations), the one whose ``client_id`` the token is for."""
    from chalicelib.store import connections

    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise GrantRefused("invalid_grant", "The subject token names no issuer", "iss")
    # Read, not cached: a client taken off token_exchange_clients is refused at once.
    every: list[dict[str, Any]] = [dict(c) for c in connections.list_all()]
    candidates = sorted((c for c in every if (c.get("options") or {}).get("issuer") == issuer),
                        key=lambda c: str(c["name"]))
    if not candidates:
        raise GrantRefused("invalid_grant", "The subject token's issuer is not a connection",
                           "iss")
    allowed = [c for c in candidates if protocol.client_may_exchange(c, client)]
    if not allowed:
        # Named after the first of them that lists the client, when one does.
        listing = [c for c in candidates if protocol.client_listed(c, client)]
        raise protocol.refuse_client((listing or candidates)[0], client,
                                     "The client may not exchange tokens of this issuer")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    for connection in allowed:
        if connection["options"].get("client_id") in audiences:
            return connection
    return allowed[0]  # validation names what is wrong with it (aud)


def _validated(connection: dict[str, Any], token: str, now: int) -> dict[str, Any]:
    """§3.3 step 4 exactly as the callback runs it, without a nonce (there was no login
    request): the connection's JWKS and algorithms, iss, aud/azp, exp/iat with 60 s leeway, sub."""
    from chalicelib.login.id_token import IdTokenError, validate_id_token
    from chalicelib.login.jwks_cache import JwksUnavailable, jwks_cache

    options = connection["options"]
    try:
        return validate_id_token(
            token, issuer=options["issuer"], client_id=options["client_id"], nonce=None,
            jwks_uri=options["jwks_uri"],
            allowed_algs=options.get("id_token_signed_response_algs") or ["RS256"],
            cache=jwks_cache(), now=now)
    except JwksUnavailable:
        log.warning("JWKS of connection %s unavailable and nothing cached", connection["name"])
        raise GrantRefused("temporarily_unavailable", "The identity provider's keys are "
                           "unavailable", "jwks", 503) from None
    except IdTokenError as exc:
        raise GrantRefused("invalid_grant", f"The subject token is invalid ({exc.check})",
                           exc.check, validation="id_token") from None


def _broker_tokens(client: AuthenticatedClient, request: protocol.ExchangeRequest, now: int,
                   seen: dict[str, Any]) -> dict[str, Any]:
    from chalicelib import sessions, users
    from chalicelib.login.freshness import upstream_authentication
    from chalicelib.login.mapping import apply_root_attribute_policy, map_claims
    from chalicelib.provider import grant_store, issue
    from chalicelib.store import logins, upstream_cutoff, upstream_sessions
    from chalicelib.store.dynamo import ConditionFailed
    from chalicelib.store.resource_servers import still_exists_check
    from chalicelib.store.unit_of_work import UnitOfWork
    from chalicelib.tokens import random_token

    app = client.record
    if app is None:  # protocol.check_client refused it already
        raise GrantRefused("unauthorized_client", "Public clients cannot exchange tokens",
                           "public_client")
    connection = _issuer_connection(client, _unverified_claims(request.subject_token))
    seen["connection"] = connection
    server = protocol.broker_audience(request.target)
    scope = protocol.broker_scope(request.scope, server)
    claims = _validated(connection, request.subject_token, now)
    user_id = users.user_id_for(connection["name"], claims["sub"])
    seen["user_id"] = user_id
    # The callback's mapping (SPEC §3.4, §3.3 step 6); no userinfo: no upstream access token.
    mapped, warnings = map_claims(connection, claims, None)
    for warning in warnings:
        log.warning("claim mapping for connection %s: %s", connection["name"], warning)
    policy = connection["options"].get("set_user_root_attributes", "on_each_login")
    existing = None if policy == "on_each_login" else users.get_user(user_id)
    attributes = apply_root_attribute_policy(existing.get("attributes") if existing else None,
                                             mapped, policy)
    authentication = upstream_authentication(claims, now)
    auth_time = authentication.auth_time if authentication.auth_time is not None else now
    lifetime = protocol.broker_token_lifetime(app, server)
    sid, _cookie, session_fields = sessions.new_session_values(
        now, auth_time=auth_time, acr=authentication.acr, amr=authentication.amr)
    # The session and the grant live as long as the access token, no longer.
    session_fields["expires_at"] = session_fields["idle_expires_at"] = now + lifetime
    grant_id = random_token(18)
    operations = UnitOfWork().add(
        users.user_update_operation(user_id, connection, claims["sub"], attributes, now),
        *sessions.session_put_operations(sid, session_fields, user_id, connection["id"],
                                         client.client_id, grant_id),
        *grant_store.new_grant_operations(grant_id, client_id=client.client_id, user_id=user_id,
                                          sid=sid, expires_at=now + lifetime),
        # SPEC §11: indexed by the upstream session as the callback does, for a sid-only logout.
        *upstream_sessions.record_operations(connection["id"], claims.get("sid"), sid, user_id,
                                             session_fields["expires_at"]))
    # SPEC §5: after Global Token Revocation, a block or the IdP's logout of the user, an ID
    # token issued until then opens nothing: the user logs in upstream again first.
    cutoff_check = len(operations)
    operations.add(upstream_cutoff.issued_after_check(user_id, claims["iat"]))
    # SPEC §11: nor does an ID token of an upstream session the IdP logged out (its sid).
    ended_check = len(operations)
    ended = upstream_sessions.not_ended_check(connection["id"], claims.get("sid"))
    operations.add(*ended)
    server_check = len(operations)
    if server is not None:
        operations.add(still_exists_check(server.identifier, server.id))
    user = {"user_id": user_id, "attributes": attributes, "updated_at": users.iso(now)}
    token_events.ride_success(operations, SUCCESS, client=app, user_id=user_id, user=user,
                              direction=seen["direction"], audience=server.identifier
                              if server else None, scope=scope)
    issue.prepare_signing()  # before anything is written (SPEC §8)
    try:
        logins.record(operations)
    except ConditionFailed as exc:
        if exc.reasons[:1] == ["ConditionalCheckFailed"]:
            raise GrantRefused("invalid_grant", "The user is blocked", "blocked") from None
        if exc.reasons[cutoff_check:cutoff_check + 1] == ["ConditionalCheckFailed"]:
            raise GrantRefused("invalid_grant", "The subject token was issued before the user's "
                               "sessions were revoked: sign in again", "issued_before_revocation"
                               ) from None
        if ended and exc.reasons[ended_check:ended_check + 1] == ["ConditionalCheckFailed"]:
            raise GrantRefused("invalid_grant", "The subject token's session at the identity "
                               "provider has ended: sign in again", "upstream_session_ended"
                               ) from None
        if server is not None and exc.reasons[server_check:server_check + 1] == [
                "ConditionalCheckFailed"]:
            raise GrantRefused("invalid_target", "Unknown audience", "audience") from None
        log.error("token exchange transaction for %s cancelled: %s", connection["name"],
                  exc.reasons)
        raise GrantRefused("temporarily_unavailable", "The exchange could not be recorded; retry",
                           "transaction", 503) from None
    return protocol.broker_token_response(
        app=app, user=user, scope=scope, server=server, sid=sid, grant_id=grant_id,
        auth_time=auth_time, acr=authentication.acr, amr=authentication.amr, now=now)
