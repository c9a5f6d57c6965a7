"""OAuth and discovery routes of the broker as an authorization server."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.http import (
    NO_STORE,
    handles_oauth_errors,
    json_response,
    parse_form_or_json,
    preflight,
)
from chalicelib.errors import OAuthError

bp = Blueprint(__name__)
FORM_OR_JSON = ["application/x-www-form-urlencoded", "application/json"]


# A blueprint's middleware applies to every route of the app. SPEC §8: each HTTP request gets a
# budget for outbound work (AWS attempts, upstream HTTP) so it ends well before API Gateway's 29 s
# even when every dependency is slow and every retry fires (see chalicelib/aws.py).
@bp.middleware("http")
def request_deadline(event, get_response):
    from chalicelib import aws

    with aws.request_deadline(aws.REQUEST_BUDGET):
        return get_response(event)


@bp.route("/oauth/token", methods=["POST"], content_types=FORM_OR_JSON)
@handles_oauth_errors
def token():
    from chalicelib.provider.cors import ClientCors, cross_origin
    from chalicelib.provider.token import token_request

    request = bp.current_request
    cors = ClientCors(cross_origin(request.headers))
    try:
        form = parse_form_or_json(request)
        body = token_request(form, request.headers.get("authorization"), cors=cors)
    except OAuthError as exc:
        exc.headers = {**exc.headers, **cors.headers()}  # a SPA must read invalid_grant
        raise
    return json_response(body, 200, {**NO_STORE, **cors.headers()})


@bp.route("/oauth/token", methods=["OPTIONS"])
def token_preflight():
    return preflight(bp.current_request, "POST", echo_origin=True)


@bp.route("/.well-known/jwks.json", methods=["GET"])
@handles_oauth_errors
def jwks():
    from chalicelib.keys import public_jwks
    from chalicelib.provider.cors import PUBLIC

    return json_response(public_jwks(), 200, {"Cache-Control": "public, max-age=300", **PUBLIC})


@bp.route("/.well-known/jwks.json", methods=["OPTIONS"])
def jwks_preflight():
    return preflight(bp.current_request, "GET", echo_origin=False)

