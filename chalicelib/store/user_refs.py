"""What hangs off a user: refs to its sessions and grants, in the user's own partition.

chalicelib/store/sessions.py writes a ``SESSION#{sid}`` ref (:class:`SessionRef`) and
chalicelib/store/grants.py a ``GRANT#{grant_id}`` ref (:class:`GrantRef`) under the partition key
of the user's profile (chalicelib/store/users.py), so every session and grant of a user is one
query.
"""
from __future__ import annotations

from typing import Literal, TypedDict, cast

from chalicelib.store.dynamo import table
from chalicelib.store.grants import GRANT_PREFIX as GRANT_REF
from chalicelib.store.sessions import PREFIX as SESSION_REF
from chalicelib.store.users import key as profile_key

RefKind = Literal["grant", "session"]


class SessionRef(TypedDict):
    """``USER#{user_id}`` / ``SESSION#{sid}``: expires with the session."""
    pk: str
    sk: str
    sid: str
    ttl: int


class GrantRef(TypedDict):
    """``USER#{user_id}`` / ``GRANT#{grant_id}``: expires with the grant's last token."""
    pk: str
    sk: str
    grant_id: str
    ttl: int


def refs_of(user_id: str) -> list[tuple[RefKind, str]]:
    """``("grant", grant_id)`` and ``("session", sid)`` for each ref of the user, in key order,
    read in full before the caller changes anything."""
    partition, _ = profile_key(user_id)
    found: list[tuple[RefKind, str]] = []
    for item in list(table().query(partition)):  # the profile itself is there too
        if item["sk"].startswith(SESSION_REF):
            found.append(("session", cast(SessionRef, item)["sid"]))
        elif item["sk"].startswith(GRANT_REF):
            found.append(("grant", cast(GrantRef, item)["grant_id"]))
    return found
