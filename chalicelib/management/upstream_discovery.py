"""The OpenID Connect discovery check of an UPSTREAM IdP, made when an administrator creates a
connection (the broker's own discovery document is :mod:`chalicelib.provider.discovery`).

The administrator gives either the issuer (``https://idp.example.com``,
``https://tenant.auth0.com/``) or the full
``.../.well-known/openid-configuration`` URL. We fetch the document through
:mod:`chalicelib.netguard` (https only, public addresses only, 128 KB cap,
same-origin redirects only) and check it the way OpenID Connect Discovery 1.0
§4.3 asks: the ``issuer`` it announces must be the URL it was fetched under.

The broker's own checks come first (size, JSON, issuer, the fields it needs, endpoint
URLs through netguard's rules); then authlib's provider-metadata validators
(``OpenIDProviderMetadata``) for the fields a document carries, limited to the
checks that the documents of real IdPs (Auth0, Entra ID, Google, Okta, Keycloak)
pass: see :data:`AUTHLIB_CHECKS`.

Every failure is a :class:`DiscoveryError` whose ``str`` is the message for the
administrator. Messages never echo the response body; only short, quoted
excerpts of individual values (e.g. a mismatching issuer).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from chalicelib.netguard import (
    OutboundError,
    OutboundRefused,
    Resolver,
    ResponseTooLarge,
    SafeResponse,
    check_url,
    safe_get,
)

__all__ = [
    "ENDPOINT_FIELDS",
    "MAX_DISCOVERY_BYTES",
    "WELL_KNOWN_PATH",
    "DiscoveryError",
    "discovery_document_url",
    "fetch_discovery",
]

WELL_KNOWN_PATH = "/.well-known/openid-configuration"
MAX_DISCOVERY_BYTES = 128 * 1024
ENDPOINT_FIELDS = (
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "userinfo_endpoint",
    "end_session_endpoint",
)
_EXCERPT = 120

# authlib's OpenIDProviderMetadata.validate_<field>, run when the document has the field.
# Adopted: shape checks every real IdP passes, some of which the broker relies on
# (code_challenge_methods_supported as a string would match "S256" by substring).
# Left out: https checks of issuer and endpoints (netguard's check_url does them, and allows
# loopback http in local development); token_endpoint_auth_signing_alg_values_supported
# (required by authlib whenever private_key_jwt is listed: Entra ID lists it without);
# "RS256 MUST be included" in id_token_signing_alg_values_supported (the broker checks each
# ID token's algorithm itself); display_values_supported and language tags (not used here);
# the required-ness of subject_types_supported etc. beyond what the broker needs.
AUTHLIB_CHECKS = (
    "response_types_supported",
    "response_modes_supported",
    "grant_types_supported",
    "scopes_supported",
    "token_endpoint_auth_methods_supported",
    "code_challenge_methods_supported",
    "subject_types_supported",
    "acr_values_supported",
    "claims_supported",
    "claim_types_supported",
    "claims_parameter_supported",
    "request_parameter_supported",
    "request_uri_parameter_supported",
    "require_request_uri_registration",
)


class DiscoveryError(Exception):
    """The discovery check failed; ``str(error)`` is the message for the administrator."""


def _excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)[:_EXCERPT]
    if len(text) > _EXCERPT:
        text = text[:_EXCERPT] + "..."
    return repr(text)


def _strip_one_slash(url: str) -> str:
    return url[:-1] if url.endswith("/") else url


def discovery_document_url(discovery_url: str) -> tuple[str, str]:
    """``(document_url, expected_issuer)`` for an issuer URL or a full discovery URL.

    >>> discovery_document_url("https://tenant.auth0.com/")
    ('https://tenant.auth0.com/.well-known/openid-configuration', 'https://tenant.auth0.com')
    """
    if not isinstance(discovery_url, str) or not discovery_url.strip():
        raise DiscoveryError("discovery URL is empty")
    url = discovery_url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise DiscoveryError("discovery URL is malformed") from None
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        raise DiscoveryError("discovery URL must be an absolute https URL")
    if parts.query or parts.fragment:
        raise DiscoveryError("discovery URL must not contain a query or fragment")
    path = parts.path
    if path.endswith(WELL_KNOWN_PATH):
        path = path[: -len(WELL_KNOWN_PATH)]
    expected_issuer = _strip_one_slash(urlunsplit((parts.scheme, parts.netloc, path, "", "")))
    return expected_issuer + WELL_KNOWN_PATH, expected_issuer


def fetch_discovery(
    discovery_url: str,
    *,
    allow_loopback: bool,
    require_token_endpoint: bool,
    resolver: Resolver | None = None,
    fetch: Callable[..., SafeResponse] = safe_get,
) -> dict:
    """Fetch and check the discovery document; return it as a dict.

    ``fetch`` is called as ``fetch(document_url, allow_loopback=...,
    resolver=..., max_bytes=...)`` (tests pass a :func:`functools.partial` of
    :func:`~chalicelib.netguard.safe_get` with small timeouts).
    """
    document_url, expected_issuer = discovery_document_url(discovery_url)
    try:
        response = fetch(
            document_url,
            allow_loopback=allow_loopback,
            resolver=resolver,
            max_bytes=MAX_DISCOVERY_BYTES,
        )
    except ResponseTooLarge:
        raise DiscoveryError("discovery document is larger than 128 KB") from None
    except (OutboundRefused, OutboundError) as e:
        raise DiscoveryError(str(e)) from e

    if response.status_code != 200:
        raise DiscoveryError(f"discovery document at {document_url} returned HTTP {response.status_code}")
    if len(response.content) > MAX_DISCOVERY_BYTES:
        raise DiscoveryError("discovery document is larger than 128 KB")
    try:
        document = json.loads(response.content)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DiscoveryError("discovery document is not valid JSON") from None
    if not isinstance(document, dict):
        raise DiscoveryError("discovery document is not a JSON object")

    _check_issuer(document, expected_issuer)
    required = ["authorization_endpoint", "jwks_uri", "response_types_supported"]
    if require_token_endpoint:
        required.append("token_endpoint")
    for name in required:
        if name not in document or document[name] in (None, "", []):
            raise DiscoveryError(f"discovery document is missing {name}")
    types = document["response_types_supported"]
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise DiscoveryError("discovery document response_types_supported is not a list of strings")
    for name in ENDPOINT_FIELDS:
        if name in document and document[name] is not None:
            _check_endpoint(name, document[name], allow_loopback)
    _check_with_authlib(document)
    return document


def _check_with_authlib(document: dict) -> None:
    # cold start: authlib loads for an administrator's discovery check, never for a login
    from authlib.oidc.discovery import OpenIDProviderMetadata

    metadata = OpenIDProviderMetadata(document)
    for name in AUTHLIB_CHECKS:
        if document.get(name) is None:
            continue
        try:
            getattr(metadata, f"validate_{name}")()
        except ValueError as exc:  # authlib's messages name the field, never the document
            raise DiscoveryError(f"discovery document is invalid: {str(exc)[:200]}") from None


def _check_issuer(document: dict, expected_issuer: str) -> None:
    if "issuer" not in document:
        raise DiscoveryError("discovery document is missing issuer")
    issuer = document["issuer"]
    if not isinstance(issuer, str):
        raise DiscoveryError("discovery issuer is not a string")
    if _strip_one_slash(issuer) != expected_issuer:
        raise DiscoveryError(
            f"discovery issuer {_excerpt(issuer)} does not match {expected_issuer!r} "
            "(OpenID Connect Discovery 4.3)"
        )


def _check_endpoint(name: str, value: Any, allow_loopback: bool) -> None:
    if not isinstance(value, str):
        raise DiscoveryError(f"discovery document {name} is not a string")
    try:
        check_url(value, allow_loopback)
    except OutboundRefused as e:
        raise DiscoveryError(f"discovery document {name} {_excerpt(value)} refused: {e}") from None
