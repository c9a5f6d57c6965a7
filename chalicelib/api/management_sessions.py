"""Management API: broker sessions (SPEC §2.4), shaped after Auth0's — ``/api/v2/sessions/{id}``
and ``/api/v2/users/{id}/sessions``.

Deleting sessions revokes like Global Token Revocation (SPEC §5): the sessions end, every grant
dies (offline refresh tokens too) and the applications get back-channel logout.
"""
from __future__ import annotations

from urllib.parse import unquote

from chalice import Blueprint

from chalicelib import clock
from chalicelib.api.http import handles_api_errors, json_response, management_caller
from chalicelib.errors import NotFound

bp = Blueprint(__name__)


def _caller(*scopes: str):
    return management_caller(bp.current_request, *scopes)


def _no_session() -> NotFound:
    return NotFound("The session does not exist.", error_code="inexistent_session")


def session_view(item: dict) -> dict:
    """Auth0's session object."""
    from chalicelib.users import iso

    authenticated = iso(int(item["auth_time"]))
    updated = iso(int(item.get("updated_at") or item["auth_time"]))
    return {
        "id": item["sid"],
        "user_id": item["user_id"],
        "created_at": authenticated,
        "updated_at": updated,
        "authenticated_at": authenticated,
        "last_interacted_at": updated,
        "idle_expires_at": iso(int(item["idle_expires_at"])),
        "expires_at": iso(int(item["expires_at"])),
        "clients": [{"client_id": c} for c in sorted(item.get("clients") or [])],
        "authentication": {"methods": [{"name": "federated", "timestamp": authenticated}]},
    }


def _live_session(session_id: str, now: int) -> dict:
    from chalicelib import sessions

    item = sessions.get_session(session_id, now)
    if item is None:
        raise _no_session()
    return item


@bp.route("/api/v2/users/{user_id}/sessions", methods=["GET"])
@handles_api_errors
def list_user_sessions(user_id):
    from chalicelib import sessions, users

    _caller("read:sessions")
    user = users.require_user(unquote(user_id))
    found = sessions.sessions_of_user(user["user_id"], clock.now_int())
    found.sort(key=lambda s: (int(s["auth_time"]), s["sid"]))
    return json_response({"sessions": [session_view(s) for s in found]})


@bp.route("/api/v2/users/{user_id}/sessions", methods=["DELETE"])
@handles_api_errors
def delete_user_sessions(user_id):
    from chalicelib import revocation, users

    _caller("delete:sessions")
    user = users.require_user(unquote(user_id))
    revocation.revoke_user(user["user_id"], clock.now_int(), "sessions_deleted")
    return json_response(None, 204)


@bp.route("/api/v2/sessions/{session_id}", methods=["GET"])
@handles_api_errors
def get_session(session_id):
    _caller("read:sessions")
    return json_response(session_view(_live_session(session_id, clock.now_int())))


@bp.route("/api/v2/sessions/{session_id}", methods=["DELETE"])
@handles_api_errors
def delete_session(session_id):
    from chalicelib import revocation, sessions

    _caller("delete:sessions")
    now = clock.now_int()
    if sessions.get_session(session_id, now) is None and sessions.unfinished_end(session_id) is None:
        raise _no_session()
    # A concurrent delete may win between the read and here: the session is gone either way.
    # finish_interrupted: a session whose earlier ending failed half-way is finished, not a 404.
    revocation.end_session(session_id, now, reason="session_deleted", include_offline=True,
                           finish_interrupted=True)
    return json_response(None, 204)
