"""The upstream token vault over HTTP (SPEC §10): a login through a ``token_storage: vault``
connection keeps the upstream token response, sealed, in the login's own transaction (the raw
DynamoDB item holds none of the tokens); Global Token Revocation, deleting or blocking the user
and deleting the connection empty the vault and revoke the upstream refresh token at the IdP's
advertised ``revocation_endpoint`` (RFC 7009); the connection options are validated.

The scriptable IdP (tests/support/fake_idp.py) answers the code exchange through its
``token_handler`` with a refresh token, and the same handler, reached at ``/token?endpoint=
revocation`` (the ``revocation_endpoint`` its discovery document advertises here), plays the
revocation endpoint: every request it gets is recorded."""
from __future__ import annotations

import json
import secrets
import uuid
from urllib.parse import quote

import pytest

from chalicelib import aws, vault
from chalicelib.store import vault as vault_store
from chalicelib.store.dynamo import table
from tests.support.fake_idp import FakeIdp, connection_body, running_idp
from tests.support.flow import federated_login

REVOCATION = "/token?endpoint=revocation"


class VaultIdp(FakeIdp):
    """Code exchanges answer an access, refresh and ID token (each new); the revocation endpoint
    answers 200 (RFC 7009 §2.2) or :attr:`revocation_status`."""

    def __init__(self):
        super().__init__()
        self.issued: list[dict] = []
        self.revocation_status = 200
        self.token_handler = VaultIdp.answer

    @staticmethod
    def answer(idp: VaultIdp, form: dict, ctx: dict | None):
        if "token" in form:  # RFC 7009 §2.1 (the only POST to /token without a grant_type)
            return idp.revocation_status, b"", "application/json"
        if ctx is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant"}, "application/json"
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        id_token = idp.id_token(idp, {**ctx, "access_token": access})
        issued = {"access_token": access, "refresh_token": refresh, "id_token": id_token}
        idp.issued.append(issued)
        return 200, {**issued, "token_type": "Bearer", "expires_in": 300,
                     "scope": "openid profile email"}, "application/json"

    def revocations(self) -> list[dict]:
        return [r.form for r in self.requests_to("/token") if r.query.get("endpoint")]


@pytest.fixture()
def idp():
    with running_idp(VaultIdp) as running:
        running.discovery_extra = {"revocation_endpoint": running.base_url + REVOCATION}
        yield running


@pytest.fixture()
def web(make_app):
    return make_app("vault-web")


@pytest.fixture()
def make_connection(add_connection, web):
    def make(idp_: FakeIdp, channel: str = "back", **options) -> dict:
        return add_connection(connection_body(idp_, f"vault-{uuid.uuid4().hex[:8]}", channel=channel,
                                              enabled_clients=[web["client_id"]], **options))

    return make


def sign_in(client, app: dict, connection: dict, idp_: FakeIdp, sub: str) -> str:
    """A login through the broker's callback; the broker's user id."""
    idp_.user = {"sub": sub, "email": f"{sub}@example.com", "email_verified": True,
                 "name": sub.title()}
    _, answer, _ = federated_login(client, app, connection, state="st", nonce="n")
    assert answer.status_code == 303, answer.body
    assert "code=" in answer.headers["Location"], answer.headers["Location"]
    return f"oidc|{connection['name']}|{sub}"


def raw_item(user_id: str, connection_id: str) -> dict | None:
    """The item as DynamoDB holds it: the low-level client, its typed JSON."""
    pk, sk = vault_store.key(user_id, connection_id)
    answer = aws.client("dynamodb").get_item(
        TableName=table().name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True)
    return answer.get("Item")


def sub() -> str:
    return f"vault-{uuid.uuid4().hex[:10]}"


# --- at the login ---------------------------------------------------------------------------------

def test_a_vault_login_keeps_the_upstream_tokens_sealed(client, web, make_connection, idp):
    connection = make_connection(idp, token_storage="vault", token_retention_days=7)
    assert connection["options"]["token_storage"] == "vault"
    user_id = sign_in(client, web, connection, idp, sub())
    (issued,) = idp.issued
    raw = raw_item(user_id, connection["id"])
    assert raw is not None
    text = json.dumps(raw)
    for name, value in issued.items():
        assert value not in text, name
        assert value.split(".")[0] not in text, name  # not even an ID token's header
    assert raw["version"] == {"N": "1"} and raw["connection"] == {"S": connection["name"]}
    assert int(raw["ttl"]["N"]) - int(raw["updated_at"]["N"]) == 7 * 86400
    # The broker can open it (the token exchange's read).
    tokens, version = vault.read(connection, user_id, int(raw["updated_at"]["N"]))
    assert (tokens.access_token, tokens.refresh_token, tokens.id_token, version) == (
        issued["access_token"], issued["refresh_token"], issued["id_token"], 1)
    assert tokens.expires_at == int(raw["updated_at"]["N"]) + 300
    assert tokens.scope == "openid profile email"


def test_without_the_vault_nothing_is_kept(client, web, make_connection, idp):
    plain = make_connection(idp)
    none = make_connection(idp, token_storage="none")
    for connection in (plain, none):
        user_id = sign_in(client, web, connection, idp, sub())
        assert raw_item(user_id, connection["id"]) is None
        assert vault_store.of_user(user_id) == []


def test_a_front_channel_login_has_no_access_token_to_keep(client, web, make_connection, idp):
    connection = make_connection(idp, channel="front", token_storage="vault")
    user_id = sign_in(client, web, connection, idp, sub())
    assert raw_item(user_id, connection["id"]) is None


class Calls:
    """AWS operations made through chalicelib.aws's clients (DynamoDB's lean path included: it
    emits the client's own events)."""

    def __init__(self):
        self.made: list[tuple[str, str]] = []

    def __call__(self, model, **_kwargs):
        self.made.append((model.service_model.service_name, model.name))

    def of(self, service: str) -> list[str]:
        return [name for svc, name in self.made if svc == service]


@pytest.fixture()
def calls():
    recorder = Calls()
    clients = [aws.client("dynamodb"), aws.client("kms")]
    for found in clients:
        found.meta.events.register("before-call", recorder, unique_id="vault-login-calls")
    yield recorder
    for found in clients:
        found.meta.events.unregister("before-call", unique_id="vault-login-calls")


def test_a_vault_login_costs_one_kms_call_and_no_dynamodb_call_more(client, web,
                                                                     make_connection, idp, calls):
    plain = make_connection(idp)
    kept = make_connection(idp, token_storage="vault")
    for connection in (plain, kept):  # warm: connection, secret and JWKS caches
        sign_in(client, web, connection, idp, sub())
    counted = {}
    for connection in (plain, kept):
        vault.data_keys.clear()
        calls.made.clear()
        sign_in(client, web, connection, idp, sub())
        counted[connection is kept] = (calls.of("dynamodb"), calls.of("kms"))
    assert counted[True][0] == counted[False][0]  # the same DynamoDB calls, one transaction
    assert counted[True][0].count("TransactWriteItems") == 1
    assert counted[False][1] == [] and counted[True][1] == ["GenerateDataKey"]


# --- emptied by revocation -------------------------------------------------------------------------

def _gtr(client, idp_: FakeIdp, connection: dict, sub_: str):
    from tests.api.test_gtr import gtr_jwt, iss_sub, post

    return post(client, connection["name"], gtr_jwt(idp_, connection), iss_sub(idp_, sub_))


def _revoked_upstream(idp_: VaultIdp, refresh_token: str) -> None:
    (form,) = idp_.revocations()
    assert form["token"] == refresh_token and form["token_type_hint"] == "refresh_token"
    # The connection's client authentication (client_secret_post by default), as at /token.
    assert (form["client_id"], form["client_secret"]) == (idp_.client_id, idp_.client_secret)


def test_global_token_revocation_empties_the_vault_and_revokes_upstream(client, web,
                                                                        make_connection, idp):
    connection = make_connection(idp, token_storage="vault")
    alice, bob = sub(), sub()
    alice_id = sign_in(client, web, connection, idp, alice)
    bob_id = sign_in(client, web, connection, idp, bob)
    assert _gtr(client, idp, connection, alice).status_code == 204
    assert raw_item(alice_id, connection["id"]) is None
    _revoked_upstream(idp, idp.issued[0]["refresh_token"])
    assert raw_item(bob_id, connection["id"]) is not None  # nobody else


def test_deleting_a_user_empties_its_vault(client, api, web, make_connection, idp):
    connection = make_connection(idp, token_storage="vault")
    user_id = sign_in(client, web, connection, idp, sub())
    assert api.call("DELETE", f"/api/v2/users/{quote(user_id, safe='')}").status_code == 204
    assert raw_item(user_id, connection["id"]) is None
    _revoked_upstream(idp, idp.issued[0]["refresh_token"])


def test_blocking_a_user_empties_its_vault(client, api, web, make_connection, idp):
    connection = make_connection(idp, token_storage="vault")
    user_id = sign_in(client, web, connection, idp, sub())
    blocked = api.call("PATCH", f"/api/v2/users/{quote(user_id, safe='')}",
                       body={"blocked": True})
    assert blocked.status_code == 200, blocked.data
    assert raw_item(user_id, connection["id"]) is None
    _revoked_upstream(idp, idp.issued[0]["refresh_token"])


def test_deleting_the_connection_empties_its_users_vaults(client, api, web, make_connection,
                                                          idp):
    connection = make_connection(idp, token_storage="vault")
    user_id = sign_in(client, web, connection, idp, sub())
    assert api.call("DELETE", f"/api/v2/connections/{connection['id']}").status_code == 204
    assert raw_item(user_id, connection["id"]) is None
    _revoked_upstream(idp, idp.issued[0]["refresh_token"])


def test_an_upstream_that_refuses_the_revocation_changes_no_answer(client, web,
                                                                   make_connection, idp):
    idp.revocation_status = 503
    connection = make_connection(idp, token_storage="vault")
    alice = sub()
    user_id = sign_in(client, web, connection, idp, alice)
    assert _gtr(client, idp, connection, alice).status_code == 204
    assert raw_item(user_id, connection["id"]) is None  # gone from the broker all the same
    assert len(idp.revocations()) == 1


def test_no_revocation_endpoint_no_request(client, web, make_connection, idp):
    idp.discovery_extra = {}
    connection = make_connection(idp, token_storage="vault")
    alice = sub()
    user_id = sign_in(client, web, connection, idp, alice)
    assert _gtr(client, idp, connection, alice).status_code == 204
    assert raw_item(user_id, connection["id"]) is None
    assert idp.revocations() == []


# --- the options ---------------------------------------------------------------------------------

def test_the_vault_options_are_stored_and_sent_back(api, web, make_connection, idp):
    connection = make_connection(idp, token_storage="vault", token_retention_days=90,
                                 token_exchange_clients=[web["client_id"], web["client_id"]])
    options = connection["options"]
    assert (options["token_storage"], options["token_retention_days"],
            options["token_exchange_clients"]) == ("vault", 90, [web["client_id"]])
    read = api.call("GET", f"/api/v2/connections/{connection['id']}").data["options"]
    assert read["token_exchange_clients"] == [web["client_id"]]
    # PATCH replaces options as a whole: left out, they are gone (none, 30 days, no client).
    patched = api.call("PATCH", f"/api/v2/connections/{connection['id']}", body={
        "options": {k: v for k, v in read.items()
                    if k not in ("token_storage", "token_retention_days",
                                 "token_exchange_clients", "backchannel_logout_url")}})
    assert patched.status_code == 200, patched.data
    assert not {"token_storage", "token_retention_days",
                "token_exchange_clients"} & set(patched.data["options"])


@pytest.mark.parametrize("options", [
    {"token_storage": "yes"}, {"token_storage": "VAULT"}, {"token_storage": True},
    {"token_storage": 1},
    {"token_retention_days": 0}, {"token_retention_days": 366}, {"token_retention_days": "30"},
    {"token_retention_days": True}, {"token_retention_days": 1.5},
    {"token_exchange_clients": "app"}, {"token_exchange_clients": [""]},
    {"token_exchange_clients": [7]}, {"token_exchange_clients": ["x" * 65]},
    {"token_exchange_clients": ["no-such-client"]},
    {"token_exchange_clients": [f"c{i}" for i in range(101)]},
])
def test_invalid_vault_options_are_refused(api, idp, web, options):
    body = connection_body(idp, f"vault-{uuid.uuid4().hex[:8]}", channel="back",
                           enabled_clients=[web["client_id"]], **options)
    refused = api.call("POST", "/api/v2/connections", body=body)
    assert refused.status_code == 400, refused.data
    assert refused.data["errorCode"] == "invalid_body"
    (option,) = options
    assert option in refused.data["message"], refused.data


def test_an_unknown_exchange_client_is_named(api, idp, web):
    body = connection_body(idp, f"vault-{uuid.uuid4().hex[:8]}", channel="back",
                           enabled_clients=[web["client_id"]],
                           token_exchange_clients=[web["client_id"], "ghost-client"])
    refused = api.call("POST", "/api/v2/connections", body=body)
    assert refused.status_code == 400
    assert "client ghost-client does not exist" in refused.data["message"]
