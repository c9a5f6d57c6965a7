"""What follows an administrator's delete or block (SPEC §2.4, §8: no orphans, no live tokens).

The registry (chalicelib/management/clients.py, connections.py, grants.py) and the user records
(chalicelib/users.py) each write only their own items; the cascades that reach across them, and
up to ending sessions (chalicelib/revocation.py), live here, above all of them. Only the
Management API's routes call this module.
"""
from __future__ import annotations

from chalicelib import clock, revocation, users
from chalicelib.management import clients, connections, grants
from chalicelib.provider import grant_store
from chalicelib.store import refresh_tokens
from chalicelib.store import users as user_records


def delete_user(user_id: str, now: int) -> None:
    """Every session and grant of the user ends (offline ones too) and its upstream token vault
    is emptied, then the refresh tokens that hold a copy of its profile, then the profile
    itself."""
    revocation.revoke_user(user_id, now, "user_deleted", forget_upstream_tokens=True)
    refresh_tokens.delete_exchangeable_tokens(user_id)
    user_records.delete(user_id)


def update_user(user_id: str, body: dict, now: float) -> dict:
    """Apply a PATCH (:func:`chalicelib.users.update_profile`); blocking then ends everything of
    the user exactly as deleting it would (its upstream token vault too), but keeps the profile.
    The flag is written first, so a login or refresh racing this sees it (the login's condition,
    the refresh's user check) or loses its grant here."""
    updated = users.update_profile(user_id, body, now)
    if body.get("blocked") is True:
        revocation.revoke_user(updated["user_id"], int(now), "user_blocked",
                               forget_upstream_tokens=True)
    return updated


def delete_connection(connection_id: str) -> None:
    current = connections.require_connection(connection_id)
    # Its users go first (each one's sessions end, every grant is revoked, back-channel logout is
    # queued), so a failure half-way leaves the connection in place and a repeated DELETE
    # finishes the job. Auth0 deletes a connection's users with it too.
    now = clock.now_int()
    for user_id in users.list_user_ids([current["name"]]):
        delete_user(user_id, now)
    connections.delete_connection_records(current)


def delete_client(client_id: str) -> None:
    """Delete the client, its grants and its connection enablements, and revoke its tokens."""
    clients.require_client(client_id)
    grants.delete_grants_of_client(client_id)
    connections.disable_client_everywhere(client_id)
    clients.delete_client_record(client_id)
    # Its tokens die with their grants (codes, access and refresh tokens). After the delete, so a
    # token request racing it fails at client authentication.
    now = clock.now_int()
    for grant_id in grant_store.grants_of_client(client_id):
        grant_store.revoke_grant(grant_id, now, "client_deleted")
