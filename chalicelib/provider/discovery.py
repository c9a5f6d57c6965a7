"""The broker's OWN discovery document, ``/.well-known/openid-configuration`` (OIDC Discovery 1.0
§3, RFC 8414), served by chalicelib/api/well_known.py. (Fetching and checking an upstream IdP's
discovery document is :mod:`chalicelib.management.upstream_discovery`.)"""
from __future__ import annotations

from typing import Any

from chalicelib.registry.resource_servers import OIDC_SCOPES
from chalicelib.settings import get_settings

_cache: dict[str, dict[str, Any]] = {}


def document() -> dict[str, Any]:
    settings = get_settings()
    found = _cache.get(settings.issuer)
    if found is not None:
        return found
    url = settings.url
    doc = {
        "issuer": settings.issuer,
        "authorization_endpoint": url("authorize"),
        "token_endpoint": url("oauth/token"),
        "userinfo_endpoint": url("userinfo"),
        "jwks_uri": url(".well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post", "web_message"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
                                  # RFC 8693 (SPEC §10): chalicelib/login/token_exchange.py
                                  "urn:ietf:params:oauth:grant-type:token-exchange"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post",
                                                  "none"],
        "scopes_supported": list(OIDC_SCOPES),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid",
                             "name", "given_name", "family_name", "nickname", "picture",
                             "preferred_username", "email", "email_verified", "updated_at"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "claims_parameter_supported": False,
        "end_session_endpoint": url("oidc/logout"),
        "revocation_endpoint": url("oauth/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic",
                                                       "client_secret_post", "none"],
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        # draft-parecki-oauth-global-token-revocation: one endpoint per connection.
        "global_token_revocation_endpoint": url(
            "oauth/global-token-revocation/connection/{connection_name}"),
    }
    _cache.clear()
    _cache[settings.issuer] = doc
    return doc
