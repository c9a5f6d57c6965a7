"""Management API: ``GET /api/v2/openapi.json``: the Management API's OpenAPI 3 document."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.http import handles_api_errors, json_response

bp = Blueprint(__name__)


@bp.route("/api/v2/openapi.json", methods=["GET"])
@handles_api_errors
def openapi_document():
    from chalicelib.openapi_doc import document

    return json_response(document())
