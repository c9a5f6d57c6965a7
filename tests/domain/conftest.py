"""Domain-rule tests: grants, codes, refresh tokens, revocation, sessions and Global Token
Revocation, called as functions (no Chalice, no HTTP) against the in-memory table.

Each test gets a fresh ``MemoryTable`` and one :class:`~chalicelib.clock.FixedClock`, which is both
the table's clock (expiry on read) and the broker's (``clock.install``); the domain functions take
an explicit ``now`` and are given that clock's reading. Only the signing keys still come from the
suite's Secrets Manager (moto's server, fixture ``aws_endpoint``); nothing is written there.

:class:`Domain` is the test's view of the broker: applications and a connection, a login that runs
the callback's own transaction (``login.callback._finish``), single sign-on through the
``/authorize`` path's own function, and the token grants with an authenticated client.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib import clock as broker_clock
from chalicelib.provider.client_auth import AuthenticatedClient
from tests.support.flow import pkce_pair

CALLBACK = "https://app.example.com/callback"
OTHER_CALLBACK = "https://app.example.com/other"
ISSUER = "https://idp.example.com"
PARALLEL = 20


def cold_caches() -> None:
    """Every per-container cache keyed by the table's name (the memory table has DynamoDB's)."""
    from tests.resilience.helpers import cold_caches as forget_everything

    forget_everything()


@dataclass
class Login:
    """What the application and the browser hold after one login (or one SSO)."""

    app: AuthenticatedClient
    code: str
    verifier: str | None
    redirect_uri: str
    sid: str
    cookie: str | None  # the broker session cookie's value (None for SSO: the browser's is kept)
    user_id: str


class Domain:
    def __init__(self, fixed: broker_clock.FixedClock, table):
        self.clock = fixed
        self.table = table
        self._connection: dict | None = None

    # --- time ---------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return int(self.clock.now())

    def advance(self, seconds: float) -> int:
        return int(self.clock.advance(seconds))

    # --- what administrators set up ------------------------------------------------------------

    def app(self, app_type: str = "spa", **body) -> AuthenticatedClient:
        """A registered application, as client authentication would hand it to a grant."""
        from chalicelib.management.clients import create_client

        created = create_client({"name": f"domain-{app_type}", "app_type": app_type,
                                 "callbacks": [CALLBACK, OTHER_CALLBACK], **body})
        return self.authenticated(created["client_id"])

    def authenticated(self, client_id: str) -> AuthenticatedClient:
        """The client as authenticated now (its current record)."""
        from chalicelib.store import clients

        record = clients.get(client_id)
        assert record is not None, client_id
        return AuthenticatedClient(client_id, record, record["token_endpoint_auth_method"])

    def set_refresh_policy(self, app: AuthenticatedClient, **refresh_token) -> AuthenticatedClient:
        from chalicelib.management.clients import update_client

        update_client(app.client_id, {"refresh_token": refresh_token})
        return self.authenticated(app.client_id)

    @property
    def connection(self) -> dict:
        """One upstream OIDC connection (stored: Global Token Revocation looks it up by name)."""
        if self._connection is None:
            from chalicelib.store import connections

            suffix = f"{time.monotonic_ns():x}"[-8:]
            record = {"id": f"con_domain{suffix}", "name": f"domain-{suffix}", "strategy": "oidc",
                      "options": {"type": "back_channel", "issuer": ISSUER,
                                  "client_id": "broker-at-idp",
                                  "jwks_uri": f"{ISSUER}/jwks",
                                  "id_token_signed_response_algs": ["ES256"]}}
            connections.create(record)
            self._connection = record
        return self._connection

    # --- logins --------------------------------------------------------------------------------

    def login(self, app: AuthenticatedClient, *, sub: str = "alice",
              scope: str = "openid profile email offline_access", pkce: bool = True,
              audience: str | None = None, email: str | None = None,
              redirect_uri: str = CALLBACK) -> Login:
        """An upstream login completing at the callback: the callback's own transaction writes
        the user, the session, the grant and the code (``LoginFailed`` when it refuses)."""
        from chalicelib.login.callback import _finish
        from chalicelib.login.freshness import UpstreamAuthentication
        from chalicelib.store.login_transactions import LoginTransaction

        verifier, challenge = pkce_pair() if pkce else (None, None)
        now = self.now
        tx = LoginTransaction(
            connection_id=self.connection["id"], client_id=app.client_id,
            redirect_uri=redirect_uri, response_mode="query", scope=scope,
            upstream_nonce="upstream-nonce", browser_digest="-", created_at=now, state="s",
            nonce="app-nonce", code_challenge=challenge,
            code_challenge_method="S256" if pkce else None, audience=audience)
        claims = {"iss": ISSUER, "sub": sub, "name": sub.title(),
                  "email": email or f"{sub}@example.com", "email_verified": True}
        answer = _finish(tx, self.connection, app.record, claims, None, now, None,
                         UpstreamAuthentication(now, None, None))
        params = _answer_params(answer)
        cookie_value = _session_cookie(answer.cookies)
        return Login(app=app, code=params["code"], verifier=verifier, redirect_uri=redirect_uri,
                     sid=cookie_value.partition(".")[0], cookie=cookie_value,
                     user_id=f"oidc|{self.connection['name']}|{sub}")

    def sso(self, app: AuthenticatedClient, cookie: str | None, *, scope: str = "openid",
            pkce: bool = True, session=None) -> Login:
        """``/authorize`` with a live broker session: the SSO path's own function and
        transaction (``AppError`` when it refuses). ``session``: the one ``/authorize`` read
        from the cookie a moment ago (by default, read now)."""
        from chalicelib import sessions
        from chalicelib.api.login import _single_sign_on
        from chalicelib.login.authorize import AppError, AppRequest

        if session is None:
            session = sessions.session_from_cookie(cookie, self.now)
        if session is None:
            raise AppError("login_required", "no live session for this cookie")
        verifier, challenge = pkce_pair() if pkce else (None, None)
        request = AppRequest(client=app.record, redirect_uri=CALLBACK, state="s2",
                             nonce="n2", scope=scope, code_challenge=challenge,
                             code_challenge_method="S256" if pkce else None, prompt=set(),
                             max_age=None, audience=None, login_hint=None,
                             connection_name=None, raw={})
        params = _answer_params(_single_sign_on(request, session, self.now))
        return Login(app=app, code=params["code"], verifier=verifier, redirect_uri=CALLBACK,
                     sid=session.sid, cookie=None, user_id=session.user_id)

    # --- the token endpoint's grants -----------------------------------------------------------

    def exchange(self, login: Login, *, app: AuthenticatedClient | None = None,
                 verifier: str | None | type = ..., redirect_uri: str | None | type = ...,
                 code: str | None = None) -> dict:
        from chalicelib.provider import code_grant

        form = {"grant_type": "authorization_code", "code": code or login.code,
                "redirect_uri": login.redirect_uri if redirect_uri is ... else redirect_uri,
                "code_verifier": login.verifier if verifier is ... else verifier}
        form = {k: v for k, v in form.items() if v is not None}
        return code_grant.exchange(app or login.app, form, self.now)

    def tokens(self, app: AuthenticatedClient, **login) -> dict:
        """A login and its code exchange: the application's tokens."""
        signed_in = self.login(app, **login)
        tokens = self.exchange(signed_in)
        tokens["login"] = signed_in
        return tokens

    def refresh(self, app: AuthenticatedClient, refresh_token: str, **form) -> dict:
        from chalicelib.provider import refresh_grant

        return refresh_grant.refresh(app, {"grant_type": "refresh_token",
                                           "refresh_token": refresh_token, **form}, self.now)

    def userinfo(self, access_token: str) -> dict:
        from chalicelib.provider.userinfo import userinfo

        return userinfo(access_token, self.now)

    # --- what the table holds --------------------------------------------------------------------

    def grant(self, grant_id: str) -> dict | None:
        from chalicelib.provider import grant_store

        return grant_store.get_grant(grant_id)

    def refresh_item(self, token: str) -> dict | None:
        from chalicelib.provider import grant_store

        return grant_store.find_refresh_token(token)

    def session(self, sid: str) -> dict | None:
        """The live session (not revoked, not expired, not idle), or None."""
        from chalicelib import sessions

        return sessions.get_session(sid, self.now)


def _answer_params(answer) -> dict[str, str]:
    from chalicelib.login.authorize import Redirect

    assert isinstance(answer, Redirect), answer
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.location).query).items()}


def _session_cookie(cookies: list[str]) -> str:
    from chalicelib.sessions import COOKIE

    for header in cookies:
        name, _, rest = header.partition("=")
        if name.endswith(COOKIE):
            return rest.split(";", 1)[0]
    raise AssertionError(f"no session cookie in {cookies}")


def race(call, count: int = PARALLEL, *, read_before_write: bool = False) -> list:
    """Run ``call`` in ``count`` threads released together; results or exceptions, in a list.

    ``read_before_write``: while the race runs, each thread's first transaction
    (``grant_store.run``) waits until every thread has reached its own: all of them read the
    code or token before anyone consumes it, the worst case for a conditional write, which
    threads under the GIL would otherwise seldom produce."""
    import threading

    from chalicelib.provider import grant_store

    start = threading.Barrier(count)
    all_read = threading.Barrier(count)
    waited = threading.local()
    real_run = grant_store.run

    def run_after_every_read(operations):
        if not getattr(waited, "done", False):
            waited.done = True
            all_read.wait(timeout=10)
        return real_run(operations)

    def attempt(_):
        start.wait(timeout=30)
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the losers' exceptions are the result
            return exc

    if read_before_write:
        grant_store.run = run_after_every_read
    try:
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(attempt, range(count), timeout=60))
    finally:
        grant_store.run = real_run


@pytest.fixture(autouse=True)
def domain(aws_endpoint):
    """A fresh in-memory table and a fixed clock (at the wall time: the few paths that still read
    ``time.time()``, such as Global Token Revocation's JWT checks, agree with it)."""
    from chalicelib.store import dynamo
    from chalicelib.store.memory import MemoryTable

    fixed = broker_clock.FixedClock(int(time.time()))
    table = MemoryTable(clock=fixed.now)
    previous_table = dynamo.install(table)
    previous_clock = broker_clock.install(fixed)
    cold_caches()
    try:
        yield Domain(fixed, table)
    finally:
        cold_caches()
        broker_clock.install(previous_clock)
        dynamo.install(previous_table)
