"""Management API: ``/api/v2/users``, ``/api/v2/users/{id}`` and ``/api/v2/users-by-email``:
Auth0's user administration (SPEC §2.4). Parse, authorize, call the rules in chalicelib/users.py,
shape. A user's sessions are in management_sessions.py, its refresh tokens in
management_refresh_tokens.py."""
from __future__ import annotations

from urllib.parse import unquote

from chalice import Blueprint

from chalicelib import clock
from chalicelib.api.http import (
    LazyModule,
    MANAGEMENT_BODY_TYPES,
    handles_api_errors,
    json_response,
    management_caller,
    parse_json,
    query_params,
)
from chalicelib.errors import InvalidQueryString
from chalicelib.management.paging import check_known, one, page, select_fields

bp = Blueprint(__name__)
cascades = LazyModule("chalicelib.cascades")
JSON = MANAGEMENT_BODY_TYPES

USER_FIELDS = ("user_id", "email", "email_verified", "name", "given_name", "family_name",
               "nickname", "picture", "username", "identities", "created_at", "updated_at",
               "last_login", "logins_count", "blocked", "app_metadata", "user_metadata")
# Auth0 accepts v2 and v3 (v1 is retired); the broker's search is its own either way.
SEARCH_ENGINES = ("v2", "v3")


def _caller(*scopes: str):
    return management_caller(bp.current_request, *scopes)


def _all_connection_names() -> list[str]:
    from chalicelib.management.connections import list_connections

    return [c["name"] for c in list_connections()]


def _selected(found: list[dict], params: dict, paged) -> object:
    known = USER_FIELDS + tuple(sorted({k for u in found for k in u}))
    if isinstance(paged, list):
        return select_fields(found, params, known)
    paged["users"] = select_fields(found, params, known)
    return paged


@bp.route("/api/v2/users", methods=["GET"])
@handles_api_errors
def list_users():
    from chalicelib import users
    from chalicelib.store import users as user_store

    _caller("read:users")
    params = query_params(bp.current_request)
    check_known(params, {"page", "per_page", "include_totals", "connection", "fields",
                         "include_fields", "search_engine", "q"})
    engine = one(params, "search_engine")
    if engine is not None and engine not in SEARCH_ENGINES:
        raise InvalidQueryString("Query validation error: 'search_engine must be v2 or v3' on "
                                 "property search_engine")
    connection = one(params, "connection")
    names = [connection] if connection is not None else _all_connection_names()
    q = one(params, "q")
    terms = users.parse_query(q) if q is not None and q.strip() else []
    if any(field != "identities.connection" for field, _ in terms):
        found = [users.view(u) for u in users.search(terms, names)]
        paged = page(found, params, "users", "user_id")
        chunk = paged if isinstance(paged, list) else paged["users"]
        return json_response(_selected(chunk, params, paged))
    names = [n for n in names if all(value == n for _, value in terms)]
    # Page the ids (from the keys-only index), then read only the page's profiles, in one
    # BatchGetItem per 100 of them (a profile deleted or expired since the index was read is
    # left out).
    ids = [{"user_id": user_id} for user_id in users.list_user_ids(names)]
    paged = page(ids, params, "users", "user_id")
    chunk = paged if isinstance(paged, list) else paged["users"]
    found = [users.view(u) for u in user_store.get_many([i["user_id"] for i in chunk])]
    return json_response(_selected(found, params, paged))


@bp.route("/api/v2/users-by-email", methods=["GET"])
@handles_api_errors
def users_by_email():
    from chalicelib import users

    _caller("read:users")
    params = query_params(bp.current_request)
    check_known(params, {"email", "fields", "include_fields"})
    email = one(params, "email")
    if not email or not email.strip() or len(email) > 320:
        raise InvalidQueryString("Query validation error: 'email is required (at most 320 "
                                 "characters)' on property email")
    found = [users.view(u) for u in users.users_by_email(email, _all_connection_names())]
    known = USER_FIELDS + tuple(sorted({k for u in found for k in u}))
    return json_response(select_fields(found, params, known))


@bp.route("/api/v2/users/{user_id}", methods=["GET"])
@handles_api_errors
def get_user(user_id):
    from chalicelib import users

    _caller("read:users")
    return json_response(users.view(users.require_user(unquote(user_id))))


@bp.route("/api/v2/users/{user_id}", methods=["PATCH"], content_types=JSON)
@handles_api_errors
def update_user(user_id):
    from chalicelib import users

    _caller("update:users")
    body = parse_json(bp.current_request)
    return json_response(users.view(cascades.update_user(unquote(user_id), body, clock.now())))


@bp.route("/api/v2/users/{user_id}", methods=["DELETE"])
@handles_api_errors
def delete_user(user_id):
    from chalicelib import users

    _caller("delete:users")
    user = users.require_user(unquote(user_id))
    cascades.delete_user(user["user_id"], clock.now_int())
    return json_response(None, 204)
