"""Global Token Revocation for one connection (SPEC §5; draft-parecki-oauth-global-token-revocation,
Okta "Universal Logout", Auth0's documented request form).

``POST /oauth/global-token-revocation/connection/{name}`` with ``Authorization: Bearer <JWT>`` signed
by the connection's upstream IdP, and a JSON body naming the user (an RFC 9493 subject identifier in
``sub_id`` (draft ≥ -03) or ``subject`` (Auth0)). Steps, in this order:

1. The connection, by name (the JWKS, issuer and client_id come from it).
2. The JWT, before the body is read: header ``typ`` ``global-token-revocation+jwt`` (case-insensitive,
   ``application/`` optional), ``alg`` asymmetric *and* in the connection's
   ``id_token_signed_response_algs``, no ``crit``; the key chosen by the broker from the connection's
   JWKS (an unknown ``kid`` refetches it at most once a minute, through the shared JWKS cache); then
   ``exp`` (present, not expired, at most 10 min ahead), ``iat`` (present, not in the future),
   ``nbf`` (when present), ``jti`` present; then ``iss`` = the connection's issuer, ``sub`` = its
   ``client_id``, ``aud`` = exactly this endpoint's URL (built from ``BROKER_ISSUER``; a string or
   an array containing it). All with :data:`LEEWAY` seconds of clock skew. Last, the ``jti`` is
   recorded with a conditional put (a replay marker, chalicelib/store/replay.py), expiring when the
   token can no longer be accepted), so a replay is refused and concurrent copies have one winner.
3. The body (≤ 16 KB JSON): exactly one of ``sub_id`` / ``subject``; formats ``iss_sub`` (``iss``
   must be the connection's issuer; the user is ``oidc|{connection}|{sub}``) and ``email`` (every
   user of this connection whose ``email`` matches, case-insensitively).
4. :func:`chalicelib.revocation.revoke_user` for each matching user, before answering: sessions end,
   every grant (offline refresh tokens, pending codes, access tokens) is revoked, back-channel
   logout is queued.

Status mapping (responses carry the status; the body is at most ``{"error": code}``):

====== ==================================================================================
204    done (empty body)
400    body is not JSON / not an object / oversize nesting, both or neither of ``sub_id`` and
       ``subject``, unknown ``format``, wrong member types, ``iss_sub`` with another issuer
401    missing or malformed ``Authorization`` / JWT (also JWE), wrong ``typ``, ``alg`` not allowed
       (``none`` and ``HS*`` always), ``crit``, no JWKS key for the ``kid``, bad signature,
       ``exp`` missing / expired / more than 10 min ahead, ``iat`` missing or in the future,
       ``nbf`` in the future, ``iss``/``sub``/``aud``/``jti`` missing or of the wrong type,
       replayed ``jti``. Sent with ``WWW-Authenticate: Bearer error="invalid_token"``.
403    the signature verifies, but ``iss``, ``sub`` or ``aud`` name another IdP, client or
       endpoint (another connection, a URL with a query, ...)
404    unknown connection (checked first) or no matching user
413    body larger than 16 KB
422    the user could not be logged out: a dependency failed while finding or revoking the
       user; the ``jti`` is released (best effort) so the IdP may retry the same token
503    a dependency failed before any user was touched (connection lookup, JWKS with no good
       copy, the ``jti`` store); nothing was changed
====== ==================================================================================

Time is read once per request (``clock.now()`` in this module). Logs carry the connection name,
status, a reason code and the number of users, never the token or the body. Each request is also
one log event (SPEC §9): ``sgtr`` on 204, else ``fgtr`` with the reason (an unknown user says so,
although its 404 looks like an unknown connection's to the caller).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from chalicelib import clock
from chalicelib.errors import ServiceUnavailable
from chalicelib.login.id_token import (
    ASYMMETRIC_ALGS,
    MAX_TOKEN_BYTES,
    IdTokenError,
    UnknownKey,
    verify_signature,
)
from chalicelib.login.jwks_cache import JwksCache, JwksError, jwks_cache
from chalicelib.settings import get_settings
from chalicelib.store import replay
from chalicelib.store.dynamo import ConditionFailed

log = logging.getLogger(__name__)

__all__ = ["LEEWAY", "MAX_BODY_BYTES", "MAX_LIFETIME", "TYP", "GtrError", "Outcome", "endpoint_url",
           "handle"]

TYP = "global-token-revocation+jwt"
LEEWAY = 60
MAX_LIFETIME = 600  # exp at most 10 minutes ahead (SPEC §5)
MAX_BODY_BYTES = 16 * 1024
MAX_JTI_LENGTH = 1024
MAX_SUB_LENGTH = 255
MAX_EMAIL_LENGTH = 512
REASON = "global_token_revocation"
PATH = "oauth/global-token-revocation/connection/"

_NAME = re.compile(r"^[a-zA-Z0-9](-[a-zA-Z0-9]|[a-zA-Z0-9])*$")
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+)$")


class GtrError(Exception):
    """A refused request: ``status``, a public ``error`` code, a log-only ``reason``."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


@dataclass(frozen=True)
class Outcome:
    status: int
    error: str | None
    reason: str
    users: int = 0


def _unauthorized(reason: str) -> GtrError:
    return GtrError(401, "invalid_token", reason)


def _forbidden(reason: str) -> GtrError:
    return GtrError(403, "access_denied", reason)


def _bad_request(reason: str) -> GtrError:
    return GtrError(400, "invalid_request", reason)


def endpoint_url(connection_name: str) -> str:
    """The exact ``aud`` a revocation JWT for this connection must carry."""
    return get_settings().url(PATH + connection_name)


# --------------------------------------------------------------------------- connection

def _connection(name: str) -> dict:
    from chalicelib.registry.connections import cached_connection_by_name

    if not _is_name(name):
        raise GtrError(404, "not_found", "unknown_connection")
    try:
        connection = cached_connection_by_name(name)
    except ServiceUnavailable:
        raise GtrError(503, "temporarily_unavailable", "connection_lookup_failed") from None
    options = (connection or {}).get("options") or {}
    if connection is None or connection.get("strategy") != "oidc" or not all(
            isinstance(options.get(k), str) and options.get(k)
            for k in ("issuer", "client_id", "jwks_uri")):
        raise GtrError(404, "not_found", "unknown_connection")
    return connection


# --------------------------------------------------------------------------- the JWT

def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise _unauthorized("no_token")
    match = _BEARER.match(authorization.strip())
    if match is None:
        raise _unauthorized("malformed_authorization")
    token = match.group(1)
    if len(token) > MAX_TOKEN_BYTES or not _COMPACT_JWS.match(token):
        raise _unauthorized("malformed_token")
    return token


def _header(token: str) -> dict:
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise _unauthorized("malformed_header") from None
    if not isinstance(header, dict):
        raise _unauthorized("malformed_header")
    return header


def _check_header(header: dict, allowed_algs: list) -> tuple[str, str | None]:
    typ = header.get("typ")
    media = typ.lower() if isinstance(typ, str) else None
    if media is not None and media.startswith("application/"):
        media = media[len("application/"):]
    if media != TYP:
        raise _unauthorized("typ")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGS or alg not in allowed_algs:
        raise _unauthorized("alg")
    if "crit" in header:
        raise _unauthorized("crit")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise _unauthorized("kid")
    return alg, kid


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_times(claims: dict, now: float) -> None:
    exp = claims.get("exp")
    if not _number(exp):
        raise _unauthorized("exp_missing")
    if exp <= now - LEEWAY:
        raise _unauthorized("expired")
    if exp > now + MAX_LIFETIME + LEEWAY:
        raise _unauthorized("exp_too_far")
    iat = claims.get("iat")
    if not _number(iat):
        raise _unauthorized("iat_missing")
    if iat > now + LEEWAY:
        raise _unauthorized("iat_future")
    if "nbf" in claims:
        nbf = claims["nbf"]
        if not _number(nbf) or nbf > now + LEEWAY:
            raise _unauthorized("nbf")


def _check_parties(claims: dict, connection: dict) -> None:
    options = connection["options"]
    iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
    if not isinstance(iss, str) or not isinstance(sub, str):
        raise _unauthorized("iss_or_sub_malformed")
    if isinstance(aud, str):
        audiences = [aud]
    elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        audiences = aud
    else:
        raise _unauthorized("aud_malformed")
    if iss != options["issuer"]:
        raise _forbidden("iss")
    if sub != options["client_id"]:
        raise _forbidden("sub")
    if endpoint_url(connection["name"]) not in audiences:
        raise _forbidden("aud")


def _verify_token(token: str, connection: dict, now: float, cache: JwksCache) -> dict:
    options = connection["options"]
    allowed = options.get("id_token_signed_response_algs") or ["RS256"]
    alg, kid = _check_header(_header(token), allowed)
    try:
        claims, _ = verify_signature(token, jwks_uri=options["jwks_uri"], alg=alg, kid=kid,
                                     cache=cache)
    except UnknownKey:
        raise _unauthorized("unknown_key") from None
    except IdTokenError as exc:
        raise _unauthorized(exc.check) from None
    except JwksError:
        raise GtrError(503, "temporarily_unavailable", "jwks_unavailable") from None
    _check_times(claims, now)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise _unauthorized("jti_missing")
    _check_parties(claims, connection)
    return claims


def _record_jti(connection: dict, claims: dict, now: float) -> replay.ReplayMarker:
    """Use the ``jti`` once. Kept until the token can no longer pass the ``exp`` check."""
    try:
        return replay.record_gtr_jti(connection["id"], claims["jti"], int(now),
                                     int(math.ceil(claims["exp"])) + LEEWAY)
    except ConditionFailed:
        raise _unauthorized("jti_replayed") from None
    except ServiceUnavailable:
        raise GtrError(503, "temporarily_unavailable", "jti_store_failed") from None


def _release_jti(marker: replay.ReplayMarker) -> None:
    try:
        replay.release(marker)
    except Exception:  # noqa: BLE001 - best effort: the token then stays used
        log.warning("global token revocation: could not release a used jti")


# --------------------------------------------------------------------------- the body

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate member")
        result[key] = value
    return result


def _subject(raw: bytes, issuer: str) -> tuple[str, str]:
    """(``format``, value): ``("iss_sub", sub)`` or ``("email", email)``."""
    if len(raw) > MAX_BODY_BYTES:
        raise GtrError(413, "invalid_request", "body_too_large")
    try:
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad_request("body_not_json") from None
    if not isinstance(body, dict):
        raise _bad_request("body_not_object")
    present = [key for key in ("sub_id", "subject") if key in body]
    if len(present) != 1:
        raise _bad_request("subject_missing_or_ambiguous")
    identifier = body[present[0]]
    if not isinstance(identifier, dict):
        raise _bad_request("subject_not_object")
    fmt = identifier.get("format")
    if fmt == "iss_sub":
        iss, sub = identifier.get("iss"), identifier.get("sub")
        if not isinstance(iss, str) or not isinstance(sub, str) or not sub:
            raise _bad_request("iss_sub_malformed")
        if iss != issuer:
            raise _bad_request("iss_sub_other_issuer")
        return "iss_sub", sub
    if fmt == "email":
        email = identifier.get("email")
        if not isinstance(email, str) or not email.strip() or len(email) > MAX_EMAIL_LENGTH:
            raise _bad_request("email_malformed")
        return "email", email.strip()
    raise _bad_request("unsupported_format")


def _users(connection: dict, fmt: str, value: str) -> list[str]:
    from chalicelib import users

    name = connection["name"]
    if fmt == "iss_sub":
        if len(value) > MAX_SUB_LENGTH:
            return []
        user = users.get_user(users.user_id_for(name, value))
        return [user["user_id"]] if user is not None and user.get("connection") == name else []
    wanted = value.strip().casefold()
    found = []
    for user_id in users.user_ids_by_email(name, value):
        # The index is eventually consistent: confirm on the item itself.
        user = users.get_user(user_id)
        email = (user or {}).get("attributes", {}).get("email")
        if (user is not None and user.get("connection") == name and isinstance(email, str)
                and email.strip().casefold() == wanted):
            found.append(user_id)
    return found


# --------------------------------------------------------------------------- the request

def handle(connection_name: str, authorization: str | None, read_body: Callable[[], bytes], *,
           cache: JwksCache | None = None) -> Outcome:
    """Run one request; never raises for a refused request (see the status mapping above).
    Each request is one ``sgtr`` / ``fgtr`` log event (:func:`_record`)."""
    facts: dict[str, Any] = {}
    outcome = _handle(connection_name, authorization, read_body, cache, facts)
    _record(outcome, connection_name, facts)
    return outcome


def _handle(connection_name: str, authorization: str | None, read_body: Callable[[], bytes],
            cache: JwksCache | None, facts: dict[str, Any]) -> Outcome:
    now = clock.now()
    try:
        connection = _connection(connection_name)
        facts["connection"] = connection
        claims = _verify_token(_bearer(authorization), connection, now, cache or jwks_cache())
        jti_marker = _record_jti(connection, claims, now)
        fmt, value = _subject(read_body() or b"", connection["options"]["issuer"])
        facts["format"] = fmt
    except GtrError as exc:
        return Outcome(exc.status, exc.error, exc.reason)

    from chalicelib import revocation

    done = 0
    facts.update(user_ids=[], sessions=0, grants=0)
    try:
        user_ids = _users(connection, fmt, value)
        if not user_ids:
            return Outcome(404, "not_found", f"unknown_user_{fmt}")
        for user_id in user_ids:
            revoked = revocation.revoke_user(user_id, int(now), REASON,
                                             forget_upstream_tokens=True)
            done += 1
            facts["user_ids"].append(user_id)
            facts["sessions"] += len(revoked.get("sessions") or [])
            facts["grants"] += len(revoked.get("grants") or [])
    except Exception as exc:  # noqa: BLE001 - any failure here means "could not log out"
        log.error("global token revocation on %s failed after %d user(s): %s", connection["name"],
                  done, type(exc).__name__)
        _release_jti(jti_marker)
        return Outcome(422, "revocation_failed", "revocation_failed", done)
    return Outcome(204, None, f"revoked_by_{fmt}", done)


def _record(outcome: Outcome, connection_name: str, facts: dict[str, Any]) -> None:
    """``sgtr`` (204) or ``fgtr``: the connection, the subject's format (never the subject, the
    JWT or the body), the users, sessions and grants ended; on failure the status and the
    reason. An unknown user is a 404 the IdP cannot tell apart from an unknown connection; the
    event says which it was."""
    from chalicelib import audit

    user_ids = facts.get("user_ids") or []
    details: dict[str, Any] = {"status": outcome.status, "reason": outcome.reason,
                               "subject_format": facts.get("format"), "users": outcome.users}
    if "sessions" in facts:
        details.update(sessions=facts["sessions"], grants=facts["grants"])
    if len(user_ids) > 1:
        details["user_ids"] = user_ids
    connection = facts.get("connection")
    if connection is None and _is_name(connection_name):
        connection = connection_name  # unknown: the name as asked, when it is one
    try:
        entry = audit.event("sgtr" if outcome.status == 204 else "fgtr", connection=connection,
                            user_id=user_ids[0] if len(user_ids) == 1 else None, details=details)
    except Exception:  # noqa: BLE001 - a log event never changes the answer
        log.exception("global token revocation log event failed")
        return
    audit.record(entry)


def _is_name(name: object) -> bool:
    return isinstance(name, str) and len(name) <= 128 and _NAME.match(name) is not None
