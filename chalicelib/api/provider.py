"""The broker as OpenID Provider: discovery and userinfo (token and JWKS live in oauth.py)."""
from __future__ import annotations

from urllib.parse import parse_qsl

from chalice import Blueprint

from chalicelib.api.http import NO_STORE, handles_oauth_errors, json_response, preflight

bp = Blueprint(__name__)


@bp.route("/.well-known/openid-configuration", methods=["GET"])
@handles_oauth_errors
def openid_configuration():
    from chalicelib.provider.cors import PUBLIC
    from chalicelib.provider.discovery import document

    return json_response(document(), 200, {"Cache-Control": "public, max-age=300", **PUBLIC})


@bp.route("/.well-known/openid-configuration", methods=["OPTIONS"])
def openid_configuration_preflight():
    return preflight(bp.current_request, "GET", echo_origin=False)


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
