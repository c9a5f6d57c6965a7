"""What hangs off a user: refs to its sessions and grants, in the user's own partition.

chalicelib/store/sessions.py writes a ``SESSION#{sid}`` ref and chalicelib/store/grants.py a
``GRANT#{grant_id}`` ref under the partition key of the user's profile (chalicelib/store/users.py),
so every session and grant of a user is one query.
"""
from __future__ import annotations

from chalicelib.store.dynamo import table
from chalicelib.store.grants import GRANT_PREFIX as GRANT_REF
from chalicelib.store.sessions import PREFIX as SESSION_REF
from chalicelib.store.users import key as profile_key


def refs_of(user_id: str) -> list[tuple[str, str]]:
    """``("grant", grant_id)`` and ``("session", sid)`` for each ref of the user, in key order,
    read in full before the caller changes anything."""
    partition, _ = profile_key(user_id)
    found = []
    for ref in list(table().query(partition)):
        if ref["sk"].startswith(SESSION_REF):
            found.append(("session", ref["sid"]))
        elif ref["sk"].startswith(GRANT_REF):
            found.append(("grant", ref["grant_id"]))
    return found
