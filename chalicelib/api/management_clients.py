"""Management API: ``/api/v2/clients`` (Auth0's applications, SPEC §2.4), their secret
rotation (``/rotate-secret``). Parse, authorize, call the rules in chalicelib/management/clients.py,
shape."""
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
from chalicelib.management.paging import check_known, flag, page, select_fields

bp = Blueprint(__name__)
cascades = LazyModule("chalicelib.cascades")
clients = LazyModule("chalicelib.management.clients")
JSON = MANAGEMENT_BODY_TYPES


def _caller(*scopes: str):
    return management_caller(bp.current_request, *scopes)


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
