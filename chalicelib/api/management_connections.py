"""Management API: ``/api/v2/connections`` (Auth0's connections, SPEC §2.4) — the connections
themselves, their enabled clients, their private_key_jwt keys (``/keys``, ``/keys/rotate``), the
upstream checks (``/status``) and the start of a Try (``/try``). Parse, authorize, call the rules
in chalicelib/management/, shape.

Key scopes: Auth0 uses ``read:connections_keys`` / ``create:connections_keys`` /
``update:connections_keys``; the key routes take those or the connection scopes (``read:connections``
for GET, ``update:connections`` for POST and rotate), which already let a caller change the
connection.
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib import clock
from chalicelib.api.http import (
    LazyModule,
    MANAGEMENT_BODY_TYPES,
    NO_STORE,
    handles_api_errors,
    json_response,
    management_caller,
    parse_json,
    query_params,
    raw_body,
)
from chalicelib.errors import NotFound
from chalicelib.management import auth
from chalicelib.management.paging import check_known, one, page, select_fields

bp = Blueprint(__name__)
cascades = LazyModule("chalicelib.cascades")
connections = LazyModule("chalicelib.management.connections")
connection_keys = LazyModule("chalicelib.management.connection_keys")
JSON = MANAGEMENT_BODY_TYPES
# Auth0's own scopes, or the connection scopes (which already let a caller change the connection).
KEY_READ_SCOPES = ("read:connections_keys", "read:connections")
KEY_CREATE_SCOPES = ("create:connections_keys", "update:connections")
KEY_ROTATE_SCOPES = ("update:connections_keys", "update:connections")


def _connection_fields() -> tuple[str, ...]:
    return ("id", "name", "strategy", "display_name", "show_as_button", "is_domain_connection",
            "realms", "metadata", "enabled_clients", "options", *connections.TOP_LEVEL_EXTRAS)


def _caller(*scopes: str):
    return management_caller(bp.current_request, *scopes)


def _key_caller(*scopes: str):
    return management_caller(bp.current_request, *scopes, any_of=True)


def _optional_body() -> dict | None:
    request = bp.current_request
    if not raw_body(request).strip():
        return None
    return parse_json(request)


# --- connections ------------------------------------------------------------------------------

@bp.route("/api/v2/connections", methods=["GET"])
@handles_api_errors
def list_connections():
    caller = _caller("read:connections")
    params = query_params(bp.current_request)
    check_known(params, {"page", "per_page", "include_totals", "from", "take", "strategy", "name",
                         "fields", "include_fields"})
    strategies = params.get("strategy")
    name = one(params, "name")
    if name is not None:
        found = connections.get_connection_by_name(name)
        items = [found] if found else []
    else:
        items = connections.list_connections()
    if strategies:
        items = [i for i in items if i["strategy"] in strategies]
    views = [connections.view(i, caller.scopes) for i in items]
    paged = page(views, params, "connections", "id")
    if isinstance(paged, list):
        return json_response(select_fields(paged, params, _connection_fields()))
    paged["connections"] = select_fields(paged["connections"], params, _connection_fields())
    return json_response(paged)


@bp.route("/api/v2/connections", methods=["POST"], content_types=JSON)
@handles_api_errors
def create_connection():
    caller = _caller("create:connections")
    body = parse_json(bp.current_request)
    return json_response(connections.view(connections.create_connection(body), caller.scopes), 201)


@bp.route("/api/v2/connections/{connection_id}", methods=["GET"])
@handles_api_errors
def get_connection(connection_id):
    caller = _caller("read:connections")
    params = query_params(bp.current_request)
    check_known(params, {"fields", "include_fields"})
    item = connections.require_connection(connection_id)
    view = connections.view(item, caller.scopes)
    return json_response(select_fields([view], params, _connection_fields())[0])


@bp.route("/api/v2/connections/{connection_id}", methods=["PATCH"], content_types=JSON)
@handles_api_errors
def update_connection(connection_id):
    caller = _caller("update:connections")
    body = parse_json(bp.current_request)
    if "options" in body:
        auth.require(caller, "update:connections_options")
    return json_response(connections.view(connections.update_connection(connection_id, body),
                                          caller.scopes))


@bp.route("/api/v2/connections/{connection_id}", methods=["DELETE"])
@handles_api_errors
def delete_connection(connection_id):
    _caller("delete:connections")
    cascades.delete_connection(connection_id)
    return json_response(None, 204)


@bp.route("/api/v2/connections/{connection_id}/clients", methods=["GET"])
@handles_api_errors
def list_connection_clients(connection_id):
    _caller("read:connections")
    params = query_params(bp.current_request)
    check_known(params, {"from", "take"})
    item = connections.require_connection(connection_id)
    ids = [{"client_id": c} for c in sorted(item.get("enabled_clients") or [])]
    params.setdefault("take", ["50"])
    return json_response(page(ids, params, "clients", "client_id"))


@bp.route("/api/v2/connections/{connection_id}/clients", methods=["PATCH"], content_types=JSON)
@handles_api_errors
def update_connection_clients(connection_id):
    _caller("update:connections")
    body = parse_json(bp.current_request, expect=list)
    connections.set_enabled_clients(connection_id, body)
    return json_response(None, 204)


# --- keys (private_key_jwt) -------------------------------------------------------------------

@bp.route("/api/v2/connections/{connection_id}/keys", methods=["GET"])
@handles_api_errors
def list_connection_keys(connection_id):
    _key_caller(*KEY_READ_SCOPES)
    connection = connections.require_connection(connection_id)
    return json_response([connection_keys.key_view(k)
                          for k in connection_keys.list_keys(connection)])


@bp.route("/api/v2/connections/{connection_id}/keys", methods=["POST"], content_types=JSON)
@handles_api_errors
def create_connection_keys(connection_id):
    _key_caller(*KEY_CREATE_SCOPES)
    body = _optional_body()
    connection = connections.require_connection(connection_id)
    return json_response([connection_keys.key_view(k)
                          for k in connection_keys.provision(connection, body)], 201)


@bp.route("/api/v2/connections/{connection_id}/keys/rotate", methods=["POST"], content_types=JSON)
@handles_api_errors
def rotate_connection_keys(connection_id):
    _key_caller(*KEY_ROTATE_SCOPES)
    body = _optional_body()
    connection = connections.require_connection(connection_id)
    return json_response(connection_keys.key_view(connection_keys.rotate(connection, body),
                                                  rotate_response=True), 201)


# --- status (SPEC §2.4) -----------------------------------------------------------------------

@bp.route("/api/v2/connections/{connection_id}/status", methods=["GET"])
@handles_api_errors
def connection_status(connection_id):
    """200 when the upstream checks pass, else Auth0's answer for an offline connection: 404 with
    an error body naming the failed check."""
    # Function-local for cold start: the checks pull in the JWKS engine and the outbound HTTP
    # stack (~150 ms of imports), which no login or token request needs.
    from chalicelib.management.connection_status import ConnectionCheckFailed, check_connection

    _caller("read:connections")
    check_known(query_params(bp.current_request), set())
    connection = connections.require_connection(connection_id)
    try:
        return json_response(check_connection(connection))
    except ConnectionCheckFailed as exc:
        raise NotFound(f"The connection's {exc.check} check failed: {exc.detail}",
                       error_code=f"{exc.check}_check_failed") from None


# --- Try (the browser half is in try_and_demo.py) -----------------------------------------------

@bp.route("/api/v2/connections/{connection_id}/try", methods=["GET"])
@handles_api_errors
def try_connection(connection_id):
    from chalicelib.login.try_connection import create_ticket

    # It enables the built-in try application on the connection: a write, so update:connections.
    _caller("read:connections", "update:connections")
    url = create_ticket(connection_id, clock.now_int())
    return json_response({"url": url}, 200, NO_STORE)
