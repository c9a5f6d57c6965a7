"""SPEC §9 log events of the login and token flows, through the Lambda handler with a scriptable
upstream IdP: ``s`` / ``f`` at the callback, ``seacft`` / ``feacft``, ``sertft`` / ``fertft``,
``seccft`` / ``feccft`` and ``limit_wc`` at ``/oauth/token``; read back from the store.

The table is shared with every other test: each test reads only the events stored since it
started that name what it created (its application, its connection, its user). Every event read
is checked to hold none of the flow's credentials (upstream state, codes, tokens, secrets)."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from urllib.parse import quote

import pytest

from chalicelib.errors import ServiceUnavailable
from chalicelib.login.transactions import binding_cookie_name
from chalicelib.provider import client_auth
from chalicelib.store import log_events
from chalicelib.store.unit_of_work import Write
from tests.conftest import get_token
from tests.support.fake_idp import connection_body, rsa_key
from tests.support.flow import (
    APP_CALLBACK,
    Browser,
    authorize,
    deliver_callback,
    location_params,
    token_request,
    upstream_answer,
)


@pytest.fixture()
def setup(idp, make_app, add_connection):
    suffix = uuid.uuid4().hex[:6]
    apps = {kind: make_app(f"events-{kind}", app_type)
            for kind, app_type in (("web", "regular_web"), ("spa", "spa"))}
    enabled = [a["client_id"] for a in apps.values()]
    connections = {channel: add_connection(connection_body(
        idp, f"ev{channel}-{suffix}", channel=channel, enabled_clients=enabled))
        for channel in ("back", "front")}
    return {**apps, **connections, "secrets": []}


# --------------------------------------------------------------------------- reading events

def _stored_since(start_ms: int, match: Callable[[dict], bool]) -> list[dict]:
    """Events stored since ``start_ms`` for which ``match`` holds, newest first."""
    found = []
    for event in log_events.newest_first(log_events.days_back(time.time(), 1)):
        if int(event["log_id"][3:19]) < start_ms - 2000:
            break
        if match(event):
            found.append(event)
    return found


class Events:
    """This test's events; each one read is checked for the flow's credentials."""

    def __init__(self, setup):
        self.start = int(time.time() * 1000)
        self.secrets: list[str] = setup["secrets"]
        self.ours = {setup["web"]["client_id"], setup["spa"]["client_id"],
                     setup["back"]["name"], setup["front"]["name"]}

    def of(self, type_: str, **fields) -> list[dict]:
        def match(event):
            named = {event.get("client_id"), event.get("connection")} & self.ours
            return (event["type"] == type_ and bool(named)
                    and all(event.get(k) == v for k, v in fields.items()))

        found = _stored_since(self.start, match)
        for event in found:
            assert_clean(event, self.secrets)
        return found

    def one(self, type_: str, **fields) -> dict:
        found = self.of(type_, **fields)
        assert len(found) == 1, found
        return found[0]


def assert_clean(event: dict, secrets: list[str]) -> None:
    text = json.dumps(event, sort_keys=True)
    for secret in secrets:
        if secret:
            assert secret not in text, (secret, text)


@pytest.fixture()
def events(setup):
    return Events(setup)


# --------------------------------------------------------------------------- flows

def start(client, setup, app, connection, browser=None, scope="openid profile email"):
    """/authorize → the IdP → its answer: (browser, method, callback params, app verifier)."""
    browser = browser or Browser(client)
    method, params, verifier = upstream_answer(browser, app, connection, scope=scope,
                                               state="app-state", nonce="app-nonce")
    setup["secrets"] += [params.get("state"), params.get("code"), params.get("id_token"),
                         verifier, *browser.cookies.values()]
    return browser, method, params, verifier


def login(client, setup, app, connection, **kwargs):
    browser, method, params, verifier = start(client, setup, app, connection, **kwargs)
    response = deliver_callback(browser, method, params)
    setup["secrets"] += list(browser.cookies.values())
    return browser, response, verifier


def signed_in(client, setup, app, connection, **kwargs) -> tuple[str, str]:
    _, response, verifier = login(client, setup, app, connection, **kwargs)
    assert response.status_code == 303, response.body
    params = location_params(response)
    assert "code" in params, params
    setup["secrets"].append(params["code"])
    return params["code"], verifier


def exchange(client, setup, app, code, verifier, **extra):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP_CALLBACK,
            "client_id": app["client_id"], "code_verifier": verifier, **extra}
    if app.get("client_secret") and "client_secret" not in extra:
        form["client_secret"] = app["client_secret"]
    response = token_request(client, form)
    setup["secrets"] += [(response.data or {}).get(name)
                         for name in ("access_token", "refresh_token", "id_token")]
    return response


def refresh(client, setup, app, refresh_token):
    response = token_request(client, {"grant_type": "refresh_token", "client_id": app["client_id"],
                                      "refresh_token": refresh_token})
    setup["secrets"] += [(response.data or {}).get(name)
                         for name in ("access_token", "refresh_token", "id_token")]
    return response


def user_id(setup, channel="back", sub="alice") -> str:
    return f"oidc|{setup[channel]['name']}|{sub}"


def assert_app_error(response, error="access_denied") -> None:
    assert response.status_code == 303, response.body
    params = location_params(response)
    assert params["error"] == error and "code" not in params, params


# --------------------------------------------------------------------------- successes

def test_a_login_its_code_exchange_and_refresh_are_s_seacft_and_sertft(client, setup, events):
    app = setup["spa"]
    setup["secrets"] += [app.get("client_secret")]
    code, verifier = signed_in(client, setup, app, setup["back"],
                               scope="openid profile email offline_access")
    tokens = exchange(client, setup, app, code, verifier)
    assert tokens.status_code == 200, tokens.data
    assert refresh(client, setup, app, tokens.data["refresh_token"]).status_code == 200

    user = user_id(setup)
    for type_ in ("s", "seacft", "sertft"):
        event = events.one(type_, client_id=app["client_id"])
        assert event["connection"] == setup["back"]["name"]
        assert event["user_id"] == user and event["user_name"] == "alice@example.com"
        assert event["client_name"] == "events-spa"
    login_event = events.one("s", client_id=app["client_id"])
    assert login_event["connection_id"] == setup["back"]["id"]
    assert login_event["details"]["silent"] is False
    # The user's own events, through the users index.
    mine = {e["type"] for e in log_events.of_user(user)}
    assert {"s", "seacft", "sertft"} <= mine


def test_single_sign_on_is_a_silent_s(client, setup, events):
    browser, response, _ = login(client, setup, setup["web"], setup["back"])
    assert "code" in location_params(response)
    silent, _ = authorize(browser, setup["spa"], setup["back"], scope="openid", state="again",
                          prompt="none")
    assert silent.status_code == 302 and "code" in location_params(silent), silent.headers
    setup["secrets"].append(location_params(silent)["code"])
    event = events.one("s", client_id=setup["spa"]["client_id"])
    assert event["details"]["silent"] is True and event["details"]["prompt"] == "none"
    assert event["user_id"] == user_id(setup) and event["connection"] == setup["back"]["name"]


# --------------------------------------------------------------------------- failed logins

def test_a_bad_state_is_an_f_naming_the_state_and_the_callbacks_connection(client, setup, events):
    browser, method, params, _ = start(client, setup, setup["web"], setup["back"])
    real_state = params["state"]
    binding = browser.cookies.pop(binding_cookie_name(real_state))
    # The right state without its binding cookie (another browser).
    assert deliver_callback(browser, method, params).status_code == 400
    # A forged state, with a binding cookie for it.
    forged = real_state[:-4] + "AAAA"
    browser.cookies[binding_cookie_name(forged)] = binding
    params["state"] = forged
    assert deliver_callback(browser, method, params).status_code == 400
    found = {e["details"]["check"]: e for e in events.of("f", connection=setup["back"]["name"])}
    assert set(found) == {"state", "binding_cookie"}, found
    for event in found.values():
        assert event["connection_id"] == setup["back"]["id"]
        assert "client_id" not in event and "user_id" not in event
    assert found["state"]["details"]["callback"] == "connection"
    assert_clean(found["state"], [forged, binding])


def test_an_iss_mismatch_is_an_f_naming_a_mix_up(client, setup, idp, events):
    idp.callback_extra = {"iss": "https://evil.example"}
    _, response, _ = login(client, setup, setup["web"], setup["back"])
    assert_app_error(response)
    event = events.one("f", client_id=setup["web"]["client_id"])
    assert event["connection"] == setup["back"]["name"]
    assert event["details"]["check"] == "iss_parameter" and event["details"]["mix_up"] is True
    assert event["details"]["error"] == "access_denied"


@pytest.mark.parametrize("check, id_token", [
    ("signature", lambda i, ctx: i.mint(i.claims(ctx), rsa_key("k1"))),
    ("aud", lambda i, ctx: i.mint(i.claims(ctx, aud="someone-else"))),
    ("nonce", lambda i, ctx: i.mint(i.claims(ctx, nonce="attacker-nonce"))),
])
def test_each_id_token_check_is_named_in_its_f(client, setup, idp, events, check, id_token):
    idp.id_token = id_token
    _, response, _ = login(client, setup, setup["web"], setup["front"])
    assert_app_error(response)
    event = events.one("f", client_id=setup["web"]["client_id"])
    assert event["details"]["check"] == check and event["details"]["validation"] == "id_token"
    assert event["connection"] == setup["front"]["name"]
    assert event["client_name"] == "events-web"
    assert f"({check})" in event["description"]


def test_an_upstream_error_is_an_f_with_its_code(client, setup, idp, events):
    idp.callback_extra = {"error": "access_denied", "error_description": "User said no\x07"}
    _, response, _ = login(client, setup, setup["web"], setup["back"])
    assert_app_error(response)
    event = events.one("f", client_id=setup["web"]["client_id"])
    assert event["details"]["check"] == "upstream_error"
    assert event["details"]["upstream_error"] == "access_denied"
    assert event["details"]["upstream_error_description"] == "User said no"
    assert event["connection"] == setup["back"]["name"]


def test_an_upstream_token_endpoint_failure_is_an_f(client, setup, idp, events):
    idp.token_handler = lambda i, form, ctx: (400, {"error": "invalid_grant"}, "application/json")
    _, response, _ = login(client, setup, setup["web"], setup["back"])
    assert_app_error(response)
    event = events.one("f", client_id=setup["web"]["client_id"])
    assert event["details"]["check"] == "upstream_token_endpoint"


def test_a_blocked_users_login_is_an_f_naming_the_user(client, api, setup, events):
    signed_in(client, setup, setup["web"], setup["back"])
    user = user_id(setup)
    blocked = api.call("PATCH", f"/api/v2/users/{quote(user, safe='')}", body={"blocked": True})
    assert blocked.status_code == 200, blocked.data
    _, response, _ = login(client, setup, setup["web"], setup["back"])
    assert_app_error(response)
    event = events.one("f", client_id=setup["web"]["client_id"])
    assert event["details"]["check"] == "blocked"
    assert event["user_id"] == user and event["user_name"] == "alice@example.com"
    assert len(events.of("s", client_id=setup["web"]["client_id"])) == 1


# --------------------------------------------------------------------------- the token endpoint

def test_code_replay_and_pkce_failure_are_feacft(client, setup, events):
    app = setup["web"]
    code, verifier = signed_in(client, setup, app, setup["back"])
    assert exchange(client, setup, app, code, "A" * 43).status_code == 400  # PKCE
    assert exchange(client, setup, app, code, verifier).status_code == 200
    assert exchange(client, setup, app, code, verifier).status_code == 400  # replay
    found = {e["details"]["check"]: e for e in events.of("feacft", client_id=app["client_id"])}
    assert set(found) == {"pkce", "code_reuse"}, found
    assert found["pkce"]["details"]["error"] == "invalid_grant"
    assert found["code_reuse"]["details"]["grant_revoked"] is True
    for event in found.values():
        assert event["user_id"] == user_id(setup)
        assert event["connection"] == setup["back"]["name"]


def test_refresh_token_reuse_is_an_fertft_saying_the_family_was_revoked(client, setup, events):
    app = setup["spa"]
    code, verifier = signed_in(client, setup, app, setup["back"], scope="openid offline_access")
    first = exchange(client, setup, app, code, verifier).data["refresh_token"]
    assert refresh(client, setup, app, first).status_code == 200
    assert refresh(client, setup, app, first).status_code == 400
    event = events.one("fertft", client_id=app["client_id"])
    assert event["details"]["check"] == "reuse" and event["details"]["family_revoked"] is True
    assert event["user_id"] == user_id(setup)


def test_invalid_client_is_the_failure_of_the_grant_asked_for(client, setup, events):
    app = setup["web"]
    wrong = "wrong-" + uuid.uuid4().hex
    setup["secrets"].append(wrong)
    code, verifier = signed_in(client, setup, app, setup["back"])
    refused = exchange(client, setup, app, code, verifier, client_secret=wrong)
    assert refused.status_code == 401 and refused.data["error"] == "invalid_client"
    grant = token_request(client, {"grant_type": "client_credentials", "audience": "x",
                                   "client_id": app["client_id"], "client_secret": wrong})
    assert grant.status_code == 401
    for type_ in ("feacft", "feccft"):
        event = events.one(type_, client_id=app["client_id"])
        assert event["details"]["error"] == "invalid_client"
        assert "user_id" not in event


def _machine(api, setup, granted: bool) -> tuple[dict, str]:
    audience = f"https://api-{uuid.uuid4().hex[:8]}.example.com/"
    machine = api.call("POST", "/api/v2/clients", body={"name": "events-machine",
                                                        "app_type": "non_interactive"}).data
    setup["secrets"].append(machine["client_secret"])
    server = api.call("POST", "/api/v2/resource-servers", body={
        "identifier": audience, "scopes": [{"value": "read:x"}]})
    assert server.status_code == 201, server.data
    if granted:
        grant = api.call("POST", "/api/v2/client-grants", body={
            "client_id": machine["client_id"], "audience": audience, "scope": ["read:x"]})
        assert grant.status_code == 201, grant.data
    return machine, audience


def test_client_credentials_seccft_and_an_ungranted_audience_feccft(client, api, setup):
    granted, audience = _machine(api, setup, granted=True)
    ungranted, other = _machine(api, setup, granted=False)
    events = Events(setup)
    events.ours |= {granted["client_id"], ungranted["client_id"]}
    ok = get_token(client, granted["client_id"], granted["client_secret"], audience=audience)
    assert ok.status_code == 200, ok.body
    setup["secrets"].append(json.loads(ok.body)["access_token"])
    denied = get_token(client, ungranted["client_id"], ungranted["client_secret"], audience=other)
    assert denied.status_code == 403, denied.body
    success = events.one("seccft", client_id=granted["client_id"])
    assert success["details"] == {"audience": audience, "scope": "read:x"}
    failure = events.one("feccft", client_id=ungranted["client_id"])
    assert failure["details"]["check"] == "client_grant"
    assert failure["details"]["error"] == "access_denied"
    assert failure["details"]["audience"] == other
    assert failure["client_name"] == "events-machine"


def test_a_throttled_client_is_one_limit_wc_per_window(client, api, setup, monkeypatch):
    machine, audience = _machine(api, setup, granted=True)
    events = Events(setup)
    events.ours.add(machine["client_id"])
    monkeypatch.setattr(client_auth, "FAILURE_LIMIT", 2)
    setup["secrets"].append("wrong-secret")
    for _ in range(2):
        assert get_token(client, machine["client_id"], "wrong-secret",
                         audience=audience).status_code == 401
    for secret in ("wrong-secret", machine["client_secret"]):
        assert get_token(client, machine["client_id"], secret,
                         audience=audience).status_code == 429
    event = events.one("limit_wc", client_id=machine["client_id"])
    assert event["details"]["limit"] == 2 and event["details"]["failures"] >= 2
    # The throttled requests are not also counted as failed exchanges.
    assert len(events.of("feccft", client_id=machine["client_id"])) == 2


# --------------------------------------------------------------------------- log writes failing

def test_a_failing_log_write_changes_no_answer(client, api, setup, idp, monkeypatch, events):
    def unavailable(*args, **kwargs):
        raise ServiceUnavailable("DynamoDB is down for log events")

    monkeypatch.setattr(log_events, "put", unavailable)
    idp.callback_extra = {"error": "access_denied"}
    _, response, _ = login(client, setup, setup["web"], setup["back"])
    assert_app_error(response)
    machine, audience = _machine(api, setup, granted=True)
    ok = get_token(client, machine["client_id"], machine["client_secret"], audience=audience)
    assert ok.status_code == 200, ok.body
    denied = get_token(client, machine["client_id"], machine["client_secret"],
                       audience="https://nowhere.example.com/")
    assert denied.status_code == 403 and json.loads(denied.body)["error"] == "access_denied"
    assert events.of("f", client_id=setup["web"]["client_id"]) == []  # not stored, no harm


def test_a_failing_ridden_log_write_still_signs_the_user_in(client, setup, monkeypatch, events):
    """A log event DynamoDB refuses (here: over its 400 KB item limit) makes the transaction it
    rides in fail; the login is then written without it."""
    monkeypatch.setattr(log_events, "put_operation", lambda event, expires_at: Write.put(
        {"pk": "LOGS#oversized", "sk": event["log_id"], "pad": "x" * 500_000}))
    app = setup["web"]
    code, verifier = signed_in(client, setup, app, setup["back"])
    tokens = exchange(client, setup, app, code, verifier)
    assert tokens.status_code == 200, tokens.data
    assert events.of("s", client_id=app["client_id"]) == []
    assert events.of("seacft", client_id=app["client_id"]) == []
