"""User profiles: every key format, index and condition expression for them (SPEC §2.4).

Each profile is its own item, ``USER#{user_id}`` / ``PROFILE``, in the partition that also holds
what hangs off the user (session and grant refs), so revoking "everything of a user" is one query
and no partition key is shared by all logins (a single ``USERS`` partition would cap the whole
broker at one partition's write rate). Two sparse, keys-only global secondary indexes
(infra/resources.yaml) list a connection's users (``users``: ``list_pk`` = ``USERS#{connection}#``
one of 4 shards, ``list_sk`` = the user id) and find them by email (``user_email``: ``email_key``
= ``{connection}|{casefolded email}``). Keys-only projections are written only when a key changes
(a new user, a new email), not on every login.

Administrative fields (``blocked``, ``app_metadata``, ``user_metadata``) are written only by the
Management API; a login's update leaves them alone, and refuses to run for a blocked user (its
condition), so a blocked user's login stores nothing.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, TypedDict, cast

from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.store.unit_of_work import Write

PROFILE = "PROFILE"
LIST_INDEX, LIST_SHARDS = "users", 4
EMAIL_INDEX = "user_email"
MAX_USER_ID = 512

# Holds while the user is not blocked (or does not exist yet: a first login).
NOT_BLOCKED = "attribute_not_exists(blocked) OR blocked <> :blocked_true"


class UserProfile(TypedDict, total=False):
    """``USER#{user_id}`` / ``PROFILE``: a user as stored."""
    pk: str
    sk: str
    user_id: str
    attributes: dict[str, Any]      # root and mapped attributes from the last login
    identities: list[dict[str, Any]]
    connection: str
    connection_id: str
    created_at: str                 # ISO 8601
    updated_at: str
    last_login: str
    logins_count: int
    list_pk: str
    list_sk: str
    email_key: str
    blocked: bool
    app_metadata: dict[str, Any]
    user_metadata: dict[str, Any]
    admin_revision: int


def key(user_id: str) -> tuple[str, str]:
    return f"USER#{user_id}", PROFILE


def _list_pk(connection_name: str, user_id: str) -> str:
    shard = int(hashlib.sha256(user_id.encode()).hexdigest()[:8], 16) % LIST_SHARDS
    return f"USERS#{connection_name}#{shard}"


def email_key(connection_name: str, email: str) -> str:
    """The ``user_email`` index key; capped well inside DynamoDB's 2 KB key limit."""
    return f"{connection_name}|{email.strip().casefold()}"[:512]


def get(user_id: str) -> UserProfile | None:
    if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID:
        return None
    return cast("UserProfile | None", table().get(*key(user_id)))


def get_many(user_ids: list[str]) -> list[UserProfile]:
    """The profiles of these users that exist (and have not expired), in the order asked: one
    BatchGetItem per 100 users instead of a GetItem each."""
    wanted = [u for u in user_ids
              if isinstance(u, str) and u and len(u) <= MAX_USER_ID]
    found = table().batch_get([key(u) for u in wanted])
    return [cast(UserProfile, found[key(u)]) for u in wanted if key(u) in found]


def _profile_ids(items: Iterable[dict[str, Any]]) -> set[str]:
    """The user ids of the profile items among index entries (keys only)."""
    return {item["pk"][len("USER#"):] for item in items
            if item.get("sk") == PROFILE and item["pk"].startswith("USER#")}


def list_user_ids(connection_names: list[str]) -> list[str]:
    """The ids of every user of these connections, sorted: their shards of the keys-only
    ``users`` index, merged. The caller pages the ids and reads only the page's profiles."""
    found: set[str] = set()
    for name in connection_names:
        for shard in range(LIST_SHARDS):
            found |= _profile_ids(table().query_index(LIST_INDEX, "list_pk", f"USERS#{name}#{shard}"))
    return sorted(found)


def user_ids_by_email(connection_name: str, email: str) -> list[str]:
    """The users of one connection with this email (case-insensitive), from the index; each is
    read again by the caller (the index is eventually consistent and holds keys only)."""
    return sorted(_profile_ids(table().query_index(EMAIL_INDEX, "email_key",
                                                   email_key(connection_name, email))))


def login_update_operation(user_id: str, connection: dict[str, Any], sub: str, attributes: dict[str, Any],
                           now_iso: str) -> Write:
    """The TransactWriteItems ``Update`` that creates or refreshes a user after a login. It fails
    (ConditionalCheckFailed, cancelling the whole login transaction) for a blocked user."""
    identity = [{"connection": connection["name"], "provider": "oidc", "user_id": sub,
                 "iss": connection["options"]["issuer"], "isSocial": False}]
    values = {":attrs": attributes, ":now": now_iso, ":one": 1, ":identities": identity,
              ":connection": connection["name"], ":connection_id": connection["id"],
              ":uid": user_id, ":list_pk": _list_pk(connection["name"], user_id),
              ":blocked_true": True}
    email = attributes.get("email")
    if isinstance(email, str) and email.strip():
        values[":email_key"] = email_key(connection["name"], email)
        email_clause = ", email_key = :email_key"
        remove = ""
    else:
        email_clause = ""
        remove = " REMOVE email_key"
    pk, sk = key(user_id)
    return Write.update_item(
        {"pk": pk, "sk": sk},
        "SET attributes = :attrs, updated_at = :now, last_login = :now, "
        "identities = :identities, #conn = :connection, connection_id = :connection_id, "
        "user_id = :uid, created_at = if_not_exists(created_at, :now), "
        f"list_pk = :list_pk, list_sk = :uid{email_clause}"
        f"{remove} ADD logins_count :one",
        condition=NOT_BLOCKED, names={"#conn": "connection"}, values=values)


def not_blocked_check(user_id: str) -> Write:
    """A transaction item that holds while the user is not blocked: single sign-on carries it, so
    a session that outlived a block (its ending still in flight) issues nothing."""
    pk, sk = key(user_id)
    return Write.check({"pk": pk, "sk": sk}, NOT_BLOCKED, values={":blocked_true": True})


def update_admin_fields(user_id: str, changes: dict[str, Any], *, seen_revision: int,
                        now_iso: str) -> dict[str, Any] | None:
    """Write ``blocked`` / ``app_metadata`` / ``user_metadata`` (whole values, merged by the
    caller) if the profile still exists and nobody else changed them since ``seen_revision``
    (optimistic concurrency: two PATCHes merging metadata never lose each other's keys).
    Returns the new item, or None when the condition lost (the caller re-reads)."""
    names: dict[str, str] = {"#rev": "admin_revision"}
    values: dict[str, Any] = {":seen": seen_revision, ":next": seen_revision + 1, ":now": now_iso}
    sets = ["#rev = :next", "updated_at = :now"]
    for index, (field, value) in enumerate(sorted(changes.items())):
        names[f"#f{index}"] = field
        values[f":v{index}"] = value
        sets.append(f"#f{index} = :v{index}")
    condition = ("attribute_exists(pk) AND "
                 + ("attribute_not_exists(#rev)" if seen_revision == 0 else "#rev = :seen"))
    if seen_revision == 0:
        del values[":seen"]
    try:
        return table().update(*key(user_id), "SET " + ", ".join(sets), condition=condition,
                              names=names, values=values)
    except ConditionFailed:
        return None


def delete(user_id: str) -> None:
    table().delete(*key(user_id))
