"""Browser routes of the Try flow (``/login/try``, ``/login/try/callback``, ``/login/try/result``)
and of the ``make run`` demo (``/demo``, ``/demo/callback``, ``/demo/result``); the logic is
chalicelib/login/try_connection.py. The Management API route that starts a Try
(``/api/v2/connections/{id}/try``) is in management_connections.py.
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib import clock
from chalicelib.api.http import handles_browser_errors, query_params

bp = Blueprint(__name__)


def _single(name: str) -> str | None:
    values = query_params(bp.current_request).get(name) or []
    return values[0] if len(values) == 1 else None


def _cookie(name: str) -> str | None:
    from chalicelib.login.pages import read_cookies

    return read_cookies(bp.current_request.headers.get("cookie")).get(name)


def _single_params() -> dict[str, str]:
    return {k: v[0] for k, v in query_params(bp.current_request).items() if len(v) == 1}


# --- Try ---------------------------------------------------------------------------------------

@bp.route("/login/try", methods=["GET"])
@handles_browser_errors
def try_start():
    from chalicelib.login.try_connection import start_try

    return start_try(_single("ticket"), clock.now_int())


@bp.route("/login/try/callback", methods=["GET"])
@handles_browser_errors
def try_callback():
    from chalicelib.login.try_connection import TRY, finish

    return finish(TRY, _single_params(), _cookie(TRY.cookie), clock.now_int())


@bp.route("/login/try/result", methods=["GET"])
@handles_browser_errors
def try_result():
    from chalicelib.login.try_connection import TRY, show

    return show(TRY, _single("id"), _cookie(TRY.cookie), clock.now_int())


# --- the make run demo -------------------------------------------------------------------------

@bp.route("/demo", methods=["GET"])
@handles_browser_errors
def demo_start():
    from chalicelib.login.try_connection import start_demo

    return start_demo(clock.now_int())


@bp.route("/demo/callback", methods=["GET"])
@handles_browser_errors
def demo_callback():
    from chalicelib.login.pages import error_page
    from chalicelib.login.try_connection import DEMO, demo_enabled, finish

    if not demo_enabled():
        return error_page(404, "Not found", "The demo is not set up.")
    return finish(DEMO, _single_params(), _cookie(DEMO.cookie), clock.now_int())


@bp.route("/demo/result", methods=["GET"])
@handles_browser_errors
def demo_result():
    from chalicelib.login.pages import error_page
    from chalicelib.login.try_connection import DEMO, demo_enabled, show

    if not demo_enabled():
        return error_page(404, "Not found", "The demo is not set up.")
    return show(DEMO, _single("id"), _cookie(DEMO.cookie), clock.now_int())
