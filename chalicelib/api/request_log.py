"""The request log: middleware around every route of the app (SPEC §9).

Registered before request_deadline in app.py, so it is the outermost middleware: it times
everything the request does. While the request runs, :func:`chalicelib.audit.request_scope`
holds what log events take from it (the source IP, the User-Agent) and collects what they name
(connection, client_id, user_id). After the response it writes ONE JSON line on logger
``broker.requests``::

    {"timestamp": ..., "level": "INFO", "message": "GET /login/callback/{connection_name} 302",
     "logger": "broker.requests", "requestId": ..., "request_id": ..., "route":
     "/login/callback/{connection_name}", "method": "GET", "status": 302, "duration_ms": 41.2,
     "connection": "acme", "client_id": ..., "user_id": ..., "trace_id": "1-5759e988-..."}

(``trace_id``: the request's X-Ray trace, in Lambda) and one EMF line (chalicelib/metrics.py:
duration per route, 5xx). The route is the path template, never the path or the query (they can
hold codes and tokens); no header is logged.
"""
from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from chalice import Blueprint

from chalicelib import audit, clock, logs, metrics

bp = Blueprint(__name__)
log = logging.getLogger("broker.requests")

MAX_USER_AGENT = 256
# What the request's log events name, copied onto its line.
EVENT_FIELDS = ("connection", "client_id", "user_id")


def request_id_of(request: Any) -> str:
    """API Gateway's request id (what its access logs and ``x-amzn-RequestId`` carry), else the
    Lambda invocation's, else a new one (a local run without either)."""
    found = (request.context or {}).get("requestId")
    if not found:
        found = getattr(request.lambda_context, "aws_request_id", None)
    return str(found)[:128] if found else str(uuid.uuid4())


@bp.middleware("http")
def request_log(event, get_response):
    if event is None:  # not an API Gateway request: nothing to describe
        return get_response(event)
    started = clock.monotonic()
    context = event.context or {}
    request_id = request_id_of(event)
    route = context.get("resourcePath")
    user_agent = (event.headers.get("user-agent") or "")[:MAX_USER_AGENT]
    status, error_type = 500, None
    with logs.request_context(request_id), audit.request_scope(
            request_id=request_id, route=route, ip=(context.get("identity") or {}).get("sourceIp"),
            user_agent=user_agent or None) as scope:
        try:
            response = get_response(event)
            status = response.status_code
            return response
        except Exception as exc:
            error_type = type(exc).__name__
            raise
        finally:
            duration_ms = (clock.monotonic() - started) * 1000
            _write_line(scope, event.method, status, duration_ms, error_type)
            metrics.for_request(route, status, duration_ms)


def _write_line(scope: dict[str, Any], method: str, status: int, duration_ms: float,
                error_type: str | None) -> None:
    fields: dict[str, Any] = {
        "request_id": scope.get("request_id"), "route": scope.get("route"), "method": method,
        "status": status, "duration_ms": round(duration_ms, 3),
    }
    for name in EVENT_FIELDS:
        if scope.get(name):
            fields[name] = scope[name]
    if error_type:
        fields["error_type"] = error_type
    trace = os.environ.get("_X_AMZN_TRACE_ID", "")  # Lambda sets it per invocation (X-Ray)
    if trace.startswith("Root="):
        fields["trace_id"] = trace[5:].split(";", 1)[0][:64]
    log.log(logging.ERROR if status >= 500 else logging.INFO, "%s %s %s", method, fields["route"],
            status, extra=fields)
