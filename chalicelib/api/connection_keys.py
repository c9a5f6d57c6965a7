"""Routes of private_key_jwt connection keys.

- ``GET /oauth/connection/{name}/.well-known/jwks.json``: the public keys an upstream IdP fetches
  to verify the broker's client assertions (no authentication; cacheable for 5 minutes).
- Auth0's ``GET|POST /api/v2/connections/{id}/keys`` and ``POST .../keys/rotate``.

Scopes: Auth0 uses ``read:connections_keys`` / ``create:connections_keys`` /
``update:connections_keys``; until those exist in the management scope list, the key routes take
``read:connections`` (GET) and ``update:connections`` (POST, rotate).
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.http import (
    LazyModule,
    MANAGEMENT_BODY_TYPES,
    handles_api_errors,
    json_response,
    management_caller,
    parse_json,
    raw_body,
)
from chalicelib.errors import NotFound

bp = Blueprint(__name__)
keys = LazyModule("chalicelib.management.connection_keys")
connections = LazyModule("chalicelib.management.connections")
JSON = MANAGEMENT_BODY_TYPES
# Auth0's own scopes, or the connection scopes (which already let a caller change the connection).
READ_SCOPES = ("read:connections_keys", "read:connections")
CREATE_SCOPES = ("create:connections_keys", "update:connections")
ROTATE_SCOPES = ("update:connections_keys", "update:connections")
JWKS_CACHE = {"Cache-Control": "public, max-age=300"}


def _caller(*scopes: str):
    return management_caller(bp.current_request, *scopes, any_of=True)


def _optional_body() -> dict | None:
    request = bp.current_request
    if not raw_body(request).strip():
        return None
    return parse_json(request)


@bp.route("/oauth/connection/{name}/.well-known/jwks.json", methods=["GET"])
@handles_api_errors
def connection_jwks(name):
    connection = connections.cached_connection_by_name(name)
    jwks = keys.public_jwks(connection) if connection is not None else None
    if jwks is None:
        raise NotFound("The connection does not exist or has no keys",
                       error_code="inexistent_connection_keys")
    return json_response(jwks, 200, JWKS_CACHE)


@bp.route("/api/v2/connections/{connection_id}/keys", methods=["GET"])
@handles_api_errors
def list_connection_keys(connection_id):
    _caller(*READ_SCOPES)
    connection = connections.require_connection(connection_id)
    return json_response([keys.key_view(k) for k in keys.list_keys(connection)])


@bp.route("/api/v2/connections/{connection_id}/keys", methods=["POST"], content_types=JSON)
@handles_api_errors
def create_connection_keys(connection_id):
    _caller(*CREATE_SCOPES)
    body = _optional_body()
    connection = connections.require_connection(connection_id)
    return json_response([keys.key_view(k) for k in keys.provision(connection, body)], 201)


@bp.route("/api/v2/connections/{connection_id}/keys/rotate", methods=["POST"], content_types=JSON)
@handles_api_errors
def rotate_connection_keys(connection_id):
    _caller(*ROTATE_SCOPES)
    body = _optional_body()
    connection = connections.require_connection(connection_id)
    return json_response(keys.key_view(keys.rotate(connection, body), rotate_response=True), 201)
