"""Browser-facing login routes: ``/authorize`` and ``/login/callback[/{connection}]`` (SPEC §3)."""
from __future__ import annotations

from urllib.parse import parse_qsl

from chalice import Blueprint

from chalicelib import clock
from chalicelib.api.http import (
    browser_route,
    handles_browser_errors,
    query_params,
    run_browser_route,
    unavailable_page,
)

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain",
        "application/json"]


def _page(result):
    from chalicelib.login.authorize import ErrorPage, FormPost, WebMessage
    from chalicelib.login.pages import error_page, form_post_page, redirect, web_message_page

    if isinstance(result, ErrorPage):
        return error_page(result.status, result.title, result.detail)
    if isinstance(result, FormPost):
        return form_post_page(result.action, result.fields, result.cookies)
    if isinstance(result, WebMessage):
        return web_message_page(result.origin, result.response, result.cookies)
    return redirect(result.location, result.status, result.cookies)


def _unavailable(app_request=None):
    """SPEC §8: once the redirect_uri is trusted, outages go back to the application."""
    from chalicelib.login.authorize import error_to_app

    if app_request is not None:
        return _page(error_to_app(app_request.redirect_uri, app_request.response_mode,
                                  "temporarily_unavailable",
                                  "The service is temporarily unavailable", app_request.state))
    return unavailable_page()


@bp.route("/authorize", methods=["GET"])
@browser_route
def authorize():
    request = bp.current_request
    now = clock.now_int()
    trusted = []  # the application's request once parsed: an outage then goes back to it
    return run_browser_route("authorize", lambda: _authorize(request, now, trusted),
                             lambda: _unavailable(trusted[0] if trusted else None))


def _authorize(request, now: int, trusted: list):
    from chalicelib import sessions
    from chalicelib.login import authorize as flow
    from chalicelib.login.pages import read_cookies

    parsed = flow.parse_request(query_params(request))
    if isinstance(parsed, flow.ErrorPage):
        return _page(parsed)
    app_request = parsed
    trusted.append(app_request)
    cookies = read_cookies(request.headers.get("cookie"))
    try:
        flow.validate_request(app_request)
        session = sessions.session_from_cookie(cookies.get(sessions.COOKIE), now)
        connection = flow.choose_connection(app_request,
                                            session.connection_id if session else None)
        if isinstance(connection, flow.LoginPage):
            if "none" in app_request.prompt:
                raise flow.AppError("login_required", "The user must log in")
            return _login_page(app_request, connection, request)
        if flow.session_is_reusable(app_request, session, connection, now):
            return _page(_single_sign_on(app_request, session, now, connection=connection))
        if "none" in app_request.prompt:
            raise flow.AppError("login_required", "The user must log in")
        force = "login" in app_request.prompt or (
            session is not None and app_request.max_age is not None)
        return _page(flow.start_upstream_login(app_request, connection, cookies, now,
                                               force_login=force))
    except flow.AppError as exc:
        return _page(flow.error_to_app(app_request.redirect_uri, app_request.response_mode,
                                       exc.error, exc.description, app_request.state))


def _login_page(app_request, choice, request):
    """SPEC §3.5: no connection chosen — the identifier-first page with its buttons."""
    from chalicelib.login import i18n, login_page

    lang = i18n.negotiate(app_request.raw.get("ui_locales"), request.headers.get("accept-language"))
    return login_page.render(raw_params=app_request.raw, client=app_request.client,
                             redirect_uri=app_request.redirect_uri, connections=choice.connections,
                             lang=lang, login_hint=app_request.login_hint,
                             unmatched_domain=choice.unmatched_domain)


def _single_sign_on(app_request, session, now: int, connection: dict | None = None):
    """A live broker session for the chosen connection: no trip upstream (SSO). Its ``s`` log
    event (``details.silent``: no upstream login; Auth0 would say ``ssa`` for ``prompt=none``,
    SPEC §9 lists ``s``) rides in its transaction; a refusal is one ``f``."""
    from chalicelib import audit, sessions
    from chalicelib.login.authorize import AppError, code_to_app
    from chalicelib.login.complete import code_operations
    from chalicelib.provider.token_events import connection_of
    from chalicelib.store import logins
    from chalicelib.store.dynamo import ConditionFailed
    from chalicelib.store.unit_of_work import UnitOfWork
    from chalicelib.store.users import not_blocked_check

    client_id = app_request.client["client_id"]
    code, grant_id, code_writes = code_operations(
        client_id=client_id, redirect_uri=app_request.redirect_uri, scope=app_request.scope,
        nonce=app_request.nonce, code_challenge=app_request.code_challenge,
        code_challenge_method=app_request.code_challenge_method, audience=app_request.audience,
        user_id=session.user_id, sid=session.sid, auth_time=session.auth_time, now=now,
        acr=session.acr, amr=list(session.amr) if session.amr else None)
    operations = UnitOfWork(code_writes)
    operations.add(sessions.session_touch_operation(session, client_id, grant_id, now))
    # Last: a blocked user's session (its ending still in flight) issues nothing (SPEC §2.4).
    blocked_check = len(operations)
    operations.add(not_blocked_check(session.user_id))
    # The connection as the session names it when the caller did not pass its record.
    named = connection or {"id": session.connection_id,
                           "name": connection_of(session.user_id)}

    def event(type_: str, **details):
        return audit.event(type_, connection=named, client=app_request.client,
                           user_id=session.user_id,
                           details={"silent": True, "prompt": " ".join(sorted(app_request.prompt))
                                    or None, **details})

    audit.ride(operations, event("s"))
    try:
        # Silent authentication from two tabs at once touches one session item: a lost race is
        # tried again, not mistaken for an ended session.
        logins.record(operations)
    except ConditionFailed as exc:
        if exc.reasons[blocked_check:blocked_check + 1] == ["ConditionalCheckFailed"]:
            audit.record(event("f", check="blocked", error="access_denied"))
            raise AppError("access_denied", "user is blocked") from None
        audit.record(event("f", check="session", error="login_required"))
        raise AppError("login_required", "The session ended; log in again") from None
    return code_to_app(app_request.redirect_uri, app_request.response_mode, code, app_request.state)


@bp.route("/login/callback", methods=["GET", "POST"], content_types=FORM)
@handles_browser_errors
def login_callback():
    """Auth0's single callback URL, kept for IdPs registered that way (SPEC §3.3)."""
    return _callback(None)


@bp.route("/login/callback/{connection_name}", methods=["GET", "POST"], content_types=FORM)
@handles_browser_errors
def connection_login_callback(connection_name):
    """Each connection's own redirect URI (RFC 9700 §4.4 mix-up defence)."""
    return _callback(connection_name)


def _callback(route_connection: str | None):
    from chalicelib.login.callback import handle_callback
    from chalicelib.login.pages import read_cookies

    request = bp.current_request
    now = clock.now_int()
    if request.method == "POST":
        raw = request.raw_body or b""
        body = raw if isinstance(raw, bytes) else raw.encode()
        if len(body) > 64 * 1024:
            from chalicelib.login.pages import error_page

            return error_page(413, "Request too large", "The login response is too large.")
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    else:
        params = {k: v[0] for k, v in query_params(request).items() if v}
    cookies = read_cookies(request.headers.get("cookie"))
    return _page(handle_callback(params, request.method, cookies, now, route_connection))
