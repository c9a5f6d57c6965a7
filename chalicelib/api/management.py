"""``/api/v2``: the Auth0-shaped Management API. Parse, authorize, call the rules, shape."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.http import (
    LazyModule,
    MANAGEMENT_BODY_TYPES,
    handles_api_errors,
    json_response,
    management_caller,
    parse_json,
    query_params,
)
from chalicelib.errors import InvalidQueryString
from chalicelib.management import auth
from chalicelib.management.paging import check_known, flag, one, page, select_fields

bp = Blueprint(__name__)
cascades = LazyModule("chalicelib.cascades")
clients = LazyModule("chalicelib.management.clients")
connections = LazyModule("chalicelib.management.connections")
grants = LazyModule("chalicelib.management.grants")
JSON = MANAGEMENT_BODY_TYPES


def _connection_fields() -> tuple[str, ...]:
    return ("id", "name", "strategy", "display_name", "show_as_button", "is_domain_connection",
            "realms", "metadata", "enabled_clients", "options", *connections.TOP_LEVEL_EXTRAS)


def _caller(*scopes: str):
    return management_caller(bp.current_request, *scopes)


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


# --- clients ----------------------------------------------------------------------------------

@bp.route("/api/v2/clients", methods=["GET"])
@handles_api_errors
def list_clients():
    _caller("read:clients")
    params = query_params(bp.current_request)
    check_known(params, {"page", "per_page", "include_totals", "from", "take", "fields",
                         "include_fields", "app_type", "is_global", "is_first_party"})
    items = [clients.view(i) for i in clients.list_clients()]
    app_types = params.get("app_type")
    if app_types:
        wanted = {t for value in app_types for t in value.split(",")}
        items = [i for i in items if i["app_type"] in wanted]
    if flag(params, "is_global"):
        items = []  # Auth0's global client (its legacy tenant-wide client): the broker has none
    first_party = flag(params, "is_first_party")
    if first_party is not None:
        items = [i for i in items if i.get("is_first_party", True) == first_party]
    paged = page(items, params, "clients", "client_id")
    if isinstance(paged, list):
        return json_response(select_fields(paged, params, clients.PUBLIC_FIELDS))
    paged["clients"] = select_fields(paged["clients"], params, clients.PUBLIC_FIELDS)
    return json_response(paged)


@bp.route("/api/v2/clients", methods=["POST"], content_types=JSON)
@handles_api_errors
def create_client():
    _caller("create:clients")
    return json_response(clients.create_client(parse_json(bp.current_request)), 201)


@bp.route("/api/v2/clients/{client_id}", methods=["GET"])
@handles_api_errors
def get_client(client_id):
    _caller("read:clients")
    params = query_params(bp.current_request)
    check_known(params, {"fields", "include_fields"})
    view = clients.view(clients.require_client(client_id))
    return json_response(select_fields([view], params, clients.PUBLIC_FIELDS)[0])


@bp.route("/api/v2/clients/{client_id}", methods=["PATCH"], content_types=JSON)
@handles_api_errors
def update_client(client_id):
    _caller("update:clients")
    return json_response(clients.update_client(client_id, parse_json(bp.current_request)))


@bp.route("/api/v2/clients/{client_id}", methods=["DELETE"])
@handles_api_errors
def delete_client(client_id):
    _caller("delete:clients")
    cascades.delete_client(client_id)
    return json_response(None, 204)


@bp.route("/api/v2/clients/{client_id}/rotate-secret", methods=["POST"],
          content_types=JSON + ["application/x-www-form-urlencoded"])
@handles_api_errors
def rotate_client_secret(client_id):
    _caller("update:clients")
    return json_response(clients.rotate_secret(client_id))


# --- client grants ----------------------------------------------------------------------------

@bp.route("/api/v2/client-grants", methods=["GET"])
@handles_api_errors
def list_client_grants():
    _caller("read:client_grants")
    params = query_params(bp.current_request)
    check_known(params, {"page", "per_page", "include_totals", "from", "take", "audience",
                         "client_id", "allow_any_organization", "subject_type"})
    items = grants.list_grants(client_id=one(params, "client_id"), audience=one(params, "audience"))
    subject_type = one(params, "subject_type")
    if subject_type not in (None, "client", "user"):
        raise InvalidQueryString("Query validation error: 'subject_type must be client or user' "
                                 "on property subject_type")
    if flag(params, "allow_any_organization") or subject_type == "user":
        # Grants here are for client_credentials and outside any organization (Auth0's
        # allow_any_organization false, subject_type client).
        items = []
    return json_response(page(items, params, "client_grants", "id"))


@bp.route("/api/v2/client-grants", methods=["POST"], content_types=JSON)
@handles_api_errors
def create_client_grant():
    _caller("create:client_grants")
    return json_response(grants.create_grant(parse_json(bp.current_request)), 201)


@bp.route("/api/v2/client-grants/{grant_id}", methods=["PATCH"], content_types=JSON)
@handles_api_errors
def update_client_grant(grant_id):
    _caller("update:client_grants")
    return json_response(grants.update_grant(grant_id, parse_json(bp.current_request)))


@bp.route("/api/v2/client-grants/{grant_id}", methods=["DELETE"])
@handles_api_errors
def delete_client_grant(grant_id):
    _caller("delete:client_grants")
    grants.delete_grant(grant_id)
    return json_response(None, 204)
