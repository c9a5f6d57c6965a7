"""``GET /api/v2/connections/{id}/status``: the connection's upstream checks, run now (SPEC §2.4).

Three checks, in order, each under the same outbound rules as connection creation and login
(:mod:`chalicelib.netguard`: public addresses only unless loopback is allowed, size and time caps):

1. ``discovery``: the discovery document (when the connection has a ``discovery_url``) is fetched
   and checked as at creation (OpenID Connect Discovery 1.0 §4.3);
2. ``issuer``: the issuer it announces is still the connection's stored issuer (tokens are
   checked against the stored one, so a changed issuer would fail every login);
3. ``jwks``: the connection's ``jwks_uri``, the one logins use, answers a key set with at least
   one usable public key.

The first failure is a :class:`ConnectionCheckFailed` naming the check; its message is
admin-readable and never echoes a response body.
"""
from __future__ import annotations

import json

from chalicelib.login.jwks_cache import JwksError, parse_jwks
from chalicelib.management.upstream_discovery import DiscoveryError, fetch_discovery
from chalicelib.netguard import OutboundError, OutboundRefused, safe_get
from chalicelib.settings import get_settings

CHECKS = ("discovery", "issuer", "jwks")


class ConnectionCheckFailed(Exception):
    def __init__(self, check: str, detail: str):
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


def _same_issuer(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _check_discovery(options: dict, allow_loopback: bool) -> dict:
    try:
        return fetch_discovery(options["discovery_url"], allow_loopback=allow_loopback,
                               require_token_endpoint=options.get("type") == "back_channel")
    except DiscoveryError as exc:
        raise ConnectionCheckFailed("discovery", str(exc)) from None


def _check_issuer(document: dict, options: dict) -> None:
    announced, stored = document.get("issuer"), options.get("issuer") or ""
    if not isinstance(announced, str) or not _same_issuer(announced, stored):
        shown = announced[:120] if isinstance(announced, str) else "?"
        raise ConnectionCheckFailed(
            "issuer", f"the provider now announces issuer {shown!r}, not the connection's "
                      f"{stored[:120]!r}")


def _check_jwks(jwks_uri: str | None, allow_loopback: bool) -> None:
    if not jwks_uri:
        raise ConnectionCheckFailed("jwks", "the connection has no jwks_uri")
    try:
        response = safe_get(jwks_uri, allow_loopback=allow_loopback,
                            headers={"Accept": "application/json, application/jwk-set+json"})
    except (OutboundRefused, OutboundError) as exc:
        raise ConnectionCheckFailed("jwks", str(exc)[:300]) from None
    if response.status_code != 200:
        raise ConnectionCheckFailed("jwks", f"the JWKS endpoint answered HTTP "
                                            f"{response.status_code}")
    try:
        parse_jwks(json.loads(response.content), source="the JWKS endpoint")
    except (ValueError, RecursionError):
        raise ConnectionCheckFailed("jwks", "the JWKS endpoint did not answer JSON") from None
    except JwksError as exc:
        raise ConnectionCheckFailed("jwks", str(exc)) from None


def check_connection(connection: dict) -> dict:
    """Run the checks; the passing result, or :class:`ConnectionCheckFailed`."""
    options = connection.get("options") or {}
    allow_loopback = get_settings().allow_insecure_loopback
    results = {}
    if options.get("discovery_url"):
        document = _check_discovery(options, allow_loopback)
        results["discovery"] = "ok"
        _check_issuer(document, options)
        results["issuer"] = "ok"
    else:
        results["discovery"] = results["issuer"] = "skipped (no discovery_url)"
    _check_jwks(options.get("jwks_uri"), allow_loopback)
    results["jwks"] = "ok"
    return {"status": "online", "checks": results}
