"""SPEC §8 abuse: random and hostile input on every public route never yields a 5xx or a
traceback. Bounded and reproducible: hypothesis with few examples, no deadline, derandomized.

Routes: ``/authorize``, ``/login/callback`` (GET and POST), ``/oauth/token``, ``/userinfo``,
Global Token Revocation, and the Management API (create client, update connection, list users,
create connection). Inputs: random parameters, JSON of any shape (huge, deeply nested), wrong
content types, binary bodies, odd headers; plus explicit worst cases (``@example``).
"""
from __future__ import annotations

import base64
import json
import uuid
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.resilience.helpers import APP_CALLBACK, GTR_PATH, TRACEBACK_MARKERS

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

# --------------------------------------------------------------------------- strategies

text = st.text(max_size=40)
ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    text, inner, max_size=4), max_leaves=20)

DEEP_ARRAY = b"[" * 50_000 + b"]" * 50_000
DEEP_OBJECT = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
HUGE = json.dumps({"name": "x" * (400 * 1024)}).encode()
WIDE = json.dumps({f"k{i}": [i] * 10 for i in range(4000)}).encode()
BINARY = bytes(range(256)) * 8
special_bodies = st.sampled_from([DEEP_ARRAY, DEEP_OBJECT, HUGE, WIDE, BINARY, b"", b"null",
                                  b"\xff\xfe", b'{"a":1,"a":2}', b"[]", b"1e999999"])
bodies = special_bodies | json_values.map(lambda v: json.dumps(v).encode()) | st.binary(
    max_size=300)
content_types = st.sampled_from([
    "application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data",
    "application/octet-stream", "application/json; charset=utf-16", "application/merge-patch+json",
    "", "*/*", "application/x-www-form-urlencoded; charset=latin1"])

OIDC_PARAMS = ["client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
               "code_challenge", "code_challenge_method", "connection", "login_hint", "prompt",
               "max_age", "audience", "response_mode", "ui_locales", "id_token_hint"]
CALLBACK_PARAMS = ["state", "code", "id_token", "error", "error_description", "iss",
                   "session_state"]
TOKEN_PARAMS = ["grant_type", "code", "redirect_uri", "code_verifier", "client_id",
                "client_secret", "refresh_token", "scope", "audience", "client_assertion",
                "client_assertion_type"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def deep_jwt() -> str:
    """A JWT whose header nests 2,900 arrays deep (under every size limit)."""
    return _b64(b"[" * 2900 + b"]" * 2900) + "." + _b64(b"{}") + ".c2ln"


HOSTILE_TOKENS = [deep_jwt(), "a.b.c", "x" * 9000, _b64(b'{"alg":"none"}') + "." + _b64(b"{}") + ".",
                  "\u00e9\u00e8", "Bearer", ""]


def params_for(names: list[str]):
    keys = st.sampled_from(names) | st.text(min_size=1, max_size=12)
    values = st.text(max_size=80) | st.sampled_from(["", "openid", "code", "none", "login",
                                                      "S256", "plain", "-1", "99999999999999999999",
                                                      APP_CALLBACK, "x" * 5000])
    return st.dictionaries(keys, values, max_size=8)


# --------------------------------------------------------------------------- checks

def check(response) -> None:
    body = response.body or b""
    text_body = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    assert response.status_code < 500, (response.status_code, text_body[:300])
    for marker in TRACEBACK_MARKERS:
        assert marker not in text_body, text_body[:500]


def header_safe(value: str) -> str:
    return "".join(c for c in value if 0x20 <= ord(c) < 0x7F)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def targets(mapi, world):
    """A throwaway client and connection to PATCH (fuzzing may change them)."""
    victim = mapi.call("POST", "/api/v2/connections", body={
        "name": f"fuzz-{uuid.uuid4().hex[:8]}", "strategy": "oidc",
        "options": {"client_id": "c", "issuer": "http://127.0.0.1:9/",
                    "authorization_endpoint": "http://127.0.0.1:9/a",
                    "jwks_uri": "http://127.0.0.1:9/j"}})
    assert victim.status_code == 201, victim.data
    created: list[tuple[str, str]] = []
    yield {"connection": victim.data, "created": created}
    mapi.call("DELETE", f"/api/v2/connections/{victim.data['id']}")
    for kind, ident in created:
        mapi.call("DELETE", f"/api/v2/{kind}/{ident}")


# --------------------------------------------------------------------------- browser routes

@FUZZ
@given(params=params_for(OIDC_PARAMS), valid_client=st.booleans(), cookie=ascii_text)
@example(params={"client_id": "", "redirect_uri": APP_CALLBACK, "max_age": "1e400"},
         valid_client=True, cookie="broker_session=" + "a." * 3000)
def test_fuzz_authorize(mclient, world, params, valid_client, cookie):
    if valid_client:
        params = {"redirect_uri": APP_CALLBACK, "response_type": "code", "scope": "openid",
                  **params, "client_id": world["web"]["client_id"]}
    path = "/authorize?" + urlencode(params)
    check(mclient.http.get(path, headers={"Cookie": header_safe(cookie)}))


@FUZZ
@given(params=params_for(CALLBACK_PARAMS), method=st.sampled_from(["GET", "POST"]),
       raw=st.none() | bodies, content_type=content_types, cookie=ascii_text)
@example(params={"state": "s", "id_token": deep_jwt()}, method="POST", raw=None,
         content_type="application/x-www-form-urlencoded", cookie="broker_tx=abc")
def test_fuzz_login_callback(mclient, params, method, raw, content_type, cookie):
    headers = {"Cookie": header_safe(cookie)}
    if method == "GET":
        check(mclient.http.get("/login/callback?" + urlencode(params), headers=headers))
        return
    headers["Content-Type"] = content_type
    body = raw if raw is not None else urlencode(params).encode()
    check(mclient.http.post("/login/callback", headers=headers, body=body))


# --------------------------------------------------------------------------- OAuth routes

@FUZZ
@given(form=params_for(TOKEN_PARAMS), as_json=st.booleans(), raw=st.none() | bodies,
       content_type=content_types, authorization=st.none() | ascii_text | st.sampled_from(
           ["Basic " + _b64(b"\xff:\xfe"), "Basic !!!", "Basic " + _b64(b"a" * 300 + b":b"),
            "Bearer " + deep_jwt()]))
@example(form={}, as_json=True, raw=DEEP_OBJECT, content_type="application/json",
         authorization=None)
def test_fuzz_token(mclient, world, form, as_json, raw, content_type, authorization):
    headers = {"Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = header_safe(authorization)
    if raw is None:
        raw = json.dumps(form).encode() if as_json else urlencode(form).encode()
    check(mclient.http.post("/oauth/token", headers=headers, body=raw))


@FUZZ
@given(token=st.sampled_from(HOSTILE_TOKENS) | ascii_text, method=st.sampled_from(["GET", "POST"]),
       raw=st.none() | bodies, content_type=content_types, scheme=st.sampled_from(
           ["Bearer ", "bearer ", "Basic ", "", "Bearer  "]))
@example(token=deep_jwt(), method="GET", raw=None, content_type="", scheme="Bearer ")
def test_fuzz_userinfo(mclient, token, method, raw, content_type, scheme):
    headers = {"Authorization": header_safe(scheme + token)}
    if method == "GET":
        check(mclient.http.get("/userinfo", headers=headers))
        return
    headers["Content-Type"] = content_type
    body = raw if raw is not None else urlencode({"access_token": token}).encode()
    check(mclient.http.post("/userinfo", headers=headers, body=body))


@FUZZ
@given(name=st.sampled_from(["", "x", "front"]) | st.text(max_size=30), raw=bodies,
       content_type=content_types,
       token=st.sampled_from(HOSTILE_TOKENS) | ascii_text)
@example(name="front", raw=DEEP_ARRAY, content_type="application/json", token=deep_jwt())
def test_fuzz_global_token_revocation(mclient, world, name, raw, content_type, token):
    if name == "front":
        name = world["front"]["name"]
    path = GTR_PATH + quote(name, safe="")
    if path.endswith("/"):
        path += "x"
    check(mclient.http.post(path, body=raw, headers={
        "Content-Type": content_type, "Authorization": header_safe("Bearer " + token)}))


# --------------------------------------------------------------------------- Management API

@FUZZ
@given(body=json_values, raw=st.none() | special_bodies | st.binary(max_size=200),
       content_type=content_types)
@example(body={"name": "x", "callbacks": ["a" * 100000]}, raw=None,
         content_type="application/json")
@example(body=None, raw=DEEP_OBJECT, content_type="application/json")
def test_fuzz_management_create_client(mapi, targets, body, raw, content_type):
    payload = raw if raw is not None else json.dumps(body)
    response = mapi.call("POST", "/api/v2/clients", body=payload,
                         headers={"Content-Type": content_type})
    check(response)
    if response.status_code == 201 and isinstance(response.data, dict):
        targets["created"].append(("clients", response.data["client_id"]))


@FUZZ
@given(body=json_values | st.fixed_dictionaries({"options": json_values}),
       raw=st.none() | special_bodies, content_type=content_types)
@example(body={"options": {"attribute_map": {"mapping_mode": "use_map",
                                             "attributes": {"a": "${" * 5000}}}},
         raw=None, content_type="application/json")
def test_fuzz_management_update_connection(mapi, targets, body, raw, content_type):
    payload = raw if raw is not None else json.dumps(body)
    check(mapi.call("PATCH", f"/api/v2/connections/{targets['connection']['id']}", body=payload,
                    headers={"Content-Type": content_type}))


@FUZZ
@given(query=params_for(["q", "page", "per_page", "include_totals", "sort", "fields",
                         "search_engine", "connection", "from", "take"]))
@example(query={"per_page": "-1", "page": "99999999999999999999999", "q": "(" * 5000})
def test_fuzz_management_list_users(mapi, query):
    check(mapi.call("GET", "/api/v2/users?" + urlencode(query)))


@FUZZ
@given(body=st.fixed_dictionaries({"name": text, "strategy": st.sampled_from(["oidc", "x", ""]),
                                   "options": json_values}) | json_values)
def test_fuzz_management_create_connection(mapi, targets, body):
    response = mapi.call("POST", "/api/v2/connections", body=json.dumps(body))
    check(response)
    if response.status_code == 201 and isinstance(response.data, dict):
        targets["created"].append(("connections", response.data["id"]))


@pytest.mark.parametrize("token", HOSTILE_TOKENS, ids=["deep-header", "abc", "oversize", "alg-none",
                                                    "non-ascii", "scheme-only", "empty"])
def test_management_api_with_hostile_bearer_tokens(mclient, token):
    check(mclient.http.get("/api/v2/clients", headers={
        "Authorization": header_safe("Bearer " + token)}))
