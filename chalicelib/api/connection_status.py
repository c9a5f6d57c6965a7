"""``GET /api/v2/connections/{id}/status`` (SPEC §2.4): 200 when the upstream checks pass, else
Auth0's answer for an offline connection, 404 with an error body naming the failed check."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.http import handles_api_errors, json_response, management_caller, query_params
from chalicelib.errors import NotFound
from chalicelib.management.paging import check_known

bp = Blueprint(__name__)


@bp.route("/api/v2/connections/{connection_id}/status", methods=["GET"])
@handles_api_errors
def connection_status(connection_id):
    # Function-local for cold start: the checks pull in the JWKS engine and the outbound HTTP
    # stack (~150 ms of imports), which no login or token request needs.
    from chalicelib.management import connections
    from chalicelib.management.connection_status import ConnectionCheckFailed, check_connection

    management_caller(bp.current_request, "read:connections")
    check_known(query_params(bp.current_request), set())
    connection = connections.require_connection(connection_id)
    try:
        return json_response(check_connection(connection))
    except ConnectionCheckFailed as exc:
        raise NotFound(f"The connection's {exc.check} check failed: {exc.detail}",
                       error_code=f"{exc.check}_check_failed") from None
