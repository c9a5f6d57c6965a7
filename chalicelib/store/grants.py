"""Grants, authorization codes and refresh tokens: every key format, condition and transaction item
of a token family (SPEC §4, §7).

``GRANT#{grant_id}`` / ``GRANT`` is one application's authorization from one login, with refs
under its user (``USER#{user_id}``) and its client (``CLIENT#{client_id}``) so "everything of a
user" or "of a client" is one query. ``CODE#{digest}`` / ``CODE`` and ``RT#{digest}`` / ``RT`` hold
codes and refresh tokens by their SHA-256 digest only (the caller computes it, chalicelib/tokens.py).
Single-use things are consumed by conditions inside the caller's transaction (the
:class:`~chalicelib.store.unit_of_work.Write` s built here, run by :func:`run`), never by a read
followed by a write.

A refresh token item may carry ``user_snapshot``: the part of the user's profile its ID token
needs (``attributes``, ``updated_at``). :func:`user_unchanged_check` pins it in the refresh
transaction, so a refresh needs no read of the user while the profile is unchanged.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict, TypeGuard, cast

from chalicelib.store import refresh_tokens
from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.store.unit_of_work import UnitOfWork, Write, unit_of
from chalicelib.store.users import NOT_BLOCKED
from chalicelib.store.users import key as user_key

GRANT_SK = "GRANT"
CODE_SK = "CODE"
RT_SK = "RT"
# Holds while the grant exists and was not revoked (logout, reuse, GTR, user/client deletion).
GRANT_ACTIVE = "attribute_exists(pk) AND attribute_not_exists(revoked_at)"
# Holds while a refresh token exists, was not rotated and neither its family nor its idle
# lifetime has run out (TTL deletion lags, SPEC §7).
TOKEN_EXCHANGEABLE = ("attribute_exists(pk) AND attribute_not_exists(rotated_at) "
                      "AND #ttl > :now AND idle_expires_at > :now")
SNAPSHOT_FIELDS = ("attributes", "updated_at")
GRANT_PREFIX = "GRANT#"  # the grant's partition, and the sort key of its user and client refs


class Grant(TypedDict, total=False):
    """``GRANT#{grant_id}`` / ``GRANT``."""
    pk: str
    sk: str
    grant_id: str
    client_id: str
    user_id: str
    sid: str
    ttl: int
    offline: bool          # has had a refresh token: outlives a plain logout
    revoked_at: int
    revoked_for: str


class Code(TypedDict, total=False):
    """``CODE#{digest}`` / ``CODE``: an authorization code and what its tokens are made of."""
    pk: str
    sk: str
    ttl: int
    grant_id: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str
    code_challenge: str
    code_challenge_method: str
    audience: str
    audience_id: str       # not stored: added once the API is resolved (code_grant.py)
    user_id: str
    sid: str
    auth_time: int
    user_snapshot: dict[str, Any]
    acr: str
    amr: list[str]
    consumed_at: int


class RefreshToken(TypedDict, total=False):
    """``RT#{digest}`` / ``RT``: one refresh token of a family (its grant)."""
    pk: str
    sk: str
    ttl: int
    idle_expires_at: int
    created_at: int
    family_created_at: int
    family_expires_at: int
    last_exchanged_at: int
    last_used_at: int
    rotated_at: int
    grant_id: str
    client_id: str
    user_id: str
    sid: str
    scope: str
    auth_time: int
    audience: str
    audience_id: str
    acr: str
    amr: list[str]
    user_snapshot: dict[str, Any]
    list_pk: str
    list_sk: str


def _grant_key(grant_id: str) -> dict[str, Any]:
    return {"pk": f"{GRANT_PREFIX}{grant_id}", "sk": GRANT_SK}


def _code_key(code_digest: str) -> dict[str, Any]:
    return {"pk": f"CODE#{code_digest}", "sk": CODE_SK}


def _token_key(token_digest: str) -> dict[str, Any]:
    return {"pk": f"RT#{token_digest}", "sk": RT_SK}


def run(writes: UnitOfWork | Iterable[Write]) -> None:
    """All-or-nothing; :class:`ConditionFailed` (with a reason per item) when any condition lost."""
    unit_of(writes).commit()


# --- grants ----------------------------------------------------------------------------------

def new_grant_operations(grant_id: str, *, client_id: str, user_id: str, sid: str,
                         expires_at: int, ref_ttl: int) -> list[Write]:
    grant = {**_grant_key(grant_id), "grant_id": grant_id, "client_id": client_id,
             "user_id": user_id, "sid": sid, "ttl": expires_at}
    user_partition, _ = user_key(user_id)
    user_ref = {"pk": user_partition, "sk": f"{GRANT_PREFIX}{grant_id}", "grant_id": grant_id,
                "ttl": ref_ttl}
    client_ref = {"pk": f"CLIENT#{client_id}", "sk": f"{GRANT_PREFIX}{grant_id}",
                  "grant_id": grant_id,
                  "ttl": ref_ttl}
    return [Write.put_if_absent(grant), Write.put(user_ref), Write.put(client_ref)]


def grant_ids_of_client(client_id: str) -> list[str]:
    return [ref["grant_id"] for ref in table().query(f"CLIENT#{client_id}", sk_prefix=GRANT_PREFIX)]


def get_grant(grant_id: str) -> Grant | None:
    return cast("Grant | None", table().get(**_grant_key(grant_id)))


def grant_is_active_check(grant_id: str) -> Write:
    return Write.check(_grant_key(grant_id), GRANT_ACTIVE)


def keep_grant_until_operation(grant_id: str, expires_at: int) -> Write:
    return Write.update_item(_grant_key(grant_id), "SET #ttl = :exp", condition=GRANT_ACTIVE,
                             names={"#ttl": "ttl"}, values={":exp": expires_at})


def extend_grant_operation(grant_id: str, expires_at: int) -> Write:
    # A grant with a refresh token is "offline": it outlives a plain logout (as Keycloak's
    # offline sessions do) but not Global Token Revocation or a user/session deletion.
    return Write.update_item(_grant_key(grant_id), "SET #ttl = :exp, #offline = :true",
                             condition=GRANT_ACTIVE, names={"#ttl": "ttl", "#offline": "offline"},
                             values={":exp": expires_at, ":true": True})


def revoke_grant(grant_id: str, now: int, reason: str) -> None:
    try:
        table().update(f"GRANT#{grant_id}", GRANT_SK,
                       "SET revoked_at = :now, revoked_for = :why", condition=GRANT_ACTIVE,
                       values={":now": now, ":why": reason}, return_values="NONE")
    except ConditionFailed:
        pass  # already revoked, or expired and gone: revocation is idempotent


# --- authorization codes ---------------------------------------------------------------------

def new_code_operation(code_digest: str, fields: dict[str, Any], expires_at: int) -> Write:
    item = {**_code_key(code_digest), "ttl": expires_at, **fields}
    return Write.put_if_absent(item)


def get_code(code_digest: str) -> Code | None:
    return cast("Code | None", table().get(**_code_key(code_digest)))


def consume_code_operation(code_digest: str, now: int) -> Write:
    return Write.update_item(
        _code_key(code_digest), "SET consumed_at = :now",
        condition="attribute_exists(pk) AND attribute_not_exists(consumed_at) AND #ttl > :now",
        names={"#ttl": "ttl"}, values={":now": now})


# --- refresh tokens --------------------------------------------------------------------------

def new_refresh_token_operation(token_digest: str, fields: dict[str, Any], *, created_at: int,
                                idle_expires_at: int, expires_at: int,
                                family_created_at: int | None = None,
                                last_exchanged_at: int | None = None) -> Write:
    """A new refresh token. A new token of an existing family (rotation, reissue) passes the
    family's creation time and the time of this exchange, for the Management API's view of the
    family (chalicelib/store/refresh_tokens.py)."""
    item = {**_token_key(token_digest), "ttl": expires_at, "idle_expires_at": idle_expires_at,
            "created_at": created_at, "family_created_at": created_at, **fields,
            # Listed for the Management API until rotated (chalicelib/store/refresh_tokens.py).
            **refresh_tokens.index_keys(fields["user_id"], fields["grant_id"])}
    if family_created_at is not None:
        item["family_created_at"] = family_created_at
    if last_exchanged_at is not None:
        item["last_exchanged_at"] = last_exchanged_at
    return Write.put_if_absent(item)


def get_refresh_token(token_digest: str) -> RefreshToken | None:
    return cast("RefreshToken | None", table().get(**_token_key(token_digest)))


def rotate_refresh_token_operation(token_digest: str, now: int) -> Write:
    # A rotated token is kept only to detect its reuse: it leaves the Management API's index and
    # drops its copy of the user's profile.
    return Write.update_item(
        _token_key(token_digest),
        f"SET rotated_at = :now {refresh_tokens.LEAVE_INDEX}, user_snapshot",
        condition=TOKEN_EXCHANGEABLE, names={"#ttl": "ttl"}, values={":now": now})


def rotated_within_check(token_digest: str, now: int, since: int) -> Write:
    """The token was rotated at or after ``since`` and its family has not expired."""
    return Write.check(_token_key(token_digest), "rotated_at >= :since AND #ttl > :now",
                       names={"#ttl": "ttl"}, values={":now": now, ":since": since})


def slide_refresh_token_operation(token_digest: str, now: int, idle_expires_at: int,
                                  user_snapshot: dict[str, Any] | None = None) -> Write:
    """Slide the idle expiry of a non-rotating token; with ``user_snapshot``, also store the
    profile its next refreshes may use without reading the user."""
    values: dict[str, Any] = {":now": now, ":idle": idle_expires_at}
    expression = "SET idle_expires_at = :idle, last_used_at = :now, last_exchanged_at = :now"
    if user_snapshot is not None:
        values[":snapshot"] = user_snapshot
        expression += ", user_snapshot = :snapshot"
    return Write.update_item(_token_key(token_digest), expression, condition=TOKEN_EXCHANGEABLE,
                             names={"#ttl": "ttl"}, values=values)


# --- the user behind a refresh ---------------------------------------------------------------

def user_snapshot(user: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a refresh token keeps of its user's profile (what the ID token's claims come from),
    or None when the profile lacks a field to pin."""
    if not isinstance(user.get("attributes"), dict) or not isinstance(user.get("updated_at"), str):
        return None
    return {name: user[name] for name in SNAPSHOT_FIELDS}


def usable_snapshot(snapshot: object) -> TypeGuard[dict[str, Any]]:
    return (isinstance(snapshot, dict) and isinstance(snapshot.get("attributes"), dict)
            and isinstance(snapshot.get("updated_at"), str))


def user_unchanged_check(user_id: str, snapshot: dict[str, Any] | None, *,
                         compare_attributes: bool = True) -> Write:
    """Holds while the user exists, is not blocked and its profile is still ``snapshot`` (with
    None: only exists and is not blocked).

    Every write of a profile sets ``updated_at`` (a login, to the second; an administrator's
    change, to the millisecond), and a login also rewrites ``attributes``; comparing both (maps
    compare by value) pins exactly what the ID token is made from, even for two logins within one
    second, without a revision counter that logins would have to maintain. Without
    ``compare_attributes`` (a profile read just before the transaction) only ``updated_at`` is
    pinned: a slow path that cannot fail for good on a map comparison, and a login within the
    same second as that read is caught by the next refresh's full check."""
    pk, sk = user_key(user_id)
    condition = f"attribute_exists(pk) AND ({NOT_BLOCKED})"
    values: dict[str, Any] = {":blocked_true": True}
    names: dict[str, str] | None = None
    if snapshot is not None:
        condition += " AND updated_at = :updated_at"
        values[":updated_at"] = snapshot["updated_at"]
        if compare_attributes:
            condition += " AND #attributes = :attributes"
            values[":attributes"] = snapshot["attributes"]
            names = {"#attributes": "attributes"}
    return Write.check({"pk": pk, "sk": sk}, condition, names=names, values=values)
