"""``GET /authorize`` (SPEC §3.1): validate the application's request, choose the connection,
reuse a live broker session or start a login transaction and send the browser upstream.

Order matters: the client and its exact ``redirect_uri`` are checked first and failures there
show an error page with no redirect (RFC 6749 §4.1.2.1). After that every error goes back to the
application with ``error``, ``error_description``, ``state`` and ``iss`` (RFC 9207).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from chalicelib.login.transactions import LoginTransaction, create_transaction
from chalicelib.provider import lifetimes
from chalicelib.registry.resource_servers import OIDC_SCOPES
from chalicelib.settings import get_settings
from chalicelib.tokens import random_token

PKCE_VALUE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
KNOWN_PROMPTS = {"none", "login", "consent", "select_account"}
# Parameters an application may send; anything else is ignored, as OAuth requires (§3.1).
SINGLE_VALUED = ("client_id", "redirect_uri", "response_type", "response_mode", "scope", "state",
                 "nonce", "code_challenge", "code_challenge_method", "connection", "login_hint",
                 "prompt", "max_age", "audience", "acr_values", "display", "ui_locales",
                 "id_token_hint", "resource")


@dataclass
class ErrorPage:
    status: int
    title: str
    detail: str


@dataclass
class Redirect:
    location: str
    cookies: list[str] = field(default_factory=list)
    status: int = 302


@dataclass
class FormPost:
    """``response_mode=form_post`` (OAuth 2.0 Form Post Response Mode): an auto-submitting form
    that POSTs ``fields`` to the application's ``action`` (its redirect_uri)."""

    action: str
    fields: dict[str, str]
    cookies: list[str] = field(default_factory=list)


@dataclass
class WebMessage:
    """``response_mode=web_message`` (Auth0's silent authentication and popup login): a page that
    hands ``response`` to the application's window with ``postMessage``, addressed to
    ``origin`` alone (the redirect_uri's origin, checked against the client's web origins)."""

    origin: str
    response: dict[str, str]
    cookies: list[str] = field(default_factory=list)


RESPONSE_MODES = ("query", "form_post", "web_message")


class AppError(Exception):
    """An error reported to the application's redirect_uri."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass
class AppRequest:
    client: dict
    redirect_uri: str
    state: str | None
    nonce: str | None
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    prompt: set[str]
    max_age: int | None
    audience: str | None
    login_hint: str | None
    connection_name: str | None
    raw: dict[str, str]
    response_mode: str = "query"  # how the answer reaches redirect_uri (validated later)


AppAnswer = Redirect | FormPost | WebMessage


def to_app(redirect_uri: str, response_mode: str | None, params: dict[str, str], state: str | None,
           *, cookies: list[str] | None = None, status: int = 302) -> AppAnswer:
    """The answer to the application, with ``state`` and ``iss`` (RFC 9207), in its response
    mode: a redirect with a query (default), an auto-submitted form POST or a web message.

    The web message carries ``iss`` too: discovery promises it in every authorization response
    (``authorization_response_iss_parameter_supported``), and Auth0's SDK reads only code/state."""
    from urllib.parse import urlencode

    fields = dict(params)
    if state is not None:
        fields["state"] = state
    fields["iss"] = get_settings().issuer
    if response_mode == "form_post":
        return FormPost(action=redirect_uri, fields=fields, cookies=list(cookies or []))
    if response_mode == "web_message":
        origin = redirect_origin(redirect_uri)
        if origin is None:  # parse_request admits web_message only for an http(s) redirect_uri
            raise ValueError("web_message needs an http(s) redirect_uri")
        return WebMessage(origin=origin, response=fields, cookies=list(cookies or []))
    separator = "&" if "?" in redirect_uri else "?"
    return Redirect(redirect_uri + separator + urlencode(fields), cookies=list(cookies or []),
                    status=status)


def error_to_app(redirect_uri: str, response_mode: str | None, error: str, description: str,
                 state: str | None, **kwargs) -> AppAnswer:
    return to_app(redirect_uri, response_mode,
                  {"error": error, "error_description": description[:300]}, state, **kwargs)


def code_to_app(redirect_uri: str, response_mode: str | None, code: str, state: str | None,
                **kwargs) -> AppAnswer:
    return to_app(redirect_uri, response_mode, {"code": code}, state, **kwargs)


def _single(params: dict[str, list[str]]) -> tuple[dict[str, str], str | None]:
    values: dict[str, str] = {}
    repeated = None
    for name in SINGLE_VALUED:
        found = params.get(name) or []
        if len(found) > 1:
            repeated = name
        if found:
            values[name] = found[0]
    return values, repeated


def parse_request(params: dict[str, list[str]]) -> AppRequest | ErrorPage:
    """Steps that can fail without a trustworthy redirect_uri come first."""
    from chalicelib.registry.clients import cached_client

    values, repeated = _single(params)
    if repeated in ("client_id", "redirect_uri"):
        return ErrorPage(400, "Invalid request", f"The {repeated} parameter is repeated.")
    client_id = values.get("client_id")
    client = cached_client(client_id) if client_id else None
    if client is None:
        return ErrorPage(400, "Unknown application", "The client_id is missing or unknown.")
    redirect_uri = values.get("redirect_uri")
    if not redirect_uri or redirect_uri not in (client.get("callbacks") or []):
        return ErrorPage(400, "Invalid redirect_uri",
                         "The redirect_uri is missing or not registered for this application.")
    state = values.get("state")
    request = AppRequest(client=client, redirect_uri=redirect_uri, state=state,
                         nonce=values.get("nonce"), scope="", code_challenge=None,
                         code_challenge_method=None, prompt=set(), max_age=None,
                         audience=values.get("audience"), login_hint=values.get("login_hint"),
                         connection_name=values.get("connection"), raw=values)
    mode = values.get("response_mode") if repeated != "response_mode" else None
    if mode == "web_message" and web_message_origin(client, redirect_uri) is None:
        # The page would hand a code to whatever window framed or opened it, addressed to this
        # origin: only an origin the application vouches for (never an error by postMessage).
        return ErrorPage(400, "Origin not allowed",
                         "response_mode=web_message needs the redirect_uri's origin among the "
                         "application's allowed web origins.")
    if mode in RESPONSE_MODES and redirect_uri.startswith(("https://", "http://")):
        request.response_mode = mode  # a form cannot POST to a custom scheme
    if repeated:
        raise_to_app = AppError("invalid_request", f"The {repeated} parameter is repeated")
        return _attach(request, raw_error=raise_to_app)
    return request


def redirect_origin(redirect_uri: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) redirect_uri, as browsers write origins."""
    from urllib.parse import urlsplit

    from chalicelib.provider.cors import normalise_origin

    try:
        parts = urlsplit(redirect_uri)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return normalise_origin(f"{parts.scheme}://{parts.netloc}")


def web_message_origin(client: dict, redirect_uri: str) -> str | None:
    """The origin a web message may be posted to, or None: the redirect_uri's origin when it is
    one of the client's allowed web origins (``web_origins``, else the origins of its
    ``callbacks``, as Auth0's "Allowed Web Origins")."""
    origin = redirect_origin(redirect_uri)
    if origin is None:
        return None
    allowed = client.get("web_origins") or [redirect_origin(url) for url in
                                            client.get("callbacks") or ()]
    return origin if origin in allowed else None


def _attach(request: AppRequest, raw_error: AppError) -> AppRequest:
    request.raw["__error__"] = raw_error.error
    request.raw["__error_description__"] = raw_error.description
    return request


def validate_request(request: AppRequest) -> None:
    """The checks whose failures go back to the application (raise :class:`AppError`)."""
    if "__error__" in request.raw:
        raise AppError(request.raw["__error__"], request.raw["__error_description__"])
    values, client = request.raw, request.client
    if values.get("response_type") != "code":
        raise AppError("unsupported_response_type", "Only response_type=code is supported")
    if values.get("response_mode") not in (None, *RESPONSE_MODES):
        raise AppError("invalid_request",
                       "Only response_mode=query, form_post or web_message is supported")
    if values.get("response_mode") == "form_post" and not request.redirect_uri.startswith(
            ("https://", "http://")):
        raise AppError("invalid_request", "response_mode=form_post needs an http(s) redirect_uri")
    if "authorization_code" not in (client.get("grant_types") or []):
        raise AppError("unauthorized_client", "The application may not use the authorization code grant")
    if request.state is not None and len(request.state) > 2048:
        raise AppError("invalid_request", "state is too long")
    if request.nonce is not None and len(request.nonce) > 512:
        raise AppError("invalid_request", "nonce is too long")
    request.scope = _scope(values.get("scope"), client, _audience(request))
    _pkce(request, values)
    _prompt(request, values.get("prompt"))
    _max_age(request, values.get("max_age"))
    if request.login_hint is not None and len(request.login_hint) > 512:
        raise AppError("invalid_request", "login_hint is too long")


def _audience(request: AppRequest):
    """SPEC §3.1: a registered API's identifier, or none. Anything else (another application's
    client_id, an unregistered string, the Management API) would get a broker-signed token for
    an audience that never agreed to it. Without one, the tenant's ``default_audience`` (SPEC
    §2.4) stands in, as Auth0 does; one whose API was deleted since is ignored."""
    from chalicelib.registry.resource_servers import cached_resource_server
    from chalicelib.registry.tenant import cached_tenant_settings

    if request.audience is None:
        default = cached_tenant_settings().default_audience
        server = cached_resource_server(default) if default else None
        if server is not None:
            request.audience = default
        return server
    server = cached_resource_server(request.audience)
    if server is None or request.audience == get_settings().management_audience:
        raise AppError("invalid_request", "unknown audience")
    return server


def _scope(raw: str | None, client: dict, server=None) -> str:
    """OpenID scopes plus the scopes the API defines; offline_access only when the client may
    have refresh tokens and the API (if any) allows them (SPEC §2.5)."""
    requested = (raw or "openid").split()
    known = set(OIDC_SCOPES) | (server.scope_values() if server is not None else set())
    granted = [s for s in dict.fromkeys(requested) if s in known]
    offline = "refresh_token" in (client.get("grant_types") or []) and (
        server is None or server.allow_offline_access)
    if "offline_access" in granted and not offline:
        granted.remove("offline_access")
    if not granted:
        raise AppError("invalid_scope", "No supported scope was requested")
    return " ".join(granted)


def _pkce(request: AppRequest, values: dict[str, str]) -> None:
    challenge = values.get("code_challenge")
    method = values.get("code_challenge_method")
    public = request.client.get("token_endpoint_auth_method") == "none"
    if challenge is None:
        if method is not None:
            raise AppError("invalid_request", "code_challenge_method without code_challenge")
        if public:
            # RFC 9700 §2.1.1 / OAuth 2.1: public clients must use PKCE.
            raise AppError("invalid_request", "code_challenge is required for public clients")
        return
    if method != "S256":
        # An absent method means plain (RFC 7636 §4.3); plain is refused (SPEC §3.1).
        raise AppError("invalid_request", "code_challenge_method must be S256")
    if not PKCE_VALUE.match(challenge) or len(challenge) != 43:
        raise AppError("invalid_request", "code_challenge is malformed")
    request.code_challenge, request.code_challenge_method = challenge, method


def _prompt(request: AppRequest, raw: str | None) -> None:
    if raw is None:
        return
    prompts = set(raw.split())
    if not prompts or not prompts <= KNOWN_PROMPTS:
        raise AppError("invalid_request", "Unsupported prompt value")
    if "none" in prompts and len(prompts) > 1:
        raise AppError("invalid_request", "prompt=none cannot be combined with other values")
    request.prompt = prompts


def _max_age(request: AppRequest, raw: str | None) -> None:
    if raw is None:
        return
    if not raw.isdigit() or len(raw) > 9:
        raise AppError("invalid_request", "max_age must be a non-negative integer")
    request.max_age = int(raw)


@dataclass
class LoginPage:
    """No connection is chosen: the broker's login page (SPEC §3.5) lets the user pick one.
    ``unmatched_domain``: the login_hint's email domain matched no connection's domain_aliases."""
    connections: list[dict]
    unmatched_domain: str | None = None


def choose_connection(request: AppRequest, session_connection_id: str | None) -> dict | LoginPage:
    """SPEC §3.1: the ``connection`` parameter; else home realm discovery from ``login_hint``;
    else the live session's connection (SSO); else the login page.

    One exception keeps simple setups working: when the page could offer nothing (no connection
    shown as a button, none with domain_aliases) and exactly one connection is enabled, that
    connection is used, as before.
    """
    from chalicelib.login.login_page import button_connections, has_domain_aliases
    from chalicelib.registry import connections

    client_id = request.client["client_id"]
    if request.connection_name:
        found = connections.cached_connection_by_name(request.connection_name)
        if found is None or client_id not in (found.get("enabled_clients") or []):
            raise AppError("invalid_request",
                           "The connection does not exist or is not enabled for this application")
        return found
    enabled = sorted(connections.cached_enabled_connections_for(client_id),
                     key=lambda c: c["name"])
    hint = (request.login_hint or "").strip().lower()
    unmatched = None
    if "@" in hint:
        domain = hint.rsplit("@", 1)[1]
        for candidate in enabled:
            if domain in (candidate["options"].get("domain_aliases") or []):
                return candidate
        unmatched = domain[:253]
    if session_connection_id and "select_account" not in request.prompt:
        for candidate in enabled:
            if candidate["id"] == session_connection_id:
                return candidate
    if not enabled:
        raise AppError("invalid_request", "No connection is enabled for this application")
    reachable = button_connections(enabled) or [c for c in enabled if has_domain_aliases(c)]
    if not reachable and len(enabled) == 1:
        return enabled[0]
    return LoginPage(connections=enabled, unmatched_domain=unmatched)


def session_is_reusable(request: AppRequest, session, connection: dict, now: int) -> bool:
    if session is None or session.connection_id != connection["id"]:
        return False
    if "login" in request.prompt:
        return False
    if request.max_age is not None and now - session.auth_time > request.max_age:
        return False
    return True


def start_upstream_login(request: AppRequest, connection: dict, browser_cookies: dict[str, str],
                         now: int, force_login: bool = False) -> Redirect:
    from chalicelib.login import upstream
    from chalicelib.login.mapping import upstream_scope
    from chalicelib.login.pages import cookie, expired_cookie
    from chalicelib.login.transactions import binding_cookie_name, bindings_to_drop, new_binding
    from chalicelib.tokens import digest

    binding = new_binding(now)  # fresh for each login, never the value of an earlier one (SPEC §4)
    nonce = random_token(32)
    verifier = random_token(48) if upstream.pkce_method(connection) else None
    scope = upstream_scope(connection)
    redirect_uri = get_settings().connection_callback_url(connection["name"])
    tx = LoginTransaction(
        connection_id=connection["id"], client_id=request.client["client_id"],
        redirect_uri=request.redirect_uri, response_mode=request.response_mode, scope=request.scope,
        state=request.state, nonce=request.nonce, code_challenge=request.code_challenge,
        code_challenge_method=request.code_challenge_method, upstream_nonce=nonce,
        upstream_code_verifier=verifier, browser_digest=digest(binding), created_at=now,
        max_age=request.max_age, prompt=" ".join(sorted(request.prompt)) or None,
        audience=request.audience, upstream_redirect_uri=redirect_uri,
    )
    upstream_state = create_transaction(tx, now)
    app_params = {k: v for k, v in request.raw.items() if not k.startswith("__")}
    location = upstream.authorization_url(connection, state=upstream_state, nonce=nonce,
                                          scope=scope, code_verifier=verifier,
                                          app_params=app_params, redirect_uri=redirect_uri,
                                          force_login=force_login, max_age=request.max_age)
    # One cookie per login (named after its state), so concurrent logins in two tabs coexist.
    cookies = [expired_cookie(name) for name in bindings_to_drop(browser_cookies)]
    cookies.append(cookie(binding_cookie_name(upstream_state), binding,
                          max_age=lifetimes.LOGIN_TRANSACTION))
    return Redirect(location=location, cookies=cookies)
