"""The broker's OAuth 2.0 endpoints: ``/oauth/token`` (RFC 6749 §3.2) and ``/oauth/revoke``
(RFC 7009), with their CORS preflights. The protocol work lives in chalicelib/provider.

Elsewhere under ``/oauth``: Global Token Revocation in global_token_revocation.py, a connection's
public JWKS (``/oauth/connection/{name}/.well-known/jwks.json``) in well_known.py.
"""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib import clock

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


@bp.route("/oauth/token", methods=["POST"], content_types=FORM_OR_JSON)
@handles_oauth_errors
def token():
    from chalicelib.provider.cors import ClientCors, cross_origin
    from chalicelib.provider.token import TOKEN_EXCHANGE, token_request

    request = bp.current_request
    cors = ClientCors(cross_origin(request.headers))
    try:
        form = parse_form_or_json(request)
        if form.get("grant_type") == TOKEN_EXCHANGE:
            # RFC 8693 reaches upstream IdPs: a login flow, above the provider's grants.
            from chalicelib.login.token_exchange import token_exchange_request

            body = token_exchange_request(form, request.headers.get("authorization"), cors=cors)
        else:
            body = token_request(form, request.headers.get("authorization"), cors=cors)
    except OAuthError as exc:
        exc.headers = {**exc.headers, **cors.headers()}  # a SPA must read invalid_grant
        raise
    return json_response(body, 200, {**NO_STORE, **cors.headers()})


@bp.route("/oauth/token", methods=["OPTIONS"])
def token_preflight():
    return preflight(bp.current_request, "POST", echo_origin=True)


@bp.route("/oauth/revoke", methods=["POST"], content_types=FORM_OR_JSON)
@handles_oauth_errors
def revoke():
    from chalicelib.provider.cors import ClientCors, cross_origin
    from chalicelib.provider.revoke import revoke_request

    request = bp.current_request
    cors = ClientCors(cross_origin(request.headers))
    try:
        revoke_request(parse_form_or_json(request), request.headers.get("authorization"),
                       clock.now_int(), cors)
    except OAuthError as exc:
        exc.headers = {**exc.headers, **cors.headers()}
        raise
    return Response(body="", status_code=200, headers={**NO_STORE, **cors.headers()})


@bp.route("/oauth/revoke", methods=["OPTIONS"])
def revoke_preflight():
    return preflight(bp.current_request, "POST", echo_origin=True)
