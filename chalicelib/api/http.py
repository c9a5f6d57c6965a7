"""Framework glue shared by every blueprint: body parsing, responses, error translation.

Handlers raise :class:`ApiError`/:class:`OAuthError`; the wrappers here turn them into the
documented bodies. Anything unexpected becomes a bare 500 (no internals) and a log line.
"""
from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
from typing import Any, Callable
from urllib.parse import parse_qsl

from chalice import Response

from chalicelib.errors import ApiError, InvalidBody, InvalidQueryString, OAuthError, TooLarge


class LazyModule:
    """A module imported on first attribute access. The Management API's blueprints bind their
    management modules this way, for cold start only: those modules build pydantic models at
    import (tens of milliseconds), and a cold container serving /authorize, /oauth/token or
    discovery never needs them."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        import importlib

        return getattr(importlib.import_module(self._name), attribute)

# Content types the Management API's write routes accept: Chalice would answer any other type with
# its own 415 body, so these reach parse_json, which gives Auth0's error for a bad body.
MANAGEMENT_BODY_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded",
                         "application/octet-stream"]


def management_caller(request, *scopes: str, any_of: bool = False):
    """The Management API caller of ``request``, holding every one of ``scopes`` (or, with
    ``any_of``, at least one): 401 / 403 in Auth0's shape otherwise."""
    from chalicelib.management import auth

    call = _api_call.get()
    if call is not None:
        call["request"] = request  # what the write's log event names (handles_api_errors)
    caller = auth.authenticate(request.headers.get("authorization"))
    if call is not None:
        call["client_id"] = caller.client_id
    if any_of:
        auth.require_any(caller, *scopes)
    else:
        auth.require(caller, *scopes)
    return caller

log = logging.getLogger("broker")

MAX_BODY_BYTES = 256 * 1024  # a GET → edit → PATCH round trip carries oidc_metadata (≤128 KB)
MAX_JSON_DEPTH = 20

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> Response:
    all_headers: dict[str, str | list[str]] = {"Content-Type": "application/json; charset=utf-8"}
    if headers:
        all_headers.update(headers)
    if status == 204:
        return Response(body="", status_code=204, headers={k: v for k, v in all_headers.items()
                                                           if k != "Content-Type"})
    return Response(body=json.dumps(body, separators=(",", ":")), status_code=status,
                    headers=all_headers)


def preflight(request, methods: str, *, echo_origin: bool) -> Response:
    """A CORS preflight (chalicelib/provider/cors.py): 204, no body, nothing touched."""
    from chalicelib.provider.cors import preflight_headers

    headers: dict[str, str | list[str]] = {
        **preflight_headers(request.headers, methods, echo_origin=echo_origin)}
    return Response(body="", status_code=204, headers=headers)


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max([_depth(v, level + 1) for v in value.values()] or [level + 1])
    if isinstance(value, list):
        return max([_depth(v, level + 1) for v in value] or [level + 1])
    return level


def raw_body(request) -> bytes:
    body = request.raw_body or b""
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge("Request body is too large")
    return body


def _too_deep(body: bytes) -> bool:
    """Nesting deeper than MAX_JSON_DEPTH, found without parsing: Python's JSON decoder recurses
    and would raise RecursionError on a few thousand brackets (a crash, not a 400)."""
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _loads(body: bytes) -> Any:
    if _too_deep(body):
        raise ValueError("nested too deeply")
    try:
        return json.loads(body.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None


def parse_json(request, *, expect: type = dict) -> Any:
    body = raw_body(request)
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise InvalidBody("Content-Type must be application/json")
    if body and _too_deep(body):
        raise InvalidBody("Request payload is nested too deeply")
    try:
        value = _loads(body) if body else None
    except (UnicodeDecodeError, ValueError):
        raise InvalidBody("Invalid request payload JSON format") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise InvalidBody("Request payload is nested too deeply")
    if not isinstance(value, expect):
        kind = "object" if expect is dict else "array"
        raise InvalidBody(f"Payload validation error: expected a JSON {kind}")
    return value


def parse_form_or_json(request) -> dict:
    """OAuth endpoints take a form body (RFC 6749); JSON is accepted too, as Auth0 does."""
    body = raw_body(request)
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            value = _loads(body) if body else {}
        except (UnicodeDecodeError, ValueError):
            raise OAuthError("invalid_request", "Invalid JSON body") from None
        if not isinstance(value, dict):
            raise OAuthError("invalid_request", "The JSON body must be an object")
        # Auth0's SDKs send unset parameters as null (e.g. "organization": null): absent.
        value = {k: v for k, v in value.items() if v is not None}
        if any(not isinstance(v, str) for v in value.values()):
            raise OAuthError("invalid_request", "The JSON body must be an object of strings")
        return value
    if content_type not in ("application/x-www-form-urlencoded", ""):
        raise OAuthError("invalid_request", "Unsupported Content-Type")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "Invalid form body") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            # RFC 6749 §3.1: request parameters must not be included more than once.
            raise OAuthError("invalid_request", f"Parameter {key} is repeated")
        form[key] = value
    return form


def query_params(request) -> dict[str, list[str]]:
    params = request.query_params
    if not params:
        return {}
    return {key: list(params.getlist(key)) for key in params.keys()}


def single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidQueryString(f"Query parameter {name} must appear once")
    return values[0]


# --- error translation: one per kind of route -----------------------------------------------
#
# Every route is of one kind and its handler is wrapped by that kind's translation (a test walks
# the app's routes to check it): domain errors (ApiError, ServiceUnavailable's 503 among them),
# OAuth errors and crashes become that kind's documented response, never internals.
#
# - Management API (``/api/v2``, and the connections' public JWKS): Auth0's error body,
#   :func:`handles_api_errors`.
# - OAuth / OpenID JSON endpoints (token, revoke, userinfo, discovery, JWKS): RFC 6749 §5.2's body,
#   :func:`handles_oauth_errors`.
# - Browser (HTML) routes (authorize, callbacks, logout, Try, demo): the 503 page, or where the
#   route knows better (``/authorize`` once the redirect_uri is trusted) its own outage answer,
#   :func:`handles_browser_errors` / :func:`run_browser_route`.
#
# Global Token Revocation keeps its own: chalicelib/logout/gtr.py turns every failure into an
# outcome with the draft's bare ``{"error"}`` body.

def _translation(kind: str, wrapper: Callable) -> Callable:
    wrapper.error_translation = kind  # type: ignore[attr-defined]
    return wrapper


def handles_api_errors(handler: Callable) -> Callable:
    """Auth0-shaped errors for the Management API; every write (POST, PATCH, PUT, DELETE under
    ``/api/v2/``) is one ``sapi`` / ``fapi`` log event (:func:`_record_api_write`)."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        call: dict[str, Any] = {}
        scope = _api_call.set(call)
        try:
            response, error_code = _translated_api_call(handler, args, kwargs)
        finally:
            _api_call.reset(scope)
        _record_api_write(call, getattr(response, "status_code", 200), error_code)
        return response

    return _translation("management", wrapper)


def _translated_api_call(handler: Callable, args, kwargs) -> tuple[Response, str | None]:
    """The handler's response, or its error's; and the error's ``errorCode`` (None on success)."""
    try:
        return handler(*args, **kwargs), None
    except ApiError as exc:
        headers = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return json_response(exc.body(), exc.status, headers), exc.error_code
    except RecursionError:
        # Only pathological input nests that deep (e.g. a JWT header of 3,000 brackets).
        log.warning("input nested too deeply in %s", handler.__name__)
        error = InvalidBody("Request input is nested too deeply")
        return json_response(error.body(), 400), error.error_code
    except Exception:  # noqa: BLE001 - last line of defence: no internals in responses
        log.exception("unhandled error in %s", handler.__name__)
        return json_response({"statusCode": 500, "error": "Internal Server Error",
                              "message": "Internal error", "errorCode": "internal_error"},
                             500), "internal_error"


# --- Management API writes as log events (SPEC §9: sapi / fapi) ------------------------------
#
# Every Management API route authenticates first, through management_caller, which leaves the
# request (and, once the token is checked, the caller's client_id) in this per-call slot; the
# wrapper of handles_api_errors then records the write. A route that never reached
# management_caller logs nothing (a test walks every write route to show none does).

_api_call: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "management_api_call", default=None)

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_VERBS = {"POST": "Create", "PATCH": "Update", "PUT": "Update", "DELETE": "Delete"}
# The writes that are not plain create / update / delete of the resource the path names.
_ACTIONS = {
    ("POST", "/api/v2/clients/{client_id}/rotate-secret"): "Rotate a client's secret",
    ("PATCH", "/api/v2/connections/{connection_id}/clients"): "Update a connection's clients",
    ("POST", "/api/v2/connections/{connection_id}/keys"): "Create a connection's keys",
    ("POST", "/api/v2/connections/{connection_id}/keys/rotate"): "Rotate a connection's keys",
    ("POST", "/api/v2/keys/signing/rotate"): "Rotate the signing key",
    ("PUT", "/api/v2/keys/signing/{kid}/revoke"): "Revoke a signing key",
    ("DELETE", "/api/v2/users/{user_id}/sessions"): "Delete a user's sessions",
    ("PATCH", "/api/v2/tenants/settings"): "Update the tenant settings",
}
_PARAM = re.compile(r"\{([^{}]+)\}")


def api_write_description(method: str, template: str) -> str:
    """What a write does, Auth0's way ("Create a client", "Update a connection"), from its
    method and route template."""
    known = _ACTIONS.get((method, template))
    if known:
        return known
    resource = next((s for s in template.split("/")[3:] if s and not s.startswith("{")), "")
    noun = resource.replace("-", " ")
    noun = noun[:-1] if noun.endswith("s") else noun
    return f"{_VERBS.get(method, method.title())} a {noun or 'resource'}"


def _concrete_path(template: str, params: dict[str, str] | None) -> str:
    return _PARAM.sub(lambda m: str((params or {}).get(m.group(1), m.group(0))), template)


def _record_api_write(call: dict[str, Any], status: int, error_code: str | None) -> None:
    """One ``sapi`` (2xx/3xx) or ``fapi`` event: method, concrete path (no query string), status
    and Auth0 ``errorCode``; the caller's client_id once its token was accepted. Never the body
    (client secrets) nor the Authorization header. Best effort: never fails the response."""
    request = call.get("request")
    if request is None:
        return
    try:
        method = str(request.method).upper()
        template = str(request.path or "")
        if method not in WRITE_METHODS or not template.startswith("/api/v2/"):
            return
        from chalicelib import audit

        failed = status >= 400
        action = api_write_description(method, template)
        response: dict[str, Any] = {"statusCode": status}
        if failed:
            response["errorCode"] = error_code or "unknown"
        details = {"request": {"method": method.lower(),
                               "path": _concrete_path(template, request.uri_params)},
                   "response": response}
        description = f"Failed to {action[0].lower()}{action[1:]}" if failed else action
        audit.record(audit.event("fapi" if failed else "sapi", client_id=call.get("client_id"),
                                 details=details, description=description))
    except Exception:  # noqa: BLE001 - a log event never fails the request
        log.exception("management api log event failed")


def handles_oauth_errors(handler: Callable) -> Callable:
    """RFC 6749 §5.2 errors for OAuth endpoints; 503 ``temporarily_unavailable`` on outages."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except OAuthError as exc:
            return json_response(exc.body(), exc.status, {**NO_STORE, **exc.headers})
        except ApiError as exc:
            if exc.status == 503:
                return json_response({"error": "temporarily_unavailable",
                                      "error_description": exc.message}, 503, NO_STORE)
            if exc.status == 413:
                return json_response({"error": "invalid_request",
                                      "error_description": exc.message}, 413, NO_STORE)
            log.error("api error on oauth route: %s", exc.error_code)
            return json_response({"error": "server_error",
                                  "error_description": "Internal error"}, 500, NO_STORE)
        except RecursionError:
            log.warning("input nested too deeply in %s", handler.__name__)
            return json_response({"error": "invalid_request",
                                  "error_description": "Request input is nested too deeply"},
                                 400, NO_STORE)
        except Exception:  # noqa: BLE001
            log.exception("unhandled error in %s", handler.__name__)
            return json_response({"error": "server_error", "error_description": "Internal error"},
                                 500, NO_STORE)

    return _translation("oauth", wrapper)


def unavailable_page() -> Response:
    """The browser's answer to an outage or a crash (SPEC §8)."""
    from chalicelib.login.pages import error_page

    return error_page(503, "Temporarily unavailable", "Please try again in a moment.")


def run_browser_route(name: str, run: Callable[[], Response],
                      unavailable: Callable[[], Response] = unavailable_page) -> Response:
    """Run a browser route: a domain error or a crash is logged (no internals in the page) and
    answered with ``unavailable()`` — the 503 page unless the route knows a better answer."""
    try:
        return run()
    except ApiError as exc:
        if exc.status == 503:
            log.warning("%s failed: %s", name, exc.error_code)
        else:
            log.error("%s failed: %s", name, exc.error_code)
    except Exception:  # noqa: BLE001 - no internals in a browser response
        log.exception("%s crashed", name)
    return unavailable()


def handles_browser_errors(handler: Callable) -> Callable:
    """Browser (HTML) routes: outages and crashes become the 503 page (:func:`run_browser_route`)."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        return run_browser_route(handler.__name__, lambda: handler(*args, **kwargs))

    return _translation("browser", wrapper)


def browser_route(handler: Callable) -> Callable:
    """Marks a browser route whose handler calls :func:`run_browser_route` itself (because its
    outage answer depends on what the request had established, e.g. ``/authorize``)."""
    return _translation("browser", handler)
