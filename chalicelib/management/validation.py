"""Turning pydantic validation errors and shared field rules into Auth0-style 400s."""
from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from chalicelib.errors import InvalidBody


def _location(loc: tuple) -> str:
    parts = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = _location(tuple(first.get("loc", ())))
        if first.get("type") == "extra_forbidden":
            raise InvalidBody(f"Payload validation error: 'Additional properties not allowed: "
                              f"{where}'") from None
        message = first.get("msg", "invalid value")
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        raise InvalidBody(f"Payload validation error: '{message}' on property {where}") from None


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_web_url(value: str, *, allow_loopback_http: bool, what: str) -> str:
    """An absolute https URL (http only on loopback when allowed); no fragment, no userinfo."""
    if not isinstance(value, str) or len(value) > 2048:
        raise ValueError(f"{what} must be a URL of at most 2048 characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{what} is not a valid URL") from None
    if not host:
        raise ValueError(f"{what} must be an absolute URL")
    if parts.username or parts.password:
        raise ValueError(f"{what} must not contain credentials")
    if parts.fragment or "#" in value:
        raise ValueError(f"{what} must not contain a fragment")
    if "*" in value:
        raise ValueError(f"{what} must not contain wildcards")
    if parts.scheme == "https":
        return value
    if parts.scheme == "http" and allow_loopback_http and is_loopback_host(host):
        return value
    if parts.scheme == "http" and is_loopback_host(host):
        raise ValueError(f"{what} must use https (http on loopback needs "
                         "BROKER_ALLOW_INSECURE_LOOPBACK)")
    raise ValueError(f"{what} must use https")
