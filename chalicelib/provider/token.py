"""``POST /oauth/token``: grant dispatch. Client credentials live here (SPEC §2.1, §4).

The RFC 8693 token exchange (SPEC §10) reaches upstream IdPs (an upstream refresh, an upstream ID
token's keys), so its flow sits in the login layer above this one
(chalicelib/login/token_exchange.py, its provider half in chalicelib/provider/token_exchange.py):
the route hands that grant type to it, and it authenticates the client with :func:`authenticated`.

Log events (SPEC §9): a client that fails to authenticate is a failure of the grant it asked for
(``feacft``, ``fertft``, ``feccft``: ``{"error": "invalid_client"}``, never what it presented);
a throttled one is ``limit_wc`` (chalicelib/provider/client_auth.py). A client credentials grant
writes nothing else, so its ``seccft`` is one ``PutItem``; the user grants' events are theirs.
"""
from __future__ import annotations

import secrets as pysecrets
from typing import TYPE_CHECKING, Any

from chalicelib import clock
from chalicelib.errors import ApiError, OAuthError
from chalicelib.keys import sign_jwt
from chalicelib.provider import token_events
from chalicelib.provider.client_auth import (
    THROTTLED,
    AuthenticatedClient,
    authenticate_client,
    presented_client_id,
)
from chalicelib.provider.token_events import GrantRefused
from chalicelib.settings import get_settings

if TYPE_CHECKING:
    from chalicelib.provider.cors import ClientCors

MANAGEMENT_TOKEN_LIFETIME = 86400
# RFC 8693 §2.1; the route hands it to chalicelib/login/token_exchange.py (see above).
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def token_request(form: dict[str, Any], authorization: str | None, now: float | None = None,
                  cors: ClientCors | None = None) -> dict[str, Any]:
    """``cors``: the request's CORS decision, made here once the client is authenticated and
    before any grant is touched (chalicelib/provider/cors.py)."""
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "Missing grant_type")
    if grant_type == "client_credentials":
        return client_credentials(form, authorization, now, cors)
    if grant_type in ("authorization_code", "refresh_token"):
        from chalicelib.provider import code_grant, refresh_grant

        client = authenticated(form, authorization, cors, token_events.FAILURE_OF[grant_type])
        moment = int(clock.now() if now is None else now)
        if grant_type == "authorization_code":
            return code_grant.exchange(client, form, moment)
        return refresh_grant.refresh(client, form, moment)
    raise OAuthError("unsupported_grant_type", f"Unsupported grant_type {grant_type[:64]}")


def authenticated(form: dict[str, Any], authorization: str | None, cors: ClientCors | None,
                  failure: str) -> AuthenticatedClient:
    """The authenticated client, allowed from the request's origin; a refusal is a ``failure``
    event naming the client_id presented (a throttled client's is ``limit_wc``, already)."""
    client: AuthenticatedClient | None = None
    try:
        client = authenticate_client(form, authorization)
        if cors is not None:
            cors.check(client.record)
        return client
    except (OAuthError, ApiError) as exc:
        if not (isinstance(exc, OAuthError) and exc.error == THROTTLED):
            token_events.record_failure(
                failure, exc, client=client.record if client else None,
                client_id=client.client_id if client else presented_client_id(form, authorization))
        raise


def client_credentials(form: dict[str, Any], authorization: str | None, now: float | None = None,
                       cors: ClientCors | None = None) -> dict[str, Any]:
    client = authenticated(form, authorization, cors, "feccft")
    try:
        return _client_credentials(client, form, now)
    except (OAuthError, ApiError) as exc:
        audience = form.get("audience")
        token_events.record_failure(
            "feccft", exc, client=client.record, client_id=client.client_id,
            audience=audience if isinstance(audience, str) else None)
        raise


def _client_credentials(client: AuthenticatedClient, form: dict[str, Any],
                        now: float | None) -> dict[str, Any]:
    if client.method == "none":
        raise GrantRefused("unauthorized_client", "Public clients cannot use client_credentials",
                           "public_client")
    if "client_credentials" not in client.grant_types:
        raise GrantRefused("unauthorized_client",
                           "The client is not allowed the client_credentials grant", "grant_type")
    audience = form.get("audience")
    if not audience:
        raise GrantRefused("invalid_request", "audience is required", "audience")
    granted, lifetime = _granted(client.client_id, audience)
    requested = form.get("scope")
    if requested is not None:
        wanted = requested.split()
        unknown = [s for s in wanted if s not in granted]
        if unknown:
            raise GrantRefused("invalid_scope", f"Scope not granted: {unknown[0][:64]}", "scope")
        scopes = [s for s in granted if s in wanted]
    else:
        scopes = list(granted)
    now = int(clock.now() if now is None else now)
    settings = get_settings()
    scope = " ".join(scopes)
    claims = {
        "iss": settings.issuer,
        "sub": f"{client.client_id}@clients",
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": pysecrets.token_urlsafe(16),
        "client_id": client.client_id,
        "azp": client.client_id,
        "scope": scope,
        "gty": "client-credentials",
    }
    token = sign_jwt(claims, typ="at+jwt")  # RFC 9068 §2.1
    token_events.record_success("seccft", client=client.record, client_id=client.client_id,
                                audience=audience, scope=scope)
    return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime,
            "scope": scope}


def _granted(client_id: str, audience: str) -> tuple[list[str], int]:
    """(granted scopes, token lifetime) for the Management API or a registered API (SPEC §2.1,
    §2.5): an API needs to exist and the client a grant for this very registration of it."""
    from chalicelib.management.grants import grant_for, scopes_for
    from chalicelib.store import resource_servers

    def denied(description: str, check: str) -> OAuthError:
        return GrantRefused("access_denied", description, check, 403)

    if audience == get_settings().management_audience:
        granted = scopes_for(client_id, audience)
        if granted is None:
            raise denied(f"Client has not been granted scopes for {audience[:256]}", "client_grant")
        return granted, MANAGEMENT_TOKEN_LIFETIME
    # Read, not cached: the token endpoint sees a deleted API at once.
    server = resource_servers.get_by_identifier(audience)
    if server is None:
        raise denied(f"Service not found: {audience[:256]}", "resource_server")
    grant = grant_for(client_id, audience)
    if grant is None or grant.get("resource_server_id") != server.id:
        raise denied(f"Client has not been granted scopes for {audience[:256]}", "client_grant")
    # Only scopes the API still defines: removing one from the API takes it out of new tokens.
    defined = server.scope_values()
    return [s for s in grant.get("scope", []) if s in defined], server.token_lifetime
