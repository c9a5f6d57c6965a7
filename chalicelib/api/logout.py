"""Logout routes (browser): ``/oidc/logout`` (RP-Initiated Logout 1.0, GET and POST) and
``/v2/logout`` (Auth0). The protocol work lives in chalicelib/logout.

Token revocation (``/oauth/revoke``) is in oauth.py, Global Token Revocation in
global_token_revocation.py.
"""
from __future__ import annotations

from functools import partial
from urllib.parse import parse_qs

from chalice import Blueprint, Response

from chalicelib import clock
from chalicelib.api.http import handles_browser_errors, query_params

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
MAX_FORM_BYTES = 32 * 1024


def _respond(result, accept_language: str | None) -> Response:
    from chalicelib.login.authorize import ErrorPage
    from chalicelib.login.pages import error_page, redirect
    from chalicelib.logout.rp_logout import ConfirmLogout, SignedOut

    if isinstance(result, ConfirmLogout):
        from chalicelib.logout import confirm_page

        return confirm_page.render(result, accept_language)
    if isinstance(result, ErrorPage):
        return error_page(result.status, result.title, result.detail)
    if isinstance(result, SignedOut):
        page = error_page(200, "You are signed out", "You can close this window.")
        page.headers["Set-Cookie"] = result.cookies
        return page
    return redirect(result.location, result.status, result.cookies)


def _browser_logout(flow, params: dict[str, list[str]]) -> Response:
    """Run a logout flow with the session cookie (outages: the browser translation's 503 page)."""
    from chalicelib import sessions
    from chalicelib.login.pages import read_cookies

    request = bp.current_request
    cookies = read_cookies(request.headers.get("cookie"))
    return _respond(flow(params, cookies.get(sessions.COOKIE), clock.now_int()),
                    request.headers.get("accept-language"))


@bp.route("/oidc/logout", methods=["GET"])
@handles_browser_errors
def oidc_logout():
    from chalicelib.logout.rp_logout import rp_initiated_logout

    return _browser_logout(rp_initiated_logout, query_params(bp.current_request))


@bp.route("/oidc/logout", methods=["POST"], content_types=FORM)
@handles_browser_errors
def oidc_logout_post():
    """RP-Initiated Logout §2: the OP must accept POST (form serialization) too."""
    from chalicelib.login.pages import error_page
    from chalicelib.logout.rp_logout import rp_initiated_logout

    body = bp.current_request.raw_body or b""
    if len(body) > MAX_FORM_BYTES:
        _record_too_large()
        return error_page(413, "Request too large", "The logout request is too large.")
    params = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return _browser_logout(partial(rp_initiated_logout, form_post=True), params)


@bp.route("/v2/logout", methods=["GET"])
@handles_browser_errors
def auth0_logout():
    from chalicelib.logout.rp_logout import auth0_logout as flow

    return _browser_logout(flow, query_params(bp.current_request))


def _record_too_large() -> None:
    """``flo`` for a logout form too large to read (the flow records every other refusal)."""
    from chalicelib import audit

    try:
        audit.record(audit.event("flo", details={"check": "request_too_large",
                                                 "endpoint": "oidc_logout"}))
    except Exception:  # noqa: BLE001 - a log event never changes the answer
        pass
