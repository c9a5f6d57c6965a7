"""Broker sessions (SSO): a cookie ``{sid}.{secret}``; DynamoDB keeps only the secret's digest.

A session records the applications it served (``clients``) and the token grants issued in it
(``grants``), which is what logout and Global Token Revocation need (SPEC §5, §6).

The upstream ID token of the login is kept for Auth0's federated logout (``id_token_hint`` at the
upstream ``end_session_endpoint``) but never readable from the table: the token exchange (SPEC
§10) accepts an upstream ID token as ``subject_token``, so in clear it would be a credential for
anyone who can read the table or a backup. It is sealed (AES-256-GCM, the sid as associated
data) under a key derived from the cookie secret, which only the browser holds: only a request
carrying the session's cookie can unseal it (:func:`upstream_id_token`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, cast

from chalicelib.registry.tenant import cached_tenant_settings
from chalicelib.provider import lifetimes
from chalicelib.store import sessions as session_records
from chalicelib.store.sessions import SessionRecord
from chalicelib.store.unit_of_work import Write
from chalicelib.tokens import digest, random_token, same

COOKIE = "broker_session"
# SameSite=None (the cookie is always Secure, and __Host- over https), as Auth0's own session
# cookie: silent authentication (response_mode=web_message) loads /authorize in a hidden iframe
# of the application, and when the application is on another site (app.example.com, broker at
# login.example.net) a Lax cookie is withheld from that cross-site frame, so every silent
# renewal would answer login_required. What None adds over Lax is only that cross-site
# subrequests carry the cookie, and none of them can take anything: /authorize hands codes only
# to registered redirect URIs and verified web-message origins, its pages forbid framing except
# by that origin, /oidc/logout asks the user (with a token derived from this cookie), and
# /v2/logout ends the session on any request, as Auth0's does. Where the browser blocks
# third-party cookies, the SPA falls back to refresh tokens, as with Auth0.
COOKIE_SAME_SITE = "None"

# The sealed upstream ID token (see the module docstring): a longer one is not kept (no hint).
MAX_UPSTREAM_ID_TOKEN = 16384
SEALED_ID_TOKEN = "upstream_id_token_sealed"
_LEGACY_ID_TOKEN = "upstream_id_token"   # sessions from before sealing: plain, until they expire
_SEALING_LABEL = b"broker session: upstream ID token sealing key v1"
_NONCE_BYTES = 12                        # AES-GCM's 96-bit nonce
_TAG_BYTES = 16


@dataclass(frozen=True)
class Session:
    sid: str
    user_id: str
    connection_id: str
    auth_time: int
    expires_at: int
    idle_expires_at: int
    clients: tuple[str, ...] = ()
    acr: str | None = None
    amr: tuple[str, ...] | None = None


def session_lifetimes() -> tuple[int, int]:
    """(absolute, idle) seconds of a session from the tenant settings (SPEC §2.4), read through
    their per-container cache: no DynamoDB call on a warm login."""
    tenant = cached_tenant_settings()
    return lifetimes.session_lifetimes(tenant.session_lifetime, tenant.idle_session_lifetime)


def new_session_values(now: int, auth_time: int | None = None, acr: str | None = None,
                       amr: list[str] | None = None,
                       upstream_id_token: str | None = None) -> tuple[str, str, dict]:
    """(sid, cookie value, fields) for a new session. ``auth_time``, ``acr`` and ``amr`` are the
    upstream login's (SPEC §3.1): ``max_age`` on a later SSO reuse is measured from that login,
    not from the callback. ``upstream_id_token`` is stored sealed under the cookie secret (at
    most :data:`MAX_UPSTREAM_ID_TOKEN` characters; a longer one is not kept)."""
    sid = random_token(18)
    secret = random_token(32)
    absolute, idle = session_lifetimes()
    fields = {"cookie_digest": digest(secret), "auth_time": now if auth_time is None else auth_time,
              "updated_at": now, "expires_at": now + absolute,
              "idle_expires_at": now + idle}
    if acr is not None:
        fields["acr"] = acr
    if amr is not None:
        fields["amr"] = list(amr)
    if upstream_id_token and len(upstream_id_token) <= MAX_UPSTREAM_ID_TOKEN:
        fields[SEALED_ID_TOKEN] = seal_upstream_id_token(sid, secret, upstream_id_token)
    return sid, f"{sid}.{secret}", fields


def _sealing_key(secret: str) -> bytes:
    """AES-256 key of a session's sealed upstream ID token: HMAC-SHA256 keyed by the cookie
    secret (random, 256 bits, never stored) over a fixed label, so it is useless for anything
    else and cannot be computed from the stored digest."""
    return hmac.new(secret.encode(), _SEALING_LABEL, hashlib.sha256).digest()


def seal_upstream_id_token(sid: str, secret: str, id_token: str) -> str:
    """base64url(nonce || AES-256-GCM(id_token, associated data = sid)), the key from the
    cookie secret. ``cryptography`` is imported here only: the callback path loads it anyway
    (joserfc verifies the ID token with it)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(_sealing_key(secret)).encrypt(nonce, id_token.encode(), sid.encode())
    return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()


def unseal_upstream_id_token(sid: str, secret: str, sealed: str) -> str | None:
    """The ID token :func:`seal_upstream_id_token` sealed for this sid and cookie secret; None
    when anything differs (another cookie, another sid, altered or malformed data)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    except ValueError:
        return None
    if len(raw) < _NONCE_BYTES + _TAG_BYTES:
        return None
    try:
        plain = AESGCM(_sealing_key(secret)).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                                     sid.encode())
        return plain.decode()
    except (InvalidTag, UnicodeDecodeError):
        return None


def upstream_id_token(item: SessionRecord, cookie: str | None) -> str | None:
    """The upstream ID token of a session's login, for the request that carries the session's
    cookie (``{sid}.{secret}``); None without it, with another cookie, or when none was kept.
    A session from before sealing holds it in clear and gives it as before until it expires."""
    sealed = item.get(SEALED_ID_TOKEN)
    if sealed is None:
        legacy = item.get(_LEGACY_ID_TOKEN)
        return legacy if isinstance(legacy, str) and legacy else None
    if not cookie or "." not in cookie or len(cookie) > 200 or not isinstance(sealed, str):
        return None
    # The item's sid is the associated data: a cookie of another session, or this sealed value
    # moved into another session's item, does not open it.
    return unseal_upstream_id_token(str(item.get("sid")), cookie.partition(".")[2], sealed)


def session_put_operations(sid: str, fields: dict, user_id: str, connection_id: str,
                           client_id: str, grant_id: str) -> list[Write]:
    """The transaction items of a new session (from :func:`new_session_values`) that served
    ``client_id`` with ``grant_id``."""
    return session_records.put_operations(sid, fields, user_id, connection_id, client_id,
                                          grant_id)


def session_touch_operation(session: Session, client_id: str, grant_id: str, now: int) -> Write:
    """Record another application served by a live session (SSO) and slide its idle expiry."""
    idle_expires_at = min(now + session_lifetimes()[1], session.expires_at)
    return session_records.touch_operation(session.sid, client_id, grant_id, idle_expires_at, now)


def _from_item(item: SessionRecord) -> Session:
    return Session(sid=item["sid"], user_id=item["user_id"], connection_id=item["connection_id"],
                   auth_time=int(item["auth_time"]), expires_at=int(item["expires_at"]),
                   idle_expires_at=int(item["idle_expires_at"]),
                   clients=tuple(item.get("clients") or ()), acr=item.get("acr"),
                   amr=tuple(item["amr"]) if item.get("amr") else None)


def live_session(sid: str, now: int) -> SessionRecord | None:
    """The session's item while it is live: not expired, idle or revoked."""
    item = session_records.get(sid, now)
    if item is None or item.get("revoked_at") or int(item["idle_expires_at"]) <= now:
        return None
    return item


def get_session(sid: str, now: int) -> dict[str, Any] | None:
    """:func:`live_session` as a plain dict, for callers not yet typed with
    :class:`~chalicelib.store.sessions.SessionRecord`."""
    return cast("dict[str, Any] | None", live_session(sid, now))


def session_from_cookie(cookie: str | None, now: int) -> Session | None:
    """The live session the browser's cookie names, or None (forged, expired or revoked)."""
    if not cookie or "." not in cookie or len(cookie) > 200:
        return None
    sid, _, secret = cookie.partition(".")
    item = live_session(sid, now)
    if item is None or not same(digest(secret), item.get("cookie_digest", "")):
        return None
    return _from_item(item)


def revoke_session(sid: str, now: int) -> SessionRecord | None:
    """Mark a session revoked; returns its item (with clients and grants) or None.

    The item stays (until its TTL) as a tombstone, so a racing SSO request, whose conditional
    update requires ``attribute_not_exists(revoked_at)``, cannot revive it.
    """
    return session_records.revoke(sid, now)


def unfinished_end(sid: str) -> SessionRecord | None:
    """A session whose ending was interrupted: revoked (the tombstone is written first) but its
    grants and back-channel notifications not yet confirmed done. None otherwise."""
    item = session_records.get(sid)
    if item is None or not item.get("revoked_at") or item.get("end_completed_at"):
        return None
    return item


def unfinished_end_from_cookie(cookie: str | None) -> SessionRecord | None:
    """:func:`unfinished_end` for the session the browser's cookie names (digest checked)."""
    if not cookie or "." not in cookie or len(cookie) > 200:
        return None
    sid, _, secret = cookie.partition(".")
    item = unfinished_end(sid)
    if item is None or not same(digest(secret), item.get("cookie_digest", "")):
        return None
    return item


def mark_end_completed(sid: str, now: int) -> None:
    """The last step of ending a session: its grants are revoked and its notifications queued."""
    # A session that expired and was deleted meanwhile has nothing left to finish.
    session_records.mark_end_completed(sid, now)


def sessions_of_user(user_id: str, now: int) -> list[SessionRecord]:
    """Live sessions of a user (for the Management API)."""
    found = []
    for sid in session_records.sids_of_user(user_id):
        item = live_session(sid, now)
        if item is not None:
            found.append(item)
    return found
