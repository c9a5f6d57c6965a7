"""Logout routes: ``/oidc/logout`` (RP-Initiated Logout), ``/v2/logout`` (Auth0) and
``/oauth/revoke`` (RFC 7009). The protocol work lives in chalicelib/logout and chalicelib/provider."""
from __future__ import annotations

import logging
import time
from functools import partial
from urllib.parse import parse_qs

from chalice import Blueprint, Response

from chalicelib.api.http import (
    NO_STORE,
    handles_oauth_errors,
    parse_form_or_json,
    preflight,
    query_params,
)
from chalicelib.errors import ApiError

bp = Blueprint(__name__)
log = logging.getLogger("broker")
FORM = ["application/x-www-form-urlencoded"]
FORM_OR_JSON = ["application/x-www-form-urlencoded", "application/json"]
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
    """Run a logout flow; outages show a 503 page (SPEC §8), never internals."""
    from chalicelib import sessions
    from chalicelib.login.pages import error_page, read_cookies

    request = bp.current_request
    try:
        cookies = read_cookies(request.headers.get("cookie"))
        return _respond(flow(params, cookies.get(sessions.COOKIE), int(time.time())),
                        request.headers.get("accept-language"))
    except ApiError as exc:
        log.error("logout failed: %s", exc.error_code)
    except Exception:  # noqa: BLE001 - no internals in a browser response
        log.exception("logout crashed")
    return error_page(503, "Temporarily unavailable", "Please try again in a moment.")


@bp.route("/oidc/logout", methods=["GET"])
def oidc_logout():
    from chalicelib.logout.rp_logout import rp_initiated_logout

    return _browser_logout(rp_initiated_logout, query_params(bp.current_request))


@bp.route("/oidc/logout", methods=["POST"], content_types=FORM)
def oidc_logout_post():
    """RP-Initiated Logout §2: the OP must accept POST (form serialization) too."""
    from chalicelib.login.pages import error_page
    from chalicelib.logout.rp_logout import rp_initiated_logout

    body = bp.current_request.raw_body or b""
    if len(body) > MAX_FORM_BYTES:
        return error_page(413, "Request too large", "The logout request is too large.")
    params = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return _browser_logout(partial(rp_initiated_logout, form_post=True), params)


@bp.route("/v2/logout", methods=["GET"])
def auth0_logout():
    from chalicelib.logout.rp_logout import auth0_logout as flow

    return _browser_logout(flow, query_params(bp.current_request))


@bp.route("/oauth/revoke", methods=["POST"], content_types=FORM_OR_JSON)
@handles_oauth_errors
def revoke():
    from chalicelib.errors import OAuthError
    from chalicelib.provider.cors import ClientCors, cross_origin
    from chalicelib.provider.revoke import revoke_request

    request = bp.current_request
    cors = ClientCors(cross_origin(request.headers))
    try:
        revoke_request(parse_form_or_json(request), request.headers.get("authorization"),
                       int(time.time()), cors)
    except OAuthError as exc:
        exc.headers = {**exc.headers, **cors.headers()}
        raise
    return Response(body="", status_code=200, headers={**NO_STORE, **cors.headers()})


@bp.route("/oauth/revoke", methods=["OPTIONS"])
def revoke_preflight():
    return preflight(bp.current_request, "POST", echo_origin=True)
