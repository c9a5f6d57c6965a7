"""RFC 8693 token exchange at ``/oauth/token`` (SPEC §10): the request and the broker's side of it.

``grant_type=urn:ietf:params:oauth:grant-type:token-exchange`` works in two directions, told apart
by ``subject_token_type``:

- ``...:token-type:access_token``: the subject token is one of the broker's own access tokens and
  the target (``resource`` or ``audience``) is ``urn:connection:{name}``; the answer is the
  user's upstream access token from the vault (chalicelib/login/token_exchange.py refreshes it at
  the upstream first when needed). :func:`subject_of_access_token` checks the broker's token;
- ``...:token-type:id_token``: the subject token is an upstream ID token; the answer is the
  broker's own access token (and ID token), made here by :func:`broker_token_response` once the
  login flow validated the ID token and mapped the user.

Only ``access_token`` can be requested (``requested_token_type``, absent means the same); there is
no delegation (``actor_token``), and one target at most: the broker's form parser already refuses
a repeated parameter (RFC 6749 §3.1), so ``resource`` and ``audience`` may each appear once and,
when both do, must name the same target. Errors are RFC 8693 §2.2.2's and RFC 6749 §5.2's:
``invalid_request``, ``invalid_target``, ``unauthorized_client``, ``invalid_grant``, each a
:class:`~chalicelib.provider.token_events.GrantRefused` naming the rule for the ``ftx`` event.

This module is the provider's half: it never reaches an upstream IdP (the login flows sit above
it, chalicelib/login/token_exchange.py).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.provider import grant_store, issue, lifetimes
from chalicelib.provider.client_auth import AuthenticatedClient
from chalicelib.provider.token import TOKEN_EXCHANGE
from chalicelib.provider.token_events import GrantRefused
from chalicelib.registry.resource_servers import OIDC_SCOPES
from chalicelib.settings import get_settings
from chalicelib.store.resource_servers import ResourceServer

GRANT_TYPE = TOKEN_EXCHANGE
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
SUBJECT_TYPES = {ACCESS_TOKEN_TYPE: "access_token", ID_TOKEN_TYPE: "id_token"}
CONNECTION_TARGET = "urn:connection:"
MAX_SUBJECT_TOKEN = 16 * 1024
MAX_TARGET = 600
# The connection option that lists the applications allowed to exchange (SPEC §10).
ALLOWED_CLIENTS_OPTION = "token_exchange_clients"


@dataclass(frozen=True)
class ExchangeRequest:
    """A token exchange request's parameters once they passed :func:`parse_request`."""
    subject_token: str = field(repr=False)
    subject_type: str  # "access_token" or "id_token"
    target: str | None  # resource or audience
    scope: str | None


def _invalid_request(description: str, check: str) -> GrantRefused:
    return GrantRefused("invalid_request", description, check)


def parse_request(form: Mapping[str, Any]) -> ExchangeRequest:
    """RFC 8693 §2.1's parameters, or ``invalid_request`` / ``invalid_target``."""
    subject_token = form.get("subject_token")
    subject_token_type = form.get("subject_token_type")
    if not isinstance(subject_token, str) or not subject_token:
        raise _invalid_request("subject_token is required", "subject_token")
    if not isinstance(subject_token_type, str) or not subject_token_type:
        raise _invalid_request("subject_token_type is required", "subject_token_type")
    subject_type = SUBJECT_TYPES.get(subject_token_type)
    if subject_type is None:
        raise _invalid_request("Unsupported subject_token_type", "subject_token_type")
    requested = form.get("requested_token_type")
    if requested is not None and requested != ACCESS_TOKEN_TYPE:
        raise _invalid_request("Only an access token can be requested", "requested_token_type")
    if form.get("actor_token") is not None or form.get("actor_token_type") is not None:
        raise _invalid_request("Delegation (actor_token) is not supported", "actor_token")
    if len(subject_token) > MAX_SUBJECT_TOKEN:
        raise _invalid_request("subject_token is too long", "subject_token")
    resource, audience = form.get("resource"), form.get("audience")
    if resource is not None and audience is not None and resource != audience:
        raise GrantRefused("invalid_target", "resource and audience name different targets",
                           "target")
    target = resource if resource is not None else audience
    if target is not None and (not target or len(target) > MAX_TARGET):
        raise GrantRefused("invalid_target", "Unknown target", "target")
    scope = form.get("scope")
    return ExchangeRequest(subject_token=subject_token, subject_type=subject_type,
                           target=target, scope=scope if isinstance(scope, str) else None)


def connection_name_of(target: str | None) -> str | None:
    """The connection a ``urn:connection:{name}`` target names (None for any other target)."""
    if target is None or not target.startswith(CONNECTION_TARGET):
        return None
    name = target[len(CONNECTION_TARGET):]
    return name or None


def client_listed(connection: Mapping[str, Any], client: AuthenticatedClient) -> bool:
    """The connection lists this (registered) application in ``options.token_exchange_clients``."""
    allowed = (connection.get("options") or {}).get(ALLOWED_CLIENTS_OPTION) or []
    return client.record is not None and isinstance(allowed, list) and client.client_id in allowed


def client_enabled(connection: Mapping[str, Any], client: AuthenticatedClient) -> bool:
    """The connection is enabled for this application (``enabled_clients``, as for a login)."""
    return client.client_id in (connection.get("enabled_clients") or ())


def client_may_exchange(connection: Mapping[str, Any], client: AuthenticatedClient) -> bool:
    """Both: listed in ``token_exchange_clients`` and the connection enabled for the application
    (as Auth0's Token Vault requires), so an application the administrator disabled for the
    connection exchanges nothing through it, in either direction."""
    return client_listed(connection, client) and client_enabled(connection, client)


def refuse_client(connection: Mapping[str, Any], client: AuthenticatedClient,
                  description: str) -> GrantRefused:
    """``unauthorized_client`` (RFC 8693 §2.2.2, RFC 6749 §5.2) naming the rule that failed:
    ``token_exchange_clients`` or ``enabled_clients``."""
    check = "enabled_clients" if client_listed(connection, client) else ALLOWED_CLIENTS_OPTION
    return GrantRefused("unauthorized_client", description, check)


def check_client(client: AuthenticatedClient) -> None:
    """A confidential, registered application: a public client cannot hold what an exchange
    hands out (RFC 8693 §2.1 leaves client authentication to RFC 6749; SPEC §10)."""
    if client.record is None or client.method == "none":
        raise GrantRefused("unauthorized_client", "Public clients cannot exchange tokens",
                           "public_client")


# --- upstream access token out: the broker's access token as the subject ----------------------

@dataclass(frozen=True)
class Subject:
    """The user a verified broker access token speaks for."""
    user_id: str
    user: Mapping[str, Any]
    grant_id: str


def _invalid_subject(description: str, check: str) -> GrantRefused:
    return GrantRefused("invalid_grant", description, check)


def subject_of_access_token(token: str, client: AuthenticatedClient, now: int) -> Subject:
    """The broker's own RFC 9068 access token, checked as ``/userinfo`` checks it: our signature
    and ``typ``, our ``iss``, not expired, its grant still active (logout, Global Token
    Revocation, a deleted session or user end it), the user still there and not blocked; and
    issued to the client exchanging it, so an access token that leaked to another application
    (or an API it was sent to) opens no upstream token for it."""
    from chalicelib.keys import TokenRejected, verify_jwt
    from chalicelib.users import get_user, is_blocked

    try:
        claims = verify_jwt(token, typ="at+jwt").claims
    except TokenRejected:
        raise _invalid_subject("The subject token is not a valid access token",
                               "subject_signature") from None
    if claims.get("iss") != get_settings().issuer:
        raise _invalid_subject("The subject token is not a valid access token", "subject_iss")
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool) or exp <= now:
        raise _invalid_subject("The subject token expired", "subject_exp")
    if claims.get("client_id") != client.client_id:
        raise _invalid_subject("The subject token was issued to another client", "subject_client")
    grant_id, user_id = claims.get("gid"), claims.get("sub")
    if not isinstance(grant_id, str) or not isinstance(user_id, str):
        # A client credentials token speaks for no user.
        raise _invalid_subject("The subject token does not name a user", "subject_user")
    if not grant_store.grant_is_active(grant_id):
        raise _invalid_subject("The subject token was revoked", "subject_revoked")
    user = get_user(user_id)
    if user is None:
        raise _invalid_subject("The subject token was revoked", "subject_revoked")
    if is_blocked(user):
        raise _invalid_subject("The user is blocked", "blocked")
    return Subject(user_id=user_id, user=user, grant_id=grant_id)


def upstream_token_response(*, access_token: str, token_type: str, expires_at: int | None,
                            scope: str | None, now: int) -> dict[str, Any]:
    """RFC 8693 §2.2.1: the upstream access token as issued; ``token_type`` ``N_A`` unless it is a
    bearer token (the upstream's own type is what the resource server expects then)."""
    body: dict[str, Any] = {
        "access_token": access_token, "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer" if token_type.lower() == "bearer" else "N_A"}
    if expires_at is not None:
        body["expires_in"] = max(0, expires_at - now)
    if scope:
        body["scope"] = scope
    return body


# --- broker tokens in: an upstream ID token as the subject ------------------------------------

def broker_audience(target: str | None) -> ResourceServer | None:
    """The API the broker's access token is for: ``audience`` (or ``resource``) when it names a
    registered API (as ``/authorize``'s ``audience``, SPEC §3.1: any registered API, never the
    Management API); absent, the tenant's ``default_audience`` when its API exists; else none
    (the token is for ``/userinfo``). Anything else is ``invalid_target``."""
    from chalicelib.registry.resource_servers import cached_resource_server
    from chalicelib.registry.tenant import cached_tenant_settings

    if target is None:
        default = cached_tenant_settings().default_audience
        return cached_resource_server(default) if default else None
    server = cached_resource_server(target)
    if server is None or target == get_settings().management_audience:
        raise GrantRefused("invalid_target", "Unknown audience", "audience")
    return server


def broker_scope(requested: str | None, server: ResourceServer | None) -> str:
    """The OpenID scopes and the API's own that were asked for (``openid`` when none was);
    never ``offline_access``: an exchange issues no refresh token."""
    known = (set(OIDC_SCOPES) - {"offline_access"}) | (
        server.scope_values() if server is not None else set())
    granted = [s for s in dict.fromkeys((requested or "openid").split()) if s in known]
    if not granted:
        raise GrantRefused("invalid_scope", "No supported scope was requested", "scope")
    return " ".join(granted)


def broker_token_lifetime(app: Mapping[str, Any], server: ResourceServer | None) -> int:
    return server.access_token_lifetime(app.get("app_type")) if server else lifetimes.ACCESS_TOKEN


def broker_token_response(*, app: dict[str, Any], user: Mapping[str, Any], scope: str,
                          server: ResourceServer | None, sid: str, grant_id: str,
                          auth_time: int, acr: str | None, amr: list[str] | None,
                          now: int) -> dict[str, Any]:
    """The broker's access token (RFC 9068) and, with ``openid``, its ID token, for a user the
    exchange signed in; ``issued_token_type`` per RFC 8693 §2.2.1."""
    access, expires_in = issue.access_token(
        user_id=user["user_id"], client_id=app["client_id"], scope=scope,
        audience=server.identifier if server else None, sid=sid, grant_id=grant_id,
        auth_time=auth_time, now=now, lifetime=broker_token_lifetime(app, server))
    body: dict[str, Any] = {"access_token": access, "issued_token_type": ACCESS_TOKEN_TYPE,
                            "token_type": "Bearer", "expires_in": expires_in, "scope": scope}
    if "openid" in scope.split():
        body["id_token"] = issue.id_token(user=user, client=app, scope=scope, nonce=None, sid=sid,
                                          auth_time=auth_time, now=now, access_token_value=access,
                                          acr=acr, amr=amr)
    return body
