"""Token families: grants, authorization codes and refresh tokens (SPEC §4, §7).

A *grant* is one application's authorization from one login: its code, its refresh tokens and
its access tokens (which carry the grant id) all live and die with it. Revoking the grant
(code replay, refresh-token reuse, logout, Global Token Revocation) kills the whole family.
Codes and refresh tokens are stored only as SHA-256 digests and consumed with conditional
writes inside transactions that also check the grant is still active, so a redemption that
races a revocation cannot win.
"""
from __future__ import annotations

from chalicelib.provider import lifetimes
from chalicelib.store import refresh_tokens
from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.tokens import digest, random_token


class Replay(Exception):
    """A consumed code or a rotated refresh token was presented again."""

    def __init__(self, grant_id: str):
        super().__init__("replay")
        self.grant_id = grant_id


class Unusable(Exception):
    """Unknown, expired or revoked."""


# --- grants ----------------------------------------------------------------------------------

def new_grant_operations(grant_id: str, *, client_id: str, user_id: str, sid: str,
                         expires_at: int) -> list[dict]:
    grant = {"pk": f"GRANT#{grant_id}", "sk": "GRANT", "grant_id": grant_id,
             "client_id": client_id, "user_id": user_id, "sid": sid, "ttl": expires_at}
    # The refs let "everything of a user" (Global Token Revocation) and "everything of a client"
    # (client deletion) be found with one query. A grant may later be extended to a refresh
    # token's lifetime, so the refs outlive any grant (≤ 1 year) rather than track its TTL.
    ref_ttl = expires_at + MAX_REFRESH_LIFETIME
    user_ref = {"pk": f"USER#{user_id}", "sk": f"GRANT#{grant_id}", "grant_id": grant_id,
                "ttl": ref_ttl}
    client_ref = {"pk": f"CLIENT#{client_id}", "sk": f"GRANT#{grant_id}", "grant_id": grant_id,
                  "ttl": ref_ttl}
    return [{"Put": {"Item": grant, "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Put": {"Item": user_ref}}, {"Put": {"Item": client_ref}}]


MAX_REFRESH_LIFETIME = lifetimes.REFRESH_MAX  # the longest a refresh token family may live


def grants_of_client(client_id: str) -> list[str]:
    return [ref["grant_id"] for ref in table().query(f"CLIENT#{client_id}", sk_prefix="GRANT#")]


def grant_is_active_check(grant_id: str, now: int) -> dict:
    return {"ConditionCheck": {
        "Key": {"pk": f"GRANT#{grant_id}", "sk": "GRANT"},
        "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(revoked_at)",
    }}


def keep_grant_until_operation(grant_id: str, expires_at: int) -> dict:
    """As :func:`grant_is_active_check`, and the grant then lives until ``expires_at``: an API's
    access token may outlive the default one the grant was sized for (/userinfo checks it).
    Only for a later expiry than the grant's (the caller's duty)."""
    return {"Update": {
        "Key": {"pk": f"GRANT#{grant_id}", "sk": "GRANT"},
        "UpdateExpression": "SET #ttl = :exp",
        "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(revoked_at)",
        "ExpressionAttributeNames": {"#ttl": "ttl"},
        "ExpressionAttributeValues": {":exp": expires_at},
    }}


def get_grant(grant_id: str) -> dict | None:
    if not grant_id or len(grant_id) > 64:
        return None
    return table().get(f"GRANT#{grant_id}", "GRANT")


def grant_is_active(grant_id: str) -> bool:
    grant = get_grant(grant_id)
    return grant is not None and not grant.get("revoked_at")


def revoke_grant(grant_id: str, now: int, reason: str) -> None:
    try:
        table().update(f"GRANT#{grant_id}", "GRANT", "SET revoked_at = :now, revoked_for = :why",
                       condition="attribute_exists(pk) AND attribute_not_exists(revoked_at)",
                       values={":now": now, ":why": reason}, return_values="NONE")
    except ConditionFailed:
        pass  # already revoked, or expired and gone: revocation is idempotent


def extend_grant_operation(grant_id: str, expires_at: int) -> dict:
    return {"Update": {
        "Key": {"pk": f"GRANT#{grant_id}", "sk": "GRANT"},
        # A grant with a refresh token is "offline": it outlives a plain logout (as Keycloak's
        # offline sessions do) but not Global Token Revocation or a user/session deletion.
        "UpdateExpression": "SET #ttl = :exp, #offline = :true",
        "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(revoked_at)",
        "ExpressionAttributeNames": {"#ttl": "ttl", "#offline": "offline"},
        "ExpressionAttributeValues": {":exp": expires_at, ":true": True},
    }}


# --- authorization codes ---------------------------------------------------------------------

def new_code_operation(code_fields: dict, now: int) -> tuple[str, dict]:
    code = random_token(32)
    item = {"pk": f"CODE#{digest(code)}", "sk": "CODE",
            "ttl": now + lifetimes.AUTHORIZATION_CODE, **code_fields}
    return code, {"Put": {"Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}


def find_code(code: str, now: int) -> dict | None:
    """The code's record, consumed or not (None when unknown or expired)."""
    if not code or len(code) > 256:
        return None
    return table().get(f"CODE#{digest(code)}", "CODE")


def consume_code_operation(code: str, now: int) -> dict:
    return {"Update": {
        "Key": {"pk": f"CODE#{digest(code)}", "sk": "CODE"},
        "UpdateExpression": "SET consumed_at = :now",
        "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(consumed_at) "
                               "AND #ttl > :now",
        "ExpressionAttributeNames": {"#ttl": "ttl"},
        "ExpressionAttributeValues": {":now": now},
    }}


# --- refresh tokens --------------------------------------------------------------------------

def new_refresh_token_operation(fields: dict, now: int, *, absolute_expiry: int,
                                idle_lifetime: int) -> tuple[str, dict]:
    token = random_token(32)
    item = {"pk": f"RT#{digest(token)}", "sk": "RT", "ttl": absolute_expiry,
            "idle_expires_at": min(now + idle_lifetime, absolute_expiry),
            "created_at": now, "family_created_at": now, **fields,
            # Listed for the Management API until rotated (chalicelib/store/refresh_tokens.py).
            **refresh_tokens.index_keys(fields["user_id"], fields["grant_id"])}
    return token, {"Put": {"Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}


def continue_family(put_operation: dict, presented: dict, now: int) -> dict:
    """A new token of an existing family (rotation, reissue) keeps the family's creation time
    and records this exchange, for the Management API's view of the family."""
    item = put_operation["Put"]["Item"]
    item["family_created_at"] = int(presented.get("family_created_at") or presented["created_at"])
    item["last_exchanged_at"] = now
    return put_operation


def find_refresh_token(token: str) -> dict | None:
    if not token or len(token) > 256:
        return None
    return table().get(f"RT#{digest(token)}", "RT")


def rotate_refresh_token_operation(token: str, now: int) -> dict:
    return {"Update": {
        "Key": {"pk": f"RT#{digest(token)}", "sk": "RT"},
        "UpdateExpression": f"SET rotated_at = :now {refresh_tokens.LEAVE_INDEX}",
        "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(rotated_at) "
                               "AND #ttl > :now AND idle_expires_at > :now",
        "ExpressionAttributeNames": {"#ttl": "ttl"},
        "ExpressionAttributeValues": {":now": now},
    }}


def rotated_within_check(token: str, now: int, since: int) -> dict:
    """The presented token was rotated at or after ``since`` (the client's reuse leeway) and its
    family has not expired."""
    return {"ConditionCheck": {
        "Key": {"pk": f"RT#{digest(token)}", "sk": "RT"},
        "ConditionExpression": "rotated_at >= :since AND #ttl > :now",
        "ExpressionAttributeNames": {"#ttl": "ttl"},
        "ExpressionAttributeValues": {":now": now, ":since": since},
    }}


def slide_refresh_token_operation(token: str, now: int, idle_expires_at: int) -> dict:
    return {"Update": {
        "Key": {"pk": f"RT#{digest(token)}", "sk": "RT"},
        "UpdateExpression": "SET idle_expires_at = :idle, last_used_at = :now, "
                            "last_exchanged_at = :now",
        "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(rotated_at) "
                               "AND #ttl > :now AND idle_expires_at > :now",
        "ExpressionAttributeNames": {"#ttl": "ttl"},
        "ExpressionAttributeValues": {":now": now, ":idle": idle_expires_at},
    }}


def run(operations: list[dict]) -> None:
    """All-or-nothing; :class:`ConditionFailed` when any condition lost."""
    table().transact(operations)
