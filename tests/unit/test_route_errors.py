"""One error translation per kind of route (chalicelib/api/http.py): every route of the app is
wrapped by its kind's translation, and each translation answers domain errors, outages and crashes
with its documented shape."""
from __future__ import annotations

import json

import pytest

from chalicelib.api import http
from chalicelib.errors import InvalidBody, NotFound, OAuthError, ServiceUnavailable, TooLarge

# Routes that translate nothing: CORS preflights and the console's static files cannot fail on a
# dependency; Global Token Revocation answers with the draft's own bodies (chalicelib/logout/gtr.py).
UNTRANSLATED = {"/admin", "/admin/{asset}",
                "/oauth/global-token-revocation/connection/{connection_name}"}
BROWSER = ("/authorize", "/login/", "/oidc/logout", "/v2/logout", "/demo")
OAUTH = ("/oauth/token", "/oauth/revoke", "/userinfo", "/.well-known/")


def expected_kind(path: str) -> str:
    if path.startswith("/api/v2/") or path == "/oauth/connection/{name}/.well-known/jwks.json":
        return "management"
    if path.startswith("/login/backchannel-logout/"):
        return "oauth"  # server to server (the IdP's logout tokens), under /login/ all the same
    if path.startswith(BROWSER):
        return "browser"
    if path.startswith(OAUTH):
        return "oauth"
    raise AssertionError(f"{path}: which kind of route is it?")


def routes():
    import app

    for path, entry in sorted(app.app.routes.items()):
        for method, route in sorted(entry.items()):
            if method != "OPTIONS" and path not in UNTRANSLATED:
                yield path, method, route.view_function


def test_every_route_uses_the_translation_of_its_kind():
    found = {(path, method): getattr(view, "error_translation", None)
             for path, method, view in routes()}
    assert len(found) > 60
    wrong = {route: kind for route, kind in found.items() if kind != expected_kind(route[0])}
    assert wrong == {}


def _call(translation, error: BaseException):
    def handler():
        raise error

    response = translation(handler)()
    body = response.body
    if response.headers.get("Content-Type", "").startswith("application/json"):
        body = json.loads(body)
    return response.status_code, body, response.headers


def test_management_translation_keeps_auth0s_body():
    assert _call(http.handles_api_errors, ServiceUnavailable("A dependency is down"))[:2] == (
        503, {"statusCode": 503, "error": "Service Unavailable", "message": "A dependency is down",
              "errorCode": "temporarily_unavailable"})
    status, body, headers = _call(http.handles_api_errors, NotFound("nope", error_code="x"))
    assert (status, body["errorCode"]) == (404, "x") and "WWW-Authenticate" not in headers
    from chalicelib.errors import InvalidToken

    status, _, headers = _call(http.handles_api_errors, InvalidToken("bad"))
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert _call(http.handles_api_errors, RecursionError())[:2] == (
        400, InvalidBody("Request input is nested too deeply").body())
    assert _call(http.handles_api_errors, KeyError("internal detail"))[:2] == (
        500, {"statusCode": 500, "error": "Internal Server Error", "message": "Internal error",
              "errorCode": "internal_error"})


def test_oauth_translation_keeps_rfc_6749s_body():
    status, body, headers = _call(http.handles_oauth_errors, ServiceUnavailable("down"))
    assert (status, body) == (503, {"error": "temporarily_unavailable",
                                    "error_description": "down"})
    assert headers["Cache-Control"] == "no-store" and headers["Pragma"] == "no-cache"
    status, body, headers = _call(http.handles_oauth_errors, OAuthError(
        "invalid_client", "who?", 401, {"WWW-Authenticate": "Basic"}))
    assert (status, body, headers["WWW-Authenticate"]) == (
        401, {"error": "invalid_client", "error_description": "who?"}, "Basic")
    assert _call(http.handles_oauth_errors, TooLarge("big"))[:2] == (
        413, {"error": "invalid_request", "error_description": "big"})
    assert _call(http.handles_oauth_errors, NotFound("x"))[:2] == (
        500, {"error": "server_error", "error_description": "Internal error"})
    assert _call(http.handles_oauth_errors, RecursionError())[:2] == (
        400, {"error": "invalid_request", "error_description": "Request input is nested too deeply"})
    assert _call(http.handles_oauth_errors, KeyError("internal detail"))[:2] == (
        500, {"error": "server_error", "error_description": "Internal error"})


@pytest.mark.parametrize("error", [ServiceUnavailable("s3cr3t-down"), NotFound("s3cr3t"),
                                   KeyError("s3cr3t-detail")])
def test_browser_translation_answers_the_503_page(error):
    status, body, headers = _call(http.handles_browser_errors, error)
    assert status == 503 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Temporarily unavailable" in body and "s3cr3t" not in body
    assert headers["Cache-Control"] == "no-store"


def test_a_browser_route_may_answer_an_outage_its_own_way():
    def run():
        raise ServiceUnavailable("down")

    assert http.run_browser_route("authorize", run, lambda: "back to the app") == "back to the app"
