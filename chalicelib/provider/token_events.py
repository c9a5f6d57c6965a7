"""The token endpoint's log events (SPEC §9): ``seacft`` / ``feacft`` (authorization code),
``sertft`` / ``fertft`` (refresh token), ``seccft`` / ``feccft`` (client credentials), and our
own ``stx`` / ``ftx`` for the RFC 8693 token exchange (SPEC §10: Auth0's list has none).

A success of the two user grants rides in the transaction that consumes the code or rotates the
token (:func:`ride_success`: no round trip more); everything else is one best-effort ``PutItem``
(:func:`record_failure`, :func:`record_success`). ``details`` say which rule refused the request,
never a credential: the presented code, token, secret or assertion are nowhere in an event.

An event names the user's connection as the login's events do, with its ``connection_id``
(:func:`connection_for`) when the registry's per-container connection cache
(chalicelib/registry/connections.py, 30 s) holds the record, which ``/authorize``, the callback
and the token exchange fill; a token request never reads the table for it (a container that has
not seen the connection lately names it without its id).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from chalicelib import audit
from chalicelib.errors import ApiError, OAuthError
from chalicelib.store.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from chalicelib.provider.client_auth import AuthenticatedClient

T = TypeVar("T")

# The failure type of each grant: a client authentication failure counts as one of its grant's.
FAILURE_OF = {"authorization_code": "feacft", "refresh_token": "fertft",
              "client_credentials": "feccft",
              "urn:ietf:params:oauth:grant-type:token-exchange": "ftx"}  # token.TOKEN_EXCHANGE


class GrantRefused(OAuthError):
    """An :class:`OAuthError` that also names the rule that refused the request (``check``)
    and what the log event should add (``details``), for the failure event."""

    def __init__(self, error: str, description: str, check: str, status: int = 400,
                 **details: Any) -> None:
        super().__init__(error, description, status)
        self.check = check
        self.details = details


def connection_of(user_id: str | None) -> str | None:
    """The connection name a broker user id (``oidc|{connection}|{sub}``) names; connection
    names hold no ``|``."""
    if not user_id:
        return None
    strategy, _, rest = user_id.partition("|")
    name, sep, _ = rest.partition("|")
    return name if strategy == "oidc" and sep and name else None


def connection_for(user_id: str | None, client_id: str | None = None
                   ) -> Mapping[str, Any] | str | None:
    """The connection ``user_id`` names, for an event: its record (name and id) when this
    container's registry cache holds it, else just its name. It never reads the table: a token
    request's budget (one read and one transaction for a refresh) does not pay for an event's
    decoration, and an event never fails a request."""
    name = connection_of(user_id)
    if name is None:
        return None
    from chalicelib.registry.connections import known_connection_by_name

    try:
        record = known_connection_by_name(name, client_id)
    except Exception:  # noqa: BLE001 - a log event never fails the request
        return name
    return record if record is not None and record.get("name") == name else name


def user_name(user: Mapping[str, Any] | None) -> str | None:
    """The user's email, else name, when the profile (or its snapshot) has one."""
    attributes = (user or {}).get("attributes")
    if not isinstance(attributes, Mapping):
        return None
    for field in ("email", "name"):
        if isinstance(attributes.get(field), str) and attributes[field]:
            return str(attributes[field])
    return None


def _client_fields(client: Mapping[str, Any] | None, client_id: str | None) -> dict[str, Any]:
    if client is not None:
        return {"client": client}
    if client_id and len(client_id) <= 128:  # what the caller presented; longer is refused
        return {"client_id": client_id}
    return {}


def ride_success(operations: UnitOfWork, type_: str, *, client: Mapping[str, Any],
                 user_id: str, user: Mapping[str, Any] | None, **details: Any) -> None:
    """The success event as one more write of the grant's own transaction."""
    audit.ride(operations, audit.event(
        type_, connection=connection_for(user_id, client.get("client_id")), client=client,
        user_id=user_id,
        user_name=user_name(user), details=details))


def record_success(type_: str, *, client: Mapping[str, Any] | None = None,
                   client_id: str | None = None, connection: Mapping[str, Any] | None = None,
                   user_id: str | None = None, user: Mapping[str, Any] | None = None,
                   **details: Any) -> None:
    """One success event (one ``PutItem``); ``connection``: its record, else the one
    ``user_id`` names."""
    presented = client.get("client_id") if client is not None else client_id
    audit.record(audit.event(type_, connection=connection or connection_for(user_id, presented),
                             **_client_fields(client, client_id), user_id=user_id,
                             user_name=user_name(user), details=details))


def record_failure(type_: str, error: Exception, *, client: Mapping[str, Any] | None = None,
                   client_id: str | None = None, user_id: str | None = None,
                   connection: Mapping[str, Any] | None = None, **details: Any) -> None:
    """One failure event for ``error`` (the response the caller gets): its OAuth ``error``
    code and public description, the ``check`` and details a :class:`GrantRefused` names.
    ``connection``: its record, when known, else the one ``user_id`` names."""
    if isinstance(error, OAuthError):
        facts: dict[str, Any] = {"error": error.error, "reason": error.description}
    elif isinstance(error, ApiError):  # a dependency failed: the caller got a 503
        facts = {"error": "temporarily_unavailable", "reason": error.error_code}
    else:
        facts = {"error": "server_error", "reason": type(error).__name__}
    if isinstance(error, GrantRefused):
        facts = {**facts, "check": error.check, **error.details}
    named: Mapping[str, Any] | str | None = connection
    if named is None:
        # After a dependency failed, the name alone: no lookup that may wait on it again.
        named = (connection_of(user_id) if isinstance(error, ApiError)
                 else connection_for(user_id, client.get("client_id") if client is not None
                                     else client_id))
    audit.record(audit.event(
        type_, connection=named, **_client_fields(client, client_id),
        user_id=user_id, details={**facts, **details},
        description=error.description if isinstance(error, OAuthError) else None))


def refusals_recorded(failure_type: str, client: AuthenticatedClient,
                      run: Callable[[dict[str, Any]], T]) -> T:
    """``run(seen)``, a grant's whole work; a refusal (or a dependency's failure) is also one
    ``failure_type`` event naming the user ``run`` put in ``seen["user_id"]`` once it read it."""
    seen: dict[str, Any] = {}
    try:
        return run(seen)
    except (OAuthError, ApiError) as exc:
        record_failure(failure_type, exc, client=client.record, client_id=client.client_id,
                       user_id=seen.get("user_id"))
        raise
