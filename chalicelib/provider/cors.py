"""CORS for browser applications (SPAs) at the broker's OAuth endpoints.

A single-page application redeems its code, refreshes and revokes from JavaScript on its own origin,
so ``/oauth/token`` and ``/oauth/revoke`` must answer cross-origin requests, but only for the
origins the application allows. As Auth0 does, those are the client's ``allowed_origins`` and
``web_origins`` plus the origins of its ``callbacks`` (Keycloak's "+" web origin).

- The preflight (``OPTIONS``) carries no body, hence no client: it is answered for any origin, and
  the decision is made on the real request, after client authentication and before anything is
  consumed. A request from an origin the client does not allow is refused (400 ``invalid_request``,
  nothing redeemed or revoked); a browser cannot read that answer either (no
  ``Access-Control-Allow-Origin``). This also stops the "simple" cross-site form POST that needs no
  preflight at all.
- A request the browser marks ``Sec-Fetch-Site: same-origin`` (the admin console), or whose Origin
  is the broker's own, or that has no Origin (servers, native apps), is not a CORS request.
- ``/userinfo``, discovery and the JWKS answer every origin with ``*``: they need a bearer token or
  are public, and no cookie is ever involved (no ``Allow-Credentials``).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from chalicelib.errors import OAuthError

ALLOW_HEADERS = "Authorization, Content-Type, Auth0-Client"
MAX_AGE = "600"
_ORIGIN = re.compile(r"^https?://([a-z0-9.\-]+|\[[0-9a-f:.]+\])(:\d{1,5})?$")
OPAQUE = "null"  # what a browser sends from a sandboxed frame or file:// — never allowed


def normalise_origin(value: str | None) -> str | None:
    """``scheme://host[:port]`` in the form browsers send (lower case, default port dropped)."""
    if not value or len(value) > 300:
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if (parts.scheme not in ("http", "https") or not host or parts.path or parts.query
            or parts.fragment or parts.username or parts.password is not None):
        return None
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    text = f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")
    return text if _ORIGIN.match(text) else None


def cross_origin(headers: Mapping[str, str]) -> str | None:
    """The origin of a cross-origin browser request, :data:`OPAQUE` for one that cannot be
    allowed, or None when this is not a CORS request (no Origin, same origin)."""
    raw = headers.get("origin")
    if raw is None:
        return None
    if (headers.get("sec-fetch-site") or "").lower() == "same-origin":
        return None
    from chalicelib.settings import get_settings

    origin = normalise_origin(raw.strip())
    if origin is None:
        return OPAQUE
    issuer = get_settings().issuer
    own = normalise_origin("{0.scheme}://{0.netloc}".format(urlsplit(issuer)))
    return None if origin == own else origin


def client_origins(record: dict[str, Any] | None) -> set[str]:
    """The origins a client allows: allowed_origins, web_origins and its callbacks' origins."""
    if not record:
        return set()  # the bootstrap admin client: same origin (the console) or servers only
    found = set(record.get("allowed_origins") or ()) | set(record.get("web_origins") or ())
    for url in record.get("callbacks") or ():
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if parts.scheme in ("http", "https") and parts.netloc:
            origin = normalise_origin(f"{parts.scheme}://{parts.netloc}")
            if origin:
                found.add(origin)
    return found


class ClientCors:
    """The CORS decision of one token or revocation request, made once the client is known."""

    def __init__(self, origin: str | None):
        self.origin = origin
        self.allowed = False

    def check(self, record: dict[str, Any] | None) -> None:
        """Refuse, before anything is consumed, a browser request from an origin the client does
        not allow."""
        if self.origin is None:
            return
        if self.origin != OPAQUE and self.origin in client_origins(record):
            self.allowed = True
            return
        raise OAuthError("invalid_request",
                         "This origin is not allowed for the client (allowed_origins, "
                         "web_origins or the origin of a callback URL)")

    def headers(self) -> dict[str, str]:
        if self.origin is None:
            return {}
        if self.allowed:
            return {"Access-Control-Allow-Origin": self.origin, "Vary": "Origin"}
        return {"Vary": "Origin"}


PUBLIC = {"Access-Control-Allow-Origin": "*",
          "Access-Control-Expose-Headers": "WWW-Authenticate"}


def preflight_headers(headers: Mapping[str, str], methods: str, *, echo_origin: bool) -> dict[str, str]:
    """The answer to an ``OPTIONS`` preflight: ``echo_origin`` for the client-checked endpoints
    (the real request decides), ``*`` for the public ones."""
    base = {"Access-Control-Allow-Methods": methods, "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": MAX_AGE, "Allow": methods + ", OPTIONS",
            "Cache-Control": "no-store"}
    if not echo_origin:
        return {**base, "Access-Control-Allow-Origin": "*"}
    origin = normalise_origin((headers.get("origin") or "").strip())
    if origin is None:
        return base
    return {**base, "Access-Control-Allow-Origin": origin, "Vary": "Origin"}
