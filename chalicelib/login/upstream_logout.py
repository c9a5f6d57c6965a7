"""Back-channel logout from an upstream IdP: the broker as relying party (SPEC §11; OpenID Connect
Back-Channel Logout 1.0 §2.5-2.8).

``POST /login/backchannel-logout/{connection}`` (chalicelib/api/upstream_logout.py; the URL an
administrator registers at the IdP is the connection's read-only ``options.backchannel_logout_url``,
management/connections.py), a form with one ``logout_token``. Steps, in this order (each
refusal names its check in the ``flo`` event):

1. The request (§2.5): ``application/x-www-form-urlencoded``, at most :data:`MAX_BODY_BYTES`, one
   ``logout_token`` (``content_type``, ``body_too_large``, ``form``, ``logout_token_missing``).
2. The connection, by name: an OIDC connection with an issuer, a client_id and a JWKS
   (``connection``). Unknown is a 400 like every other refusal: the answer tells nobody which
   connections exist.
3. The token, like an ID token (§2.6 steps 1-3; chalicelib/login/id_token.py's helpers, the key
   chosen by the broker from the connection's JWKS through the shared cache, an unknown ``kid``
   refetching it at most once a minute): a compact JWS (``format``; JWE is not supported);
   header ``alg`` asymmetric *and* in the connection's ``id_token_signed_response_algs``
   (``none`` and ``HS*`` never), no ``crit``, ``typ`` ``logout+jwt`` (case-insensitive,
   ``application/`` optional) when present (§2.4, §4.1: a token typed as anything else, an ID
   token's ``JWT`` included, is refused); the signature (``signature``, ``unknown_key``,
   ``kid``); ``iss`` = the connection's issuer, ``aud`` = its ``client_id`` or an array holding
   it, ``iat`` present, at most :data:`MAX_AGE` old and at most :data:`LEEWAY` ahead, ``exp``
   and ``nbf`` when present (:data:`LEEWAY` of skew).
4. The logout claims (§2.6 steps 4-6): ``jti`` present; ``events`` an object whose member
   ``http://schemas.openid.net/event/backchannel-logout`` is an object; ``sid`` or ``sub`` (or
   both), strings; no ``nonce`` (a logout token is never an ID token, and the other way round).
5. The ``jti``, used once (§2.6 step 7): a conditional put (chalicelib/store/replay.py) kept
   until the token could no longer pass step 3, so a replay is refused and of concurrent copies
   exactly one goes on (``jti_replayed``).
6. The effect (§2.7): with a ``sid``, the broker sessions the callback recorded for that
   upstream session (chalicelib/store/upstream_sessions.py), only the user's when ``sub`` is
   there too; with only a ``sub``, every session of that user of this connection (the user is
   ``users.user_id_for(connection, sub)``). Each ends as a plain logout does
   (``revocation.end_session``: online grants die, offline ones survive, back-channel logout to
   the applications is queued, SPEC §6). The flow is below ``revocation`` in the layers, so the
   route hands :func:`handle` that function. With only a ``sub``, the IdP logged the user out,
   not one of its sessions: the token's ``iat`` is recorded first as the moment up to which that
   user's upstream ID tokens no longer open anything at the token exchange
   (chalicelib/store/upstream_cutoff.py; the IdP's clock, as the ID tokens' ``iat``). With a
   ``sid``, the IdP ended one upstream session: an "ended" marker for it is written first
   (``upstream_sessions.record_ended``, the token's ``iat``), so the exchange refuses that
   session's ID tokens but not the user's others. Either write failing is a 503 before any
   session ends, and the IdP's retry records it.

Answers (§2.8): 200 (``Cache-Control: no-store``, empty body) once the token is accepted, also
when no session matched: the standard treats a logout as idempotent (an RP already logged out
answers success), and a 400 would only tell the IdP something is wrong when nothing is. Every
refusal is 400 ``{"error": "invalid_request"}`` with one generic description, never the check.
A dependency that fails raises :class:`~chalicelib.errors.ServiceUnavailable` (the route's OAuth
translation answers 503 ``temporarily_unavailable``); when it fails after step 5 the ``jti`` is
released (best effort), so the IdP's retry with the same token finishes the job
(``end_session(finish_interrupted=True)``).

Each request is one log event (SPEC §9): ``slo`` for an accepted token (``sessions``: how many
ended, 0 included), ``flo`` for a refused one (``check``). Never the token, the ``jti``, the
upstream ``sid`` or the body.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import parse_qsl

from chalicelib import clock
from chalicelib.errors import ServiceUnavailable
from chalicelib.login.id_token import (
    ASYMMETRIC_ALGS,
    MAX_SUB_LENGTH,
    IdTokenError,
    UnknownKey,
    _parse_header,
    verify_signature,
)
from chalicelib.login.jwks_cache import JwksCache, JwksError, jwks_cache
from chalicelib.store import replay, upstream_cutoff, upstream_sessions
from chalicelib.store import sessions as session_records
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.store.sessions import SessionRecord
from chalicelib.users import user_id_for

log = logging.getLogger(__name__)

__all__ = ["EVENT", "LEEWAY", "MAX_AGE", "MAX_BODY_BYTES", "TYP", "EndSession", "LogoutRefused",
           "Outcome", "handle"]

EVENT = "http://schemas.openid.net/event/backchannel-logout"
TYP = "logout+jwt"
MAX_AGE = 300          # SPEC §11: iat within 5 minutes
LEEWAY = 60            # clock skew: iat ahead, exp behind, nbf ahead
MAX_BODY_BYTES = 16 * 1024
MAX_JTI_LENGTH = 1024
FORM = "application/x-www-form-urlencoded"
REASON = "upstream_backchannel_logout"
SOURCE = REASON
DESCRIPTION = "The logout request is not valid"

_NAME = re.compile(r"^[a-zA-Z0-9](-[a-zA-Z0-9]|[a-zA-Z0-9])*$")

EndSession = Callable[..., SessionRecord | None]
"""``chalicelib.revocation.end_session``: ``(sid, now, *, reason, finish_interrupted)``."""


class LogoutRefused(Exception):
    """The request or its token is not acceptable; ``check`` (log only) names the rule."""

    def __init__(self, check: str) -> None:
        super().__init__(check)
        self.check = check


@dataclass(frozen=True)
class Outcome:
    """200 (``check`` None; ``sessions``: how many ended) or 400 (``check``: the rule that
    refused). The log event of a request that raised is recorded as a 503 / 500 outcome."""
    status: int
    check: str | None = None
    sessions: int = 0


# --------------------------------------------------------------------------- the request

def handle(connection_name: str, content_type: str | None, body: bytes, *,
           end_session: EndSession, cache: JwksCache | None = None) -> Outcome:
    """Run one request: an :class:`Outcome` for an accepted or refused token; a dependency
    failure raises :class:`ServiceUnavailable`. Each request is one ``slo`` / ``flo`` event."""
    facts: dict[str, Any] = {}
    try:
        outcome = _handle(connection_name, content_type, body, end_session, cache, facts)
    except ServiceUnavailable:
        _record(Outcome(503, "dependency"), connection_name, facts)
        raise
    except Exception:
        _record(Outcome(500, "internal"), connection_name, facts)
        raise
    _record(outcome, connection_name, facts)
    return outcome


def _handle(connection_name: str, content_type: str | None, body: bytes, end_session: EndSession,
            cache: JwksCache | None, facts: dict[str, Any]) -> Outcome:
    now = clock.now()
    try:
        token = _logout_token(content_type, body)
        connection = _connection(connection_name)
        facts["connection"] = connection
        claims = _verify_token(token, connection, now, cache or jwks_cache())
        marker = _use_jti(connection, claims, now)
    except LogoutRefused as exc:
        log.info("back-channel logout for connection %s refused: %s", _printable(connection_name),
                 exc.check)
        return Outcome(400, exc.check)
    facts["identified_by"] = "+".join(c for c in ("sid", "sub") if c in claims)
    try:
        ended = _end_sessions(connection, claims, int(now), end_session, facts)
    except Exception:
        _release(marker)
        raise
    log.info("back-channel logout for connection %s: %d session(s) ended", connection["name"],
             ended)
    return Outcome(200, None, ended)


def _logout_token(content_type: str | None, body: bytes) -> str:
    """§2.5: the form's one ``logout_token``."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != FORM:
        raise LogoutRefused("content_type")
    if len(body) > MAX_BODY_BYTES:
        raise LogoutRefused("body_too_large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise LogoutRefused("form") from None
    tokens = [value for key, value in pairs if key == "logout_token"]
    if len(tokens) > 1:
        raise LogoutRefused("form")  # a parameter sent twice (RFC 6749 §3.1's rule)
    if not tokens or not tokens[0]:
        raise LogoutRefused("logout_token_missing")
    return tokens[0]


def _connection(name: str) -> dict:
    from chalicelib.registry.connections import cached_connection_by_name

    if not _is_name(name):
        raise LogoutRefused("connection")
    connection = cached_connection_by_name(name)  # ServiceUnavailable: a 503
    options = (connection or {}).get("options") or {}
    if connection is None or connection.get("strategy") != "oidc" or not all(
            isinstance(options.get(k), str) and options.get(k)
            for k in ("issuer", "client_id", "jwks_uri")):
        raise LogoutRefused("connection")
    return connection


# --------------------------------------------------------------------------- the token

def _check_header(header: dict, allowed_algs: list) -> tuple[str, str | None]:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGS or alg not in allowed_algs:
        raise LogoutRefused("alg")
    if "crit" in header:
        raise LogoutRefused("crit")
    if "typ" in header:
        typ = header["typ"]
        media = typ.lower() if isinstance(typ, str) else None
        if media is not None and media.startswith("application/"):
            media = media[len("application/"):]
        if media != TYP:
            raise LogoutRefused("typ")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise LogoutRefused("kid")
    return alg, kid


def _verify_token(token: str, connection: dict, now: float, cache: JwksCache) -> dict:
    options = connection["options"]
    try:
        header, _ = _parse_header(token)
        alg, kid = _check_header(header, options.get("id_token_signed_response_algs") or ["RS256"])
        claims, _ = verify_signature(token, jwks_uri=options["jwks_uri"], alg=alg, kid=kid,
                                     cache=cache)
    except UnknownKey:
        raise LogoutRefused("unknown_key") from None
    except IdTokenError as exc:
        raise LogoutRefused(exc.check) from None
    except RecursionError:
        raise LogoutRefused("format") from None
    except JwksError:
        log.warning("JWKS of connection %s unavailable and nothing cached", connection["name"])
        raise ServiceUnavailable("The identity provider's keys are unavailable") from None
    _check_parties(claims, options)
    _check_times(claims, now)
    _check_logout_claims(claims)
    return claims


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_parties(claims: dict, options: dict) -> None:
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss != options["issuer"]:
        raise LogoutRefused("iss")
    aud = claims.get("aud")
    if isinstance(aud, str):
        audiences = [aud]
    elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        audiences = aud
    else:
        raise LogoutRefused("aud")
    if options["client_id"] not in audiences:
        raise LogoutRefused("aud")


def _check_times(claims: dict, now: float) -> None:
    iat = claims.get("iat")
    if not _number(iat) or iat > now + LEEWAY:
        raise LogoutRefused("iat")
    if iat < now - MAX_AGE:
        raise LogoutRefused("iat_too_old")
    if "exp" in claims:
        exp = claims["exp"]
        if not _number(exp) or exp <= now - LEEWAY:
            raise LogoutRefused("exp")
    if "nbf" in claims:
        nbf = claims["nbf"]
        if not _number(nbf) or nbf > now + LEEWAY:
            raise LogoutRefused("nbf")


def _optional_string(claims: dict, name: str, limit: int) -> None:
    if name in claims:
        value = claims[name]
        if not isinstance(value, str) or not value or len(value) > limit:
            raise LogoutRefused("sid_or_sub")


def _check_logout_claims(claims: dict) -> None:
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise LogoutRefused("jti")
    events = claims.get("events")
    if not isinstance(events, dict):
        raise LogoutRefused("events")
    if not isinstance(events.get(EVENT), dict):
        raise LogoutRefused("events")
    _optional_string(claims, "sid", upstream_sessions.MAX_UPSTREAM_SID)
    _optional_string(claims, "sub", MAX_SUB_LENGTH)
    if "sid" not in claims and "sub" not in claims:
        raise LogoutRefused("sid_or_sub")
    if "nonce" in claims:
        raise LogoutRefused("nonce")


def _accepted_until(claims: dict) -> int:
    """The last moment :func:`_check_times` accepts this token, rounded up, plus one second."""
    last = claims["iat"] + MAX_AGE
    if "exp" in claims:
        last = min(last, claims["exp"] + LEEWAY)
    return int(math.ceil(last)) + 1


def _use_jti(connection: dict, claims: dict, now: float) -> replay.ReplayMarker:
    """§2.6 step 7: the ``jti`` once, per connection, until the token could no longer pass."""
    try:
        return replay.record_logout_jti(connection["id"], claims["jti"], int(now),
                                        _accepted_until(claims))
    except ConditionFailed:
        raise LogoutRefused("jti_replayed") from None


def _release(marker: replay.ReplayMarker) -> None:
    try:
        replay.release(marker)
    except Exception:  # noqa: BLE001 - best effort: the token then stays used
        log.warning("back-channel logout: could not release a used jti")


# --------------------------------------------------------------------------- the effect

def _sessions_to_end(connection: dict, claims: dict) -> Iterator[str]:
    """§2.7: the broker sessions of the upstream session (``sid``; of that user when ``sub`` is
    there too), or every session of the upstream user (``sub`` alone)."""
    user_id = user_id_for(connection["name"], claims["sub"]) if "sub" in claims else None
    if "sid" in claims:
        for ref in upstream_sessions.broker_sessions(connection["id"], claims["sid"]):
            if user_id is None or ref["user_id"] == user_id:
                yield ref["sid"]
    elif user_id is not None:
        yield from list(session_records.sids_of_user(user_id))  # read in full before ending any


def _end_sessions(connection: dict, claims: dict, now: int, end_session: EndSession,
                  facts: dict[str, Any]) -> int:
    ended = 0
    users: set[str] = set()
    if "sid" in claims:  # that upstream session ended: its ID tokens open nothing any more
        upstream_sessions.record_ended(connection["id"], claims["sid"], claims["iat"])
    else:  # the upstream user logged out (SPEC §5's "log in upstream again")
        upstream_cutoff.record(user_id_for(connection["name"], claims["sub"]), claims["iat"])
    for sid in _sessions_to_end(connection, claims):
        # A retry after an interrupted attempt (the jti was released) finishes the job.
        session = end_session(sid, now, reason=REASON, finish_interrupted=True)
        if session is not None:
            ended += 1
            users.add(session["user_id"])
    facts["user_ids"] = sorted(users)
    return ended


# --------------------------------------------------------------------------- the log event

def _record(outcome: Outcome, connection_name: str, facts: dict[str, Any]) -> None:
    """``slo`` (an accepted token: how many sessions ended, 0 included) or ``flo`` (the check
    that refused it, or ``dependency`` / ``internal``). The user is named only once a verified
    token led to their sessions."""
    from chalicelib import audit

    details: dict[str, Any] = {"source": SOURCE, "sessions": outcome.sessions}
    if outcome.check is not None:
        details.update(check=outcome.check, status=outcome.status)
    if facts.get("identified_by"):
        details["identified_by"] = facts["identified_by"]
    user_ids = facts.get("user_ids") or []
    connection = facts.get("connection")
    if connection is None and _is_name(connection_name):
        connection = connection_name  # unknown: the name as asked, when it is one
    try:
        entry = audit.event("slo" if outcome.status == 200 else "flo", connection=connection,
                            user_id=user_ids[0] if len(user_ids) == 1 else None, details=details,
                            description=None if outcome.status == 200 else
                            f"Failed back-channel logout from the identity provider "
                            f"({outcome.check})")
    except Exception:  # noqa: BLE001 - a log event never changes the answer
        log.exception("back-channel logout log event failed")
        return
    audit.record(entry)


def _is_name(name: object) -> bool:
    return isinstance(name, str) and len(name) <= 128 and _NAME.match(name) is not None


def _printable(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "?", (name or "")[:128])
