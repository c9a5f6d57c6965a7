"""The ``.well-known`` documents, public and cacheable for 5 minutes:

- ``/.well-known/openid-configuration``: the broker's OIDC Discovery document
  (chalicelib/provider/discovery.py builds it);
- ``/.well-known/jwks.json``: the broker's published signing keys (chalicelib/keys.py);
- ``/oauth/connection/{name}/.well-known/jwks.json``: a connection's private_key_jwt public keys,
  which its upstream IdP fetches to verify the broker's client assertions
  (chalicelib/management/connection_keys.py). Its errors keep the Auth0 shape it was published
  with (404 ``inexistent_connection_keys``).
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.http import (
    LazyModule,
    handles_api_errors,
    handles_oauth_errors,
    json_response,
    preflight,
)
from chalicelib.errors import NotFound

bp = Blueprint(__name__)
connection_keys = LazyModule("chalicelib.management.connection_keys")
connections = LazyModule("chalicelib.management.connections")
CACHEABLE = {"Cache-Control": "public, max-age=300"}


@bp.route("/.well-known/openid-configuration", methods=["GET"])
@handles_oauth_errors
def openid_configuration():
    from chalicelib.provider.cors import PUBLIC
    from chalicelib.provider.discovery import document

    return json_response(document(), 200, {**CACHEABLE, **PUBLIC})


@bp.route("/.well-known/openid-configuration", methods=["OPTIONS"])
def openid_configuration_preflight():
    return preflight(bp.current_request, "GET", echo_origin=False)


@bp.route("/.well-known/jwks.json", methods=["GET"])
@handles_oauth_errors
def jwks():
    from chalicelib.keys import public_jwks
    from chalicelib.provider.cors import PUBLIC

    return json_response(public_jwks(), 200, {**CACHEABLE, **PUBLIC})


@bp.route("/.well-known/jwks.json", methods=["OPTIONS"])
def jwks_preflight():
    return preflight(bp.current_request, "GET", echo_origin=False)


@bp.route("/oauth/connection/{name}/.well-known/jwks.json", methods=["GET"])
@handles_api_errors
def connection_jwks(name):
    connection = connections.cached_connection_by_name(name)
    jwks = connection_keys.public_jwks(connection) if connection is not None else None
    if jwks is None:
        raise NotFound("The connection does not exist or has no keys",
                       error_code="inexistent_connection_keys")
    return json_response(jwks, 200, CACHEABLE)
