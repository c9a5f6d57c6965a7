"""The upstream token vault's entries (SPEC §10): every key format, condition and update
expression for them.

One item per user and connection, ``VAULT#{user_id}`` / ``CONN#{connection_id}``, so everything a
user has in the vault is one query (revocation, deletion). The item holds the upstream tokens only
sealed (chalicelib/vault.py: AES-256-GCM under a KMS data key that is itself stored encrypted):
``sealed``, ``nonce``, ``data_key`` (the KMS ciphertext blob), ``key_id``; never a token in any
other attribute. ``version`` grows by one with every write (a login's or a refresh's);
``access_expires_at`` (the upstream access token's expiry, when the IdP gave one) lets a reader
decide without opening the entry. ``ttl`` is the retention (``options.token_retention_days``),
set again on every write.

Refreshing at the upstream is serialised by a lease (``lease`` = a random token, ``lease_until``):
:func:`take_lease` is one conditional update, so of concurrent callers exactly one wins, and
:func:`replace` writes only while its lease is held (then drops it), so a rotating upstream refresh
token is spent once. A login's write (:func:`store_operation`) drops any lease: its tokens are the
newest, and the refresher's :func:`replace` then fails on the lease it lost.
"""
from __future__ import annotations

from typing import Any, TypedDict, cast

from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.store.unit_of_work import Write

PREFIX = "VAULT#"
SK_PREFIX = "CONN#"
MAX_ID = 512  # user ids are at most ~300 characters; connection ids far less


class VaultRecord(TypedDict, total=False):
    """``VAULT#{user_id}`` / ``CONN#{connection_id}``: one user's sealed upstream tokens of one
    connection."""
    pk: str
    sk: str
    user_id: str
    connection_id: str
    connection: str          # the connection's name
    sealed: str              # base64 AES-256-GCM ciphertext (with its tag) of the tokens' JSON
    nonce: str               # base64, 96 bits
    data_key: str            # base64 KMS ciphertext blob of the AES-256 data key
    key_id: str              # the KMS key that encrypted the data key
    version: int
    access_expires_at: int   # absent when the upstream gave no expires_in
    lease: str
    lease_until: int
    created_at: int
    updated_at: int
    ttl: int


class SealedFields(TypedDict):
    """What chalicelib/vault.py hands over for a write: the sealed entry and its plain facts."""
    connection: str
    sealed: str
    nonce: str
    data_key: str
    key_id: str
    access_expires_at: int | None


def key(user_id: str, connection_id: str) -> tuple[str, str]:
    return f"{PREFIX}{user_id}", f"{SK_PREFIX}{connection_id}"


def _valid(user_id: object, connection_id: object) -> bool:
    return (isinstance(user_id, str) and 0 < len(user_id) <= MAX_ID
            and isinstance(connection_id, str) and 0 < len(connection_id) <= MAX_ID)


def _sets(fields: SealedFields, now: int, ttl: int) -> tuple[list[str], list[str], dict[str, Any]]:
    """SET and REMOVE parts shared by a login's write and a refresh's."""
    values: dict[str, Any] = {
        ":connection": fields["connection"], ":sealed": fields["sealed"],
        ":nonce": fields["nonce"], ":data_key": fields["data_key"], ":key_id": fields["key_id"],
        ":now": now, ":ttl": ttl, ":one": 1}
    sets = ["#connection = :connection", "sealed = :sealed", "nonce = :nonce",
            "data_key = :data_key", "key_id = :key_id", "updated_at = :now", "#ttl = :ttl"]
    removes = ["lease", "lease_until"]
    if fields["access_expires_at"] is None:
        removes.append("access_expires_at")
    else:
        sets.append("access_expires_at = :access_expires_at")
        values[":access_expires_at"] = fields["access_expires_at"]
    return sets, removes, values


_NAMES = {"#connection": "connection", "#ttl": "ttl"}


def store_operation(user_id: str, connection_id: str, fields: SealedFields, now: int,
                    ttl: int) -> Write:
    """A login's write (one more item of its transaction): the entry created or replaced with
    these tokens, its version one higher than before (1 for a new entry), any lease dropped."""
    if not _valid(user_id, connection_id):
        raise ValueError("not a vault key")
    pk, sk = key(user_id, connection_id)
    sets, removes, values = _sets(fields, now, ttl)
    values.update({":user_id": user_id, ":connection_id": connection_id, ":zero": 0})
    sets += ["user_id = :user_id", "connection_id = :connection_id",
             "created_at = if_not_exists(created_at, :now)",
             "version = if_not_exists(version, :zero) + :one"]
    expression = f"SET {', '.join(sets)} REMOVE {', '.join(removes)}"
    return Write.update_item({"pk": pk, "sk": sk}, expression, names=_NAMES, values=values)


def get(user_id: str, connection_id: str, now: int) -> VaultRecord | None:
    """The entry, or None when there is none or its retention has run out by ``now``."""
    if not _valid(user_id, connection_id):
        return None
    item = table().get(*key(user_id, connection_id))
    if item is None or int(item.get("ttl", 0)) <= now:
        return None
    return cast(VaultRecord, item)


def take_lease(user_id: str, connection_id: str, lease: str, now: int,
               until: int) -> VaultRecord | None:
    """Hold the entry's refresh lease until ``until``: the entry as it is now when this caller
    won (no other live lease, the entry exists and is within its retention), else None."""
    if not _valid(user_id, connection_id):
        return None
    try:
        item = table().update(
            *key(user_id, connection_id), "SET lease = :lease, lease_until = :until",
            condition=("attribute_exists(pk) AND #ttl > :now "
                       "AND (attribute_not_exists(lease_until) OR lease_until <= :now)"),
            names={"#ttl": "ttl"}, values={":lease": lease, ":until": until, ":now": now})
    except ConditionFailed:
        return None
    return cast("VaultRecord | None", item)


def replace(user_id: str, connection_id: str, fields: SealedFields, lease: str, now: int,
            ttl: int) -> int:
    """A refresh's write: the new tokens, version + 1, the lease dropped; only while ``lease``
    is still this entry's (:class:`ConditionFailed` when it was lost: taken over after it ran
    out, or a login wrote newer tokens). Returns the new version."""
    if not _valid(user_id, connection_id):
        raise ConditionFailed()
    sets, removes, values = _sets(fields, now, ttl)
    values[":lease"] = lease
    sets.append("version = version + :one")
    item = table().update(*key(user_id, connection_id),
                          f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
                          condition="attribute_exists(pk) AND lease = :lease",
                          names=_NAMES, values=values)
    if item is None:  # ALL_NEW: an update that happened returns the item
        raise ConditionFailed()
    return int(item["version"])


def release_lease(user_id: str, connection_id: str, lease: str) -> bool:
    """Drop ``lease`` if it is still held; False when it was not (nothing changes then)."""
    if not _valid(user_id, connection_id):
        return False
    try:
        table().update(*key(user_id, connection_id), "REMOVE lease, lease_until",
                       condition="lease = :lease", values={":lease": lease},
                       return_values="NONE")
    except ConditionFailed:
        return False
    return True


def of_user(user_id: str) -> list[VaultRecord]:
    """Every entry of the user within its retention (one query of its partition)."""
    if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_ID:
        return []
    return [cast(VaultRecord, item)
            for item in table().query(f"{PREFIX}{user_id}", sk_prefix=SK_PREFIX)]


def delete(user_id: str, connection_id: str) -> VaultRecord | None:
    """Delete the entry; the item as it was, or None when there was none."""
    if not _valid(user_id, connection_id):
        return None
    return cast("VaultRecord | None", table().delete(*key(user_id, connection_id),
                                                     return_old=True))
