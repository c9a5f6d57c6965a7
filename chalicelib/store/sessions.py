"""Broker sessions (SSO): every key format, condition and update expression for them.

A session is one item, ``SESSION#{sid}`` / ``SESSION``, holding the cookie secret's digest (never
the secret), the applications it served (``clients``, a string set) and the grants issued in it
(``grants``). A ref in the user's partition (``USER#{user_id}`` / ``SESSION#{sid}``, see
store/users.py) lists a user's sessions with one query, next to the user's grant refs, so
revoking "everything of a user" reads one partition. Both expire (``ttl``) at the session's
absolute expiry.

The login's upstream ID token is kept only sealed under a key derived from the cookie secret
(``upstream_id_token_sealed``, chalicelib/sessions.py), never in clear: the token exchange
accepts it as a credential (SPEC §10). Sessions of the console's Try flow (and of the local
``make run`` demo) also hold the decoded upstream claims that its result page shows
(``upstream_claims``, JSON without the signature: no credential); revoking the session removes
them, and the Try flow revokes its session right after reading them.

Ending a session writes ``revoked_at`` and keeps the item until its TTL as a tombstone: the SSO
update requires ``attribute_not_exists(revoked_at)``, so a racing reuse cannot revive it.
"""
from __future__ import annotations

from typing import Any, Iterator, TypedDict, TypeGuard, cast

from chalicelib.store import users as user_records
from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.store.unit_of_work import Write

SK = "SESSION"
PREFIX = "SESSION#"      # the session item's partition, and the sort key of its user ref
MAX_SID = 64

# The SSO update holds only on a live session: not expired, not idle, not revoked.
_LIVE = ("attribute_exists(pk) AND #ttl > :now AND idle_expires_at > :now "
         "AND attribute_not_exists(revoked_at)")


class SessionRecord(TypedDict, total=False):
    """``SESSION#{sid}`` / ``SESSION``: a broker session as stored."""
    pk: str
    sk: str
    sid: str
    user_id: str
    connection_id: str
    cookie_digest: str
    auth_time: int
    updated_at: int
    expires_at: int
    idle_expires_at: int
    ttl: int
    clients: list[str]        # a string set, read back as a sorted list
    grants: list[str]
    acr: str
    amr: list[str]
    upstream_id_token_sealed: str  # base64url(nonce || AES-256-GCM), key from the cookie secret
    upstream_id_token: str         # in clear: only sessions from before sealing, until they expire
    upstream_claims: str           # JSON, Try (and demo) sessions only, until revoked
    revoked_at: int
    end_completed_at: int


def key(sid: str) -> tuple[str, str]:
    return f"{PREFIX}{sid}", SK


def _valid_sid(sid: str | None) -> TypeGuard[str]:
    return isinstance(sid, str) and 0 < len(sid) <= MAX_SID


def put_operations(sid: str, fields: dict[str, Any], user_id: str, connection_id: str, client_id: str,
                   grant_id: str) -> list[Write]:
    """Transaction items that create a session (it must not exist yet) and its user ref.
    ``fields`` carries ``expires_at`` (which becomes the TTL) and the other stored fields."""
    pk, sk = key(sid)
    item = {"pk": pk, "sk": sk, "sid": sid, "user_id": user_id,
            "connection_id": connection_id, "clients": {client_id}, "grants": {grant_id},
            "ttl": fields["expires_at"], **fields}
    ref = {"pk": user_records.key(user_id)[0], "sk": pk, "sid": sid,
           "ttl": fields["expires_at"]}
    return [Write.put_if_absent(item), Write.put(ref)]


def touch_operation(sid: str, client_id: str, grant_id: str, idle_expires_at: int,
                    now: int) -> Write:
    """A transaction item that records another application (and grant) served by a live
    session and slides its idle expiry to ``idle_expires_at``; it fails on a session that is
    expired, idle or revoked."""
    pk, sk = key(sid)
    return Write.update_item(
        {"pk": pk, "sk": sk},
        "SET idle_expires_at = :idle, updated_at = :now ADD clients :c, grants :g",
        condition=_LIVE, names={"#ttl": "ttl"},
        values={":idle": idle_expires_at, ":c": {client_id}, ":g": {grant_id}, ":now": now})


def get(sid: str | None, now: float | None = None) -> SessionRecord | None:
    """The session item, revoked or idle ones included (the caller decides), or None when it
    does not exist or its absolute expiry (``ttl``) is reached by ``now`` (TTL deletion lags)."""
    if not _valid_sid(sid):
        return None
    item = table().get(*key(sid))
    if item is None or (now is not None and int(item.get("ttl", 0)) <= now):
        return None
    return cast(SessionRecord, item)


def revoke(sid: str | None, now: int) -> SessionRecord | None:
    """Mark the session revoked (once) and drop the Try flow's upstream claims (when present);
    returns its new item, or None when it does not exist or was already revoked."""
    if not _valid_sid(sid):
        return None
    try:
        item = table().update(*key(sid), "SET revoked_at = :now REMOVE upstream_claims",
                              condition="attribute_exists(pk) AND attribute_not_exists(revoked_at)",
                              values={":now": now})
    except ConditionFailed:
        return None
    return cast("SessionRecord | None", item)


def mark_end_completed(sid: str, now: int) -> bool:
    """Record that the session's end is complete; False when the item is gone (expired)."""
    try:
        table().update(*key(sid), "SET end_completed_at = :now",
                       condition="attribute_exists(pk)", values={":now": now},
                       return_values="NONE")
    except ConditionFailed:
        return False
    return True


def sids_of_user(user_id: str) -> Iterator[str]:
    """The ids of the user's sessions whose ref has not expired, in ``sid`` order (every page)."""
    for ref in table().query(user_records.key(user_id)[0], sk_prefix=PREFIX):
        yield ref["sid"]

