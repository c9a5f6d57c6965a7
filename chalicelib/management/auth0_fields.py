"""Auth0 fields the broker keeps but does not act on, and Auth0 values it refuses (SPEC §2.4).

Auth0's tools (the Terraform provider, the Deploy CLI, the SDKs) send every field of Auth0's
Management API schema. For each field the broker does not act on, a model declares it with
``inert(...)``: stored and echoed unchanged, within size limits. A value asking for a behaviour the
broker does not give, weaker or stronger than what it does, is refused with a 400 naming the field
(``only(...)``): an administrator's intent is never silently ignored. docs/AUTH0-COMPATIBILITY.md
lists both kinds; the OpenAPI document marks them with ``x-broker``.
"""
from __future__ import annotations

import json
import re
from typing import Any

from pydantic import AfterValidator, Field

MAX_JSON_BYTES = 16 * 1024
MAX_JSON_DEPTH = 6
# Auth0 add-ons carry secrets (firebase.secret, azure_sb.sas_key...): nothing secret is ever
# written to DynamoDB, so such keys are refused wherever a free-form object is accepted.
SECRET_KEY = re.compile(r"secret|private_key|sas_key|password|passphrase", re.IGNORECASE)


def _check_json(value: Any, path: str = "", depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not 0 < len(key) <= 255:
                raise ValueError("object keys are 1 to 255 characters")
            if SECRET_KEY.search(key):
                raise ValueError(f"{path}{key[:64]} looks like a secret: the broker keeps "
                                 "secrets in Secrets Manager only, never in this object")
            _check_json(item, f"{path}{key[:64]}.", depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, path, depth + 1)
    elif not (value is None or isinstance(value, (str, bool, int, float))):
        raise ValueError("values must be JSON")


def bounded_json(value: Any) -> Any:
    """A free-form JSON value of at most 16 KB, 6 levels deep, without secret-looking keys."""
    _check_json(value)
    if len(json.dumps(value, separators=(",", ":"))) > MAX_JSON_BYTES:
        raise ValueError(f"at most {MAX_JSON_BYTES} bytes of JSON")
    return value


JsonValue = AfterValidator(bounded_json)


def inert(description: str = "", **limits: Any) -> Any:
    """A field stored and echoed unchanged: the broker does not act on it."""
    text = "Stored and returned unchanged; the broker does not act on it."
    return Field(default=None, description=f"{text} {description}".strip(),
                 json_schema_extra={"x-broker": "inert"}, **limits)


def only(*allowed: Any, why: str) -> AfterValidator:
    """Accept null and ``allowed``; any other value asks for what the broker does not do."""
    def check(value: Any) -> Any:
        if value is not None and value not in allowed:
            shown = json.dumps(value) if not isinstance(value, (dict, list)) else "this value"
            raise ValueError(f"{shown} is refused: {why}")
        return value
    return AfterValidator(check)


def refused(*allowed: Any, why: str) -> tuple[AfterValidator, Any]:
    """The metadata of a field accepted only as null or one of ``allowed``: any other value asks
    for a behaviour the broker does not give, and gets a 400 naming the field. Written
    ``Annotated[Optional[kind], *refused(...)]``, so the type checker sees the field's type."""
    shown = ", ".join(json.dumps(a) for a in (None, *allowed))
    return (only(*allowed, why=why),
            Field(description=f"Accepted only as {shown}: {why}",
                  json_schema_extra={"x-broker": "refused-otherwise"}))


def fields_marked(model: Any, mark: str) -> tuple[str, ...]:
    """The names of ``model``'s fields marked ``inert`` or ``refused-otherwise``."""
    return tuple(name for name, info in model.model_fields.items()
                 if isinstance(info.json_schema_extra, dict)
                 and info.json_schema_extra.get("x-broker") == mark)
