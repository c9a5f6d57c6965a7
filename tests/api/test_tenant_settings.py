"""SPEC §2.4 tenant settings: validation (each refusal changes nothing), Auth0 round trips, and
the settings the broker acts on: session lifetimes (cookie Max-Age, idle expiry), the default
audience at /authorize, and the login page's languages."""
from __future__ import annotations

import base64
import json
import uuid

import pytest

from tests.conftest import token_with_scopes
from tests.support.fake_idp import connection_body
from tests.support.flow import (
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
    token_request,
)

URL = "/api/v2/tenants/settings"
APP_CALLBACK = "https://app.example.com/callback"


def _reset():
    from chalicelib.management.tenant_settings import forget_cached_tenant_settings
    from chalicelib.store import tenant

    tenant.delete()
    forget_cached_tenant_settings()


@pytest.fixture(autouse=True)
def defaults(aws_endpoint):
    """The settings are one item for the whole deployment: every test starts and ends on the
    defaults, so no other test sees them changed."""
    _reset()
    yield
    _reset()


@pytest.fixture()
def setup(api, idp):
    web = api.call("POST", "/api/v2/clients", body={
        "name": "tenant-web", "app_type": "regular_web", "callbacks": [APP_CALLBACK]}).data
    connection = api.call("POST", "/api/v2/connections", body={**connection_body(
        idp, f"tenant-{uuid.uuid4().hex[:6]}", channel="back",
        enabled_clients=[web["client_id"]]), "show_as_button": True})
    assert connection.status_code == 201, connection.data
    yield {"web": web, "connection": connection.data}
    api.call("DELETE", f"/api/v2/connections/{connection.data['id']}")
    api.call("DELETE", f"/api/v2/clients/{web['client_id']}")


def _login(client, setup, **extra):
    verifier, challenge = pkce_pair()
    browser = Browser(client)
    start = browser.get(authorize_path(
        client_id=setup["web"]["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        state="s", nonce="n", code_challenge=challenge, code_challenge_method="S256",
        connection=setup["connection"]["name"], **{"scope": "openid", **extra}))
    assert start.status_code == 302, start.body
    callback = deliver_callback(browser, *idp_login(start.headers["Location"]))
    code = location_params(callback)["code"]
    return browser, callback, code, verifier


def _session_cookie(response) -> str:
    raw = response.headers.get("Set-Cookie")
    headers = raw if isinstance(raw, list) else [raw]
    [found] = [h for h in headers if h.startswith("broker_session=")]
    return found


def _claims(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))


# --------------------------------------------------------------------------- the API

def test_defaults(api):
    got = api.call("GET", URL)
    assert got.status_code == 200, got.data
    assert got.data == {"session_lifetime": 168, "idle_session_lifetime": 72,
                        "enabled_locales": ["en", "fr"]}


def test_patch_round_trips_and_echoes_inert_fields(api):
    audience = api.call("POST", "/api/v2/resource-servers", body={
        "identifier": f"https://tenant-{uuid.uuid4().hex[:8]}.example.com/"}).data
    body = {
        "friendly_name": "Example Corp", "picture_url": "https://cdn.example.com/logo.png",
        "support_email": "help@example.com", "support_url": "https://example.com/support",
        "session_lifetime": 24, "idle_session_lifetime": 1.5,
        "default_audience": audience["identifier"], "enabled_locales": ["fr", "en"],
        "default_redirection_uri": "https://app.example.com/login",
        # inert: what the Deploy CLI and Terraform send
        "flags": {"enable_client_connections": False, "disable_clickjack_protection_headers":
                  False},
        "universal_login": {"colors": {"primary": "#0059d6"}},
        "error_page": {"html": "<p>oops</p>", "show_log_link": False, "url": ""},
        "device_flow": {"charset": "base20", "mask": "****-****"},
        "sandbox_version": "18", "session_cookie": {"mode": "persistent"},
        "allowed_logout_urls": ["https://example.com/bye"], "default_directory": "",
    }
    patched = api.call("PATCH", URL, body=body)
    assert patched.status_code == 200, patched.data
    got = api.call("GET", URL).data
    assert got == patched.data == body
    again = api.call("PATCH", URL, body=got)  # GET → PATCH back: a 200 that changes nothing
    assert again.status_code == 200 and api.call("GET", URL).data == got
    selected = api.call("GET", URL + "?fields=friendly_name,flags").data
    assert selected == {"friendly_name": "Example Corp", "flags": body["flags"]}
    # The OpenAPI run does not fuzz this PATCH (it would change every later test's settings):
    # the answers are checked against the document here.
    import jsonschema

    from chalicelib.openapi_doc import document

    schemas = document()["components"]["schemas"]
    jsonschema.validate(got, schemas["TenantSettings"])
    jsonschema.validate(body, {**schemas["TenantSettingsPatch"], "$defs": schemas})
    api.call("DELETE", f"/api/v2/resource-servers/{audience['id']}")


def test_null_restores_a_default_and_removes_an_inert_field(api):
    api.call("PATCH", URL, body={"session_lifetime": 24, "sandbox_version": "18",
                                 "support_email": "a@example.com"})
    cleared = api.call("PATCH", URL, body={"session_lifetime": None, "sandbox_version": None,
                                           "support_email": ""})
    assert cleared.status_code == 200, cleared.data
    assert cleared.data == {"session_lifetime": 168, "idle_session_lifetime": 72,
                            "enabled_locales": ["en", "fr"]}


BAD = [
    ({"nope": 1}, "Additional properties not allowed: nope"),
    ({"session_lifetime_in_minutes": 60}, "Additional properties not allowed"),
    ({"friendly_name": "<b>x</b>"}, "friendly_name"),
    ({"friendly_name": "x" * 256}, "friendly_name"),
    ({"picture_url": "http://cdn.example.com/logo.png"}, "picture_url must use https"),
    ({"picture_url": "javascript:alert(1)"}, "picture_url"),
    ({"picture_url": "https://cdn.example.com/\r\nlogo.png"}, "control characters"),
    ({"support_url": "https://user@example.com/"}, "support_url"),
    ({"default_redirection_uri": "https://app.example.com/#x"}, "fragment"),
    ({"support_email": "not-an-email"}, "support_email"),
    ({"support_email": "a@b@example.com"}, "support_email"),
    ({"session_lifetime": 0}, "session_lifetime"),
    ({"session_lifetime": 8761}, "session_lifetime"),
    ({"session_lifetime": "24"}, "session_lifetime"),
    ({"session_lifetime": True}, "session_lifetime"),
    ({"idle_session_lifetime": 0.5}, "idle_session_lifetime"),
    ({"idle_session_lifetime": 2401}, "idle_session_lifetime"),
    ({"default_audience": "https://unregistered.example.com/"}, "default_audience"),
    ({"default_audience": "http://127.0.0.1:8000/api/v2/"}, "default_audience"),
    ({"enabled_locales": ["de"]}, "enabled_locales"),
    ({"enabled_locales": []}, "enabled_locales"),
    ({"enabled_locales": ["en", "en"]}, "enabled_locales"),
    ({"flags": {"disable_clickjack_protection_headers": True}}, "disable_clickjack"),
    ({"flags": {"allow_legacy_ro_grant_types": True}}, "allow_legacy_ro_grant_types"),
    ({"flags": {"x": "yes"}}, "flags.x"),
    ({"error_page": {"html": "x" * 40000}}, "error_page is larger than 32 KB"),
    ({"sandbox_version": "1" * 17}, "sandbox_version"),
    ({"allowed_logout_urls": ["https://example.com/"] * 101}, "allowed_logout_urls"),
]


@pytest.mark.parametrize("body,needle", BAD, ids=[next(iter(b)) for b, _ in BAD])
def test_bad_values_are_refused_and_change_nothing(api, body, needle):
    before = api.call("GET", URL).data
    refused = api.call("PATCH", URL, body=body)
    assert refused.status_code == 400, refused.data
    assert refused.data["errorCode"] == "invalid_body" and needle in refused.data["message"], \
        refused.data
    assert api.call("GET", URL).data == before


def test_scopes(client, api):
    reader = token_with_scopes(client, "read:tenant_settings")
    other = token_with_scopes(client, "read:clients")
    assert api.call("GET", URL, token=other).status_code == 403
    assert api.call("GET", URL, token=reader).status_code == 200
    refused = api.call("PATCH", URL, body={"friendly_name": "x"}, token=reader)
    assert refused.status_code == 403 and refused.data["errorCode"] == "insufficient_scope"
    assert api.call("GET", URL, token=None).status_code == 401
    assert "friendly_name" not in api.call("GET", URL).data


# --------------------------------------------------------------------------- what they drive

def test_session_lifetimes_drive_the_cookie_and_the_idle_expiry(client, api, setup):
    from chalicelib import sessions
    from chalicelib.store import sessions as session_records
    from chalicelib.store.dynamo import table

    _, callback, _, _ = _login(client, setup)
    assert "Max-Age=604800;" in _session_cookie(callback)  # the default: 168 h

    assert api.call("PATCH", URL, body={"session_lifetime": 2,
                                        "idle_session_lifetime": 1}).status_code == 200
    browser, callback, _, _ = _login(client, setup)
    assert "Max-Age=7200;" in _session_cookie(callback)
    cookie = browser.cookies["broker_session"]
    item = table().get(*session_records.key(cookie.split('.')[0]))
    now = item["updated_at"]
    assert item["expires_at"] == now + 7200 and item["idle_expires_at"] == now + 3600
    session = sessions.session_from_cookie(cookie, now + 3599)
    assert session is not None
    assert sessions.session_from_cookie(cookie, now + 3600) is None  # idle for an hour: over
    # Single sign-on slides the idle expiry by the tenant's idle lifetime, never past the end.
    touch = sessions.session_touch_operation(session, "c", "g", now + 3000)
    assert touch.transact_item()["Update"]["ExpressionAttributeValues"][":idle"] == now + 3000 + 3600
    touch = sessions.session_touch_operation(session, "c", "g", now + 6000)
    assert touch.transact_item()["Update"]["ExpressionAttributeValues"][":idle"] == now + 7200


def test_default_audience_is_used_when_authorize_has_none(client, api, setup):
    server = api.call("POST", "/api/v2/resource-servers", body={
        "identifier": f"https://default-{uuid.uuid4().hex[:8]}.example.com/",
        "scopes": [{"value": "read:things"}]}).data
    assert api.call("PATCH", URL, body={"default_audience": server["identifier"]}
                    ).status_code == 200
    _, _, code, verifier = _login(client, setup, scope="openid read:things")
    tokens = token_request(client, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": APP_CALLBACK,
        "client_id": setup["web"]["client_id"], "client_secret": setup["web"]["client_secret"],
        "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.data
    claims = _claims(tokens.data["access_token"])
    assert claims["aud"] == server["identifier"] or server["identifier"] in claims["aud"]
    assert "read:things" in claims["scope"].split()
    # Once the API is deleted, the stale default is ignored: logins go on without an audience.
    api.call("DELETE", f"/api/v2/resource-servers/{server['id']}")
    _, _, code, verifier = _login(client, setup)
    assert code


def _page_language(client, setup, **headers_and_params) -> str:
    accept = headers_and_params.pop("accept_language", None)
    response = client.http.get(authorize_path(
        client_id=setup["web"]["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid", state="s", **headers_and_params),
        headers={"Accept-Language": accept} if accept else {})
    assert response.status_code == 200, response.body
    return response.headers["Content-Language"]


def test_enabled_locales_restrict_the_login_page(client, api, setup):
    assert _page_language(client, setup, accept_language="fr-FR,fr;q=0.9") == "fr"
    assert api.call("PATCH", URL, body={"enabled_locales": ["en"]}).status_code == 200
    assert _page_language(client, setup, accept_language="fr-FR,fr;q=0.9") == "en"
    assert _page_language(client, setup, ui_locales="fr") == "en"
    assert api.call("PATCH", URL, body={"enabled_locales": ["fr"]}).status_code == 200
    assert _page_language(client, setup, accept_language="en-GB") == "fr"  # the first enabled
