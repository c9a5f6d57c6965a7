"""``GET|POST /login/callback/{connection}`` and the shared ``/login/callback`` (SPEC §3.3): the
upstream IdP's answer becomes a broker login.

Every check runs before anything is written; the writes (user, session, grant, code) are one
DynamoDB transaction. Failures after the transaction is found go back to the application as
OAuth errors (upstream errors become ``access_denied`` or the standard upstream code).

Log events (SPEC §9): a login is an ``s`` riding in that transaction (no round trip more); every
failure is one ``f`` whose ``details.check`` names what refused it (the state, the callback URL,
the upstream's ``error``, an ID token rule such as ``signature`` or ``nonce``, a blocked user, a
dependency...). An event never holds the state, the code, a token or a cookie.
"""
from __future__ import annotations

import logging
from typing import Any

from chalicelib import audit
from chalicelib.errors import ApiError
from chalicelib.login.authorize import AppAnswer, ErrorPage, code_to_app, error_to_app
from chalicelib.login.transactions import (
    LoginTransaction,
    TransactionError,
    binding_cookie_name,
    consume_transaction,
)
from chalicelib.login.pages import expired_cookie
from chalicelib.login.upstream import UpstreamError
from chalicelib.settings import get_settings

log = logging.getLogger(__name__)

# Upstream error codes passed through as they are (OIDC Core §3.1.2.6, RFC 6749 §4.1.2.1);
# anything else becomes access_denied.
PASSED_THROUGH = {"access_denied", "login_required", "consent_required", "interaction_required",
                  "account_selection_required", "temporarily_unavailable"}


class LoginFailed(Exception):
    """The login is refused: ``error`` and ``description`` go to the application; ``check``
    (the rule that refused it) and ``details`` to the ``f`` log event."""

    def __init__(self, error: str, description: str, check: str = "login", **details: Any):
        super().__init__(description)
        self.error = error
        self.description = description
        self.check = check
        self.details = details


def handle_callback(params: dict[str, str], method: str, cookies: dict[str, str],
                    now: int, route_connection: str | None = None) -> ErrorPage | AppAnswer:
    """``route_connection``: the connection named in the callback path; None on the shared one."""
    state = params.get("state")
    binding_cookie = binding_cookie_name(state) if state else None
    binding = cookies.get(binding_cookie) if binding_cookie else None
    try:
        tx = consume_transaction(state, binding, now)
    except TransactionError as exc:
        _state_refused(state, binding, route_connection, params)
        return ErrorPage(400, "Login failed", f"{exc}. Start the login again from the application.")
    answer = _answer(tx, params, method, now, route_connection)
    # The transaction is consumed: its binding cookie has served (the other logins keep theirs).
    if binding_cookie:  # always: a consumed transaction had a state
        answer.cookies.append(expired_cookie(binding_cookie))
    return answer


def _answer(tx: LoginTransaction, params: dict[str, str], method: str, now: int,
            route_connection: str | None) -> AppAnswer:
    seen: dict[str, Any] = {"stage": "request"}  # what the login got to know, for its f event
    try:
        return _complete(tx, params, method, now, route_connection, seen)
    except LoginFailed as exc:
        log.info("login through connection %s failed: %s (%s)", tx.connection_id, exc.error,
                 exc.description)
        _failed(tx, seen, params, exc.error, exc.description, exc.check, exc.details)
        return error_to_app(tx.redirect_uri, tx.response_mode, exc.error, exc.description, tx.state,
                            status=303)
    except UpstreamError as exc:
        log.info("login through connection %s failed upstream: %s", tx.connection_id,
                 exc.description)
        _failed(tx, seen, params, exc.error, exc.description, seen["stage"], {})
        return error_to_app(tx.redirect_uri, tx.response_mode, exc.error, exc.description, tx.state,
                            status=303)
    except ApiError as exc:
        # SPEC §8: the transaction named a validated redirect_uri, so a dependency failure
        # (DynamoDB, Secrets Manager) goes back to the application, not to a dead-end page.
        log.warning("login through connection %s failed on a dependency: %s", tx.connection_id,
                    exc.error_code)
        _failed(tx, seen, params, "temporarily_unavailable",
                "The service is temporarily unavailable", "dependency",
                {"stage": seen["stage"], "dependency_error": exc.error_code})
        return error_to_app(tx.redirect_uri, tx.response_mode, "temporarily_unavailable",
                            "The service is temporarily unavailable", tx.state, status=303)
    except RecursionError:
        # A token or response nested thousands deep (the decoder recurses): bad input, no crash.
        log.warning("login through connection %s: input nested too deeply", tx.connection_id)
        _failed(tx, seen, params, "access_denied", "The identity provider's response is malformed",
                "format", {"stage": seen["stage"]})
        return error_to_app(tx.redirect_uri, tx.response_mode, "access_denied",
                            "The identity provider's response is malformed", tx.state, status=303)
    except Exception:  # noqa: BLE001 - no internals in a browser response
        log.exception("login through connection %s crashed", tx.connection_id)
        _failed(tx, seen, params, "server_error", "The login could not be completed", "internal",
                {"stage": seen["stage"]})
        return error_to_app(tx.redirect_uri, tx.response_mode, "server_error",
                            "The login could not be completed", tx.state, status=303)


def _failed(tx: LoginTransaction, seen: dict[str, Any], params: dict[str, str], error: str,
            description: str, check: str, details: dict[str, Any]) -> None:
    """The ``f`` event of a refused login: the connection and application the transaction names
    (their records once read), the user once the ID token named one. Never in the way of the
    answer to the application."""
    try:
        connection = seen.get("connection") or {"id": tx.connection_id}
        audit.record(audit.event(
            "f", connection=connection, client=seen.get("client"), client_id=tx.client_id,
            user_id=seen.get("user_id"), user_name=seen.get("user_name"),
            description=_scrub(description, params),
            details={"check": check, "error": error,
                     **{k: _scrub(v, params) if isinstance(v, str) else v
                        for k, v in details.items()},
                     "prompt": tx.prompt}))
    except Exception:  # noqa: BLE001 - a log event never fails the login's answer
        log.exception("failed login event not recorded")


def _scrub(text: str, params: dict[str, str]) -> str:
    """``text`` (an upstream's error description, a public description) without any of this
    callback's credentials in it: the state, the code, the ID token."""
    for name in ("state", "code", "id_token", "access_token"):
        value = params.get(name)
        if value and len(value) >= 8:
            text = text.replace(value, "[redacted]")
    return text


def _state_refused(state: str | None, binding: str | None, route_connection: str | None,
                   params: dict[str, str]) -> None:
    """The ``f`` event of a callback whose state names no usable login: missing, unknown,
    expired, already used, or bound to another browser (one conditional delete decides, so
    those last four are one case). The connection is the one the callback URL names, when it
    exists; no application is known."""
    if not state or len(state) > 256:
        check, reason = "state", "missing or malformed state"
    elif not binding or len(binding) > 128:
        check, reason = "binding_cookie", "no binding cookie for this state in the browser"
    else:
        check, reason = "state", ("unknown, expired or already used state, or a binding cookie "
                                  "of another browser")
    try:
        connection = None
        if route_connection is not None:
            from chalicelib.registry.connections import cached_connection_by_name

            connection = cached_connection_by_name(route_connection)
        details: dict[str, Any] = {"check": check, "reason": reason,
                                   "callback": "connection" if route_connection else "shared"}
        if params.get("error"):
            details["upstream_error"] = _printable(params["error"])[:64]
        audit.record(audit.event("f", connection=connection, details=details,
                                 description="The login's state is not valid"))
    except Exception:  # noqa: BLE001 - a log event never fails the answer
        log.exception("failed login event not recorded")


def _complete(tx: LoginTransaction, params: dict[str, str], method: str, now: int,
              route_connection: str | None, seen: dict[str, Any]) -> AppAnswer:
    from chalicelib.registry.clients import cached_client
    from chalicelib.registry.connections import cached_connection

    connection = cached_connection(tx.connection_id)
    client = cached_client(tx.client_id)
    seen.update(connection=connection, client=client)
    if connection is None or client is None:
        raise LoginFailed("access_denied", "The connection or application no longer exists",
                          "client_or_connection")
    if tx.client_id not in (connection.get("enabled_clients") or []):
        raise LoginFailed("access_denied", "The connection is no longer enabled for this application",
                          "connection_not_enabled")
    options = connection["options"]
    _check_route(route_connection, params.get("iss"), connection)
    _check_iss_parameter(params.get("iss"), connection)
    if params.get("error"):
        upstream_error = _printable(params["error"])[:64]
        error = upstream_error if upstream_error in PASSED_THROUGH else "access_denied"
        description = (params.get("error_description") or "The identity provider refused the login")
        raise LoginFailed(error, _printable(description)[:300], "upstream_error",
                          upstream_error=upstream_error,
                          upstream_error_description=_printable(description)[:120])
    access_token = None
    code = None
    tokens: dict = {}
    if options.get("type") == "back_channel":
        code = params.get("code")
        if not code or len(code) > 2048:
            raise LoginFailed("access_denied", "The identity provider returned no code",
                              "upstream_code")
        from chalicelib.login import upstream
        from chalicelib.registry.connections import connection_secret

        # Transactions from before per-connection callbacks sent the shared URL.
        redirect_uri = tx.upstream_redirect_uri or get_settings().shared_callback_url
        seen["stage"] = "connection_secret"
        secret = _secret_or_fail(connection_secret, connection)
        seen["stage"] = "upstream_token_endpoint"
        tokens = upstream.exchange_code(connection, code, tx.upstream_code_verifier, secret,
                                        redirect_uri)
        raw_id_token = tokens["id_token"]
        access_token = tokens.get("access_token") if isinstance(tokens.get("access_token"),
                                                                str) else None
        code_for_hash = None  # c_hash belongs to hybrid flows' front-channel ID tokens
    else:
        if method != "POST":
            # The front channel uses form_post: an ID token in a URL would leak to logs/history.
            raise LoginFailed("access_denied", "The ID token must arrive by form POST",
                              "response_mode")
        raw_id_token = params.get("id_token")
        if not raw_id_token:
            raise LoginFailed("access_denied", "The identity provider returned no ID token",
                              "id_token_missing")
        code_for_hash = params.get("code")
    seen["stage"] = "jwks"
    claims = _validate(raw_id_token, connection, tx, now, access_token, code_for_hash or code)
    _seen_user(seen, connection, claims)
    seen["stage"] = "freshness"
    authentication = _fresh_authentication(tx, claims, now)
    seen["stage"] = "upstream_userinfo"
    userinfo = _userinfo(connection, access_token, claims)
    seen["stage"] = "vault"
    vault_write = _vault_write(connection, claims, tokens, now)
    seen["stage"] = "store"
    return _finish(tx, connection, client, claims, userinfo, now, raw_id_token, authentication,
                   vault_write=vault_write)


def _vault_write(connection: dict, claims: dict, tokens: dict, now: int):
    """SPEC §10: with ``options.token_storage: vault``, the upstream token response (access,
    refresh and ID tokens, the access token's expiry) sealed for the user, as one more write of
    the login's transaction; its one KMS call (a data key, unless this container holds the
    user's) is the only call more. Nothing without an upstream access token."""
    from chalicelib import vault

    access_token = tokens.get("access_token")
    if not vault.enabled(connection) or not isinstance(access_token, str) or not access_token:
        return None
    from chalicelib.users import user_id_for

    def text(name: str) -> str | None:
        value = tokens.get(name)
        return value if isinstance(value, str) and value else None

    expires_in = tokens.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    expires_at = (now + expires_in if isinstance(expires_in, int)
                  and not isinstance(expires_in, bool) and 0 <= expires_in <= 10 ** 8 else None)
    return vault.store_operation(connection, user_id_for(connection["name"], claims["sub"]),
                                 vault.UpstreamTokens(
                                     access_token=access_token, expires_at=expires_at,
                                     refresh_token=text("refresh_token"),
                                     id_token=text("id_token"),
                                     token_type=text("token_type") or "Bearer",
                                     scope=text("scope")), now)


def _seen_user(seen: dict[str, Any], connection: dict, claims: dict) -> None:
    from chalicelib.users import user_id_for

    if isinstance(claims.get("sub"), str):
        seen["user_id"] = user_id_for(connection["name"], claims["sub"])
    seen["user_name"] = _user_name(claims)


def _user_name(profile: dict | None) -> str | None:
    for field in ("email", "name"):
        value = (profile or {}).get(field)
        if isinstance(value, str) and value:
            return value
    return None


def _secret_or_fail(load, connection: dict) -> str | None:
    from chalicelib.secrets import SecretNotFound

    try:
        return load(connection)
    except SecretNotFound:
        raise LoginFailed("server_error", "The connection's client secret is missing",
                          "connection_secret") from None


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable())


def _check_route(route_connection: str | None, iss: str | None, connection: dict) -> None:
    """Mix-up defence (RFC 9700 §4.4.2): each connection has its own redirect URI, so an answer
    read at another connection's URL (an IdP's code carrying a state the user got from an evil
    IdP) ends here, before any code reaches any token endpoint. The shared URL cannot tell the
    IdPs apart, so a code is accepted there only with an ``iss`` (RFC 9207), checked next; a
    front-channel ID token names and proves its issuer itself (its keys are the connection's)."""
    if route_connection is not None:
        if route_connection != connection["name"]:
            raise LoginFailed("access_denied", "The answer reached another connection's callback "
                                               "URL (possible mix-up attack)", "callback_url",
                              mix_up=True)
        return
    if connection["options"].get("type") == "back_channel" and iss is None:
        raise LoginFailed("access_denied", "A code reached the shared callback URL without an iss "
                                           "parameter (possible mix-up attack): register the "
                                           "connection's own callback URL at the identity provider",
                          "iss_parameter", mix_up=True)


def _check_iss_parameter(iss: str | None, connection: dict) -> None:
    """RFC 9207 §2.4: mix-up defence."""
    expected = connection["options"]["issuer"]
    if iss is not None:
        if iss != expected:
            raise LoginFailed("access_denied", "The response came from another issuer (iss mismatch)",
                              "iss_parameter", mix_up=True)
        return
    metadata = connection["options"].get("oidc_metadata") or {}
    # A front-channel response carries an ID token whose own iss is checked; for the code flow
    # an IdP that advertises RFC 9207 support must send iss (§2.4), or this is a mix-up attempt.
    if (metadata.get("authorization_response_iss_parameter_supported") is True
            and connection["options"].get("type") == "back_channel"):
        raise LoginFailed("access_denied", "The identity provider's response lacks the iss parameter",
                          "iss_parameter", mix_up=True)


def _validate(raw_id_token: str, connection: dict, tx: LoginTransaction, now: int,
              access_token: str | None, code: str | None) -> dict:
    from chalicelib.login.id_token import IdTokenError, validate_id_token
    from chalicelib.login.jwks_cache import JwksUnavailable, jwks_cache

    options = connection["options"]
    nonce_expected: str | None = tx.upstream_nonce
    if options.get("type") == "back_channel" and not options.get("send_back_channel_nonce", True):
        nonce_expected = None
    try:
        return validate_id_token(
            raw_id_token, issuer=options["issuer"], client_id=options["client_id"],
            nonce=nonce_expected, jwks_uri=options["jwks_uri"],
            allowed_algs=options.get("id_token_signed_response_algs") or ["RS256"],
            cache=jwks_cache(), now=now, access_token=access_token,
            code=code if options.get("type") != "back_channel" else None,
        )
    except JwksUnavailable:
        log.warning("JWKS of connection %s unavailable and nothing cached", connection["name"])
        raise UpstreamError("The identity provider's keys are unavailable",
                            "temporarily_unavailable") from None
    except IdTokenError as exc:
        log.warning("ID token from connection %s rejected: %s", connection["name"], exc.check)
        raise LoginFailed("access_denied", f"The identity provider's ID token is invalid ({exc.check})",
                          exc.check, validation="id_token") from None


def _fresh_authentication(tx: LoginTransaction, claims: dict, now: int):
    """SPEC §3.1: the upstream auth_time must satisfy the application's max_age / prompt=login."""
    from chalicelib.login.freshness import NotFresh, check_freshness, upstream_authentication

    authentication = upstream_authentication(claims, now)
    try:
        check_freshness(max_age=tx.max_age, prompt=tx.prompt, started_at=tx.created_at,
                        auth_time=authentication.auth_time, now=now)
    except NotFresh as exc:
        raise LoginFailed("access_denied", str(exc), "auth_time") from None
    return authentication


def _userinfo(connection: dict, access_token: str | None, claims: dict) -> dict | None:
    from chalicelib.login.mapping import needs_userinfo
    from chalicelib.login.upstream import fetch_userinfo

    if not access_token or not needs_userinfo(connection):
        return None
    if not connection["options"].get("userinfo_endpoint"):
        return None
    info = fetch_userinfo(connection, access_token)
    # OIDC Core §5.3.2: the userinfo sub must equal the ID token's, or the response is ignored
    # — we fail the login instead, because a mismatch means a token substitution.
    if info.get("sub") != claims["sub"]:
        raise LoginFailed("access_denied", "The userinfo subject does not match the ID token",
                          "userinfo_sub")
    return info


def _finish(tx: LoginTransaction, connection: dict, client: dict, claims: dict,
            userinfo: dict | None, now: int, raw_id_token: str | None,
            authentication, vault_write=None) -> AppAnswer:
    from chalicelib import sessions, users
    from chalicelib.login.complete import code_operations
    from chalicelib.login.mapping import apply_root_attribute_policy, map_claims
    from chalicelib.login.pages import cookie
    from chalicelib.store import logins, upstream_sessions
    from chalicelib.store.dynamo import ConditionFailed
    from chalicelib.store.unit_of_work import UnitOfWork

    user_id = users.user_id_for(connection["name"], claims["sub"])
    mapped, warnings = map_claims(connection, claims, userinfo)
    for warning in warnings:
        log.warning("claim mapping for connection %s: %s", connection["name"], warning)
    policy = connection["options"].get("set_user_root_attributes", "on_each_login")
    # on_each_login takes the root attributes from this login alone: no need to read the user.
    existing = None if policy == "on_each_login" else users.get_user(user_id)
    attributes = apply_root_attribute_policy(existing.get("attributes") if existing else None,
                                             mapped, policy)
    # The session remembers the upstream login's time (not this callback's) and its acr/amr.
    auth_time = authentication.auth_time if authentication.auth_time is not None else now
    # The upstream ID token is kept for Auth0's federated logout (id_token_hint at the upstream
    # end_session_endpoint), sealed under the cookie secret: the token exchange (SPEC §10) takes
    # it as a credential, so the table must never hold it readable (chalicelib/sessions.py).
    sid, cookie_value, session_fields = sessions.new_session_values(
        now, auth_time=auth_time, acr=authentication.acr, amr=authentication.amr,
        upstream_id_token=raw_id_token)
    if (client.get("client_metadata") or {}).get("broker_builtin"):
        # The console's Try flow shows the upstream claims, decoded here (it has no cookie).
        from chalicelib.login.try_connection import session_claims_fields

        session_fields.update(session_claims_fields(client, claims))
    code, grant_id, code_ops = code_operations(
        client_id=client["client_id"], redirect_uri=tx.redirect_uri, scope=tx.scope,
        nonce=tx.nonce, code_challenge=tx.code_challenge,
        code_challenge_method=tx.code_challenge_method, audience=tx.audience, user_id=user_id,
        sid=sid, auth_time=auth_time, now=now,
        user_snapshot={"user_id": user_id, "attributes": attributes,
                       "updated_at": users.iso(now)},
        acr=authentication.acr, amr=authentication.amr)
    operations = UnitOfWork().add(
        users.user_update_operation(user_id, connection, claims["sub"], attributes, now),
        *sessions.session_put_operations(sid, session_fields, user_id, connection["id"],
                                         client["client_id"], grant_id),
        *code_ops,
        # SPEC §11: the upstream session this broker session came from, for a logout token's sid.
        *upstream_sessions.record_operations(connection["id"], claims.get("sid"), sid, user_id,
                                             session_fields["expires_at"]),
    )
    if vault_write is not None:  # the upstream tokens, sealed (SPEC §10: _vault_write)
        operations.add(vault_write)
    # SPEC §9: the login's event is one more write of its transaction, no round trip more.
    audit.ride(operations, audit.event(
        "s", connection=connection, client=client, user_id=user_id,
        user_name=_user_name(attributes) or _user_name(claims),
        details={"prompt": tx.prompt, "silent": False,
                 "channel": connection["options"].get("type")}))
    try:
        # Two tabs signing one user in at once touch the same user item: the loser of that race
        # tries again rather than failing a login that nothing refused.
        logins.record(operations)
    except ConditionFailed as exc:
        if exc.reasons[:1] == ["ConditionalCheckFailed"]:
            # The user update comes first and holds only while the user is not blocked
            # (SPEC §2.4): the whole transaction is cancelled, nothing is stored.
            log.info("login through %s refused: user %s is blocked", connection["name"],
                     user_id[:80])
            raise LoginFailed("access_denied", "user is blocked", "blocked") from None
        log.error("login transaction for %s cancelled: %s", connection["name"], exc.reasons)
        raise LoginFailed("server_error", "The login could not be recorded; try again",
                          "transaction") from None
    # The cookie lives as long as the session (the tenant's session_lifetime, SPEC §2.4).
    session_cookie = cookie(sessions.COOKIE, cookie_value,
                            max_age=session_fields["expires_at"] - now,
                            same_site=sessions.COOKIE_SAME_SITE)
    return code_to_app(tx.redirect_uri, tx.response_mode, code, tx.state, cookies=[session_cookie],
                       status=303)
