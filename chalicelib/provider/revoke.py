"""``POST /oauth/revoke``: OAuth 2.0 Token Revocation (RFC 7009).

The client authenticates as at the token endpoint. A refresh token or a user access token of this
client revokes its grant, i.e. the whole token family: every refresh token and access token issued
from that authorization stops working (RFC 7009 §2.1 allows revoking the related tokens too).

RFC 7009 revokes a token, not a session: the browser's broker session survives (a later
``/authorize`` still signs in without the IdP), and no back-channel logout is sent. Ending
sessions is what ``/oidc/logout``, ``/v2/logout`` and the Management API are for.

Responses: 200 with an empty body for a revoked *or unknown* token (§2.2: an invalid token is not
an error, so a client cannot probe for tokens); 400 ``invalid_request`` when the token belongs to
another client (as node-oidc-provider answers), and nothing is revoked then; 400
``unsupported_token_type`` for a client-credentials access token, which is stateless here and
cannot be revoked before it expires (§2.2.1).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.errors import OAuthError
from chalicelib.keys import TokenRejected, verify_jwt
from chalicelib.provider import grant_store
from chalicelib.provider.client_auth import authenticate_client
from chalicelib.settings import get_settings
from chalicelib.tokens import preview

if TYPE_CHECKING:
    from chalicelib.provider.cors import ClientCors

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True)
class FoundToken:
    kind: str
    client_id: str
    grant_id: str | None


def _as_refresh_token(token: str) -> FoundToken | None:
    record = grant_store.find_refresh_token(token)
    if record is None:
        return None
    return FoundToken("refresh_token", record["client_id"], record["grant_id"])


def _as_access_token(token: str) -> FoundToken | None:
    if token.count(".") != 2:
        return None
    try:
        claims = verify_jwt(token, typ="at+jwt").claims
    except TokenRejected:
        return None
    if claims.get("iss") != get_settings().issuer:
        return None
    client_id = claims.get("client_id") or claims.get("azp")
    if not isinstance(client_id, str):
        return None
    grant_id = claims.get("gid")
    return FoundToken("access_token", client_id, grant_id if isinstance(grant_id, str) else None)


def _find(token: str, hint: str | None) -> FoundToken | None:
    """§2.1: the hint only orders the search; a wrong or unknown hint still finds the token."""
    finders = [_as_refresh_token, _as_access_token]
    if hint == "access_token" or (hint != "refresh_token" and token.count(".") == 2):
        finders.reverse()
    for finder in finders:
        found = finder(token)
        if found is not None:
            return found
    return None


def revoke_request(form: dict[str, Any], authorization: str | None, now: int,
                   cors: ClientCors | None = None) -> None:
    """``cors``: the request's ClientCors, checked once the client is authenticated."""
    client = authenticate_client(form, authorization)
    if cors is not None:
        cors.check(client.record)
    token = form.get("token")
    if not token:
        raise OAuthError("invalid_request", "token is required")
    if len(token) > MAX_TOKEN_LENGTH:
        return  # not one of ours
    found = _find(token, form.get("token_type_hint"))
    if found is None:
        return
    if found.client_id != client.client_id:
        log.warning("client %s tried to revoke a %s of client %s", client.client_id[:64],
                    found.kind, found.client_id[:64])
        raise OAuthError("invalid_request", "client is not authorized to revoke the presented token")
    if found.grant_id is None:
        raise OAuthError("unsupported_token_type",
                         "Client credentials access tokens cannot be revoked; they expire")
    grant_store.revoke_grant(found.grant_id, now, "token_revoked")
    log.info("client %s revoked its %s %s: grant %s", client.client_id[:64], found.kind,
             preview(token), found.grant_id[:8])
