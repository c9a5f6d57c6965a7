"""Management API: Auth0's refresh-token management (SPEC §2.4) —
``/api/v2/users/{id}/refresh-tokens`` and ``/api/v2/refresh-tokens/{id}``. A refresh token here is
its family (one grant): its id and facts, never a token value."""
from __future__ import annotations

from urllib.parse import unquote

from chalice import Blueprint

from chalicelib import clock
from chalicelib.api.http import handles_api_errors, json_response, management_caller, query_params
from chalicelib.errors import NotFound
from chalicelib.management.paging import check_known, page

bp = Blueprint(__name__)


def _caller(*scopes: str):
    return management_caller(bp.current_request, *scopes)


def refresh_token_view(family) -> dict:
    """Auth0's refresh token object: the family's id and facts, never a token value."""
    from chalicelib.registry.clients import cached_client
    from chalicelib.provider.issue import userinfo_audience
    from chalicelib.users import iso

    client = cached_client(family.client_id) or {}
    rotating = (client.get("refresh_token") or {}).get("rotation_type", "rotating") == "rotating"
    return {
        "id": family.id,
        "user_id": family.user_id,
        "created_at": iso(family.created_at),
        "idle_expires_at": iso(family.idle_expires_at),
        "expires_at": iso(family.expires_at),
        "client_id": family.client_id,
        "session_id": family.session_id,
        "rotating": rotating,
        "resource_servers": [{"audience": family.audience or userinfo_audience(),
                              "scopes": family.scope}],
        "last_exchanged_at": (iso(family.last_exchanged_at)
                              if family.last_exchanged_at is not None else None),
    }


def _no_refresh_token() -> NotFound:
    return NotFound("The refresh token does not exist.", error_code="inexistent_refresh_token")


@bp.route("/api/v2/users/{user_id}/refresh-tokens", methods=["GET"])
@handles_api_errors
def list_user_refresh_tokens(user_id):
    from chalicelib import users
    from chalicelib.store import refresh_tokens

    _caller("read:refresh_tokens")
    params = query_params(bp.current_request)
    # include_totals: Auth0's SDKs send it; checkpoint paging ignores it, as Auth0 does.
    check_known(params, {"include_totals", "from", "take"})
    user = users.require_user(unquote(user_id))
    families = refresh_tokens.families_of_user(user["user_id"], clock.now_int())
    params.pop("include_totals", None)
    params.setdefault("take", ["50"])
    paged = page([refresh_token_view(f) for f in families], params, "tokens", "id")
    return json_response(paged)


@bp.route("/api/v2/refresh-tokens/{token_id}", methods=["GET"])
@handles_api_errors
def get_refresh_token(token_id):
    from chalicelib.store import refresh_tokens

    _caller("read:refresh_tokens")
    family = refresh_tokens.get_family(token_id, clock.now_int())
    if family is None:
        raise _no_refresh_token()
    return json_response(refresh_token_view(family))


@bp.route("/api/v2/refresh-tokens/{token_id}", methods=["DELETE"])
@handles_api_errors
def delete_refresh_token(token_id):
    from chalicelib.provider import grant_store
    from chalicelib.store import refresh_tokens

    _caller("delete:refresh_tokens")
    now = clock.now_int()
    if refresh_tokens.get_family(token_id, now) is None:
        raise _no_refresh_token()
    # The family is its grant: revoking it kills every token of the family and the access
    # tokens issued from it (RFC 7009 §2.1).
    grant_store.revoke_grant(token_id, now, "refresh_token_deleted")
    return json_response(None, 204)
