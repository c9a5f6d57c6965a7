"""Management API: ``/api/v2/resource-servers``: APIs the broker mints access tokens for (SPEC §2.5)."""
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
from chalicelib.management.paging import check_known, page, select_fields

bp = Blueprint(__name__)
servers = LazyModule("chalicelib.management.resource_servers")
JSON = MANAGEMENT_BODY_TYPES


def _caller(*scopes: str):
    return management_caller(bp.current_request, *scopes)


@bp.route("/api/v2/resource-servers", methods=["GET"])
@handles_api_errors
def list_resource_servers():
    _caller("read:resource_servers")
    params = query_params(bp.current_request)
    check_known(params, {"page", "per_page", "include_totals", "from", "take", "identifiers",
                         "fields", "include_fields"})
    items = servers.list_resource_servers()
    identifiers = params.get("identifiers")
    if identifiers:
        items = [i for i in items if i["identifier"] in identifiers]
    paged = page(items, params, "resource_servers", "id")
    if isinstance(paged, list):
        return json_response(select_fields(paged, params, servers.PUBLIC_FIELDS))
    paged["resource_servers"] = select_fields(paged["resource_servers"], params,
                                              servers.PUBLIC_FIELDS)
    return json_response(paged)


@bp.route("/api/v2/resource-servers", methods=["POST"], content_types=JSON)
@handles_api_errors
def create_resource_server():
    _caller("create:resource_servers")
    return json_response(servers.create_resource_server(parse_json(bp.current_request)), 201)


@bp.route("/api/v2/resource-servers/{server_id}", methods=["GET"])
@handles_api_errors
def get_resource_server(server_id):
    _caller("read:resource_servers")
    params = query_params(bp.current_request)
    check_known(params, {"fields", "include_fields"})
    view = servers.view(servers.require_resource_server(server_id))
    return json_response(select_fields([view], params, servers.PUBLIC_FIELDS)[0])


@bp.route("/api/v2/resource-servers/{server_id}", methods=["PATCH"], content_types=JSON)
@handles_api_errors
def update_resource_server(server_id):
    _caller("update:resource_servers")
    return json_response(servers.update_resource_server(server_id,
                                                        parse_json(bp.current_request)))


@bp.route("/api/v2/resource-servers/{server_id}", methods=["DELETE"])
@handles_api_errors
def delete_resource_server(server_id):
    _caller("delete:resource_servers")
    servers.delete_resource_server(server_id)
    return json_response(None, 204)
