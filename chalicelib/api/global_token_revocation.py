"""``POST /oauth/global-token-revocation/connection/{name}``: Global Token Revocation (Universal
Logout, SPEC §5); the logic is chalicelib/logout/gtr.py.

Its errors are its own (not the OAuth translation of api/http.py): chalicelib/logout/gtr.py turns
every failure into an outcome, answered with the draft's bare ``{"error"}`` body and logged with
the reason; only a crash is caught here."""
from __future__ import annotations

import logging
import re

from chalice import Blueprint

from chalicelib.api.http import NO_STORE, json_response

bp = Blueprint(__name__)
log = logging.getLogger("chalicelib.logout.gtr")


def _printable(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "?", (name or "")[:128])


# Every content type reaches the handler (Chalice would answer 415 itself): the JWT is checked
# before the body is looked at, and a body that is not JSON is a 400.
@bp.route("/oauth/global-token-revocation/connection/{connection_name}", methods=["POST"],
          content_types=["*/*"])
def global_token_revocation(connection_name):
    from chalicelib.logout import gtr

    request = bp.current_request
    try:
        outcome = gtr.handle(connection_name, request.headers.get("authorization"),
                             lambda: request.raw_body or b"")
    except Exception:  # noqa: BLE001 - last line of defence: no internals in responses
        log.exception("global token revocation for connection %s: 500 unexpected error",
                      _printable(connection_name))
        _record_crash(connection_name)
        return json_response({"error": "server_error"}, 500, NO_STORE)
    log.info("global token revocation for connection %s: %d %s (users: %d)",
             _printable(connection_name), outcome.status, outcome.reason, outcome.users)
    if outcome.status == 204:
        return json_response(None, 204, NO_STORE)
    headers = dict(NO_STORE)
    if outcome.status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return json_response({"error": outcome.error}, outcome.status, headers)


def _record_crash(connection_name: str) -> None:
    """The ``fgtr`` event of a request that crashed (gtr.handle records every other outcome)."""
    from chalicelib import audit

    try:
        audit.record(audit.event("fgtr", connection=_printable(connection_name),
                                 details={"status": 500, "reason": "server_error"}))
    except Exception:  # noqa: BLE001 - a log event never changes the answer
        log.exception("global token revocation log event failed")
