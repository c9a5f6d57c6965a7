"""Management API: ``/api/v2/client-grants`` (Auth0's client grants: which application may get
client_credentials tokens for which API, SPEC §2.5). The rules are chalicelib/management/grants.py."""
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
from chalicelib.management.paging import check_known, flag, one, page

bp = Blueprint(__name__)
grants = LazyModule("chalicelib.management.grants")
JSON = MANAGEMENT_BODY_TYPES


def _caller(*scopes: str):
    return management_caller(bp.current_request, *scopes)


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
