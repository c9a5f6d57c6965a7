"""Drive a federated login without a browser: the broker through Chalice's test client, the
real upstream IdP (oidc-provider) over loopback HTTP with requests.

The IdP answers either with a redirect to the broker's callback (code flow) or with an
auto-submitting form_post page (front channel); both are turned into the request the browser
would send to the broker's callback: the connection's own ``/login/callback/{name}`` (what the
broker sends as redirect_uri) or the shared ``/login/callback``.
"""
from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

CALLBACK = "http://127.0.0.1:8000/login/callback"  # the shared one; a prefix of every callback
APP_CALLBACK = "https://app.example.com/callback"  # the applications' redirect URI


def callback_url(connection_name: str) -> str:
    """The redirect URI the broker sends for a connection (register it at the IdP)."""
    return f"{CALLBACK}/{connection_name}"


class CallbackParams(dict):
    """The IdP's answer; ``path`` is the broker callback path the IdP sent it to."""

    def __init__(self, fields: dict, path: str = "/login/callback"):
        super().__init__(fields)
        self.path = path


class _FormParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.action = None
        self.method = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = attrs.get("action")
            self.method = (attrs.get("method") or "get").upper()
        if tag == "input" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""


def _form(page: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(page)
    return parser


def idp_login(authorization_url: str, username: str = "alice",
              session: requests.Session | None = None) -> tuple[str, dict]:
    """Log in at the IdP; return (method, params) the IdP sends to the broker's callback."""
    http = session or requests.Session()
    url, method, data = authorization_url, "GET", None
    for _ in range(12):
        if url.startswith(CALLBACK):
            return "GET", CallbackParams({k: v[0] for k, v in parse_qs(urlsplit(url).query).items()},
                                         urlsplit(url).path)
        response = http.request(method, url, data=data, allow_redirects=False, timeout=10)
        if response.is_redirect:
            url, method, data = urljoin(url, response.headers["Location"]), "GET", None
            continue
        form = _form(response.text)
        if form.action and form.action.startswith(CALLBACK):
            return form.method, CallbackParams(form.fields, urlsplit(form.action).path)
        if "/interaction/" in url and form.action:
            url, method = urljoin(url, form.action), "POST"
            data = {"login": username, "password": "x"}
            continue
        raise AssertionError(f"unexpected IdP page {response.status_code} at {url}: "
                             f"{response.text[:500]}")
    raise AssertionError("too many IdP hops")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()
    return verifier, challenge


class Browser:
    """Cookie-keeping wrapper around Chalice's test client for browser routes."""

    def __init__(self, client):
        self.client = client
        self.cookies: dict[str, str] = {}

    def _headers(self, extra=None):
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _remember(self, response):
        raw = response.headers.get("Set-Cookie") or response.headers.get("set-cookie")
        values = raw if isinstance(raw, list) else ([raw] if raw else [])
        for value in values:
            name, _, rest = value.partition("=")
            if "Max-Age=0" in value:
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response

    def get(self, path: str, headers=None):
        return self._remember(self.client.http.get(path, headers=self._headers(headers)))

    def post_form(self, path: str, fields: dict, headers=None):
        all_headers = self._headers({"Content-Type": "application/x-www-form-urlencoded",
                                     **(headers or {})})
        return self._remember(self.client.http.post(path, body=urlencode(fields),
                                                    headers=all_headers))


def authorize_path(**params) -> str:
    return "/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})


def authorize(browser: Browser, app: dict, connection: dict, *, scope: str = "openid profile email",
              state: str = "s", **params):
    """The application's ``/authorize`` through ``connection``: the code flow to
    :data:`APP_CALLBACK` with PKCE (S256); ``params`` add to it (``nonce``, ``prompt`` ...).
    Asserts the broker's redirect; returns (that response, the PKCE verifier)."""
    verifier, challenge = pkce_pair()
    response = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code", scope=scope,
        state=state, code_challenge=challenge, code_challenge_method="S256",
        connection=connection["name"], **params))
    assert response.status_code == 302, response.body
    return response, verifier


def upstream_answer(browser: Browser, app: dict, connection: dict, *, username: str = "alice",
                    **params) -> tuple[str, CallbackParams, str]:
    """:func:`authorize`, then the login at the IdP it redirected to: (method, the IdP's answer
    for the broker's callback, the PKCE verifier)."""
    response, verifier = authorize(browser, app, connection, **params)
    method, answer = idp_login(response.headers["Location"], username)
    return method, answer, verifier


def federated_login(client, app: dict, connection: dict, *, browser: Browser | None = None,
                    **params) -> tuple[Browser, Any, str]:
    """A whole login through ``connection``: :func:`upstream_answer` delivered to the broker's
    callback. Returns (the browser, the callback's response, the PKCE verifier)."""
    browser = browser or Browser(client)
    method, answer, verifier = upstream_answer(browser, app, connection, **params)
    return browser, deliver_callback(browser, method, answer), verifier


def location_params(response) -> dict:
    location = response.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def deliver_callback(browser: Browser, method: str, params: dict, path: str | None = None):
    """Send the IdP's answer where the IdP sent it (``params.path``), else to ``path`` or the
    shared callback."""
    path = path or getattr(params, "path", "/login/callback")
    if method == "POST":
        return browser.post_form(path, params)
    return browser.get(path + "?" + urlencode(dict(params)))


def token_request(client, form: dict, basic: tuple[str, str] | None = None):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if basic:
        raw = f"{basic[0]}:{basic[1]}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    response = client.http.post("/oauth/token", body=urlencode(form), headers=headers)
    response.data = json.loads(response.body) if response.body else None
    return response
