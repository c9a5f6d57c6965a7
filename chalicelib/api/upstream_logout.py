"""``POST /login/backchannel-logout/{connection_name}``: back-channel logout from an upstream IdP
(SPEC §11, OIDC Back-Channel Logout 1.0 §2.5-2.8); the logic is chalicelib/login/upstream_logout.py.

A server-to-server route with OAuth-shaped errors: 200 with an empty body, 400
``{"error": "invalid_request"}`` with one generic description for every refusal (which check
refused is in the ``flo`` log event only), and outages through the OAuth translation (503
``temporarily_unavailable``). Every answer carries ``Cache-Control: no-store`` (§2.8).
"""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api.http import NO_STORE, handles_oauth_errors, json_response

bp = Blueprint(__name__)


# Every content type reaches the flow (Chalice would answer 415 with its own body): a request
# that is not a form is refused like any other invalid request, and logged.
@bp.route("/login/backchannel-logout/{connection_name}", methods=["POST"], content_types=["*/*"])
@handles_oauth_errors
def upstream_backchannel_logout(connection_name):
    from chalicelib import revocation
    from chalicelib.login import upstream_logout

    request = bp.current_request
    outcome = upstream_logout.handle(connection_name, request.headers.get("content-type"),
                                     request.raw_body or b"", end_session=revocation.end_session)
    if outcome.status == 200:
        return Response(body="", status_code=200, headers=dict(NO_STORE))
    return json_response({"error": "invalid_request",
                          "error_description": upstream_logout.DESCRIPTION}, 400, NO_STORE)
