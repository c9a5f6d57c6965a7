"""The admin console (``/admin``: static files from chalicelib/static/), the Try flow
(``/api/v2/connections/{id}/try`` and ``/login/try/...``) and the ``make run`` demo (``/demo``).

The console is a static page with no build step: it signs in with a management client's
credentials (kept in memory only) and calls the Management API from the browser. Its CSP allows
scripts and styles from the broker only (``script-src 'self'``), fetches to the broker only.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from chalice import Blueprint, Response

from chalicelib.api.http import NO_STORE, handles_api_errors, json_response, query_params

bp = Blueprint(__name__)
log = logging.getLogger("broker")

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"admin.js": "text/javascript; charset=utf-8", "admin.css": "text/css; charset=utf-8",
          "apis.js": "text/javascript; charset=utf-8"}
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
               "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
CONSOLE_HEADERS = {
    "Content-Security-Policy": CONSOLE_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_cache: dict[str, bytes] = {}


def _static(name: str) -> bytes:
    if name not in _cache:
        _cache[name] = (STATIC / name).read_bytes()
    return _cache[name]


def _single(name: str) -> str | None:
    values = query_params(bp.current_request).get(name) or []
    return values[0] if len(values) == 1 else None


def _cookie(name: str) -> str | None:
    from chalicelib.login.pages import read_cookies

    return read_cookies(bp.current_request.headers.get("cookie")).get(name)


def _browser_route(handler):
    """No internals in a browser response: outages become a 503 page."""
    import functools

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        from chalicelib.errors import ApiError
        from chalicelib.login.pages import error_page

        try:
            return handler(*args, **kwargs)
        except ApiError as exc:
            log.warning("%s failed: %s", handler.__name__, exc.error_code)
        except Exception:  # noqa: BLE001
            log.exception("%s crashed", handler.__name__)
        return error_page(503, "Temporarily unavailable", "Please try again in a moment.")

    return wrapper


# --- the console -------------------------------------------------------------------------------

@bp.route("/admin", methods=["GET"])
def admin_console():
    return Response(body=_static("admin.html").decode("utf-8"), status_code=200,
                    headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                             **CONSOLE_HEADERS})


@bp.route("/admin/{asset}", methods=["GET"])
def admin_asset(asset):
    if asset not in ASSETS:
        return Response(body="Not found", status_code=404,
                        headers={"Content-Type": "text/plain; charset=utf-8", **CONSOLE_HEADERS})
    return Response(body=_static(asset).decode("utf-8"), status_code=200,
                    headers={"Content-Type": ASSETS[asset], "Cache-Control": "no-cache",
                             **CONSOLE_HEADERS})


# --- Try ---------------------------------------------------------------------------------------

@bp.route("/api/v2/connections/{connection_id}/try", methods=["GET"])
@handles_api_errors
def try_connection(connection_id):
    from chalicelib.login.try_connection import create_ticket
    from chalicelib.management import auth

    caller = auth.authenticate(bp.current_request.headers.get("authorization"))
    # It enables the built-in try application on the connection: a write, so update:connections.
    auth.require(caller, "read:connections", "update:connections")
    url = create_ticket(connection_id, int(time.time()))
    return json_response({"url": url}, 200, NO_STORE)


@bp.route("/login/try", methods=["GET"])
@_browser_route
def try_start():
    from chalicelib.login.try_connection import start_try

    return start_try(_single("ticket"), int(time.time()))


@bp.route("/login/try/callback", methods=["GET"])
@_browser_route
def try_callback():
    from chalicelib.login.try_connection import TRY, finish

    params = {k: v[0] for k, v in query_params(bp.current_request).items() if len(v) == 1}
    return finish(TRY, params, _cookie(TRY.cookie), int(time.time()))


@bp.route("/login/try/result", methods=["GET"])
@_browser_route
def try_result():
    from chalicelib.login.try_connection import TRY, show

    return show(TRY, _single("id"), _cookie(TRY.cookie), int(time.time()))


# --- the make run demo -------------------------------------------------------------------------

@bp.route("/demo", methods=["GET"])
@_browser_route
def demo_start():
    from chalicelib.login.try_connection import start_demo

    return start_demo(int(time.time()))


@bp.route("/demo/callback", methods=["GET"])
@_browser_route
def demo_callback():
    from chalicelib.login.pages import error_page
    from chalicelib.login.try_connection import DEMO, demo_enabled, finish

    if not demo_enabled():
        return error_page(404, "Not found", "The demo is not set up.")
    params = {k: v[0] for k, v in query_params(bp.current_request).items() if len(v) == 1}
    return finish(DEMO, params, _cookie(DEMO.cookie), int(time.time()))


@bp.route("/demo/result", methods=["GET"])
@_browser_route
def demo_result():
    from chalicelib.login.pages import error_page
    from chalicelib.login.try_connection import DEMO, demo_enabled, show

    if not demo_enabled():
        return error_page(404, "Not found", "The demo is not set up.")
    return show(DEMO, _single("id"), _cookie(DEMO.cookie), int(time.time()))
