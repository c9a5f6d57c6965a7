"""SPEC §8: no stored value can make a later request answer 500. Generated callback and logout
URL strings go through the Management API; whenever one is accepted, ``/authorize`` with it as
``redirect_uri`` and ``/v2/logout`` / ``/oidc/logout`` with it as the return URL must answer
without a server error. Bounded and reproducible: few examples, no deadline, derandomized."""
from __future__ import annotations

from urllib.parse import urlencode

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

PROPERTY = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

PREFIXES = ["https://app.example.com/", "https://app.example.com/cb?x=", "http://127.0.0.1:3000/",
            "http://localhost/", "https://[::1]/", "com.example.app:/", "https://", ""]
PIECES = ["\r\n", "\r", "\n", "\t", "\x00", "\x7f", "\u0085", "\u00a0", "\u2028", " ", "#", "@",
          "%0d%0a", "%00", "\\", "?", "&", "=", "'", '"', "<script>", "../", ":", "//",
          "\u00e9", "\ud800", "\U0001f600", "%", "%%", ";", ",", "*", "[", "]", "{}", "|", "^"]
# Every code point, surrogates and controls included: JSON carries them as \\u escapes.
any_char = st.characters(exclude_categories=())
urls = st.builds(
    lambda prefix, parts: prefix + "".join(parts),
    st.sampled_from(PREFIXES),
    st.lists(st.sampled_from(PIECES) | st.text(any_char, max_size=6), max_size=6),
) | st.text(any_char, max_size=40)


def _no_server_error(response, what: str) -> None:
    """No 5xx, and no header a proxy would refuse or split: Chalice's local check catches only
    LF, while API Gateway answers 502 for other control characters (and CR splits headers)."""
    assert response.status_code < 500, (what, response.status_code, response.body[:300])
    for name, values in response.headers.items():
        for value in values if isinstance(values, list) else [values]:
            assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in value), (
                what, name, value)


@PROPERTY
@given(url=urls, app_type=st.sampled_from(["regular_web", "spa", "native"]))
@example(url="https://app.example.com/cb\r\nSet-Cookie: x=1", app_type="regular_web")
@example(url="https://app.example.com/cb?a=%0D%0A&b=\u00e9", app_type="regular_web")
@example(url="com.example.app:/cb?x=<script>", app_type="native")
@example(url="http://[::1]:7/cb", app_type="native")
def test_accepted_urls_never_make_a_login_or_logout_fail(api, client, url, app_type):
    created = api.call("POST", "/api/v2/clients", body={
        "name": "fuzz-urls", "app_type": app_type, "callbacks": [url],
        "allowed_logout_urls": [url]})
    _no_server_error(created, "create")
    if created.status_code != 201:
        assert created.status_code == 400 and created.data["errorCode"] == "invalid_body"
        return
    client_id = created.data["client_id"]
    try:
        assert created.data["callbacks"] == [url]
        _no_server_error(client.http.get("/authorize?" + urlencode({
            "client_id": client_id, "redirect_uri": url, "response_type": "code",
            "scope": "openid", "state": "s", "code_challenge": "x" * 43,
            "code_challenge_method": "S256"})), "authorize")
        _no_server_error(client.http.get("/authorize?" + urlencode({
            "client_id": client_id, "redirect_uri": url, "response_type": "code",
            "scope": "openid", "response_mode": "form_post"})), "authorize form_post")
        _no_server_error(client.http.get("/v2/logout?" + urlencode({
            "client_id": client_id, "returnTo": url})), "v2/logout")
        _no_server_error(client.http.get("/oidc/logout?" + urlencode({
            "client_id": client_id, "post_logout_redirect_uri": url, "state": "s"})),
            "oidc/logout")
    finally:
        api.call("DELETE", f"/api/v2/clients/{client_id}")
