"""Finishing a login: one transaction writes the user, the session, the grant and the code, so a
login either completes or leaves nothing behind (SPEC §3.3, §8)."""
from __future__ import annotations

from chalicelib.provider import grant_store, lifetimes
from chalicelib.store.unit_of_work import Write
from chalicelib.tokens import random_token


def code_operations(*, client_id: str, redirect_uri: str, scope: str, nonce: str | None,
                    code_challenge: str | None, code_challenge_method: str | None,
                    audience: str | None, user_id: str, sid: str, auth_time: int,
                    now: int, user_snapshot: dict | None = None, acr: str | None = None,
                    amr: list[str] | None = None) -> tuple[str, str, list[Write]]:
    """(code, grant_id, operations) for a new grant and its authorization code.

    ``user_snapshot`` (the profile as this login wrote it) rides on the code so the token
    endpoint need not read the user again; a deleted user's grants are revoked anyway.
    ``auth_time``, ``acr`` and ``amr`` describe the upstream login, for the ID token (SPEC §3.1)."""
    grant_id = random_token(18)
    fields = {"client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
              "nonce": nonce, "code_challenge": code_challenge,
              "code_challenge_method": code_challenge_method, "audience": audience,
              "user_id": user_id, "sid": sid, "auth_time": auth_time, "grant_id": grant_id,
              "user_snapshot": user_snapshot, "acr": acr, "amr": list(amr) if amr else None}
    code, code_op = grant_store.new_code_operation({k: v for k, v in fields.items()
                                                    if v is not None}, now)
    ops = grant_store.new_grant_operations(
        grant_id, client_id=client_id, user_id=user_id, sid=sid,
        expires_at=now + lifetimes.AUTHORIZATION_CODE + lifetimes.ACCESS_TOKEN)
    return code, grant_id, [*ops, code_op]
