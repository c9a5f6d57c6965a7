"""RFC 8693 token exchange (SPEC §10), called as the token endpoint calls it, against the in-memory
table: the vaulted upstream access token out (refreshed upstream first, once across concurrent
exchanges, with a rotating upstream refresh token) and an upstream ID token in (broker tokens
out), with a negative test for every check. The upstream IdP is tests/support/fake_idp.py on
loopback (its refresh tokens rotate; it counts refresh calls); the vault's KMS key is moto's.
The HTTP contract is tests/api/test_token_exchange.py's."""
from __future__ import annotations

import time

import pytest

from chalicelib.errors import OAuthError
from chalicelib.login.jwks_cache import jwks_cache
from chalicelib.provider import token_exchange as protocol
from chalicelib.store import log_events
from tests.domain.conftest import race
from tests.support.fake_idp import DROP, FakeIdp, rsa_key
from tests.support.log_events import text_of

GRANT = protocol.GRANT_TYPE
ACCESS = protocol.ACCESS_TOKEN_TYPE
ID_TOKEN = protocol.ID_TOKEN_TYPE
SECRET = "broker-secret-at-idp"


@pytest.fixture()
def idp(monkeypatch):
    jwks_cache().clear()
    with FakeIdp(client_secret=SECRET) as running:
        # The connection's client secret, as Secrets Manager would hand it to the refresh.
        monkeypatch.setattr("chalicelib.registry.connections.connection_secret",
                            lambda connection: SECRET)
        yield running
    jwks_cache().clear()


def new_connection(domain, idp: FakeIdp, *, allowed: list[str], storage: str | None = "vault",
                   enabled: list[str] | None = None, **options) -> dict:
    """A connection to ``idp`` whose ``token_exchange_clients`` are ``allowed``, enabled for
    ``enabled`` (by default the same applications: the exchange requires both)."""
    from chalicelib.store import connections

    suffix = f"{time.monotonic_ns():x}"[-8:]
    opts = {"type": "back_channel", "issuer": idp.issuer, "client_id": idp.client_id,
            "jwks_uri": f"{idp.base_url}/jwks", "token_endpoint": f"{idp.base_url}/token",
            "authorization_endpoint": f"{idp.base_url}/authorize",
            "token_endpoint_auth_method": "client_secret_post",
            "id_token_signed_response_algs": ["RS256"], "token_exchange_clients": allowed,
            **options}
    if storage is not None:
        opts["token_storage"] = storage
    record = {"id": f"con_tx{suffix}", "name": f"tx-{suffix}", "strategy": "oidc",
              "client_secret_set": True,
              "enabled_clients": list(allowed if enabled is None else enabled), "options": opts}
    connections.create(record)
    return record


class Setup:
    """An application allowed to exchange, a vault connection to the fake IdP, a user who signed
    in through it (a broker access token) and that user's vault entry."""

    def __init__(self, domain, idp: FakeIdp):
        self.domain, self.idp = domain, idp
        self.app = domain.app("regular_web", grant_types=["authorization_code", "refresh_token"])
        self.connection = new_connection(domain, idp, allowed=[self.app.client_id])
        domain._connection = self.connection  # the Domain helper's logins go through it
        tokens = domain.tokens(self.app, sub="alice")
        self.access_token = tokens["access_token"]
        self.login = tokens["login"]
        self.user_id = self.login.user_id

    def store(self, *, expires_in: int | None = 3600, refresh: bool = True,
              user_id: str | None = None, connection: dict | None = None) -> dict:
        """Upstream tokens in the vault, as the callback keeps them."""
        from chalicelib import vault
        from chalicelib.store.unit_of_work import UnitOfWork

        stored = {"access_token": self.idp.new_access_token(),
                  "refresh_token": self.idp.new_refresh_token() if refresh else None}
        tokens = vault.UpstreamTokens(
            access_token=stored["access_token"], refresh_token=stored["refresh_token"],
            expires_at=None if expires_in is None else self.domain.now + expires_in,
            scope="openid profile email")
        UnitOfWork([vault.store_operation(connection or self.connection, user_id or self.user_id,
                                          tokens, self.domain.now)]).commit()
        return stored

    def form(self, **overrides) -> dict:
        form = {"grant_type": GRANT, "subject_token": self.access_token,
                "subject_token_type": ACCESS,
                "resource": f"urn:connection:{self.connection['name']}", **overrides}
        return {k: v for k, v in form.items() if v is not None}

    def exchange(self, app=None, **overrides) -> dict:
        from chalicelib.login.token_exchange import exchange

        return exchange(app or self.app, self.form(**overrides), self.domain.now)

    def vaulted(self):
        from chalicelib import vault

        return vault.read(self.connection, self.user_id, self.domain.now)


@pytest.fixture()
def setup(domain, idp) -> Setup:
    return Setup(domain, idp)


def refused(call, error: str = "invalid_grant") -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call()
    assert caught.value.error == error, (caught.value.error, caught.value.description)
    return caught.value


def events(domain, type_: str) -> list[dict]:
    return [e for e in log_events.newest_first(log_events.days_back(domain.now, 1))
            if e["type"] == type_]


# --------------------------------------------------------------------------- upstream token out

def test_the_stored_upstream_access_token_is_answered_without_an_upstream_call(setup, domain):
    stored = setup.store(expires_in=3600)
    answer = setup.exchange()
    assert answer == {"access_token": stored["access_token"], "issued_token_type": ACCESS,
                      "token_type": "Bearer", "expires_in": 3600, "scope": "openid profile email"}
    assert setup.idp.refresh_calls == 0
    [event] = events(domain, "stx")
    assert event["client_id"] == setup.app.client_id
    assert event["connection"] == setup.connection["name"]
    assert event["user_id"] == setup.user_id
    assert event["details"]["direction"] == "upstream_access_token"
    assert event["details"]["upstream"] == "stored"
    assert stored["access_token"] not in text_of(event)
    assert setup.access_token not in text_of(event)


def test_audience_names_the_connection_as_resource_does(setup):
    stored = setup.store()
    answer = setup.exchange(resource=None, audience=f"urn:connection:{setup.connection['name']}")
    assert answer["access_token"] == stored["access_token"]
    assert setup.exchange(requested_token_type=ACCESS)["access_token"] == stored["access_token"]


def test_a_token_without_known_expiry_is_answered_without_expires_in(setup):
    setup.store(expires_in=None)
    answer = setup.exchange()
    assert "expires_in" not in answer
    assert setup.idp.refresh_calls == 0


def test_a_token_expiring_within_60_s_is_refreshed_upstream_first(setup, domain):
    first = setup.store(expires_in=59)
    answer = setup.exchange()
    assert setup.idp.refresh_calls == 1
    new_access = setup.idp.access_tokens[-1]
    assert answer["access_token"] == new_access != first["access_token"]
    assert answer["expires_in"] == setup.idp.access_token_lifetime
    # The rotated refresh token was kept: the old one is spent at the IdP, the new one is live.
    tokens, _version = setup.vaulted()
    assert tokens.access_token == new_access
    assert first["refresh_token"] in setup.idp.spent_refresh_tokens
    assert tokens.refresh_token in setup.idp.refresh_tokens
    # The refresh went with the connection's client authentication.
    [call] = [r for r in setup.idp.requests_to("/token") if r.form.get("grant_type")]
    assert call.form["client_id"] == setup.idp.client_id and call.form["client_secret"] == SECRET
    # The next exchange answers the new token as stored.
    assert setup.exchange()["access_token"] == new_access
    assert setup.idp.refresh_calls == 1
    assert sorted(e["details"]["upstream"] for e in events(domain, "stx")) == [
        "refreshed", "stored"]


def test_a_token_living_61_s_more_is_not_refreshed(setup):
    stored = setup.store(expires_in=61)
    assert setup.exchange()["access_token"] == stored["access_token"]
    assert setup.idp.refresh_calls == 0


def test_twenty_concurrent_exchanges_refresh_upstream_once(setup, domain):
    """SPEC §10: the refresh token rotates (a second use is refused), so only one caller may spend
    it; every other caller waits for the new token."""
    first = setup.store(expires_in=30)
    setup.idp.refresh_delay = 0.3  # the refresh is in flight while the others arrive
    results = race(setup.exchange, 20)
    failures = [r for r in results if isinstance(r, Exception)]
    assert failures == []
    assert setup.idp.refresh_calls == 1
    new_access = setup.idp.access_tokens[-1]
    assert new_access != first["access_token"]
    assert {r["access_token"] for r in results} == {new_access}
    tokens, _version = setup.vaulted()
    assert tokens.access_token == new_access and tokens.refresh_token in setup.idp.refresh_tokens
    upstream = sorted(e["details"]["upstream"] for e in events(domain, "stx"))
    assert upstream.count("refreshed") == 1 and len(upstream) == 20


def test_a_refresh_landing_between_the_read_and_the_lease_is_not_made_again(setup, monkeypatch):
    """This caller read the expiring entry; before it takes the lease, another caller refreshes
    completely (and gives the lease back). Refreshing again would spend the refresh token this
    caller read, which the IdP already rotated away: it answers the other caller's token."""
    from chalicelib import vault

    setup.store(expires_in=30)
    take_lease = vault.take_refresh_lease

    def after_another_refresh(connection, user_id, now, seconds=vault.LEASE_SECONDS):
        monkeypatch.setattr(vault, "take_refresh_lease", take_lease)
        setup.exchange()  # the other caller, start to end
        return take_lease(connection, user_id, now, seconds)

    monkeypatch.setattr(vault, "take_refresh_lease", after_another_refresh)
    answer = setup.exchange()
    assert setup.idp.refresh_calls == 1
    assert answer["access_token"] == setup.idp.access_tokens[-1]
    tokens, _version = setup.vaulted()
    assert tokens.refresh_token in setup.idp.refresh_tokens


def test_an_upstream_that_refuses_the_refresh_token_makes_the_entry_useless(setup, domain):
    first = setup.store(expires_in=10)
    setup.idp.refresh_tokens.clear()  # revoked at the IdP
    error = refused(setup.exchange)
    assert "refused" in error.description
    assert setup.idp.refresh_calls == 1
    [event] = events(domain, "ftx")
    assert event["details"]["check"] == "upstream_refresh_refused"
    assert event["details"]["upstream"] == "refresh_invalid_grant"
    assert first["refresh_token"] not in text_of(event)
    # The entry no longer holds a refresh token: the next exchange refuses at once.
    refused(setup.exchange)
    assert setup.idp.refresh_calls == 1
    tokens, _version = setup.vaulted()
    assert tokens.refresh_token is None


def test_waiting_exchanges_learn_of_a_refused_refresh(setup, domain):
    setup.store(expires_in=10)
    setup.idp.refresh_tokens.clear()
    setup.idp.refresh_delay = 0.3
    results = race(setup.exchange, 5)
    assert all(isinstance(r, OAuthError) and r.error == "invalid_grant" for r in results), results
    assert setup.idp.refresh_calls == 1


def test_an_upstream_outage_answers_503_and_leaves_the_entry_for_a_retry(setup, domain):
    first = setup.store(expires_in=10)
    setup.idp.token_handler = lambda idp, form, ctx: (503, {"error": "busy"}, "application/json")
    error = refused(setup.exchange, "temporarily_unavailable")
    assert error.status == 503
    assert events(domain, "ftx")[0]["details"]["upstream"] == "refresh_temporarily_unavailable"
    # The lease was given back: the next exchange refreshes at once.
    setup.idp.token_handler = None
    answer = setup.exchange()
    assert answer["access_token"] == setup.idp.access_tokens[-1] != first["access_token"]
    assert setup.idp.refresh_calls == 1


def test_an_expired_token_without_refresh_token_is_refused(setup, domain):
    setup.store(expires_in=0, refresh=False)
    error = refused(setup.exchange)
    assert events(domain, "ftx")[0]["details"]["check"] == "upstream_expired", error


def test_an_expiring_token_without_refresh_token_is_answered_while_it_lives(setup):
    stored = setup.store(expires_in=30, refresh=False)
    answer = setup.exchange()
    assert answer["access_token"] == stored["access_token"] and answer["expires_in"] == 30


# --- each check of the upstream direction, refused

def checks(domain) -> list[str]:
    """The checks of the ``ftx`` events (one millisecond of the fixed clock: in no order)."""
    return [e["details"].get("check") for e in events(domain, "ftx")]


def test_a_client_the_connection_does_not_list_is_unauthorized(setup, domain):
    setup.store()
    other = domain.app("regular_web", grant_types=["authorization_code"])
    other_tokens = domain.tokens(other)
    refused(lambda: setup.exchange(app=other, subject_token=other_tokens["access_token"]),
            "unauthorized_client")
    assert checks(domain) == ["token_exchange_clients"]


def test_a_connection_without_the_vault_is_unauthorized(setup, domain, idp):
    plain = new_connection(domain, idp, allowed=[setup.app.client_id], storage=None)
    refused(lambda: setup.exchange(resource=f"urn:connection:{plain['name']}"),
            "unauthorized_client")
    assert checks(domain) == ["token_storage"]


def test_unknown_or_other_targets_are_invalid_target(setup, domain):
    setup.store()
    refused(lambda: setup.exchange(resource="urn:connection:no-such-connection"), "invalid_target")
    refused(lambda: setup.exchange(resource="https://api.example.com/"), "invalid_target")
    refused(lambda: setup.exchange(resource="urn:connection:"), "invalid_target")
    refused(lambda: setup.exchange(audience=f"urn:connection:{setup.connection['name']}x"),
            "invalid_target")
    assert checks(domain) == ["target"] * 4


def test_a_missing_target_is_invalid_request(setup, domain):
    setup.store()
    refused(lambda: setup.exchange(resource=None), "invalid_request")
    assert checks(domain) == ["target"]


def test_resource_and_audience_naming_different_targets_are_refused(setup):
    setup.store()
    refused(lambda: setup.exchange(audience="urn:connection:other"), "invalid_target")


def test_a_public_client_is_unauthorized(setup, domain):
    setup.store()
    spa = domain.app("spa")
    refused(lambda: setup.exchange(app=spa), "unauthorized_client")
    assert checks(domain) == ["public_client"]


@pytest.mark.parametrize("field, value", [
    ("subject_token_type", "urn:ietf:params:oauth:token-type:refresh_token"),
    ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
    ("subject_token_type", None),
    ("subject_token", None),
    ("subject_token", ""),
    ("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"),
    ("requested_token_type", ID_TOKEN),
    ("actor_token", "anything"),
])
def test_bad_parameters_are_invalid_request(setup, domain, field, value):
    setup.store()
    refused(lambda: setup.exchange(**{field: value}), "invalid_request")
    assert checks(domain) == [field]


def test_a_revoked_subject_token_is_refused(setup, domain):
    from chalicelib.provider import grant_store

    setup.store()
    assert setup.exchange()
    grant_store.revoke_grant(_claims(setup.access_token)["gid"], domain.now, "logout")
    refused(setup.exchange)
    assert checks(domain) == ["subject_revoked"]


def test_a_subject_token_after_global_token_revocation_is_refused(setup, domain):
    from chalicelib import revocation

    setup.store()
    revocation.revoke_user(setup.user_id, domain.now, "test")
    refused(setup.exchange)
    assert checks(domain) == ["subject_revoked"]


def _claims(token: str) -> dict:
    import base64
    import json

    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_an_expired_subject_token_is_refused(setup, domain):
    setup.store()
    domain.advance(3601)
    refused(setup.exchange)
    assert checks(domain) == ["subject_exp"]


def test_a_forged_subject_token_is_refused(setup, domain):
    from tests.support.fake_idp import mint

    setup.store()
    claims = _claims(setup.access_token)
    forged = mint(claims, rsa_key("broker-kid"), header={"typ": "at+jwt"})
    tampered = setup.access_token[:-4] + ("AAAA" if setup.access_token[-4:] != "AAAA" else "BBBB")
    for token in (forged, tampered, "not-a-jwt", setup.idp.mint(setup.idp.claims())):
        refused(lambda token=token: setup.exchange(subject_token=token))
    assert checks(domain) == ["subject_signature"] * 4


def test_a_subject_token_issued_to_another_client_is_refused(setup, domain):
    """Two applications both allowed: each exchanges only its own users' tokens."""
    from chalicelib.store import connections

    setup.store()
    other = domain.app("regular_web", grant_types=["authorization_code"])
    connections.update(setup.connection["id"], {"options": {
        **setup.connection["options"],
        "token_exchange_clients": [setup.app.client_id, other.client_id]}},
        [setup.app.client_id, other.client_id])
    _forget_connections()
    refused(lambda: setup.exchange(app=other))
    assert checks(domain) == ["subject_client"]


def _forget_connections() -> None:
    from chalicelib.registry.connections import forget_cached_connections

    forget_cached_connections()


def test_a_client_credentials_token_speaks_for_no_user(setup, domain):
    from chalicelib.keys import sign_jwt
    from chalicelib.settings import get_settings

    setup.store()
    token = sign_jwt({"iss": get_settings().issuer, "sub": f"{setup.app.client_id}@clients",
                      "aud": "https://api.example.com/", "iat": domain.now,
                      "exp": domain.now + 60, "client_id": setup.app.client_id},
                     typ="at+jwt")
    refused(lambda: setup.exchange(subject_token=token))
    assert checks(domain) == ["subject_user"]


def test_a_user_of_another_connection_is_refused(setup, domain, idp):
    """The subject's user signed in through another connection (that also keeps tokens and lists
    the client): its token does not open this connection's vault."""
    other = new_connection(domain, idp, allowed=[setup.app.client_id])
    setup.store(connection=other)  # even with an entry there under the same user id
    refused(lambda: setup.exchange(resource=f"urn:connection:{other['name']}"))
    assert checks(domain) == ["subject_connection"]


def test_a_user_without_a_vault_entry_is_refused(setup, domain):
    refused(setup.exchange)
    assert checks(domain) == ["vault_entry"]


def test_a_blocked_user_is_refused(setup, domain):
    from chalicelib.store import users as user_records

    setup.store()
    domain.table.update(*user_records.key(setup.user_id), "SET blocked = :t",
                        values={":t": True}, return_values="NONE")
    refused(setup.exchange)
    assert checks(domain) == ["blocked"]


def test_a_client_authentication_failure_is_an_ftx(setup, domain):
    from chalicelib.login.token_exchange import token_exchange_request

    refused(lambda: token_exchange_request(
        {**setup.form(), "client_id": setup.app.client_id, "client_secret": "wrong"}, None,
        now=domain.now), "invalid_client")
    [event] = events(domain, "ftx")
    assert event["details"]["error"] == "invalid_client"
    assert "wrong" not in text_of(event) and setup.access_token not in text_of(event)


# --------------------------------------------------------------------------- broker tokens in

class Inbound:
    """An application allowed to exchange the fake IdP's ID tokens."""

    def __init__(self, domain, idp: FakeIdp, **options):
        self.domain, self.idp = domain, idp
        self.app = domain.app("regular_web", grant_types=["authorization_code"])
        self.connection = new_connection(domain, idp, allowed=[self.app.client_id],
                                         storage=None, **options)

    def exchange(self, subject_token: str | None = None, app=None, **overrides) -> dict:
        from chalicelib.login.token_exchange import exchange

        form = {"grant_type": GRANT, "subject_token_type": ID_TOKEN,
                "subject_token": subject_token or self.idp.mint(self.idp.claims()), **overrides}
        return exchange(app or self.app, {k: v for k, v in form.items() if v is not None},
                        self.domain.now)


@pytest.fixture()
def inbound(domain, idp) -> Inbound:
    idp.clock = lambda: domain.now
    return Inbound(domain, idp)


def test_an_upstream_id_token_becomes_broker_tokens(inbound, domain):
    from chalicelib.keys import verify_jwt
    from chalicelib.users import get_user

    answer = inbound.exchange(scope="openid profile email")
    assert answer["issued_token_type"] == ACCESS and answer["token_type"] == "Bearer"
    assert answer["scope"] == "openid profile email" and "refresh_token" not in answer
    user_id = f"oidc|{inbound.connection['name']}|alice"
    access = verify_jwt(answer["access_token"], typ="at+jwt").claims
    assert access["sub"] == user_id and access["client_id"] == inbound.app.client_id
    assert answer["expires_in"] == access["exp"] - domain.now
    identity = verify_jwt(answer["id_token"]).claims
    assert identity["aud"] == inbound.app.client_id and identity["sub"] == user_id
    assert identity["email"] == "alice@example.com" and identity["sid"] == access["sid"]
    assert "nonce" not in identity
    # The user was mapped and written as at the callback; the token works at /userinfo.
    user = get_user(user_id)
    assert user["attributes"]["email"] == "alice@example.com"
    assert domain.userinfo(answer["access_token"])["sub"] == user_id
    [event] = events(domain, "stx")
    assert event["user_id"] == user_id and event["connection"] == inbound.connection["name"]
    assert event["details"]["direction"] == "broker_tokens"
    assert answer["access_token"] not in text_of(event)


def test_the_broker_tokens_die_with_their_session(inbound, domain):
    from chalicelib import sessions

    from chalicelib.provider import grant_store

    answer = inbound.exchange()
    access = _claims(answer["access_token"])
    session = sessions.get_session(access["sid"], domain.now)
    assert session is not None and session["expires_at"] == access["exp"]
    grant_store.revoke_grant(access["gid"], domain.now, "logout")
    with pytest.raises(OAuthError):
        domain.userinfo(answer["access_token"])


def test_the_audience_names_a_registered_api(inbound, domain):
    from chalicelib.management.resource_servers import create_resource_server

    api = create_resource_server({"name": "orders", "identifier": "https://orders.example.com/",
                                  "scopes": [{"value": "read:orders"}]})
    answer = inbound.exchange(audience=api["identifier"], scope="openid read:orders")
    access = _claims(answer["access_token"])
    assert api["identifier"] in access["aud"] and access["scope"] == "openid read:orders"
    refused(lambda: inbound.exchange(audience="https://unknown.example.com/"), "invalid_target")
    from chalicelib.settings import get_settings

    refused(lambda: inbound.exchange(audience=get_settings().management_audience),
            "invalid_target")


@pytest.mark.parametrize("overrides, check", [
    ({"exp": "past"}, "exp"),
    ({"aud": "someone-else"}, "aud"),
    ({"sub": DROP}, "sub"),
    ({"iat": DROP}, "iat"),
])
def test_an_invalid_upstream_id_token_is_refused(inbound, domain, overrides, check):
    if overrides.get("exp") == "past":
        overrides = {"exp": domain.now - 61, "iat": domain.now - 400}
    token = inbound.idp.mint(inbound.idp.claims(**overrides))
    refused(lambda: inbound.exchange(token))
    assert checks(domain) == [check]
    assert not _users_of(domain, inbound.connection)


def test_a_forged_upstream_id_token_is_refused(inbound, domain):
    claims = inbound.idp.claims()
    forged = inbound.idp.mint(claims, rsa_key("k1"))  # the IdP's kid, another key
    unsigned = inbound.idp.mint(claims, alg="none")
    refused(lambda: inbound.exchange(forged))
    refused(lambda: inbound.exchange(unsigned))
    refused(lambda: inbound.exchange("a.b"))
    assert sorted(checks(domain)) == ["alg", "format", "signature"]
    assert not _users_of(domain, inbound.connection)


def test_an_id_token_of_a_connection_that_does_not_list_the_client_is_refused(domain, idp):
    """A client allowed only on connection B presents an ID token of connection A."""
    idp.clock = lambda: domain.now
    with FakeIdp() as idp_b:
        idp_b.clock = idp.clock
        app = domain.app("regular_web", grant_types=["authorization_code"])
        new_connection(domain, idp, allowed=[], storage=None)  # A lists nobody
        new_connection(domain, idp_b, allowed=[app.client_id], storage=None)  # B lists the app
        inbound = Inbound.__new__(Inbound)
        inbound.domain, inbound.idp, inbound.app = domain, idp, app
        refused(lambda: inbound.exchange(idp.mint(idp.claims())), "unauthorized_client")
        assert checks(domain) == ["token_exchange_clients"]


def test_an_id_token_of_an_unknown_issuer_is_refused(inbound, domain):
    token = inbound.idp.mint(inbound.idp.claims(iss="https://elsewhere.example.com"))
    refused(lambda: inbound.exchange(token))
    assert checks(domain) == ["iss"]


def test_a_blocked_user_gets_no_broker_tokens_and_nothing_is_written(inbound, domain):
    from chalicelib import sessions
    from chalicelib.store import users as user_records

    inbound.exchange()  # the user exists now
    user_id = f"oidc|{inbound.connection['name']}|alice"
    domain.table.update(*user_records.key(user_id), "SET blocked = :t", values={":t": True},
                        return_values="NONE")
    before = len(sessions.sessions_of_user(user_id, domain.now))
    refused(inbound.exchange)
    assert checks(domain) == ["blocked"]
    assert len(sessions.sessions_of_user(user_id, domain.now)) == before


def test_an_inbound_exchange_refuses_a_public_client(inbound, domain):
    refused(lambda: inbound.exchange(app=domain.app("spa")), "unauthorized_client")


def _users_of(domain, connection: dict) -> list:
    from chalicelib.users import get_user

    user = get_user(f"oidc|{connection['name']}|alice")
    return [user] if user else []
