"""The moment up to which a user's upstream ID tokens no longer count (SPEC §5, §10, §11).

Global Token Revocation, blocking or deleting a user (``revocation.revoke_user`` with
``forget_upstream_tokens``) and a back-channel logout from the IdP that names the user by ``sub``
alone (chalicelib/login/upstream_logout.py) each mean "the user must log in upstream again before
new tokens are issued". A login does (a fresh ID token, its ``nonce``); but the external → internal
token exchange (chalicelib/login/token_exchange.py) takes an upstream ID token the application kept,
which may be older. So each of them :func:`record` s the moment, and the exchange's transaction
carries :func:`issued_after_check`: an ID token whose ``iat`` is at or before the moment is refused.

One item in the user's partition, ``USER#{user_id}`` / ``UPSTREAM_CUTOFF`` (``cutoff``, epoch
seconds), beside the profile rather than in it: the exchange's transaction already updates the
profile, and one transaction cannot hold two operations on one item; as a ``ConditionCheck`` it
costs no round trip more. It outlives a deleted profile (the user could come back with an old ID
token) and expires :data:`KEEP` after the moment, far past any ID token's life.
"""
from __future__ import annotations

import math

from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.store.unit_of_work import Write
from chalicelib.store.users import key as profile_key

SK = "UPSTREAM_CUTOFF"
KEEP = 400 * 86400  # seconds the moment is kept (ttl)
_NAMES = {"#cutoff": "cutoff"}


def key(user_id: str) -> dict[str, str]:
    return {"pk": profile_key(user_id)[0], "sk": SK}


def record(user_id: str, moment: float) -> None:
    """From now on, ID tokens of ``user_id`` issued at or before ``moment`` are refused; a later
    moment already recorded stays (one conditional put, idempotent)."""
    cutoff = int(math.floor(moment))
    try:
        table().put({**key(user_id), "user_id": user_id, "cutoff": cutoff, "ttl": cutoff + KEEP},
                    condition="attribute_not_exists(pk) OR #cutoff < :cutoff",
                    names=_NAMES, values={":cutoff": cutoff})
    except ConditionFailed:
        pass  # a later (or the same) moment is there already


def issued_after_check(user_id: str, iat: float) -> Write:
    """A transaction item that holds while an ID token issued at ``iat`` is after the user's
    recorded moment (or there is none)."""
    return Write.check(key(user_id), "attribute_not_exists(pk) OR #cutoff < :iat",
                       names=_NAMES, values={":iat": int(math.floor(iat))})


def get(user_id: str) -> int | None:
    """The recorded moment (for tests and support)."""
    item = table().get(profile_key(user_id)[0], SK)
    return int(item["cutoff"]) if item is not None else None
