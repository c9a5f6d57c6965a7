"""The admin console: ``/admin`` and ``/admin/{asset}``, static files from chalicelib/static/.

The console is a static page with no build step: it signs in with a management client's
credentials (kept in memory only) and calls the Management API from the browser. Its CSP allows
scripts and styles from the broker only (``script-src 'self'``, no inline script or style, no
eval), fetches to the broker only; the Activity view's chart is SVG the console's own script
draws (colours as SVG attributes and classes, so ``style-src`` stays ``'self'``).
"""
from __future__ import annotations

from pathlib import Path

from chalice import Blueprint, Response

bp = Blueprint(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
_SCRIPT = "text/javascript; charset=utf-8"
# In the order admin.html loads them: i18n.js first (the console's words), admin.js (sign-in, the
# token, the connections and applications), then the views.
ASSETS = {"i18n.js": _SCRIPT, "admin.js": _SCRIPT, "apis.js": _SCRIPT, "chart.js": _SCRIPT,
          "activity.js": _SCRIPT, "users.js": _SCRIPT, "admin.css": "text/css; charset=utf-8"}
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
