"""User profiles: ``oidc|{connection}|{sub}`` with root and mapped attributes (SPEC §2.4).

Each profile is its own item, ``USER#{user_id}`` / ``PROFILE``, in the partition that also holds
what hangs off the user (session and grant refs), so revoking "everything of a user" is one query
and no partition key is shared by all logins (a single ``USERS`` partition would cap the whole
broker at one partition's write rate). Two sparse, keys-only global secondary indexes
(infra/resources.yaml) list a connection's users (``users``: ``list_pk`` = ``USERS#{connection}#``
one of 4 shards, ``list_sk`` = the user id) and find them by email for Global Token Revocation
(``user_email``: ``email_key`` = ``{connection}|{casefolded email}``). Keys-only projections are
written only when a key changes (a new user, a new email), not on every login.
"""
from __future__ import annotations

import datetime as dt

from chalicelib.errors import NotFound
from chalicelib.store.dynamo import table

PROFILE = "PROFILE"
LIST_INDEX, LIST_SHARDS = "users", 4
EMAIL_INDEX = "user_email"


def key(user_id: str) -> tuple[str, str]:
    return f"USER#{user_id}", PROFILE


def _list_pk(connection_name: str, user_id: str) -> str:
    import hashlib

    shard = int(hashlib.sha256(user_id.encode()).hexdigest()[:8], 16) % LIST_SHARDS
    return f"USERS#{connection_name}#{shard}"


def email_key(connection_name: str, email: str) -> str:
    """The ``user_email`` index key; capped well inside DynamoDB's 2 KB key limit."""
    return f"{connection_name}|{email.strip().casefold()}"[:512]


def user_id_for(connection_name: str, sub: str) -> str:
    return f"oidc|{connection_name}|{sub}"


def iso(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def get_user(user_id: str) -> dict | None:
    if not isinstance(user_id, str) or not user_id or len(user_id) > 512:
        return None
    return table().get(*key(user_id))


def require_user(user_id: str) -> dict:
    user = get_user(user_id)
    if user is None:
        raise NotFound("The user does not exist.", error_code="inexistent_user")
    return user


def _profile_ids(items) -> set[str]:
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


def user_update_operation(user_id: str, connection: dict, sub: str, attributes: dict,
                          now: float) -> dict:
    """The TransactWriteItems ``Update`` that creates or refreshes a user after a login."""
    identity = [{"connection": connection["name"], "provider": "oidc", "user_id": sub,
                 "iss": connection["options"]["issuer"], "isSocial": False}]
    values = {":attrs": attributes, ":now": iso(now), ":one": 1, ":identities": identity,
              ":connection": connection["name"], ":connection_id": connection["id"],
              ":uid": user_id, ":list_pk": _list_pk(connection["name"], user_id)}
    email = attributes.get("email")
    if isinstance(email, str) and email.strip():
        values[":email_key"] = email_key(connection["name"], email)
        email_clause = ", email_key = :email_key"
        remove = ""
    else:
        email_clause = ""
        remove = " REMOVE email_key"
    pk, sk = key(user_id)
    return {"Update": {
        "Key": {"pk": pk, "sk": sk},
        "UpdateExpression": (
            "SET attributes = :attrs, updated_at = :now, last_login = :now, "
            "identities = :identities, #conn = :connection, connection_id = :connection_id, "
            "user_id = :uid, created_at = if_not_exists(created_at, :now), "
            f"list_pk = :list_pk, list_sk = :uid{email_clause}"
            f"{remove} ADD logins_count :one"
        ),
        "ExpressionAttributeNames": {"#conn": "connection"},
        "ExpressionAttributeValues": values,
    }}


def view(user: dict) -> dict:
    """Auth0's user object: root attributes at the top level, then the mapped ones."""
    body = dict(user.get("attributes") or {})
    body.update({
        "user_id": user["user_id"],
        "identities": user.get("identities", []),
        "created_at": user.get("created_at"),
        "updated_at": user.get("updated_at"),
        "last_login": user.get("last_login"),
        "logins_count": user.get("logins_count", 0),
    })
    return body
