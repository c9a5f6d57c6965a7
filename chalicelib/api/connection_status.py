"""``GET /api/v2/connections/{id}/status`` (SPEC §2.4): 200 when the upstream checks pass, else
Auth0's answer for an offline connection, 404 with an error body naming the failed check."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.http import handles_api_errors, json_response, query_params
from chalicelib.errors import NotFound
from chalicelib.management import auth, connections
from chalicelib.management.connection_status import ConnectionCheckFailed, check_connection
from chalicelib.management.paging import check_known

bp = Blueprint(__name__)


@bp.route("/api/v2/connections/{connection_id}/status", methods=["GET"])
@handles_api_errors
def connection_status(connection_id):
    caller = auth.authenticate(bp.current_request.headers.get("authorization"))
    auth.require(caller, "read:connections")
    check_known(query_params(bp.current_request), set())
    connection = connections.require_connection(connection_id)
    try:
        return json_response(check_connection(connection))
    except ConnectionCheckFailed as exc:
        raise NotFound(f"The connection's {exc.check} check failed: {exc.detail}",
                       error_code=f"{exc.check}_check_failed") from None
