"""User profiles: ``oidc|{connection}|{sub}`` with root and mapped attributes (SPEC §2.4).

Profiles live in one partition (``USERS``) so the Management API can list them with a strongly
consistent query; what hangs off a user (sessions, grants) lives in the ``USER#{user_id}``
partition, so revoking "everything of a user" is one query.
"""
from __future__ import annotations

import datetime as dt

from chalicelib.errors import NotFound
from chalicelib.store.dynamo import table

PK = "USERS"


def user_id_for(connection_name: str, sub: str) -> str:
    return f"oidc|{connection_name}|{sub}"


def iso(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def get_user(user_id: str) -> dict | None:
    if not isinstance(user_id, str) or not user_id or len(user_id) > 512:
        return None
    return table().get(PK, user_id)


def require_user(user_id: str) -> dict:
    user = get_user(user_id)
    if user is None:
        raise NotFound("The user does not exist.", error_code="inexistent_user")
    return user


def list_users(connection: str | None = None) -> list[dict]:
    users = list(table().query(PK))
    if connection is not None:
        users = [u for u in users if u.get("connection") == connection]
    return users


def user_update_operation(user_id: str, connection: dict, sub: str, attributes: dict,
                          now: float) -> dict:
    """The TransactWriteItems ``Update`` that creates or refreshes a user after a login."""
    identity = [{"connection": connection["name"], "provider": "oidc", "user_id": sub,
                 "iss": connection["options"]["issuer"], "isSocial": False}]
    values = {":attrs": attributes, ":now": iso(now), ":one": 1, ":identities": identity,
              ":connection": connection["name"], ":connection_id": connection["id"],
              ":uid": user_id}
    return {"Update": {
        "Key": {"pk": PK, "sk": user_id},
        "UpdateExpression": (
            "SET attributes = :attrs, updated_at = :now, last_login = :now, "
            "identities = :identities, #conn = :connection, connection_id = :connection_id, "
            "user_id = :uid, created_at = if_not_exists(created_at, :now) "
            "ADD logins_count :one"
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
