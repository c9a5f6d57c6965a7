"""Claim mapping: upstream ID token / userinfo claims → the broker's user profile (SPEC §3.4).

Choices the SPEC leaves open (tests/unit/test_mapping.py pins each one):

* ``basic_profile`` and ``bind_all`` read the ID token and overlay userinfo: on a conflict the
  userinfo value wins (it is fetched live at the end of the login, OIDC Core §5.3.2, and many IdPs
  keep the ID token minimal). The caller has already checked that userinfo's ``sub`` matches.
* ``bind_all`` alone does **not** force a userinfo call: it binds userinfo claims *when userinfo is
  called* (``userinfo_scope`` set, or a template reads ``context.userinfo``).
* ``preferred_username`` → ``username`` in ``basic_profile`` and ``bind_all`` (in ``bind_all`` the
  ``preferred_username`` claim is kept as well, and it beats an upstream claim named ``username``).
* ``attributes`` templates are also honoured with ``basic_profile`` / ``bind_all`` (as Auth0 does):
  they are applied on top of the mode's result. A template owns its attribute: when its claim is
  missing the attribute is left out entirely (no silent fallback to the mode's value) + a warning.
* ``context.tokenset.<claim>`` means the validated ID token's claims (never raw tokens).
  ``<claim>`` may be a dotted path into objects (``context.tokenset.address.country``); a claim
  whose own name contains dots (``urn:x.y``) is found too: the longest matching key wins at each level.
* A claim whose value is ``null`` counts as missing (never sets an attribute to null, and a null
  in userinfo does not erase the ID token's value). ``email_verified`` sent as the string
  ``"true"``/``"false"`` (Cognito does) becomes a boolean in basic_profile/bind_all.
* Exactly one expression (``"${context.tokenset.groups}"``) keeps the JSON type; mixed text renders
  strings as they are, booleans/numbers/objects as compact JSON, arrays as their elements joined with
  ``,``. A template without expressions is a literal.
* Limits: an attribute holding a string (anywhere inside it) longer than 2048 characters is dropped;
  the profile's compact UTF-8 JSON is kept ≤ 64 KB by dropping attributes that do not fit, root
  attributes first in line. Values that are not JSON-serialisable are dropped. Each drop warns.
* Registered JWT/OIDC claims and the broker's own user fields never become attributes; as template
  targets they are skipped with a warning (connections.py already refuses them: defence in depth).
* Warnings name the attribute and the claim expression, never a claim's value.
"""
from __future__ import annotations

import json
import re
from typing import Any

from chalicelib.registry.connections import REGISTERED_CLAIMS, TEMPLATE_EXPR, TEMPLATE_PART

ROOT_ATTRIBUTES = ("email", "email_verified", "name", "given_name", "family_name", "nickname",
                   "picture", "username")
BASIC_PROFILE_CLAIMS = ("email", "email_verified", "name", "given_name", "family_name", "nickname",
                        "picture")
# Never copied by bind_all nor accepted as a template target: JWT/OIDC protocol claims and the
# fields the broker itself owns on a user (connections.REGISTERED_CLAIMS), plus a few more
# protocol-only claims (token type, aggregated/distributed claim plumbing, SIOP key).
EXCLUDED_CLAIMS = frozenset(REGISTERED_CLAIMS) | frozenset({
    "typ", "_claim_names", "_claim_sources", "sub_jwk", "at_use_nbf", "nonce_supported",
})
MODES = ("basic_profile", "bind_all", "use_map")
ROOT_POLICIES = ("on_each_login", "on_first_login", "never_on_login")
DEFAULT_SCOPE = "openid profile email"

MAX_STRING_CHARS = 2048
MAX_PROFILE_BYTES = 64 * 1024
_TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_MISSING = object()


def _attribute_map(connection: dict) -> dict:
    mapping = ((connection or {}).get("options") or {}).get("attribute_map") or {}
    return mapping if isinstance(mapping, dict) else {}


def _split_scope(raw: Any) -> list[str]:
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else re.split(r"[\s,]+", str(raw))
    return [item.strip() for item in items if isinstance(item, str) and item.strip()]


def _expressions(template: str) -> list[str]:
    return [expression.strip() for expression in TEMPLATE_PART.findall(template)]


def needs_userinfo(connection: dict) -> bool:
    """Whether the callback must call the userinfo endpoint (SPEC §3.3 step 5, §3.4).

    True when ``userinfo_scope`` is set, or any ``attributes`` template (in any mode, since
    templates also apply on top of basic_profile/bind_all) reads ``context.userinfo.*``.
    ``bind_all`` on its own does not: it binds userinfo claims only when userinfo is called.
    """
    mapping = _attribute_map(connection)
    if _split_scope(mapping.get("userinfo_scope")):
        return True
    for template in (mapping.get("attributes") or {}).values():
        if isinstance(template, str) and any(
                expression.startswith("context.userinfo.") for expression in _expressions(template)):
            return True
    return False


def upstream_scope(connection: dict) -> str:
    """The scope sent upstream: ``options.scope`` then ``userinfo_scope``'s scopes, deduplicated
    in first-seen order; ``openid`` is always present (first when it had to be added)."""
    options = (connection or {}).get("options") or {}
    raw = options.get("scope")
    if raw is None:
        raw = options.get("scopes")
    scopes = _split_scope(raw if raw is not None else DEFAULT_SCOPE)
    scopes += _split_scope(_attribute_map(connection).get("userinfo_scope"))
    ordered = list(dict.fromkeys(scopes))
    if "openid" not in ordered:
        ordered.insert(0, "openid")
    return " ".join(ordered)


# ----------------------------------------------------------------------------- templates


def _lookup(value: Any, segments: list[str]) -> Any:
    """Follow a dotted path; at each level the longest key made of the next segments wins."""
    if not segments:
        return value
    if not isinstance(value, dict):
        return _MISSING
    for end in range(len(segments), 0, -1):
        key = ".".join(segments[:end])
        if key in value:
            found = _lookup(value[key], segments[end:])
            if found is not _MISSING:
                return found
    return _MISSING


def _resolve(expression: str, connection: dict, id_claims: dict, userinfo: dict | None) -> Any:
    _, source, path = expression.split(".", 2)
    if source == "connection":
        value = (connection or {}).get(path)
        if value is None and path == "strategy":
            value = "oidc"
        return _MISSING if value is None else value
    claims = id_claims if source == "tokenset" else userinfo
    if not isinstance(claims, dict):
        return _MISSING
    value = _lookup(claims, path.split("."))
    return _MISSING if value is None else value


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_scalar_text(item) for item in value)
    return _scalar_text(value)


def _render(target: str, template: str, connection: dict, id_claims: dict,
            userinfo: dict | None, warnings: list[str]) -> Any:
    """The template's value, or _MISSING (with a warning) when it cannot be rendered."""
    whole = TEMPLATE_PART.fullmatch(template)
    parts = TEMPLATE_PART.split(template)  # text, expr, text, expr, ..., text
    for expression in parts[1::2]:
        if not TEMPLATE_EXPR.match(expression.strip()):
            warnings.append(f"attribute {target}: unsupported template expression; attribute left out")
            return _MISSING
    values = []
    for expression in parts[1::2]:
        expression = expression.strip()
        value = _resolve(expression, connection, id_claims, userinfo)
        if value is _MISSING:
            warnings.append(f"attribute {target}: claim {expression} is missing; attribute left out")
            return _MISSING
        values.append(value)
    if whole:
        return values[0]
    try:
        rendered = [_text(value) for value in values]
    except (TypeError, ValueError):
        warnings.append(f"attribute {target}: value is not JSON-serialisable; attribute left out")
        return _MISSING
    out = []
    for index, text in enumerate(parts[0::2]):
        out.append(text)
        if index < len(rendered):
            out.append(rendered[index])
    return "".join(out)


# ----------------------------------------------------------------------------- modes


def _merged(id_claims: dict, userinfo: dict | None) -> dict:
    """ID token claims overlaid by userinfo's (a null in userinfo does not erase a value)."""
    merged = {name: value for name, value in id_claims.items() if value is not None}
    merged.update({name: value for name, value in (userinfo or {}).items() if value is not None})
    verified = merged.get("email_verified")
    if isinstance(verified, str) and verified.lower() in ("true", "false"):
        merged["email_verified"] = verified.lower() == "true"  # e.g. Cognito sends "true"
    return merged


def _basic_profile(id_claims: dict, userinfo: dict | None) -> dict:
    merged = _merged(id_claims, userinfo)
    profile = {name: merged[name] for name in BASIC_PROFILE_CLAIMS if merged.get(name) is not None}
    if merged.get("preferred_username") is not None:
        profile["username"] = merged["preferred_username"]
    return profile


def _bind_all(id_claims: dict, userinfo: dict | None) -> dict:
    merged = _merged(id_claims, userinfo)
    profile = {name: value for name, value in merged.items()
               if isinstance(name, str) and name not in EXCLUDED_CLAIMS and value is not None}
    if merged.get("preferred_username") is not None:
        profile["username"] = merged["preferred_username"]
    return profile


def _longest_string(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return max((_longest_string(item) for item in value), default=0)
    if isinstance(value, dict):
        return max((max(len(str(k)), _longest_string(v)) for k, v in value.items()), default=0)
    return 0


def _enforce_limits(profile: dict, warnings: list[str]) -> dict:
    kept: dict = {}
    encoded: dict[str, int] = {}
    for name, value in profile.items():
        try:
            size = len(json.dumps({name: value}, separators=(",", ":"), ensure_ascii=False,
                                  allow_nan=False).encode("utf-8")) - 2
        except (TypeError, ValueError):
            warnings.append(f"attribute {name}: value is not JSON-serialisable; attribute dropped")
            continue
        if _longest_string(value) > MAX_STRING_CHARS:
            warnings.append(f"attribute {name}: a string is longer than {MAX_STRING_CHARS} "
                            "characters; attribute dropped")
            continue
        encoded[name] = size
    order = [n for n in encoded if n in ROOT_ATTRIBUTES] + [n for n in encoded
                                                           if n not in ROOT_ATTRIBUTES]
    total = 2  # the braces
    for name in order:
        cost = encoded[name] + (1 if kept else 0)  # the separating comma
        if total + cost > MAX_PROFILE_BYTES:
            warnings.append(f"attribute {name}: profile would exceed {MAX_PROFILE_BYTES} bytes; "
                            "attribute dropped")
            continue
        total += cost
        kept[name] = profile[name]
    return {name: kept[name] for name in profile if name in kept}


def map_claims(connection: dict, id_claims: dict, userinfo: dict | None) -> tuple[dict, list[str]]:
    """(profile attributes, warnings) for one login; never raises for a missing claim."""
    mapping = _attribute_map(connection)
    warnings: list[str] = []
    id_claims = id_claims if isinstance(id_claims, dict) else {}
    userinfo = userinfo if isinstance(userinfo, dict) else None
    mode = mapping.get("mapping_mode") or "basic_profile"
    if mode not in MODES:
        warnings.append("attribute_map: unknown mapping_mode; basic_profile used")
        mode = "basic_profile"
    if mode == "basic_profile":
        profile = _basic_profile(id_claims, userinfo)
    elif mode == "bind_all":
        profile = _bind_all(id_claims, userinfo)
    else:
        profile = {}
    for target, template in (mapping.get("attributes") or {}).items():
        if not isinstance(target, str) or target in EXCLUDED_CLAIMS or not _TARGET.match(target):
            warnings.append(f"attribute {target}: not an allowed target (registered claim or "
                            "invalid name); skipped")
            continue
        if not isinstance(template, str):
            warnings.append(f"attribute {target}: template is not a string; skipped")
            continue
        profile.pop(target, None)
        value = _render(target, template, connection, id_claims, userinfo, warnings)
        if value is not _MISSING:
            profile[target] = value
    return _enforce_limits(profile, warnings), warnings


def apply_root_attribute_policy(existing: dict | None, mapped: dict, policy: str) -> dict:
    """The user's new attribute dict after a login (no user_id/identities: users.py adds those).

    ``existing`` is the stored attribute dict (None for a new user). Non-root attributes always
    come from ``mapped`` (one that the IdP no longer sends disappears: no stale groups/roles).
    Root attributes: ``on_each_login`` → exactly ``mapped``'s (a root attribute the IdP no longer
    sends is removed); ``on_first_login`` → ``mapped``'s for a new user, the stored ones otherwise;
    ``never_on_login`` → never from the IdP (the stored ones; none for a new user).
    """
    policy = policy or "on_each_login"
    if policy not in ROOT_POLICIES:
        raise ValueError(f"unknown set_user_root_attributes policy {policy!r}")
    mapped = mapped or {}
    result = {name: value for name, value in mapped.items()
              if name not in ROOT_ATTRIBUTES and name not in EXCLUDED_CLAIMS}
    if policy == "on_each_login" or (policy == "on_first_login" and existing is None):
        source = mapped
    else:
        source = existing or {}
    for name in ROOT_ATTRIBUTES:
        if name in source and source[name] is not None:
            result[name] = source[name]
    return result
