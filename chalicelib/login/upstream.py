"""The broker as a relying party of an upstream IdP: the authorization request (SPEC §3.2), the
code exchange and the userinfo call (§3.3 steps 3 and 5), and the refresh of a vaulted upstream
token (RFC 6749 §6, for the token exchange of SPEC §10).

The authorization request is built here by hand: /authorize must stay light (no authlib at cold
start). The two calls to the IdP are authlib's requests client (``OAuth2Session``: client
authentication, token request, Bearer userinfo) on netguard's transport: public addresses only
(loopback when allowed), no redirect, connect ≤3 s, whole exchange ≤10 s, size cap (§8)."""
from __future__ import annotations

import base64
import json
import logging
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import quote, urlencode, urlsplit

from chalicelib.settings import get_settings
from chalicelib.tokens import s256

if TYPE_CHECKING:
    from chalicelib.netguard import Resolver

log = logging.getLogger(__name__)


class UpstreamError(Exception):
    """The upstream IdP failed or answered wrongly. ``error`` is the OAuth code for the app."""

    def __init__(self, description: str, error: str = "access_denied"):
        super().__init__(description)
        self.error = error
        self.description = description


def pkce_method(connection: dict) -> str | None:
    """SPEC §2.2 ``connection_settings.pkce``: only for the code flow."""
    options = connection["options"]
    if options.get("type") != "back_channel":
        return None
    setting = (options.get("connection_settings") or {}).get("pkce", "auto")
    if setting == "disabled":
        return None
    if setting in ("S256", "plain"):
        return setting
    supported = (options.get("oidc_metadata") or {}).get("code_challenge_methods_supported") or []
    return "S256" if "S256" in supported else None


def authorization_url(connection: dict, *, state: str, nonce: str, scope: str,
                      code_verifier: str | None, app_params: dict[str, str], redirect_uri: str,
                      force_login: bool = False, max_age: int | None = None) -> str:
    """``redirect_uri`` is the connection's own callback (RFC 9700 §4.4: an answer can then
    only be read for the connection it was meant for)."""
    options = connection["options"]
    params: dict[str, str] = {}
    # upstream_params first, so nothing below (the protocol's own parameters) can be overridden.
    for name, rule in (options.get("upstream_params") or {}).items():
        if "value" in rule:
            params[name] = rule["value"]
        elif rule.get("alias") and app_params.get(rule["alias"]):
            params[name] = app_params[rule["alias"]]
    if force_login:
        # The application asked for a fresh login (prompt=login, or max_age exceeded):
        # the IdP must re-authenticate too, not just replay its own session.
        params["prompt"] = "login"
    if max_age is not None:
        # OIDC Core §3.1.2.1: the IdP must then return auth_time, which the callback checks.
        params["max_age"] = str(max_age)
    params.update({"client_id": options["client_id"], "redirect_uri": redirect_uri,
                   "scope": scope, "state": state})
    if options.get("type") == "back_channel":
        params["response_type"] = "code"
        if options.get("send_back_channel_nonce", True):
            params["nonce"] = nonce
        method = pkce_method(connection)
        if method and code_verifier:
            params["code_challenge"] = s256(code_verifier) if method == "S256" else code_verifier
            params["code_challenge_method"] = method
    else:
        params["response_type"] = "id_token"
        params["response_mode"] = "form_post"
        params["nonce"] = nonce
    endpoint = options["authorization_endpoint"]
    separator = "&" if urlsplit(endpoint).query else "?"
    return endpoint + separator + urlencode(params)


AUTH_METHODS = ("client_secret_post", "client_secret_basic", "private_key_jwt")


def upstream_session(connection: dict, *, client_secret: str | None = None,
                     access_token: str | None = None, resolver: Resolver | None = None):
    """authlib's OAuth 2.0 client for one call to ``connection``'s IdP, its only transport
    netguard's (:func:`chalicelib.netguard.guard_session`): no request it makes can skip the
    address, redirect, size and time rules. ``resolver`` is for tests (netguard's)."""
    # cold start: authlib (and requests under it) load only on the callback path, never for
    # /authorize, /oauth/token, discovery or JWKS.
    from authlib.integrations.requests_client import OAuth2Session

    from chalicelib.netguard import guard_session

    options = connection["options"]
    method = options.get("token_endpoint_auth_method", "client_secret_post")
    if method not in AUTH_METHODS:
        raise UpstreamError(f"unsupported client authentication method {method}", "server_error")
    if method == "client_secret_post" and not client_secret:
        method = "none"  # client_id alone in the form, no empty client_secret
    session = OAuth2Session(
        client_id=options["client_id"], client_secret=client_secret,
        token_endpoint_auth_method=method,
        token={"access_token": access_token, "token_type": "Bearer"} if access_token else None)
    # authlib 1.9 Basic-encodes the raw id and secret (latin-1); RFC 6749 §2.3.1 wants them
    # form-urlencoded first, so ours replaces it.
    session.register_client_auth_method(("client_secret_basic", client_secret_basic))
    if method == "private_key_jwt":
        from chalicelib.login.client_assertion import ConnectionKeyJWT

        session.register_client_auth_method(ConnectionKeyJWT(connection))
    return guard_session(session, allow_loopback=get_settings().allow_insecure_loopback,
                         resolver=resolver, max_redirects=0)


def client_secret_basic(client, method, uri, headers, body):
    """An authlib client-auth method: RFC 6749 §2.3.1 HTTP Basic, each part form-urlencoded."""
    pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret or '', safe='')}"
    headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")
    return uri, headers, body


def exchange_code(connection: dict, code: str, code_verifier: str | None,
                  client_secret: str | None, redirect_uri: str, *,
                  resolver: Resolver | None = None) -> dict:
    """RFC 6749 §4.1.3 at the connection's token endpoint; returns the token response as sent.
    ``redirect_uri`` is the one the authorization request carried (§4.1.3 requires it equal):
    the login transaction's, i.e. the connection's own callback URL."""
    extra = {"code_verifier": code_verifier} if code_verifier else {}
    return _token_call(connection, client_secret, resolver, _token_response,
                       grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
                       **extra)


def _token_call(connection: dict, client_secret: str | None, resolver: Resolver | None,
                check: Callable[[dict, Any], dict], **grant: Any) -> dict:
    """One grant at the connection's token endpoint, with its client authentication and
    transport; returns the answer as sent, which ``check`` reads first (authlib's hook, run
    before authlib parses it)."""
    session = upstream_session(connection, client_secret=client_secret, resolver=resolver)
    answered: dict = {}

    def checked(response):
        answered.update(check(connection, response))
        return response

    session.register_compliance_hook("access_token_response", checked)
    _send(connection, "token endpoint", lambda: session.fetch_token(
        connection["options"]["token_endpoint"], **grant))
    return answered


# RFC 6749 §5.2: the error codes a token endpoint may answer; anything else is not one of them.
TOKEN_ERRORS = frozenset({"invalid_request", "invalid_client", "invalid_grant",
                          "unauthorized_client", "unsupported_grant_type", "invalid_scope"})


def refresh_tokens(connection: dict, refresh_token: str, client_secret: str | None, *,
                   resolver: Resolver | None = None) -> dict:
    """RFC 6749 §6 at the connection's token endpoint, with the same client authentication and
    transport as the code exchange; returns the token response as sent (it may carry a new
    refresh token: the caller keeps the old one when it does not, §6 and RFC 9700 §4.14.2).
    A refusal raises :class:`UpstreamError` with the upstream's own RFC 6749 §5.2 code
    (``invalid_grant``: the refresh token is dead), ``server_error`` for anything else it
    answers; an outage is ``temporarily_unavailable``."""
    return _token_call(connection, client_secret, resolver, _refresh_response,
                       grant_type="refresh_token", refresh_token=refresh_token)


def _refresh_response(connection: dict, response) -> dict:
    _check_available(connection, "token endpoint", response)
    body = _json_object(response.content)
    if response.status_code != 200 or body is None or "error" in body:
        code_name = (body or {}).get("error")
        code_name = code_name if code_name in TOKEN_ERRORS else "server_error"
        log.warning("upstream token endpoint of %s refused a refresh: %s %s", connection["name"],
                    response.status_code, code_name)
        raise UpstreamError("The identity provider refused the refresh token", code_name)
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise UpstreamError("The identity provider returned no access token", "server_error")
    if not isinstance(body.get("token_type"), str):
        raise UpstreamError("The identity provider returned no token type", "server_error")
    for name in ("refresh_token", "id_token", "scope"):
        if name in body and not isinstance(body[name], str):
            raise UpstreamError(f"The identity provider returned a malformed {name}",
                                "server_error")
    return body


def _token_response(connection: dict, response) -> dict:
    _check_available(connection, "token endpoint", response)
    body = _json_object(response.content)
    if response.status_code != 200 or body is None or "error" in body:
        code_name = (body or {}).get("error")
        log.warning("upstream token endpoint of %s answered %s %s", connection["name"],
                    response.status_code, str(code_name)[:64])
        raise UpstreamError("The identity provider refused the authorization code")
    if not isinstance(body.get("id_token"), str):
        raise UpstreamError("The identity provider returned no ID token")
    token_type = body.get("token_type")
    if "access_token" in body and (not isinstance(token_type, str) or token_type.lower() != "bearer"):
        raise UpstreamError("The identity provider returned an unsupported token type")
    return body


def _send(connection: dict, what: str, send):
    """Send one upstream request. A network failure is an outage (SPEC §8:
    ``temporarily_unavailable``, the app may retry), not a refusal."""
    from chalicelib.netguard import OutboundError, OutboundRefused

    try:
        return send()
    except (OutboundError, OutboundRefused) as exc:
        log.warning("upstream %s of %s failed: %s", what, connection["name"], exc)
        raise UpstreamError(f"The identity provider's {what} is unavailable",
                            "temporarily_unavailable") from None


def _check_available(connection: dict, what: str, response) -> None:
    """A 5xx or a 429 is an outage too (SPEC §8)."""
    if response.status_code >= 500 or response.status_code == 429:
        log.warning("upstream %s of %s answered %s", what, connection["name"],
                    response.status_code)
        raise UpstreamError(f"The identity provider's {what} is unavailable",
                            "temporarily_unavailable")


def _json_object(content: bytes) -> dict | None:
    try:
        value = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def fetch_userinfo(connection: dict, access_token: str, *, resolver: Resolver | None = None) -> dict:
    """OIDC Core §5.3 with the access token as a Bearer header (RFC 6750 §2.1), by authlib."""
    endpoint = connection["options"].get("userinfo_endpoint")
    if not endpoint:
        raise UpstreamError("The connection has no userinfo endpoint", "server_error")
    session = upstream_session(connection, access_token=access_token, resolver=resolver)
    response = _send(connection, "userinfo endpoint", lambda: session.get(
        endpoint, headers={"Accept": "application/json"}))
    _check_available(connection, "userinfo endpoint", response)
    body = _json_object(response.content)
    if response.status_code != 200 or body is None:
        raise UpstreamError("The identity provider's userinfo response was refused")
    return body
