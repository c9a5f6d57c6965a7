"""Smoke tests for the real upstream IdP used by the integration tests."""

from __future__ import annotations

import html
import re
import secrets
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support.idp import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    default_idp_config,
    start_idp,
)

# Never contacted: redirects to it are followed by hand.
REDIRECT_URI = "http://127.0.0.1:9/callback"


def test_discovery_and_jwks_then_stop():
    idp = start_idp(default_idp_config())
    try:
        port = urlsplit(idp.issuer).port
        assert idp.issuer == f"http://127.0.0.1:{port}"
        assert idp.discovery_url == f"{idp.issuer}/.well-known/openid-configuration"

        resp = requests.get(idp.discovery_url, timeout=10)
        assert resp.status_code == 200
        meta = resp.json()
        assert meta["issuer"] == idp.issuer
        for key in ("authorization_endpoint", "jwks_uri", "token_endpoint", "userinfo_endpoint"):
            assert meta[key].startswith(idp.issuer + "/"), key
        assert {"code", "id_token", "code id_token"} <= set(meta["response_types_supported"])
        assert "form_post" in meta["response_modes_supported"]
        assert meta["code_challenge_methods_supported"] == ["S256"]
        assert {"profile", "email"} <= set(meta["scopes_supported"])

        jwks = requests.get(meta["jwks_uri"], timeout=10).json()
        assert len(jwks["keys"]) >= 1
        assert all("d" not in key for key in jwks["keys"])  # public halves only
    finally:
        returncode = idp.stop()
    assert returncode is not None
    assert not idp.is_running()


def _follow_until(session: requests.Session, url: str, stop_prefix: str) -> requests.Response | str:
    """Follow redirects by hand: the first Location starting with stop_prefix,
    or the first response that is not a redirect."""
    for _ in range(10):
        resp = session.get(url, allow_redirects=False, timeout=10)
        if resp.status_code not in (302, 303):
            return resp
        location = urljoin(url, resp.headers["Location"])
        if location.startswith(stop_prefix):
            return location
        url = location
    raise AssertionError("too many redirects")


def test_code_flow_with_login_form():
    with start_idp(default_idp_config(redirect_uris=[REDIRECT_URI])) as idp:
        meta = requests.get(idp.discovery_url, timeout=10).json()
        session = requests.Session()
        state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
        auth = (
            requests.Request(
                "GET",
                meta["authorization_endpoint"],
                params={
                    "client_id": DEFAULT_CLIENT_ID,
                    "redirect_uri": REDIRECT_URI,
                    "response_type": "code",
                    "scope": "openid profile email",
                    "state": state,
                    "nonce": nonce,
                },
            )
            .prepare()
            .url
        )

        login_page = _follow_until(session, auth, REDIRECT_URI)
        assert login_page.status_code == 200
        action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', login_page.text).group(1))
        form_url = urljoin(login_page.url, action)

        refused = session.post(form_url, data={"login": "mallory"}, allow_redirects=False, timeout=10)
        assert refused.status_code == 200 and "Unknown user" in refused.text

        resp = session.post(
            form_url, data={"login": "alice", "password": "x"}, allow_redirects=False, timeout=10
        )
        assert resp.status_code == 303
        callback = _follow_until(session, urljoin(form_url, resp.headers["Location"]), REDIRECT_URI)
        params = parse_qs(urlsplit(callback).query)
        assert params["state"] == [state]
        assert params["iss"] == [idp.issuer]

        token = requests.post(
            meta["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": params["code"][0],
                "redirect_uri": REDIRECT_URI,
            },
            auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
            timeout=10,
        )
        assert token.status_code == 200, token.text
        body = token.json()

        keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
        claims = jwt.decode(body["id_token"], keys).claims
        assert claims["iss"] == idp.issuer
        assert claims["aud"] == DEFAULT_CLIENT_ID
        assert claims["sub"] == "alice"
        assert claims["nonce"] == nonce
        assert claims["email"] == "alice@example.com"
        assert claims["email_verified"] is True
        assert claims["name"] == "Alice Liddell"

        userinfo = requests.get(
            meta["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {body['access_token']}"},
            timeout=10,
        )
        assert userinfo.status_code == 200
        assert userinfo.json()["email"] == "alice@example.com"


def test_hybrid_form_post_on_http_loopback_redirect():
    with start_idp(default_idp_config(redirect_uris=[REDIRECT_URI])) as idp:
        meta = requests.get(idp.discovery_url, timeout=10).json()
        session = requests.Session()
        resp = session.get(
            meta["authorization_endpoint"],
            params={
                "client_id": DEFAULT_CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "response_type": "code id_token",
                "response_mode": "form_post",
                "scope": "openid email",
                "state": "s1",
                "nonce": "n1",
            },
            timeout=10,
        )
        assert resp.status_code == 200 and 'name="login"' in resp.text
        action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', resp.text).group(1))
        resp = session.post(urljoin(resp.url, action), data={"login": "alice"}, timeout=10)
        # The last page is the auto-submitting form_post page aimed at the client.
        assert resp.status_code == 200
        assert f'action="{REDIRECT_URI}"' in resp.text
        assert 'name="id_token"' in resp.text and 'name="code"' in resp.text
