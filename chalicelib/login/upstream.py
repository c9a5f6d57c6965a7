"""The broker as a relying party of an upstream IdP: the authorization request (SPEC §3.2), the
code exchange and the userinfo call (§3.3 steps 3 and 5). Every call goes through netguard:
public addresses only (loopback when allowed), connect ≤3 s, whole exchange ≤10 s (§8)."""
from __future__ import annotations

import json
import logging
from urllib.parse import urlencode, urlsplit

from chalicelib.settings import get_settings
from chalicelib.tokens import s256

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


def exchange_code(connection: dict, code: str, code_verifier: str | None,
                  client_secret: str | None, redirect_uri: str) -> dict:
    """RFC 6749 §4.1.3 at the connection's token endpoint; returns the token response.
    ``redirect_uri`` is the one the authorization request carried (§4.1.3 requires it equal)."""
    from chalicelib.netguard import safe_post_form

    options = connection["options"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    auth = None
    method = options.get("token_endpoint_auth_method", "client_secret_post")
    if method == "client_secret_basic":
        auth = (options["client_id"], client_secret or "")
    elif method == "client_secret_post":
        data["client_id"] = options["client_id"]
        if client_secret:
            data["client_secret"] = client_secret
    elif method == "private_key_jwt":
        from chalicelib.login.client_assertion import assertion_form

        # RFC 7523 §2.2: a signed assertion, no secret; client_id stays in the form (RFC 6749
        # §3.2.1 lets a client send it, and some IdPs need it to find the client's keys).
        data.update(assertion_form(connection))
    else:
        raise UpstreamError(f"unsupported client authentication method {method}", "server_error")
    if code_verifier:
        data["code_verifier"] = code_verifier
    response, body = _call(connection, "token endpoint", lambda: safe_post_form(
        options["token_endpoint"], data, auth=_basic(auth), headers={"Accept": "application/json"},
        allow_loopback=get_settings().allow_insecure_loopback, max_redirects=0))
    if response.status_code != 200 or body is None:
        code_name = (body or {}).get("error") if isinstance(body, dict) else None
        log.warning("upstream token endpoint of %s answered %s %s", connection["name"],
                    response.status_code, str(code_name)[:64])
        raise UpstreamError("The identity provider refused the authorization code")
    if not isinstance(body.get("id_token"), str):
        raise UpstreamError("The identity provider returned no ID token")
    token_type = body.get("token_type")
    if "access_token" in body and (not isinstance(token_type, str) or token_type.lower() != "bearer"):
        raise UpstreamError("The identity provider returned an unsupported token type")
    return body


def _basic(auth: tuple[str, str] | None):
    if auth is None:
        return None
    from urllib.parse import quote

    # RFC 6749 §2.3.1: form-urlencode both parts before Basic encoding.
    return (quote(auth[0], safe=""), quote(auth[1], safe=""))


def _call(connection: dict, what: str, send) -> tuple:
    """Send one upstream request; (response, JSON object or None). A network failure, a 5xx or a
    429 is an outage (SPEC §8: ``temporarily_unavailable``, the app may retry), not a refusal."""
    from chalicelib.netguard import OutboundError, OutboundRefused

    unavailable = UpstreamError(f"The identity provider's {what} is unavailable",
                                "temporarily_unavailable")
    try:
        response = send()
    except (OutboundError, OutboundRefused) as exc:
        log.warning("upstream %s of %s failed: %s", what, connection["name"], exc)
        raise unavailable from None
    if response.status_code >= 500 or response.status_code == 429:
        log.warning("upstream %s of %s answered %s", what, connection["name"],
                    response.status_code)
        raise unavailable
    return response, _json_object(response.content)


def _json_object(content: bytes) -> dict | None:
    try:
        value = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def fetch_userinfo(connection: dict, access_token: str) -> dict:
    from chalicelib.netguard import safe_get

    endpoint = connection["options"].get("userinfo_endpoint")
    if not endpoint:
        raise UpstreamError("The connection has no userinfo endpoint", "server_error")
    response, body = _call(connection, "userinfo endpoint", lambda: safe_get(
        endpoint, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        allow_loopback=get_settings().allow_insecure_loopback, max_redirects=0))
    if response.status_code != 200 or body is None:
        raise UpstreamError("The identity provider's userinfo response was refused")
    return body
