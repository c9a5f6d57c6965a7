"""Finding a user's refresh tokens for the Management API (Auth0's ``/refresh-tokens``).

A refresh token's item (``RT#{digest}``, written by chalicelib/provider/grant_store.py) holds no
secret, only the digest in its key. To list a user's tokens without a scan, every token that is
still exchangeable carries the keys of the sparse, keys-only ``users`` index (the same index
that lists a connection's users, overloaded: its partitions here are ``RTS#{user_id}``, never
``USERS#...``): ``list_pk`` = ``RTS#{user_id}``, ``list_sk`` = its family (grant) id. Rotating a
token removes those keys in the same update, so the index holds only the newest token(s) of each
family, and old rotated items (kept until their TTL for reuse detection) are never read.

A family is what the Management API calls a refresh token: its ``id`` is the grant id, and
deleting it revokes the grant, which kills every token of the family (and its access tokens).
"""
from __future__ import annotations

from typing import Any

from dataclasses import dataclass

from chalicelib.store.dynamo import table

INDEX = "users"
PREFIX = "RTS#"


def index_keys(user_id: str, family_id: str) -> dict[str, Any]:
    """The index attributes a new, exchangeable refresh token carries."""
    return {"list_pk": f"{PREFIX}{user_id}", "list_sk": family_id}


# Put in the UpdateExpression that rotates a token: it leaves the index.
LEAVE_INDEX = "REMOVE list_pk, list_sk"


@dataclass(frozen=True)
class RefreshTokenFamily:
    id: str                  # the grant id
    user_id: str
    client_id: str
    session_id: str | None
    created_at: int          # the family's first token
    idle_expires_at: int     # of its newest token
    expires_at: int          # the family's absolute expiry
    last_exchanged_at: int | None
    scope: str
    audience: str | None


def _grant_is_live(family_id: str) -> bool:
    grant = table().get(f"GRANT#{family_id}", "GRANT")
    return grant is not None and not grant.get("revoked_at")


def _family(tokens: list[dict[str, Any]]) -> RefreshTokenFamily:
    newest = max(tokens, key=lambda t: (int(t["created_at"]), int(t["idle_expires_at"])))
    return RefreshTokenFamily(
        id=newest["grant_id"], user_id=newest["user_id"], client_id=newest["client_id"],
        session_id=newest.get("sid"),
        created_at=int(newest.get("family_created_at") or newest["created_at"]),
        idle_expires_at=max(int(t["idle_expires_at"]) for t in tokens),
        expires_at=int(newest.get("family_expires_at") or newest["ttl"]),
        last_exchanged_at=max((int(t["last_exchanged_at"]) for t in tokens
                               if t.get("last_exchanged_at")), default=None),
        scope=newest.get("scope", ""), audience=newest.get("audience"))


def families_of_user(user_id: str, now: int) -> list[RefreshTokenFamily]:
    """The user's live refresh-token families (not rotated away, not idle-expired, not
    revoked), sorted by id. One index query, then one read per token and per family."""
    by_family: dict[str, list[dict[str, Any]]] = {}
    for ref in table().query_index(INDEX, "list_pk", f"{PREFIX}{user_id}"):
        if not ref.get("pk", "").startswith("RT#"):
            continue
        token = table().get(ref["pk"], ref["sk"])
        if (token is None or token.get("rotated_at") or int(token["idle_expires_at"]) <= now
                or token.get("user_id") != user_id):
            continue
        by_family.setdefault(token["grant_id"], []).append(token)
    return [_family(tokens) for family_id, tokens in sorted(by_family.items())
            if _grant_is_live(family_id)]


def get_family(family_id: str, now: int) -> RefreshTokenFamily | None:
    if not isinstance(family_id, str) or not family_id or len(family_id) > 64:
        return None
    grant = table().get(f"GRANT#{family_id}", "GRANT")
    if grant is None or grant.get("revoked_at") or not grant.get("offline"):
        return None
    for family in families_of_user(grant["user_id"], now):
        if family.id == family_id:
            return family
    return None


def delete_exchangeable_tokens(user_id: str) -> int:
    """Deleting a user: its exchangeable refresh tokens go, the only ones that still carry a copy
    of the user's profile (for the ID token of the next refresh; rotation drops it), so no
    personal data outlives the user. The caller revokes the grants first, so none of them could
    be redeemed anyway. The index is eventually consistent: a token issued in the same instant
    may be missed (its copy then expires with it)."""
    deleted = 0
    for ref in list(table().query_index(INDEX, "list_pk", f"{PREFIX}{user_id}")):
        if ref.get("pk", "").startswith("RT#"):
            table().delete(ref["pk"], ref["sk"])
            deleted += 1
    return deleted
