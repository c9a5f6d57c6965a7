"""User profiles: ``oidc|{connection}|{sub}`` with root and mapped attributes (SPEC §2.4).

The key formats, indexes and conditions live in :mod:`chalicelib.store.users`; this module is
the profile as the rest of the broker sees it (ids, Auth0's user object, the 404). What follows
from deleting or blocking a user (its sessions end, its grants are revoked) is
chalicelib/cascades.py.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

from chalicelib.errors import NotFound
from chalicelib.store import users as store
from chalicelib.store.unit_of_work import Write
from chalicelib.store.users import UserProfile
from chalicelib.store.users import (  # noqa: F401 - the user API the other modules import
    EMAIL_INDEX,
    LIST_INDEX,
    LIST_SHARDS,
    PROFILE,
    email_key,
    key,
    list_user_ids,
    user_ids_by_email,
)


ADMIN_FIELDS: tuple[Literal["blocked", "app_metadata", "user_metadata"], ...] = (
    "blocked", "app_metadata", "user_metadata")


def user_id_for(connection_name: str, sub: str) -> str:
    return f"oidc|{connection_name}|{sub}"


def iso(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def get_user(user_id: str) -> UserProfile | None:
    return store.get(user_id)


def require_user(user_id: str) -> UserProfile:
    user = get_user(user_id)
    if user is None:
        raise NotFound("The user does not exist.", error_code="inexistent_user")
    return user


def is_blocked(user: UserProfile) -> bool:
    return user.get("blocked") is True


def user_update_operation(user_id: str, connection: dict, sub: str, attributes: dict,
                          now: float) -> Write:
    """The TransactWriteItems ``Update`` that creates or refreshes a user after a login; it
    cancels the login's transaction when the user is blocked."""
    return store.login_update_operation(user_id, connection, sub, attributes, iso(now))


def view(user: UserProfile) -> dict:
    """Auth0's user object: root attributes at the top level, then the mapped ones, then the
    administrative fields (``blocked`` once it was ever set, the two metadata objects)."""
    body = dict(user.get("attributes") or {})
    body.update({
        "user_id": user["user_id"],
        "identities": user.get("identities", []),
        "created_at": user.get("created_at"),
        "updated_at": user.get("updated_at"),
        "last_login": user.get("last_login"),
        "logins_count": user.get("logins_count", 0),
    })
    for field in ADMIN_FIELDS:
        # Only the Management API writes these: a mapped claim of the same name never shows.
        body.pop(field, None)
        if field in user:
            body[field] = user[field]
    return body


# --- PATCH /api/v2/users/{id} (SPEC §2.4) -------------------------------------------------------

METADATA_FIELDS: tuple[Literal["app_metadata", "user_metadata"], ...] = ("app_metadata", "user_metadata")
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 10
# Auth0's other updatable user fields. Users of an OpenID Connect connection get them from
# their identity provider at each login, so an edit here would be overwritten: refused, as Auth0
# refuses root attribute changes for enterprise connections that sync the profile.
UPSTREAM_OWNED = ("email", "email_verified", "phone_number", "phone_verified", "given_name",
                  "family_name", "name", "nickname", "picture", "username", "password",
                  "verify_email", "verify_phone_number", "connection", "client_id")


def _invalid(message: str):
    from chalicelib.errors import InvalidBody

    return InvalidBody(message)


def _check_metadata_value(field: str, value, depth: int = 0) -> None:
    """JSON DynamoDB can store exactly: bounded depth, numbers inside DynamoDB's range."""
    import math

    if depth > MAX_METADATA_DEPTH:
        raise _invalid(f"Payload validation error: '{field} is nested too deeply' on property "
                       f"{field}")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        if not _utf8(value):
            raise _invalid(f"Payload validation error: 'invalid string (unpaired surrogate)' on "
                           f"property {field}")
        return
    if isinstance(value, int):
        if abs(value) >= 10 ** 38:
            raise _invalid(f"Payload validation error: 'number out of range' on property {field}")
        return
    if isinstance(value, float):
        if not math.isfinite(value) or (value and not 1e-130 < abs(value) < 1e125):
            raise _invalid(f"Payload validation error: 'number out of range' on property {field}")
        return
    if isinstance(value, list):
        for item in value:
            _check_metadata_value(field, item, depth + 1)
        return
    for name, item in value.items():
        _check_key(field, name)
        _check_metadata_value(field, item, depth + 1)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_key(field: str, name: str) -> None:
    """Keys are 1-255 characters of valid UTF-8 (DynamoDB map keys cannot be empty), without
    dots and not starting with $ (Auth0's rule for metadata keys)."""
    if not name or "." in name or name.startswith("$") or len(name) > 255 or not _utf8(name):
        shown = name[:64].encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise _invalid(f"Payload validation error: 'invalid key {shown!r}: keys are 1-255 "
                       f"characters, without dots and not starting with $' on property {field}")


def merge_metadata(field: str, current: dict | None, change) -> dict:
    """Auth0's merge: top-level keys of ``change`` replace the stored ones (nested objects are
    replaced whole, not merged), a ``null`` value removes its key, and an empty object (or
    ``null`` for the whole field) clears it."""
    import json

    if change is None or change == {}:
        return {}
    if not isinstance(change, dict):
        raise _invalid(f"Payload validation error: 'Expected type object but found type "
                       f"{type(change).__name__}' on property {field}")
    merged = dict(current or {})
    for name, value in change.items():
        _check_key(field, name)
        if value is None:
            merged.pop(name, None)
        else:
            _check_metadata_value(field, value)
            merged[name] = value
    size = len(json.dumps(merged, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise _invalid(f"Payload validation error: '{field} must be at most "
                       f"{MAX_METADATA_BYTES} bytes once merged ({size})' on property {field}")
    return merged


def _check_patch(body: dict) -> None:
    if not body:
        raise _invalid("Payload validation error: 'Too few properties defined (0), minimum 1'")
    for name in body:
        if name == "blocked" or name in METADATA_FIELDS:
            continue
        if name in UPSTREAM_OWNED:
            raise _invalid(f"The following user attributes cannot be updated: {name}. The "
                           f"user's identity provider (an OpenID Connect connection) owns them "
                           f"and sets them at each login.")
        raise _invalid(f"Payload validation error: 'Additional properties not allowed: "
                       f"{str(name)[:64]}'")
    if "blocked" in body and not isinstance(body["blocked"], bool):
        raise _invalid("Payload validation error: 'Expected type boolean' on property blocked")


def update_profile(user_id: str, body: dict, now: float) -> dict:
    """Apply a PATCH to the stored profile; returns it updated. Through the Management API this
    is :func:`chalicelib.cascades.update_user`, which then ends a blocked user's sessions."""
    _check_patch(body)
    for _ in range(5):  # optimistic concurrency against other PATCHes of the same user
        user = require_user(user_id)
        changes = {}
        if "blocked" in body:
            changes["blocked"] = body["blocked"]
        for field in METADATA_FIELDS:
            if field in body:
                changes[field] = merge_metadata(field, user.get(field), body[field])
        updated = store.update_admin_fields(user["user_id"], changes,
                                            seen_revision=int(user.get("admin_revision") or 0),
                                            now_iso=iso(now))
        if updated is not None:
            break
    else:
        from chalicelib.errors import ServiceUnavailable

        raise ServiceUnavailable("The user is being changed concurrently; retry")
    return updated


# --- GET /api/v2/users?q= and /users-by-email ---------------------------------------------------

def users_by_email(email: str, connection_names: list[str]) -> list[UserProfile]:
    """Users whose email equals ``email`` (case-insensitive), over these connections, sorted by
    user_id: the email index per connection, confirmed on each profile (the index is eventually
    consistent)."""
    wanted = email.strip().casefold()
    ids = [user_id for name in connection_names for user_id in user_ids_by_email(name, email)]
    found = []
    for user in store.get_many(ids):  # one BatchGetItem per 100 users
        stored = user.get("attributes", {}).get("email")
        if isinstance(stored, str) and stored.strip().casefold() == wanted:
            found.append(user)
    return sorted(found, key=lambda u: u["user_id"])


# The subset of Auth0's user search syntax (Lucene) the broker answers: exact matches joined by
# AND. Anything else is refused with the part named, never silently ignored.
QUERY_FIELDS = ("email", "user_id", "identities.connection", "blocked")
MAX_QUERY = 1024


def _query_error(part: str):
    from chalicelib.errors import InvalidQueryString

    shown = part.strip()[:80] or "(empty)"
    return InvalidQueryString(f"Query validation error: unsupported part of q: '{shown}'. "
                              f"Supported: email:\"...\", user_id:\"...\", "
                              f"identities.connection:\"...\", blocked:true, joined by AND.")


def parse_query(q: str) -> list[tuple[str, str | bool]]:
    """``email:"a@b.c" AND blocked:true`` → ``[("email", "a@b.c"), ("blocked", True)]``."""
    import re

    if len(q) > MAX_QUERY:
        raise _query_error(q[:80])
    term = re.compile(r'\s*([A-Za-z_.]+):("((?:[^"\\]|\\.)*)"|([^\s"()\\]+))\s*')
    joiner = re.compile(r"AND\s+")
    terms: list[tuple[str, str | bool]] = []
    position = 0
    while True:
        match = term.match(q, position)
        if match is None:
            raise _query_error(q[position:])
        field, quoted, bare = match.group(1), match.group(3), match.group(4)
        if field not in QUERY_FIELDS:
            raise _query_error(match.group(0))
        if field == "blocked":
            if bare != "true":
                raise _query_error(match.group(0))
            terms.append((field, True))
        elif quoted is not None:
            terms.append((field, re.sub(r"\\(.)", r"\1", quoted)))
        elif any(c in bare for c in "*?~^[]{}:"):
            raise _query_error(match.group(0))  # wildcards, fuzzy, ranges: not supported
        else:
            terms.append((field, bare))
        position = match.end()
        if position == len(q):
            return terms
        joined = joiner.match(q, position)
        if joined is None:
            raise _query_error(q[position:])
        position = joined.end()


def _matches(user: UserProfile, terms: list[tuple[str, str | bool]]) -> bool:
    for field, value in terms:
        if field == "blocked" and not is_blocked(user):
            return False
        if field == "user_id" and user["user_id"] != value:
            return False
        if field == "identities.connection" and user.get("connection") != value:
            return False
        if field == "email" and isinstance(value, str):  # parse_query: a text term
            email = (user.get("attributes") or {}).get("email")
            if not isinstance(email, str) or email.strip().casefold() != value.strip().casefold():
                return False
    return True


def search(terms: list[tuple[str, str | bool]], connection_names: list[str]) -> list[UserProfile]:
    """Profiles of these connections matching every term, sorted by user_id. The candidates
    come from the narrowest key the terms give (the user id, the email index, the connection's
    list); every term is then checked on the profile itself."""
    names = [n for n in connection_names
             if all(v == n for f, v in terms if f == "identities.connection")]
    # parse_query gives text for these fields (only ``blocked`` is a flag).
    user_ids = [v for f, v in terms if f == "user_id" and isinstance(v, str)]
    emails = [v for f, v in terms if f == "email" and isinstance(v, str)]
    if user_ids:
        candidates = [u for u in [get_user(user_ids[0])] if u is not None]
    elif emails:
        candidates = users_by_email(emails[0], names)
    else:
        candidates = store.get_many(list_user_ids(names))  # one BatchGetItem per 100 users
    return sorted((u for u in candidates
                   if u.get("connection") in names and _matches(u, terms)),
                  key=lambda u: u["user_id"])
