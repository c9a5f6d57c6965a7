"""The upstream token vault (SPEC §10, chalicelib/vault.py) on the in-memory table with moto's
real KMS (the suite's embedded endpoint, key ``alias/broker-local-vault`` from infra/): sealed and
opened again, nothing readable in the item, an entry that does not open under another user's or
connection's context, the per-container data key cache (KMS calls counted on the client's own
events), the refresh lease through the interface, and forgetting a user's entries with the
upstream revocation and its log events."""
from __future__ import annotations

import base64
import json
import time

import pytest

from chalicelib import aws, vault
from chalicelib.store import connections, log_events
from chalicelib.store import vault as store
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.store.unit_of_work import UnitOfWork
from chalicelib.tokens import random_token

ACCESS = "upstream-access-" + "a" * 40
REFRESH = "upstream-refresh-" + "r" * 40
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl-upstream-id-token"


@pytest.fixture(autouse=True)
def cold_data_keys():
    vault.data_keys.clear()
    yield
    vault.data_keys.clear()


@pytest.fixture()
def kms_calls():
    """Every KMS operation made through chalicelib.aws's client while the test runs."""
    calls: list[str] = []
    events = aws.client("kms").meta.events

    def record(model, **_kwargs):
        calls.append(model.name)

    events.register("before-call.kms", record, unique_id="vault-test-kms-calls")
    yield calls
    events.unregister("before-call.kms", unique_id="vault-test-kms-calls")


def a_connection(**options) -> dict:
    suffix = random_token(9).replace("-", "x").replace("_", "y")
    record = {"id": f"con_vault{suffix}", "name": f"vault-{suffix}", "strategy": "oidc",
              "options": {"type": "back_channel", "issuer": "https://idp.example.com",
                          "client_id": "broker-at-idp", "token_storage": "vault", **options}}
    connections.create(record)
    return record


def tokens(marker: str = "", **changes) -> vault.UpstreamTokens:
    fields = {"access_token": ACCESS + marker, "expires_at": int(time.time()) + 300,
              "refresh_token": REFRESH + marker, "id_token": ID_TOKEN + marker,
              "scope": "openid profile offline_access", **changes}
    return vault.UpstreamTokens(**fields)


def login(connection: dict, user_id: str, upstream: vault.UpstreamTokens, now: int) -> None:
    UnitOfWork([vault.store_operation(connection, user_id, upstream, now)]).commit()


def user() -> str:
    return f"oidc|vault|{random_token(9)}"


# --- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize("options,expected", [
    ({"token_storage": "vault"}, True), ({"token_storage": "none"}, False), ({}, False),
    ({"token_storage": "Vault"}, False), ({"token_storage": True}, False)])
def test_only_token_storage_vault_turns_it_on(options, expected):
    assert vault.enabled({"options": options}) is expected
    assert vault.enabled(None) is False


@pytest.mark.parametrize("days,seconds", [(7, 7 * 86400), (None, 30 * 86400), (0, 30 * 86400),
                                          (366, 30 * 86400), (True, 30 * 86400)])
def test_retention_is_the_connections_days(domain, days, seconds):
    options = {} if days is None else {"token_retention_days": days}
    connection = a_connection(**options)
    user_id = user()
    login(connection, user_id, tokens(), domain.now)
    assert store.get(user_id, connection["id"], domain.now)["ttl"] == domain.now + seconds


# --- sealing -----------------------------------------------------------------------------------

def test_sealed_tokens_open_again_for_their_user_and_connection(domain):
    connection, user_id = a_connection(), user()
    kept = tokens()
    login(connection, user_id, kept, domain.now)
    assert vault.read(connection, user_id, domain.now) == (kept, 1)
    vault.data_keys.clear()  # a cold container: the data key comes back from KMS
    assert vault.read(connection, user_id, domain.now) == (kept, 1)
    # An access token without the optional parts.
    bare = vault.UpstreamTokens(access_token=ACCESS + "bare", expires_at=None)
    login(connection, user_id, bare, domain.now)
    assert vault.read(connection, user_id, domain.now) == (bare, 2)


def test_no_token_in_the_stored_item(domain):
    connection, user_id = a_connection(), user()
    login(connection, user_id, tokens(), domain.now)
    (raw,) = [item for item in domain.table.dump() if item["pk"] == f"VAULT#{user_id}"]
    text = json.dumps(raw, default=str)
    for secret in (ACCESS, REFRESH, ID_TOKEN, "upstream-", "eyJ"):
        assert secret not in text
    # Not hidden in plain base64 either: what is sealed is ciphertext.
    for value in (raw["sealed"], raw["data_key"]):
        assert b"upstream-" not in base64.b64decode(value)
    assert set(raw) == {"pk", "sk", "user_id", "connection_id", "connection", "sealed", "nonce",
                        "data_key", "key_id", "version", "access_expires_at", "created_at",
                        "updated_at", "ttl"}
    assert raw["key_id"].startswith("arn:aws:kms:")


def test_the_repr_shows_no_token():
    shown = repr(tokens()) + repr(vault.data_keys)
    assert ACCESS not in shown and REFRESH not in shown and ID_TOKEN not in shown


def _tamper(domain, owner: str, connection_id: str, **changes) -> dict:
    item = domain.table.get(*store.key(owner, connection_id))
    item.update(changes)
    domain.table.put(item)
    return item


def test_an_entry_whose_stored_user_was_changed_does_not_open(domain):
    connection, user_id = a_connection(), user()
    login(connection, user_id, tokens(), domain.now)
    _tamper(domain, user_id, connection["id"], user_id="oidc|vault|mallory")
    assert vault.read(connection, user_id, domain.now) is None
    record = store.get(user_id, connection["id"], domain.now)
    with pytest.raises(vault.EntryUnreadable):
        vault.open_entry(record, connection["id"], user_id)
    # Nor under the user it now names: KMS's context (and the GCM data) are alice's.
    with pytest.raises(vault.EntryUnreadable):
        vault.open_entry(record, connection["id"], "oidc|vault|mallory")


def test_another_users_entry_copied_over_yours_does_not_open(domain, kms_calls):
    """Even with the victim's data key in this container's cache: the cache is keyed by context
    too, so the copy goes to KMS, which refuses the other context."""
    connection, victim, attacker = a_connection(), user(), user()
    login(connection, victim, tokens("victim"), domain.now)
    assert vault.read(connection, victim, domain.now)[0].access_token == ACCESS + "victim"
    copied = dict(domain.table.get(*store.key(victim, connection["id"])))
    pk, sk = store.key(attacker, connection["id"])
    copied.update(pk=pk, sk=sk, user_id=attacker)
    domain.table.put(copied)
    kms_calls.clear()
    assert vault.read(connection, attacker, domain.now) is None
    assert kms_calls == ["Decrypt"]  # asked, and refused
    # The same with another connection's id in place of the user.
    other = a_connection()
    moved = dict(domain.table.get(*store.key(victim, connection["id"])))
    pk, sk = store.key(victim, other["id"])
    moved.update(pk=pk, sk=sk, connection_id=other["id"])
    domain.table.put(moved)
    assert vault.read(other, victim, domain.now) is None
    assert vault.read(connection, victim, domain.now)[0].access_token == ACCESS + "victim"


def test_a_sealed_value_changed_by_a_bit_does_not_open(domain):
    connection, user_id = a_connection(), user()
    login(connection, user_id, tokens(), domain.now)
    raw = bytearray(base64.b64decode(domain.table.get(*store.key(user_id, connection["id"]))["sealed"]))
    raw[0] ^= 1
    _tamper(domain, user_id, connection["id"], sealed=base64.b64encode(bytes(raw)).decode())
    assert vault.read(connection, user_id, domain.now) is None


# --- the data key cache ----------------------------------------------------------------------------

def test_kms_calls_per_login_and_read(domain, kms_calls):
    connection, alice, bob = a_connection(), user(), user()
    login(connection, alice, tokens(), domain.now)
    assert kms_calls == ["GenerateDataKey"]  # a login: one data key
    assert vault.read(connection, alice, domain.now) is not None
    assert kms_calls == ["GenerateDataKey"]  # a warm read: none
    vault.data_keys.clear()
    assert vault.read(connection, alice, domain.now) is not None
    assert vault.read(connection, alice, domain.now) is not None
    assert kms_calls == ["GenerateDataKey", "Decrypt"]  # a cold read: one, then none
    kms_calls.clear()
    login(connection, alice, tokens("2"), domain.now + 10)
    assert kms_calls == ["GenerateDataKey"]  # only keys made here are reused for writing
    login(connection, alice, tokens("3"), domain.now + 20)
    assert kms_calls == ["GenerateDataKey"]  # the same user and connection again: reused
    kms_calls.clear()
    login(connection, bob, tokens(), domain.now + 10)
    assert kms_calls == ["GenerateDataKey"]  # another user: another key (another context)
    kms_calls.clear()
    login(connection, alice, tokens("4"), domain.now + 10 + vault.DATA_KEY_REUSE_SECONDS)
    assert kms_calls == ["GenerateDataKey"]  # an hour on, a fresh data key
    assert vault.read(connection, alice, domain.now) is not None and kms_calls == [
        "GenerateDataKey"]


def test_the_cache_holds_a_bounded_number_of_keys():
    cache = vault.DataKeyCache(size=2)
    cache.put(("a",), b"1")
    cache.put(("b",), b"2")
    assert cache.get(("a",)) == b"1"  # a is now the most recently used
    cache.put(("c",), b"3")
    assert cache.get(("b",)) is None and cache.get(("a",)) == b"1" and len(cache) == 2
    assert vault.DATA_KEY_CACHE_SIZE == 1000 and vault.data_keys.size == 1000


def test_kms_unreachable_is_an_outage_not_a_crash(domain, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    from chalicelib.errors import ServiceUnavailable

    connection = a_connection()

    class Down:
        def generate_data_key(self, **_):
            raise EndpointConnectionError(endpoint_url="http://kms")

    monkeypatch.setattr(vault, "_kms", lambda: Down())
    with pytest.raises(ServiceUnavailable):
        vault.store_operation(connection, user(), tokens(), domain.now)


# --- the refresh lease through the interface ------------------------------------------------------

def test_refresh_under_the_lease(domain):
    connection, user_id = a_connection(), user()
    login(connection, user_id, tokens(), domain.now)
    lease = vault.take_refresh_lease(connection, user_id, domain.now)
    assert isinstance(lease, str) and len(lease) >= 16
    assert vault.take_refresh_lease(connection, user_id, domain.now + 14) is None
    refreshed = tokens("refreshed")
    assert vault.replace(connection, user_id, refreshed, lease, domain.now + 1) == 2
    assert vault.read(connection, user_id, domain.now + 1) == (refreshed, 2)
    with pytest.raises(ConditionFailed):  # released by the write
        vault.replace(connection, user_id, tokens("again"), lease, domain.now + 2)
    second = vault.take_refresh_lease(connection, user_id, domain.now + 2, seconds=5)
    vault.release_lease(connection, user_id, second)
    assert vault.take_refresh_lease(connection, user_id, domain.now + 3) is not None
    assert vault.take_refresh_lease(a_connection(), user_id, domain.now) is None  # no entry


# --- forgetting a user -------------------------------------------------------------------------

class Revoker:
    def __init__(self, fail_for: str | None = None):
        self.calls: list[tuple[str, str]] = []
        self.fail_for = fail_for

    def __call__(self, connection, refresh_token):
        self.calls.append((connection["name"], refresh_token))
        if connection["name"] == self.fail_for:
            raise vault.UpstreamRevocationFailed("status 503")


def _events(user_id: str) -> list[dict]:
    return list(log_events.of_user(user_id))


def test_forgetting_a_user_deletes_every_entry_and_revokes_where_advertised(domain):
    advertised = a_connection(oidc_metadata={"revocation_endpoint": "https://idp.example.com/r"})
    silent = a_connection()
    user_id, bystander = user(), user()
    login(advertised, user_id, tokens("a"), domain.now)
    login(silent, user_id, tokens("s"), domain.now)
    login(advertised, bystander, tokens("b"), domain.now)
    vault.data_keys.clear()  # the refresh token is read back through KMS
    revoker = Revoker()
    assert vault.forget_user(user_id, domain.now, revoker=revoker, reason="user_deleted") == 2
    assert store.of_user(user_id) == []
    assert revoker.calls == [(advertised["name"], REFRESH + "a")]
    assert vault.read(advertised, bystander, domain.now) is not None
    events = {e["connection"]: e for e in _events(user_id)}
    assert {name: (e["type"], e["details"]) for name, e in events.items()} == {
        advertised["name"]: ("slo", {"vault": "deleted", "upstream_revocation": "revoked",
                                     "reason": "user_deleted"}),
        silent["name"]: ("slo", {"vault": "deleted", "upstream_revocation": "not_advertised",
                                 "reason": "user_deleted"})}
    assert events[advertised["name"]]["connection_id"] == advertised["id"]
    for event in events.values():
        text = json.dumps(event)
        assert REFRESH not in text and ACCESS not in text and "upstream-" not in text
    assert vault.forget_user(user_id, domain.now, revoker=revoker) == 0  # nothing left


def test_an_upstream_refusal_is_logged_and_the_entry_still_goes(domain):
    failing = a_connection(oidc_metadata={"revocation_endpoint": "https://idp.example.com/r"})
    working = a_connection(oidc_metadata={"revocation_endpoint": "https://idp.example.com/r"})
    user_id = user()
    login(failing, user_id, tokens("f"), domain.now)
    login(working, user_id, tokens("w"), domain.now)
    revoker = Revoker(fail_for=failing["name"])
    assert vault.forget_user(user_id, domain.now, revoker=revoker) == 2
    assert sorted(revoker.calls) == sorted([(failing["name"], REFRESH + "f"),
                                            (working["name"], REFRESH + "w")])
    assert store.of_user(user_id) == []
    events = {e["connection"]: e for e in _events(user_id)}
    assert events[failing["name"]]["type"] == "flo"
    assert events[failing["name"]]["details"]["upstream_revocation"] == "failed: status 503"
    assert events[working["name"]]["type"] == "slo"


def test_a_crashing_revoker_or_an_entry_without_refresh_token_fails_nothing(domain):
    advertised = a_connection(oidc_metadata={"revocation_endpoint": "https://idp.example.com/r"})
    other = a_connection(oidc_metadata={"revocation_endpoint": "https://idp.example.com/r"})
    user_id = user()
    login(advertised, user_id, tokens(), domain.now)
    login(other, user_id, tokens(refresh_token=None), domain.now)

    def crash(connection, refresh_token):
        raise RuntimeError(f"boom {refresh_token}")

    assert vault.forget_user(user_id, domain.now, revoker=crash) == 2
    outcomes = {e["connection"]: e["details"]["upstream_revocation"] for e in _events(user_id)}
    assert outcomes == {advertised["name"]: "failed: internal", other["name"]: "no_refresh_token"}
    assert REFRESH not in json.dumps(_events(user_id))


def test_without_revoke_upstream_nothing_is_sent(domain):
    advertised = a_connection(oidc_metadata={"revocation_endpoint": "https://idp.example.com/r"})
    user_id = user()
    login(advertised, user_id, tokens(), domain.now)
    revoker = Revoker()
    assert vault.forget_user(user_id, domain.now, revoke_upstream=False, revoker=revoker) == 1
    assert revoker.calls == [] and store.of_user(user_id) == []
    assert _events(user_id)[0]["details"]["upstream_revocation"] == "not_requested"


def test_revoking_a_user_forgets_the_vault_only_when_asked(domain, monkeypatch):
    from chalicelib import revocation
    from chalicelib.login import upstream_revocation

    revoker = Revoker()
    monkeypatch.setattr(upstream_revocation, "revoke_refresh_token", revoker)
    connection = a_connection(oidc_metadata={"revocation_endpoint": "https://idp.example.com/r"})
    user_id = user()
    login(connection, user_id, tokens(), domain.now)
    # Deleting a user's sessions (the Management API) keeps the vault, as Auth0 does.
    assert revocation.revoke_user(user_id, domain.now, "sessions_deleted")["vault_entries"] == 0
    assert vault.read(connection, user_id, domain.now) is not None
    done = revocation.revoke_user(user_id, domain.now, "global_token_revocation",
                                  forget_upstream_tokens=True)
    assert done["vault_entries"] == 1 and revoker.calls == [(connection["name"], REFRESH)]
    assert vault.read(connection, user_id, domain.now) is None


def test_a_vault_that_cannot_be_emptied_fails_the_revocation_so_it_is_retried(domain, monkeypatch):
    """Storage down while emptying the vault: the revocation fails (GTR answers 422, the IdP
    retries; a Management API delete or block answers 503) rather than leaving upstream tokens
    behind. A failing upstream revocation, by contrast, is best effort (the test above)."""
    import pytest

    from chalicelib import revocation
    from chalicelib.errors import ServiceUnavailable

    def down(*_args, **_kwargs):
        raise ServiceUnavailable("A dependency is temporarily unavailable")

    monkeypatch.setattr(store, "of_user", down)
    with pytest.raises(ServiceUnavailable):
        revocation.revoke_user(user(), domain.now, "user_blocked", forget_upstream_tokens=True)
