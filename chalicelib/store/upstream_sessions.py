"""Which broker sessions an upstream IdP's session created: the index that back-channel logout
from an upstream IdP reads (SPEC §11; OIDC Back-Channel Logout 1.0 §2.7).

Each login whose ID token carries a ``sid`` (and each token exchange of such an ID token,
chalicelib/login/token_exchange.py) adds one item to its own transaction (no round trip more):
``UPSTREAM_SID#{connection id}#{sha256(upstream sid)}`` / ``SESSION#{broker sid}``, holding the
broker session's ``sid`` and ``user_id``, expiring (``ttl``) with the broker session. A logout
token's ``sid`` is then one query of one partition. The upstream ``sid`` is
hashed: the IdP chooses it, of any length and alphabet, and the key stays bounded.

One item per broker session rather than a string set on one item per upstream session: an
unconditional Put that never reads or grows an item (an IdP session may outlive many broker
sessions), and each entry expires exactly with its own session, whatever the tenant's session
lifetime was when it was created. The ``sub`` needs no index of its own: a user is one
connection's (``users.user_id_for``), and the user's partition already lists its sessions
(store/user_refs.py).

An upstream session the IdP logged out (a logout token with ``sid``,
chalicelib/login/upstream_logout.py) also gets an "ended" marker in the same partition:
``UPSTREAM_SID#{connection id}#{sha256(upstream sid)}`` / ``ENDED`` (the logout token's ``iat``),
kept as long as store/upstream_cutoff.py keeps its moments (:data:`KEEP`), far past any ID token's
life. The token exchange's transaction carries :func:`not_ended_check` for an ID token with a
``sid`` (a ``ConditionCheck``: no round trip more), so an ID token of an upstream session that
ended opens nothing, while the user's other upstream sessions (and ID tokens without ``sid``)
keep working: only a ``sub``-only logout cuts them all (upstream_cutoff).
"""
from __future__ import annotations

import hashlib
import math
from typing import TypedDict, TypeGuard, cast

from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.store.unit_of_work import ABSENT, Write
from chalicelib.store.upstream_cutoff import KEEP

PREFIX = "UPSTREAM_SID#"
SESSION_PREFIX = "SESSION#"
ENDED = "ENDED"
MAX_UPSTREAM_SID = 1024
_IAT = {"#iat": "iat"}


class UpstreamSessionRef(TypedDict):
    """``UPSTREAM_SID#{connection id}#{sha256(upstream sid)}`` / ``SESSION#{sid}``."""
    pk: str
    sk: str
    sid: str        # the broker session's
    user_id: str
    ttl: int        # the broker session's absolute expiry


class EndedUpstreamSession(TypedDict):
    """``UPSTREAM_SID#{connection id}#{sha256(upstream sid)}`` / ``ENDED``."""
    pk: str
    sk: str
    iat: int        # the logout token's (the IdP's clock), whole seconds
    ttl: int        # iat + KEEP


def valid_upstream_sid(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_UPSTREAM_SID


def partition(connection_id: str, upstream_sid: str) -> str:
    digest = hashlib.sha256(upstream_sid.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{PREFIX}{connection_id}#{digest}"


def record_operations(connection_id: str, upstream_sid: object, sid: str, user_id: str,
                      expires_at: int) -> list[Write]:
    """The write that remembers that broker session ``sid`` (of ``user_id``, expiring at
    ``expires_at``) came from the upstream session ``upstream_sid`` of this connection: for the
    login's transaction. None when the ID token has no usable ``sid`` claim."""
    if not valid_upstream_sid(upstream_sid):
        return []
    return [Write.put({"pk": partition(connection_id, upstream_sid), "sk": SESSION_PREFIX + sid,
                       "sid": sid, "user_id": user_id, "ttl": int(expires_at)})]


def broker_sessions(connection_id: str, upstream_sid: str) -> list[UpstreamSessionRef]:
    """The broker sessions recorded for this upstream session, in ``sid`` order, read in full
    before the caller ends any of them. Expired entries are left out by the table's query itself
    (``Table.query`` yields live items only: expiry is checked on read, SPEC §7), whatever
    DynamoDB's TTL deletion has not removed yet."""
    if not valid_upstream_sid(upstream_sid):
        return []
    return [cast(UpstreamSessionRef, item)
            for item in list(table().query(partition(connection_id, upstream_sid),
                                           sk_prefix=SESSION_PREFIX))]


def ended_key(connection_id: str, upstream_sid: str) -> dict[str, str]:
    return {"pk": partition(connection_id, upstream_sid), "sk": ENDED}


def record_ended(connection_id: str, upstream_sid: str, iat: float) -> None:
    """The IdP logged out the upstream session ``upstream_sid`` (its logout token issued at
    ``iat``): from now on its ID tokens open nothing at the token exchange. One conditional put,
    idempotent (a later ``iat`` already recorded stays); a failure raises (``ServiceUnavailable``)
    before any session is ended, so the IdP's retry records it."""
    if not valid_upstream_sid(upstream_sid):
        raise ValueError("not an upstream sid")
    moment = int(math.floor(iat))
    try:
        table().put({**ended_key(connection_id, upstream_sid), "iat": moment,
                     "ttl": moment + KEEP},
                    condition="attribute_not_exists(pk) OR #iat < :iat", names=_IAT,
                    values={":iat": moment})
    except ConditionFailed:
        pass  # a later (or the same) logout of that session is there already


def not_ended_check(connection_id: str, upstream_sid: object) -> list[Write]:
    """For the exchange's transaction: holds while the upstream session ``upstream_sid`` was not
    logged out by the IdP. None when the ID token has no usable ``sid`` claim."""
    if not valid_upstream_sid(upstream_sid):
        return []
    return [Write.check(ended_key(connection_id, upstream_sid), ABSENT)]


def ended(connection_id: str, upstream_sid: str) -> EndedUpstreamSession | None:
    """The marker, when the IdP logged that upstream session out (for tests and support)."""
    if not valid_upstream_sid(upstream_sid):
        return None
    item = table().get(partition(connection_id, upstream_sid), ENDED)
    return cast(EndedUpstreamSession, item) if item is not None else None
