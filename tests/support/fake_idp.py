"""A scriptable upstream OpenID Provider on 127.0.0.1 for attack tests.

It behaves like a minimal real IdP so :func:`tests.support.flow.idp_login` can drive it:

- ``/authorize`` records the request and answers at once (no login page): the code flow redirects
  to the broker's callback with ``code`` and ``state``; ``response_type=id_token`` answers with an
  auto-submitting ``form_post`` page carrying ``id_token`` and ``state``.
- ``/token`` exchanges a code it issued; ``/userinfo`` answers :attr:`FakeIdp.userinfo`.
- ``/token`` with ``grant_type=refresh_token`` (RFC 6749 §6) redeems a refresh token it issued
  (with :attr:`FakeIdp.issue_refresh_tokens`, or :meth:`FakeIdp.new_refresh_token`): the tokens
  ROTATE, so a refresh token works once and is refused (``invalid_grant``) after; each redemption
  counts in :attr:`FakeIdp.refresh_calls`; :attr:`FakeIdp.refresh_delay` holds the answer back
  (seconds) so concurrent callers meet while one refresh is in flight.
- ``/jwks`` publishes the public parts of :attr:`FakeIdp.keys` (a list tests may replace to
  rotate keys).

Scripting: :attr:`FakeIdp.id_token` is a callable ``(idp, ctx) -> str`` building the ID token
(``ctx`` holds ``nonce``, ``state``, ``client_id``, ``code``, ``access_token``, ``channel`` and the
recorded ``/authorize`` parameters); :attr:`FakeIdp.token_handler` may replace the token response
entirely (``(idp, form, ctx) -> (status, body, content_type)``); :attr:`FakeIdp.callback_extra`
adds parameters to what ``/authorize`` sends back (``iss``, ``error`` ...); :attr:`FakeIdp.clock`
is the IdP's time (``iat``/``exp`` of its tokens).

Like a real IdP when asked: :attr:`FakeIdp.redirect_uris` (when set) is the exact list of
registered redirect URIs (``/authorize`` refuses any other, with no redirect), and
:attr:`FakeIdp.strict` makes ``/token`` check the client's credentials, that ``redirect_uri``
equals the authorization request's (RFC 6749 §4.1.3), the PKCE verifier (RFC 7636 §4.6) and
that a code is used once.

Every request is recorded in :attr:`FakeIdp.requests` (method, path, query, headers, form).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from chalicelib.login.jwks_cache import jwks_cache

DROP = object()
"""Claim override value that removes the claim (``claims(..., aud=DROP)``)."""


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]

    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.lower().startswith("basic "):
            return None
        from urllib.parse import unquote_plus

        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return unquote_plus(user), unquote_plus(password)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def half_hash(value: str, alg: str = "RS256") -> str:
    digest = hashlib.new("sha" + alg[-3:], value.encode()).digest()
    return b64url(digest[: len(digest) // 2])


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode()).digest())


def rsa_key(kid: str | None = "k1") -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid} if kid else None, auto_kid=False)


def ec_key(kid: str | None = "ec1") -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid} if kid else None, auto_kid=False)


def _raw_jws(header: dict, claims: dict, sign: Callable[[bytes], bytes] | None) -> str:
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(claims).encode()))
    signature = sign(signing_input.encode()) if sign else b""
    return signing_input + "." + b64url(signature)


def mint(claims: dict, key=None, *, alg: str = "RS256", header: dict | None = None) -> str:
    """Any JWT: signed by ``key`` with ``alg``; ``alg='none'`` unsigned; ``alg='HS256'`` with
    ``key`` either bytes (the HMAC secret) or an RSA key whose public PEM becomes the secret (the
    classic algorithm-confusion attack)."""
    full_header = {"alg": alg, "typ": "JWT"}
    if key is not None and not isinstance(key, (bytes, str)) and key.kid:
        full_header["kid"] = key.kid
    full_header.update(header or {})
    full_header = {k: v for k, v in full_header.items() if v is not DROP}
    if alg == "none":
        return _raw_jws(full_header, claims, None)
    if alg.startswith("HS"):
        secret = key if isinstance(key, bytes) else (
            key.encode() if isinstance(key, str) else key.as_pem(private=False))
        digestmod = getattr(hashlib, "sha" + alg[2:])
        return _raw_jws(full_header, claims,
                        lambda data: hmac.new(secret, data, digestmod).digest())
    return jwt.encode(full_header, claims, key, algorithms=[alg])


class FakeIdp:
    """Use as a context manager: ``with FakeIdp() as idp: ...``."""

    def __init__(self, client_id: str = "broker-client", client_secret: str = "broker-secret",
                 sub: str = "alice"):
        self.client_id = client_id
        self.client_secret = client_secret
        self.keys: list = [rsa_key("k1")]
        self.signing_key = self.keys[0]
        self.user: dict[str, Any] = {"sub": sub, "email": f"{sub}@example.com",
                                     "email_verified": True, "name": sub.title()}
        self.userinfo: dict[str, Any] | None = None  # None: the user's claims
        self.userinfo_status = 200
        self.id_token: Callable[[FakeIdp, dict], str] = FakeIdp.default_id_token
        self.token_handler: Callable[[FakeIdp, dict, dict | None], tuple] | None = None
        self.callback_extra: dict[str, str] = {}
        self.requests: list[Recorded] = []
        self.codes: dict[str, dict] = {}
        self.discovery_extra: dict[str, Any] = {}
        self.redirect_uris: list[str] | None = None
        self.strict = False
        self.clock: Callable[[], float] = time.time  # tests inject a fixed moment
        # Refresh tokens (RFC 6749 §6), rotating: live token -> what it was issued for.
        self.issue_refresh_tokens = False  # code exchanges answer a refresh token too
        self.access_token_lifetime = 300  # expires_in of every access token issued
        self.refresh_tokens: dict[str, dict] = {}
        self.spent_refresh_tokens: set[str] = set()
        self.access_tokens: list[str] = []  # every access token issued, oldest first
        self.refresh_calls = 0  # refresh_token grants received, answered or refused
        self.refresh_delay = 0.0
        self._refresh_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeIdp:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: shutdown() at the end of each test waits for one.
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def issuer(self) -> str:
        return self.base_url

    # ------------------------------------------------------------------ scripting helpers

    def claims(self, ctx: dict | None = None, **overrides) -> dict:
        """Valid ID token claims for ``ctx`` (nonce, access token hash), then ``overrides``
        (``DROP`` removes a claim)."""
        ctx = ctx or {}
        now = int(self.clock())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.client_id, "iat": now,
                                  "exp": now + 300, **self.user}
        if ctx.get("nonce") is not None:
            claims["nonce"] = ctx["nonce"]
        asked = ctx.get("authorize") or {}
        if "max_age" in asked or "login" in asked.get("prompt", "").split():
            # Like a real IdP (OIDC Core §3.1.2.1): a fresh login, and auth_time says when.
            claims["auth_time"] = now
        if ctx.get("access_token"):
            claims["at_hash"] = half_hash(ctx["access_token"])
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not DROP}

    def mint(self, claims: dict, key=None, *, alg: str = "RS256",
             header: dict | None = None) -> str:
        return mint(claims, key if key is not None else self.signing_key, alg=alg, header=header)

    @staticmethod
    def default_id_token(idp: FakeIdp, ctx: dict) -> str:
        return idp.mint(idp.claims(ctx))

    def script(self, **overrides) -> None:
        """Next ID tokens carry these claim overrides."""
        self.id_token = lambda idp, ctx: idp.mint(idp.claims(ctx, **overrides))

    def new_refresh_token(self, sub: str | None = None, scope: str = "openid profile email") -> str:
        """A live refresh token for ``sub`` (the user's by default), as a login would get."""
        token = secrets.token_urlsafe(32)
        with self._refresh_lock:
            self.refresh_tokens[token] = {"sub": sub or self.user["sub"], "scope": scope}
        return token

    def new_access_token(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._refresh_lock:
            self.access_tokens.append(token)
        return token

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def jwks(self) -> dict:
        return {"keys": [k.as_dict(private=False) for k in self.keys]}

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.base_url}/authorize",
            "token_endpoint": f"{self.base_url}/token",
            "jwks_uri": f"{self.base_url}/jwks",
            "userinfo_endpoint": f"{self.base_url}/userinfo",
            "response_types_supported": ["code", "id_token"],
            "response_modes_supported": ["query", "form_post"],
            "subject_types_supported": ["public"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            **self.discovery_extra,
        }

    # ------------------------------------------------------------------ endpoints

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict, bytes]:
        redirect_uri = query.get("redirect_uri", "")
        if self.redirect_uris is not None and redirect_uri not in self.redirect_uris:
            return 400, {"Content-Type": "text/plain"}, b"redirect_uri is not registered"
        ctx = {"nonce": query.get("nonce"), "state": query.get("state"),
               "client_id": query.get("client_id"), "authorize": dict(query)}
        extra = dict(self.callback_extra)
        if query.get("response_type") == "code":
            code = secrets.token_urlsafe(24)
            self.codes[code] = {**ctx, "code": code, "channel": "back"}
            params = {"code": code, "state": query.get("state", ""), **extra}
            if "error" in extra:
                params.pop("code")
            return 302, {"Location": redirect_uri + "?" + urlencode(params)}, b""
        fields = {"state": query.get("state", ""), **extra}
        if "error" not in extra:
            fields["id_token"] = self.id_token(self, {**ctx, "channel": "front"})
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in fields.items())
        page = (f'<html><body onload="document.forms[0].submit()"><form method="post" '
                f'action="{html.escape(redirect_uri)}">{inputs}</form></body></html>')
        return 200, {"Content-Type": "text/html"}, page.encode()

    def _token(self, form: dict[str, str], headers: dict[str, str] | None = None
               ) -> tuple[int, dict, bytes]:
        ctx = self.codes.get(form.get("code", ""))
        if self.token_handler is not None:
            status, body, content_type = self.token_handler(self, form, ctx)
            raw = body if isinstance(body, bytes) else (
                body.encode() if isinstance(body, str) else json.dumps(body).encode())
            return status, {"Content-Type": content_type}, raw
        if form.get("grant_type") == "refresh_token":
            return self._refresh(form, headers or {})
        if ctx is None:
            return _json(400, {"error": "invalid_grant"})
        if self.strict:
            refused = self._strict_refusal(form, headers or {}, ctx)
            if refused:
                return _json(400, {"error": refused})
        access_token = self.new_access_token()
        ctx = {**ctx, "access_token": access_token}
        body = {"access_token": access_token, "token_type": "Bearer",
                "expires_in": self.access_token_lifetime, "id_token": self.id_token(self, ctx)}
        if self.issue_refresh_tokens:
            body["refresh_token"] = self.new_refresh_token()
        return _json(200, body)

    def _refresh(self, form: dict[str, str], headers: dict[str, str]) -> tuple[int, dict, bytes]:
        """RFC 6749 §6 with rotation: an authenticated client's token is spent at once, so a
        second presentation (concurrent or later) is refused."""
        basic = Recorded("POST", "/token", {}, headers, form).basic_auth()
        client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
        authenticated = (client_id, secret) == (self.client_id, self.client_secret)
        with self._refresh_lock:
            self.refresh_calls += 1
            presented = form.get("refresh_token", "")
            issued = self.refresh_tokens.pop(presented, None) if authenticated else None
            if issued is not None:
                self.spent_refresh_tokens.add(presented)
        if self.refresh_delay:
            time.sleep(self.refresh_delay)
        if not authenticated:
            return _json(401, {"error": "invalid_client"})
        if issued is None:
            return _json(400, {"error": "invalid_grant",
                               "error_description": "refresh token unknown or already used"})
        return _json(200, {"access_token": self.new_access_token(), "token_type": "Bearer",
                           "expires_in": self.access_token_lifetime, "scope": issued["scope"],
                           "refresh_token": self.new_refresh_token(issued["sub"],
                                                                   issued["scope"])})

    def _strict_refusal(self, form: dict[str, str], headers: dict[str, str],
                        ctx: dict) -> str | None:
        basic = Recorded("POST", "/token", {}, headers, form).basic_auth()
        client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
        if (client_id, secret) != (self.client_id, self.client_secret):
            return "invalid_client"
        if ctx.get("used"):
            return "invalid_grant"
        ctx["used"] = True
        asked = ctx["authorize"]
        if form.get("redirect_uri") != asked.get("redirect_uri"):
            return "invalid_grant"
        challenge = asked.get("code_challenge")
        verifier = form.get("code_verifier")
        if (challenge is None) != (verifier is None):
            return "invalid_grant"
        if challenge is not None and s256(verifier) != challenge:
            return "invalid_grant"
        return None

    def _userinfo(self) -> tuple[int, dict, bytes]:
        body = self.userinfo if self.userinfo is not None else dict(self.user)
        return _json(self.userinfo_status, body)


def _json(status: int, body: Any) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _handler(idp: FakeIdp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            idp.requests.append(Recorded(method, parts.path, query, headers, form))
            if parts.path == "/.well-known/openid-configuration":
                status, headers, raw = _json(200, idp.discovery())
            elif parts.path == "/jwks":
                status, headers, raw = _json(200, idp.jwks())
            elif parts.path == "/authorize":
                status, headers, raw = idp._authorize(query)
            elif parts.path == "/token" and method == "POST":
                status, headers, raw = idp._token(form, headers)
            elif parts.path == "/userinfo":
                status, headers, raw = idp._userinfo()
            else:
                status, headers, raw = _json(404, {"error": "not_found"})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

    return Handler


def connection_body(idp: FakeIdp, name: str, *, channel: str = "front",
                    enabled_clients: list[str], **options) -> dict:
    """A Management API body for an ``oidc`` connection to ``idp`` (discovery on)."""
    opts: dict[str, Any] = {"type": f"{channel}_channel", "discovery_url": idp.issuer,
                            "client_id": idp.client_id}
    if channel == "back":
        opts["client_secret"] = idp.client_secret
    opts.update(options)
    return {"name": name, "strategy": "oidc", "enabled_clients": enabled_clients, "options": opts}


@contextmanager
def running_idp(make: Callable[[], FakeIdp] = FakeIdp) -> Iterator[FakeIdp]:
    """A fake IdP serving on loopback for one test, the broker's JWKS cache (one per process)
    emptied before and after: a loopback port, so an issuer and its JWKS URL, comes back in later
    tests with other keys."""
    jwks_cache().clear()
    try:
        with make() as running:
            yield running
    finally:
        jwks_cache().clear()


__all__ = ["DROP", "connection_body", "FakeIdp", "Recorded", "ec_key", "half_hash", "mint", "rsa_key",
           "running_idp", "s256"]
