"""``/userinfo`` (OIDC Core §5.3): the claims of an access token's user, GET or POST, CORS-open.
The work lives in chalicelib/provider/userinfo.py."""
from __future__ import annotations

from urllib.parse import parse_qsl

from chalice import Blueprint

from chalicelib.api.http import NO_STORE, handles_oauth_errors, json_response, preflight

bp = Blueprint(__name__)


@bp.route("/userinfo", methods=["GET", "POST"],
          content_types=["application/x-www-form-urlencoded", "application/json"])
@handles_oauth_errors
def userinfo():
    from chalicelib.errors import OAuthError
    from chalicelib.provider.cors import PUBLIC
    from chalicelib.provider.userinfo import bearer_token
    from chalicelib.provider.userinfo import userinfo as claims_for

    request = bp.current_request
    form = None
    if request.method == "POST" and (request.headers.get("content-type") or "").startswith(
            "application/x-www-form-urlencoded"):
        form = dict(parse_qsl((request.raw_body or b"").decode("utf-8", "replace")[:8192]))
    try:
        token = bearer_token(request.headers.get("authorization"), form)
        claims = claims_for(token)
    except OAuthError as exc:
        exc.headers = {**exc.headers, **PUBLIC}  # a SPA must see the 401 and its WWW-Authenticate
        raise
    return json_response(claims, 200, {**NO_STORE, **PUBLIC})


@bp.route("/userinfo", methods=["OPTIONS"])
def userinfo_preflight():
    return preflight(bp.current_request, "GET, POST", echo_origin=False)
