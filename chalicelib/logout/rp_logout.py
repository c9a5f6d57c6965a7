"""Logout started by an application through the browser (SPEC §4).

- ``GET|POST /oidc/logout``: OpenID Connect RP-Initiated Logout 1.0.
- ``GET /v2/logout``: Auth0's logout endpoint (``client_id``, ``returnTo``, ``federated``).

Order matters, as at ``/authorize``: the request is checked first (a forged ``id_token_hint`` or a
return URL not registered for the client gives an error page, never a redirect, and ends nothing);
only then is the browser's session ended (``revocation.end_session``: its online grants die, the
session's other applications get back-channel logout, the initiating one does not) and the session
cookie cleared.

Logout CSRF: the session cookie is ``SameSite=None`` (silent authentication needs it in a
cross-site iframe: ``sessions.COOKIE_SAME_SITE``), so any request from any site (a link,
``window.location``, an image) carries it to ``/oidc/logout``. RP-Initiated Logout §2 says the OP
SHOULD ask the user when there is no ``id_token_hint`` (or it names another user): then the
browser's session is ended only after the user confirms on a page whose form carries a token
derived from the session cookie, which another site can neither read nor guess (Keycloak does the
same). ``/v2/logout`` copies Auth0 and does not ask.

Log events (SPEC §9): a logout that went through is ``slo`` (the application, and the user and
connection of the session it ended); a refused one is ``flo`` with the failed check in
``details.check``. Asking for confirmation is neither: nothing happened yet.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlencode

from chalicelib import revocation, sessions
from chalicelib.keys import TokenRejected, verify_jwt
from chalicelib.login.authorize import ErrorPage, Redirect
from chalicelib.login.pages import expired_cookie
from chalicelib.settings import get_settings
from chalicelib.store.sessions import SessionRecord

MAX_PARAM_LENGTH = 8192
log = logging.getLogger(__name__)


@dataclass
class ConfirmLogout:
    """Ask the user before ending the browser's session: the form posts ``params`` back to
    ``/oidc/logout`` with ``token`` as ``logout_confirm``."""

    params: dict[str, str]
    token: str
    application: str | None = None
    redirect_uri: str | None = None
    ui_locales: str | None = None


CONFIRM_PARAM = "logout_confirm"


def confirm_token(cookie: str) -> str:
    """The confirmation form's token: a one-way, domain-separated function of the session cookie
    (HttpOnly, never in storage), so a page on another site cannot produce it."""
    import base64
    import hashlib

    raw = hashlib.sha256(b"broker-logout-confirm\x00" + cookie.encode()).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _confirmed(value: str | None, cookie: str) -> bool:
    from chalicelib.tokens import same

    if not value:
        return False
    return same(value, confirm_token(cookie))


@dataclass
class SignedOut:
    """No return URL: show the "You are signed out" page."""

    cookies: list[str] = field(default_factory=list)


def _single(params: dict[str, list[str]], names: tuple[str, ...]) -> tuple[dict[str, str], str | None]:
    values: dict[str, str] = {}
    for name in names:
        found = params.get(name) or []
        if len(found) > 1:
            return values, name
        if found:
            values[name] = found[0]
    return values, None


def _with_params(url: str, params: dict[str, str]) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _hint_claims(token: str) -> dict | None:
    """The claims of one of the broker's own ID tokens, expired or not (RP-Initiated Logout §2:
    the OP need not care whether the hint expired), else None."""
    try:
        decoded = verify_jwt(token, typ="JWT")  # an access or logout token is not an ID token
    except TokenRejected:
        return None
    claims = decoded.claims
    if claims.get("iss") != get_settings().issuer:
        return None
    if not isinstance(claims.get("sub"), str) or not claims.get("aud"):
        return None
    return claims


def _hint_audiences(claims: dict) -> list[str]:
    audience = claims.get("aud")
    return [a for a in (audience if isinstance(audience, list) else [audience]) if isinstance(a, str)]


def _hint_client(claims: dict) -> str | None:
    audiences = _hint_audiences(claims)
    if len(audiences) == 1:
        return audiences[0]
    azp = claims.get("azp")
    return azp if isinstance(azp, str) and azp in audiences else None


def _end_browser_session(cookie: str | None, now: int, *, reason: str,
                         initiator: str | None) -> SessionRecord | None:
    """End the session the cookie names; returns its item, or None when there was none."""
    session = sessions.session_from_cookie(cookie, now)
    if session is None:
        # A logout that failed half-way (503 page, cookie kept) is finished by the retry.
        interrupted = sessions.unfinished_end_from_cookie(cookie)
        if interrupted is None:
            return None
        return revocation.finish_interrupted_end(interrupted, now, reason=reason,
                                                 initiator_client=initiator)
    return revocation.end_session(session.sid, now, reason=reason, initiator_client=initiator)


def rp_initiated_logout(params: dict[str, list[str]], cookie: str | None, now: int, *,
                        form_post: bool = False) -> ErrorPage | Redirect | SignedOut | ConfirmLogout:
    """OIDC RP-Initiated Logout 1.0 §2–§3. ``logout_hint`` is ignored; ``ui_locales`` only picks
    the confirmation page's language. A confirmation (``logout_confirm``) counts only in a form
    POST, the way the confirmation page sends it."""
    from chalicelib.registry.clients import get_client

    values, repeated = _single(params, ("id_token_hint", "client_id", "post_logout_redirect_uri",
                                        "state", CONFIRM_PARAM))
    if repeated:
        return _refused("repeated_parameter", ErrorPage(
            400, "Invalid request", f"The {repeated} parameter is repeated."), parameter=repeated)
    if any(len(v) > MAX_PARAM_LENGTH for v in values.values()):
        return _refused("parameter_too_long",
                        ErrorPage(400, "Invalid request", "A parameter is too long."))
    hint = None
    if "id_token_hint" in values:
        hint = _hint_claims(values["id_token_hint"])
        if hint is None:
            return _refused("invalid_id_token_hint", ErrorPage(
                400, "Invalid request", "The id_token_hint is not a valid ID token issued by "
                                        "this server."), client_id=values.get("client_id"))
    client_id = values.get("client_id")
    if client_id and hint is not None and client_id not in _hint_audiences(hint):
        # §2: the client_id must match the one the ID token was issued to.
        return _refused("id_token_hint_audience", ErrorPage(
            400, "Invalid request", "The id_token_hint was not issued to this client_id."),
            client_id=client_id, user_id=hint["sub"])
    client_id = client_id or (_hint_client(hint) if hint else None)
    client = get_client(client_id) if client_id else None
    if "client_id" in values and client is None:
        return _refused("unknown_client", ErrorPage(
            400, "Unknown application", "The client_id is unknown."), client_id=client_id)
    redirect_uri = values.get("post_logout_redirect_uri")
    if redirect_uri is not None:
        if client is None:
            return _refused("post_logout_redirect_uri_without_client", ErrorPage(
                400, "Invalid request", "A post_logout_redirect_uri needs a client_id or an "
                                        "id_token_hint naming the application."))
        if redirect_uri not in (client.get("allowed_logout_urls") or []):
            # §3: exact match with a registered URL, or no redirect at all.
            return _refused("unregistered_post_logout_redirect_uri", ErrorPage(
                400, "Invalid post_logout_redirect_uri",
                "The post_logout_redirect_uri is not registered for this application."),
                client=client, return_to=redirect_uri)
    live = sessions.session_from_cookie(cookie, now)
    if cookie is not None and live is not None and (hint is None or hint["sub"] != live.user_id):
        # No proof that the application's user asked (or the hint names someone else): ask.
        if not (form_post and _confirmed(values.get(CONFIRM_PARAM), cookie)):
            kept = {k: v for k, v in values.items() if k != CONFIRM_PARAM}
            return ConfirmLogout(params=kept, token=confirm_token(cookie),
                                 application=(client or {}).get("name"), redirect_uri=redirect_uri,
                                 ui_locales=next(iter(params.get("ui_locales") or []), None))
    ended = _end_browser_session(cookie, now, reason="rp_logout", initiator=client_id)
    hinted_sid = hint.get("sid") if hint else None
    ended_hinted = None
    if hint is not None and isinstance(hinted_sid, str) and (ended is None
                                                              or ended["sid"] != hinted_sid):
        hinted = sessions.live_session(hinted_sid, now)
        if hinted is not None and hinted["user_id"] == hint["sub"]:
            ended_hinted = revocation.end_session(hinted_sid, now, reason="rp_logout",
                                                  initiator_client=client_id)
    _record_logout([s for s in (ended, ended_hinted) if s is not None],
                   client or ({"client_id": client_id} if client_id else None), redirect_uri,
                   endpoint="oidc_logout")
    cookies = [expired_cookie(sessions.COOKIE)]
    if redirect_uri is not None:
        state = values.get("state")
        return Redirect(_with_params(redirect_uri, {"state": state} if state is not None else {}),
                        cookies=cookies, status=302)
    return SignedOut(cookies=cookies)


def _upstream_logout_url(session: SessionRecord, return_to: str | None,
                         cookie: str | None) -> str | None:
    """The connection's ``end_session_endpoint`` (RP-Initiated Logout at the upstream IdP), with
    the login's upstream ID token as ``id_token_hint`` when the browser's session ``cookie`` can
    unseal it (chalicelib/sessions.py); otherwise without a hint, which RP-Initiated Logout 1.0
    allows (``client_id`` is sent anyway): the IdP may then ask its user to confirm."""
    from chalicelib.registry.connections import get_connection

    connection = get_connection(session.get("connection_id", ""))
    if connection is None:
        return None
    options = connection.get("options") or {}
    endpoint = options.get("end_session_endpoint")
    if not endpoint:
        return None
    params = {}
    hint = sessions.upstream_id_token(session, cookie)
    if hint:
        params["id_token_hint"] = hint
    elif session.get(sessions.SEALED_ID_TOKEN):
        log.warning("federated logout of connection %s continues without id_token_hint: the "
                    "session's cookie could not unseal the upstream ID token",
                    str(connection.get("name"))[:80])
    if options.get("client_id"):
        params["client_id"] = options["client_id"]
    if return_to:
        params["post_logout_redirect_uri"] = return_to
    return _with_params(endpoint, params)


def auth0_logout(params: dict[str, list[str]], cookie: str | None,
                 now: int) -> ErrorPage | Redirect | SignedOut:
    """Auth0's ``/v2/logout``: ``returnTo`` must be one of the client's ``allowed_logout_urls``
    (the broker has no tenant-level list, so without ``client_id`` it is refused); without
    ``returnTo`` the client's first allowed logout URL is used, as Auth0 does. ``federated``
    (present, any value) continues to the upstream IdP's ``end_session_endpoint``."""
    from chalicelib.registry.clients import get_client

    values, repeated = _single(params, ("client_id", "returnTo"))
    if repeated:
        return _refused("repeated_parameter", ErrorPage(
            400, "Invalid request", f"The {repeated} parameter is repeated."),
            endpoint="v2_logout", parameter=repeated)
    if any(len(v) > MAX_PARAM_LENGTH for v in values.values()):
        return _refused("parameter_too_long", ErrorPage(
            400, "Invalid request", "A parameter is too long."), endpoint="v2_logout")
    client_id = values.get("client_id")
    client = get_client(client_id) if client_id else None
    if client_id and client is None:
        return _refused("unknown_client", ErrorPage(
            400, "Unknown application", "The client_id is unknown."), endpoint="v2_logout",
            client_id=client_id)
    allowed = (client or {}).get("allowed_logout_urls") or []
    return_to = values.get("returnTo")
    if return_to is not None:
        if client is None:
            return _refused("return_to_without_client", ErrorPage(
                400, "Invalid returnTo",
                "returnTo needs the client_id of the application that allows it."),
                endpoint="v2_logout")
        if return_to not in allowed:
            return _refused("unregistered_return_to", ErrorPage(
                400, "Invalid returnTo",
                "The returnTo URL is not in the application's allowed logout URLs."),
                endpoint="v2_logout", client=client, return_to=return_to)
    elif allowed:
        return_to = allowed[0]
    ended = _end_browser_session(cookie, now, reason="rp_logout", initiator=client_id)
    _record_logout([ended] if ended is not None else [], client, return_to,
                   endpoint="v2_logout", federated="federated" in params)
    cookies = [expired_cookie(sessions.COOKIE)]
    if "federated" in params and ended is not None:
        upstream = _upstream_logout_url(ended, return_to, cookie)
        if upstream:
            return Redirect(upstream, cookies=cookies, status=302)
    if return_to:
        return Redirect(return_to, cookies=cookies, status=302)
    return SignedOut(cookies=cookies)


# --- log events (SPEC §9): slo when a logout went through, flo when it was refused ------------

def _without_query(url: str | None) -> str | None:
    """A return URL as an event shows it: no query or fragment (they may carry anything)."""
    if url is None:
        return None
    return url.split("#", 1)[0].split("?", 1)[0]


def _refused(check: str, page: ErrorPage, *, endpoint: str = "oidc_logout",
             client: dict | None = None, client_id: str | None = None,
             user_id: str | None = None, return_to: str | None = None,
             parameter: str | None = None) -> ErrorPage:
    """``flo`` with the failed check, then the error page (nothing was ended)."""
    from chalicelib import audit

    try:
        audit.record(audit.event(
            "flo", client=client, client_id=client_id, user_id=user_id,
            description=f"Failed logout: {page.detail}",
            details={"check": check, "endpoint": endpoint, "parameter": parameter,
                     "return_to": _without_query(return_to)}))
    except Exception:  # noqa: BLE001 - a log event never changes the answer
        log.exception("logout log event failed")
    return page


def _connection_of(session: SessionRecord) -> dict | None:
    """The ended session's connection as the event names it (cached; its id alone on a miss)."""
    from chalicelib.registry.connections import cached_connection

    connection_id = session.get("connection_id")
    if not connection_id:
        return None
    try:
        return cached_connection(connection_id) or {"id": connection_id}
    except Exception:  # noqa: BLE001 - the event still names the connection's id
        return {"id": connection_id}


def _record_logout(ended: list[SessionRecord], client: dict | None, return_to: str | None, *,
                   endpoint: str, federated: bool = False) -> None:
    """``slo``: the application, and the user and connection of the session ended (when one
    was; a logout without a session is still a successful logout)."""
    from chalicelib import audit

    try:
        session = ended[0] if ended else None
        audit.record(audit.event(
            "slo", connection=_connection_of(session) if session else None, client=client,
            user_id=session["user_id"] if session else None,
            details={"endpoint": endpoint, "sessions_ended": len(ended),
                     "return_to": _without_query(return_to), "federated": federated or None}))
    except Exception:  # noqa: BLE001 - a log event never changes the answer
        log.exception("logout log event failed")
