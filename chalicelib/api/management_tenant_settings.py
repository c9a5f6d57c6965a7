"""Management API: ``/api/v2/tenants/settings``: Auth0's tenant settings (SPEC §2.4)."""
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
from chalicelib.management.paging import check_known, select_fields

bp = Blueprint(__name__)
tenant_settings = LazyModule("chalicelib.management.tenant_settings")
JSON = MANAGEMENT_BODY_TYPES


def _caller(*scopes: str):
    return management_caller(bp.current_request, *scopes)


@bp.route("/api/v2/tenants/settings", methods=["GET"])
@handles_api_errors
def get_tenant_settings():
    _caller("read:tenant_settings")
    params = query_params(bp.current_request)
    check_known(params, {"fields", "include_fields"})
    view = tenant_settings.tenant_settings_view()
    known = tenant_settings.ACTED_ON + tenant_settings.INERT_FIELDS
    return json_response(select_fields([view], params, known)[0])


@bp.route("/api/v2/tenants/settings", methods=["PATCH"], content_types=JSON)
@handles_api_errors
def update_tenant_settings():
    _caller("update:tenant_settings")
    return json_response(tenant_settings.update_tenant_settings(parse_json(bp.current_request)))
