"""The broker as OpenID Provider: discovery and userinfo (token and JWKS live in oauth.py)."""
from __future__ import annotations

from urllib.parse import parse_qsl

from chalice import Blueprint

from chalicelib.api.http import NO_STORE, handles_oauth_errors, json_response

bp = Blueprint(__name__)


@bp.route("/.well-known/openid-configuration", methods=["GET"])
@handles_oauth_errors
def openid_configuration():
    from chalicelib.provider.discovery import document

    return json_response(document(), 200, {"Cache-Control": "public, max-age=300"})


@bp.route("/userinfo", methods=["GET", "POST"],
          content_types=["application/x-www-form-urlencoded", "application/json"])
@handles_oauth_errors
def userinfo():
    from chalicelib.provider.userinfo import bearer_token, userinfo as claims_for

    request = bp.current_request
    form = None
    if request.method == "POST" and (request.headers.get("content-type") or "").startswith(
            "application/x-www-form-urlencoded"):
        form = dict(parse_qsl((request.raw_body or b"").decode("utf-8", "replace")[:8192]))
    token = bearer_token(request.headers.get("authorization"), form)
    return json_response(claims_for(token), 200, NO_STORE)
