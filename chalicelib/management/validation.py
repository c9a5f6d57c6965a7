"""Turning pydantic validation errors and shared field rules into Auth0-style 400s."""
from __future__ import annotations

import re
import unicodedata
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from chalicelib.errors import InvalidBody
from chalicelib.settings import is_loopback_host

MAX_URL_LENGTH = 2048


def _location(loc: tuple) -> str:
    parts = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


Model = TypeVar("Model", bound=BaseModel)


def payload_error(message: str, where: str) -> InvalidBody:
    """The 400 of a body that breaks a rule the models cannot express, naming the property."""
    return InvalidBody(f"Payload validation error: '{message}' on property {where}")


def validate(model: type[Model], data: Any) -> Model:
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


# RFC 3986 §2: a URI is ASCII, and these printable characters never appear in one unencoded.
# Browsers read a backslash as a slash, and quotes and angle brackets break out of HTML.
_NOT_IN_URIS = frozenset('"<>\\^`{|}')
# RFC 8252 §7.1: a native app's private-use scheme is a reverse domain name (com.example.app).
_PRIVATE_SCHEME = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)+$")


def _raw_problem(value: str) -> str | None:
    """What is wrong with the raw characters, before any parser can strip or fold them:
    urlsplit silently drops TAB, CR and LF (WHATWG URL), so checks on its output miss them."""
    for char in value:
        category = unicodedata.category(char)
        if category == "Cc":  # C0 (NUL, TAB, CR, LF, ...), DEL and C1 (U+0080-U+009F)
            return f"must not contain control characters (U+{ord(char):04X})"
        if char.isspace() or category in ("Zs", "Zl", "Zp"):
            return f"must not contain whitespace (U+{ord(char):04X})"
        if not char.isascii():
            return (f"must contain only ASCII characters (U+{ord(char):04X}): percent-encode "
                    "them and use the punycode form of a host name (RFC 3986 §2)")
        if char in _NOT_IN_URIS:
            return f"must not contain the character {char!r} (RFC 3986 §2)"
    return None


def check_stored_url(value: Any, *, field: str, allow_loopback_http: bool,
                     allow_fragment: bool = False, private_scheme: bool = False) -> str:
    """The one check for every URL an administrator stores (SPEC §8): callbacks, logout and
    back-channel logout URLs, origins, connection endpoints, icons. Raises a 400 naming ``field``.

    An absolute https URL (http only on a loopback host, and only when allowed); never control
    characters, whitespace or non-URI characters, userinfo (user@host misleads readers of the URL,
    RFC 3986 §7.6), wildcards, or a fragment unless ``allow_fragment`` (RFC 6749 §3.1.2: a
    redirection endpoint has none). ``private_scheme`` admits a native app's reverse-domain scheme
    (``com.example.app:/callback``, RFC 8252 §7.1)."""
    def refuse(problem: str) -> InvalidBody:
        return InvalidBody(f"Payload validation error: '{field} {problem}' on property {field}")

    if not isinstance(value, str) or not value or len(value) > MAX_URL_LENGTH:
        raise refuse(f"must be a URL of 1 to {MAX_URL_LENGTH} characters")
    problem = _raw_problem(value)
    if problem:
        raise refuse(problem)
    if "#" in value and not allow_fragment:
        raise refuse("must not contain a fragment")
    if "*" in value:
        raise refuse("must not contain wildcards")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise refuse("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if private_scheme and _PRIVATE_SCHEME.match(scheme) and not value[len(scheme) + 1:].startswith(
            "//"):
        return value
    if "@" in parts.netloc:
        raise refuse("must not contain credentials (user@host)")
    if not host:
        raise refuse("must be an absolute URL with a host")
    if scheme == "https":
        return value
    if scheme == "http" and is_loopback_host(host):
        if allow_loopback_http:
            return value
        raise refuse("must use https (http on loopback needs BROKER_ALLOW_INSECURE_LOOPBACK)")
    raise refuse("must use https")
