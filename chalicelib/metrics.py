"""Metrics as CloudWatch Embedded Metric Format lines (SPEC §9), no client library, no API call.

Each line is one JSON document on stdout; CloudWatch Logs extracts the metrics from it (EMF
specification: an ``_aws`` member with ``Timestamp`` and ``CloudWatchMetrics`` directives, the
dimension values and metric values as top-level members). They are printed, not logged: Lambda's
JSON log format wraps what goes through ``logging`` into its own object (the EMF document would
end up under ``message`` and not be extracted), while a line written straight to stdout reaches
CloudWatch Logs as it is. Lambda's log-level filtering treats a line without ``level`` as INFO.

Namespace ``IdentityBroker``; every dimension set starts with ``Stage`` (dev and prod may share
an account). What is counted (docs/OPERATIONS.md lists it with the alarms built on it):

- per log event (:func:`for_event`, called by chalicelib/audit.py for every event it emits):
  ``LogEvents`` by ``Type``; ``Logins`` / ``LoginFailures`` by ``Connection`` (failures also by
  ``Error``); ``TokenGrants`` / ``TokenGrantFailures`` by ``GrantType`` (failures also by
  ``Error``); ``GlobalTokenRevocations`` and ``BackchannelLogouts`` by ``Outcome``;
- per HTTP request (:func:`for_request`, the request_log middleware): ``Duration`` by ``Route``
  and ``Http5xx`` (0 or 1 per request, so its Average is the 5xx rate).

Dimension values are bounded, since each distinct value is a billed custom metric: connections
only when the event names a stored one (it has a ``connection_id``: administrators define those,
a caller cannot invent one), error codes from a fixed list or ``other``, routes as the app's path
templates.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from chalicelib import clock
from chalicelib.errors import ConfigurationError

NAMESPACE = "IdentityBroker"
log = logging.getLogger(__name__)

# Auth0's grant codes: the OAuth grant type each counts.
GRANT_TYPES = {
    "seacft": "authorization_code", "feacft": "authorization_code",
    "sertft": "refresh_token", "fertft": "refresh_token",
    "seccft": "client_credentials", "feccft": "client_credentials",
    "stx": "token_exchange", "ftx": "token_exchange",
}
# The error codes a failure metric may carry, from the event's ``details.error``: OAuth's and
# OpenID Connect's (RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, OpenID Connect Core §3.1.2.6),
# which is what the broker answers and what upstream IdPs send. Anything else counts as "other".
ERROR_CODES = frozenset({
    "invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type",
    "invalid_scope", "server_error", "temporarily_unavailable", "invalid_client", "invalid_grant",
    "unsupported_grant_type", "invalid_token", "insufficient_scope", "interaction_required",
    "login_required", "account_selection_required", "consent_required", "invalid_request_uri",
    "invalid_request_object", "request_not_supported", "request_uri_not_supported",
    "registration_not_supported",
})
OTHER = "other"
NONE = "none"
# Back-channel logout outcomes, the events' details.outcome (chalicelib/logout/backchannel.py).
BACKCHANNEL_OUTCOMES = frozenset({"delivered", "retry", "rejected", "dead_letter"})
_ROUTE = re.compile(r"/[A-Za-z0-9_./{}+-]{0,119}")


def document(metrics: Sequence[tuple[str, str, float, Sequence[Sequence[str]]]],
             dimensions: Mapping[str, str], at: float | None = None) -> dict[str, Any]:
    """One EMF document. ``metrics``: (name, unit, value, dimension sets) each; ``dimensions``:
    the value of every dimension the sets name (``Stage`` is added)."""
    values: dict[str, Any] = {"Stage": stage(), **dimensions}
    # One directive per distinct list of dimension sets: its metrics share them.
    directives: dict[str, dict[str, Any]] = {}
    for name, unit, value, dimension_sets in metrics:
        sets = [["Stage", *names] for names in dimension_sets]
        missing = {d for names in sets for d in names} - set(values)
        if missing or name in values:
            raise ValueError(f"metric {name}: a dimension's name, or no value for {sorted(missing)}")
        directive = directives.setdefault(json.dumps(sets), {
            "Namespace": NAMESPACE, "Dimensions": sets, "Metrics": []})
        directive["Metrics"].append({"Name": name, "Unit": unit})
        values[name] = value
    stamp = int((clock.now() if at is None else at) * 1000)
    return {"_aws": {"Timestamp": stamp, "CloudWatchMetrics": list(directives.values())}, **values}


def stage() -> str:
    """The ``Stage`` dimension: the settings' stage, also while another setting is wrong (the
    5xx a misconfigured stage answers are counted too)."""
    from chalicelib.settings import get_settings

    try:
        return get_settings().stage
    except ConfigurationError:
        return os.environ.get("BROKER_STAGE") or "local"


def emit(doc: Mapping[str, Any]) -> None:
    """Print one EMF document as its own line on stdout."""
    sys.stdout.write(json.dumps(doc, separators=(",", ":"), default=str) + "\n")


def _error(details: Any) -> str:
    code = details.get("error") if isinstance(details, Mapping) else None
    return code if isinstance(code, str) and code in ERROR_CODES else OTHER


def _connection(event: Mapping[str, Any]) -> str:
    # Only a stored connection (it has an id); a name as asked by a caller is not a dimension.
    # CloudWatch takes printable ASCII dimension values (stored names are, by their pattern).
    name = event.get("connection")
    if not event.get("connection_id") or not isinstance(name, str) or not name:
        return NONE
    return name if len(name) <= 128 and name.isascii() and name.isprintable() else OTHER


def _event_metrics(event: Mapping[str, Any]) -> tuple[list[tuple[str, str, float, list[list[str]]]],
                                                     dict[str, str]]:
    type_ = str(event.get("type") or "")
    details = event.get("details") or {}
    metrics: list[tuple[str, str, float, list[list[str]]]] = [
        ("LogEvents", "Count", 1, [["Type"]])]
    dimensions = {"Type": type_}
    if type_ == "s":
        dimensions["Connection"] = _connection(event)
        metrics.append(("Logins", "Count", 1, [[], ["Connection"]]))
    elif type_ == "f":
        dimensions.update(Connection=_connection(event), Error=_error(details))
        metrics.append(("LoginFailures", "Count", 1, [[], ["Connection"], ["Connection", "Error"]]))
    elif type_ in GRANT_TYPES:
        dimensions["GrantType"] = GRANT_TYPES[type_]
        if type_.startswith("s"):
            metrics.append(("TokenGrants", "Count", 1, [["GrantType"]]))
        else:
            dimensions["Error"] = _error(details)
            metrics.append(("TokenGrantFailures", "Count", 1, [["GrantType"], ["GrantType", "Error"]]))
    elif type_ in ("sgtr", "fgtr"):
        dimensions["Outcome"] = "success" if type_ == "sgtr" else "failure"
        metrics.append(("GlobalTokenRevocations", "Count", 1, [["Outcome"]]))
    elif type_ in ("sbcl", "fbcl"):
        outcome = details.get("outcome") if isinstance(details, Mapping) else None
        if outcome not in BACKCHANNEL_OUTCOMES:
            outcome = "delivered" if type_ == "sbcl" else "failed"
        dimensions["Outcome"] = str(outcome)
        metrics.append(("BackchannelLogouts", "Count", 1, [["Outcome"]]))
    return metrics, dimensions


def for_event(event: Mapping[str, Any]) -> None:
    """The metrics one log event counts, as one EMF line."""
    metrics, dimensions = _event_metrics(event)
    emit(document(metrics, dimensions))


def route_dimension(route: str | None) -> str:
    """A route's path template as a dimension value (``other`` for anything that is not one)."""
    return route if isinstance(route, str) and _ROUTE.fullmatch(route) else OTHER


def for_request(route: str | None, status: int, duration_ms: float) -> None:
    """One HTTP request: its duration per route, and whether it answered 5xx."""
    try:
        emit(document([
            ("Duration", "Milliseconds", round(duration_ms, 3), [[], ["Route"]]),
            ("Http5xx", "Count", 1 if status >= 500 else 0, [[], ["Route"]]),
        ], {"Route": route_dimension(route)}))
    except Exception:  # noqa: BLE001 - a metric never fails a request
        log.exception("request metric failed")
