"""Issue 17: a warm refresh-token grant is one DynamoDB read (the token) and one transaction.

The client comes from the per-container cache (a fresh read whenever the credentials do not match
it), and the user from the snapshot its refresh token carries, pinned by a check in the
transaction. These tests hold the budget and every rule the shortcut could bend: a changed user,
a rotated client secret, the failed-authentication throttle. A blocked or deleted user refused by
the transaction, and a rotated token keeping no copy of the profile, are
tests/domain/test_refresh_tokens.py's.
"""
from __future__ import annotations

import collections
from urllib.parse import quote

import pytest

from chalicelib import aws
from chalicelib.provider import client_auth
from chalicelib.tokens import digest
from tests.api import test_token_endpoint
from tests.api.test_token_endpoint import _claims, assert_invalid_grant, exchange, login, refresh

# The token endpoint tests' fixture (with tests/api/conftest.py's fake upstream IdP): a regular web
# app (confidential, non-rotating), another one and a SPA (public, rotating), all on one
# back-channel connection.
setup = test_token_endpoint.setup

PROFILE_SCOPE = "openid profile email offline_access"


class DynamoCalls:
    """DynamoDB calls by operation, counted with botocore's before-call event."""

    def __init__(self):
        self.calls: collections.Counter = collections.Counter()

    def _on_call(self, model, **_):
        self.calls[model.name] += 1

    def __enter__(self):
        aws.client("dynamodb").meta.events.register("before-call.*.*", self._on_call)
        return self

    def __exit__(self, *exc):
        aws.client("dynamodb").meta.events.unregister("before-call.*.*", self._on_call)


def counted(call):
    with DynamoCalls() as recorder:
        response = call()
    return response, dict(recorder.calls)


ONE_READ_ONE_TRANSACTION = {"GetItem": 1, "TransactWriteItems": 1}


def _tokens(client, setup, app, scope=PROFILE_SCOPE) -> dict:
    code, verifier = login(client, setup, app, scope=scope)
    tokens = exchange(client, app, code, verifier)
    assert tokens.status_code == 200, tokens.data
    return tokens.data


def _user_id(tokens: dict) -> str:
    return _claims(tokens["id_token"])["sub"]


def _token_item(refresh_token: str) -> dict:
    from chalicelib.store.dynamo import table

    return table().get(f"RT#{digest(refresh_token)}", "RT")


@pytest.mark.parametrize("kind", ["web", "spa"])  # non-rotating (confidential), rotating (public)
def test_a_warm_refresh_is_one_read_and_one_transaction(client, setup, kind):
    app = setup[kind]
    tokens = _tokens(client, setup, app)
    token = tokens["refresh_token"]
    first = refresh(client, app, token)  # also warms the client cache and the signing keys
    assert first.status_code == 200, first.data
    token = first.data.get("refresh_token", token)
    for _ in range(2):
        response, calls = counted(lambda token=token: refresh(client, app, token))
        assert response.status_code == 200, response.data
        assert calls == ONE_READ_ONE_TRANSACTION, calls
        rotated = response.data.get("refresh_token", token)
        assert (rotated != token) == (kind == "spa")
        token = rotated
    # The ID token from the snapshot is the one a read of the user gives.
    assert _claims(response.data["id_token"])["email"] == _claims(tokens["id_token"])["email"]


@pytest.mark.parametrize("kind", ["web", "spa"])
def test_a_new_login_with_other_claims_reaches_the_old_tokens_next_id_token(client, setup, idp,
                                                                            kind):
    """Two logins, possibly within one second (the profile's updated_at is the same): the older
    refresh token's snapshot no longer matches the attributes, the refresh reads the user and
    from then on carries the new snapshot."""
    app = setup[kind]
    old = _tokens(client, setup, app)
    assert _claims(old["id_token"])["name"] == "Alice"
    idp.user["name"] = "Alice Renamed"
    _tokens(client, setup, app)
    renamed, calls = counted(lambda: refresh(client, app, old["refresh_token"]))
    assert renamed.status_code == 200, renamed.data
    assert _claims(renamed.data["id_token"])["name"] == "Alice Renamed"
    # The token read, the transaction the user check cancelled, the user read, the transaction.
    assert calls == {"GetItem": 2, "TransactWriteItems": 2}, calls
    token = renamed.data.get("refresh_token", old["refresh_token"])
    again, calls = counted(lambda: refresh(client, app, token))
    assert again.status_code == 200, again.data
    assert _claims(again.data["id_token"])["name"] == "Alice Renamed"
    assert calls == ONE_READ_ONE_TRANSACTION, calls  # the new snapshot was stored


def test_an_administrators_change_reaches_the_next_id_token(client, api, setup):
    from chalicelib.provider.issue import _epoch
    from chalicelib.store.dynamo import table
    from chalicelib.store.users import key

    app = setup["web"]
    tokens = _tokens(client, setup, app)
    user_id = _user_id(tokens)
    # As if the login were a year ago, so the ID token's updated_at tells the two profiles apart.
    long_ago = "2020-01-01T00:00:00.000Z"
    table().update(*key(user_id), "SET updated_at = :t", values={":t": long_ago})
    table().update(f"RT#{digest(tokens['refresh_token'])}", "RT",
                   "SET user_snapshot.updated_at = :t", values={":t": long_ago})
    before, calls = counted(lambda: refresh(client, app, tokens["refresh_token"]))
    assert before.status_code == 200 and calls == ONE_READ_ONE_TRANSACTION, calls
    assert _claims(before.data["id_token"])["updated_at"] == _epoch(long_ago)
    patched = api.call("PATCH", f"/api/v2/users/{quote(user_id, safe='')}",
                       body={"user_metadata": {"theme": "dark"}})
    assert patched.status_code == 200, patched.data
    response = refresh(client, app, tokens["refresh_token"])
    assert response.status_code == 200, response.data
    assert _claims(response.data["id_token"])["updated_at"] == _epoch(patched.data["updated_at"])
    response, calls = counted(lambda: refresh(client, app, tokens["refresh_token"]))
    assert response.status_code == 200 and calls == ONE_READ_ONE_TRANSACTION, calls


def test_a_token_without_a_snapshot_reads_the_user_once(client, setup):
    """Refresh tokens issued before snapshots existed: the first refresh reads the user and
    stores the snapshot (the slide's update), the next ones do not read it."""
    from chalicelib.store.dynamo import table

    app = setup["web"]
    tokens = _tokens(client, setup, app)
    token = tokens["refresh_token"]
    table().update(f"RT#{digest(token)}", "RT", "REMOVE user_snapshot")
    response, calls = counted(lambda: refresh(client, app, token))
    assert response.status_code == 200, response.data
    assert _claims(response.data["id_token"])["name"] == "Alice"
    assert calls == {"GetItem": 2, "TransactWriteItems": 1}, calls
    assert _token_item(token)["user_snapshot"]["attributes"]["name"] == "Alice"
    response, calls = counted(lambda: refresh(client, app, token))
    assert response.status_code == 200 and calls == ONE_READ_ONE_TRANSACTION, calls


# --------------------------------------------------------------------------- client credentials

def test_a_rotated_secret_works_at_once_and_the_old_one_is_refused(client, api, setup):
    app = setup["web"]
    tokens = _tokens(client, setup, app)
    assert refresh(client, app, tokens["refresh_token"]).status_code == 200  # client cached
    rotated = api.call("POST", f"/api/v2/clients/{app['client_id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.data
    new = {**app, "client_secret": rotated.data["client_secret"]}
    assert refresh(client, new, tokens["refresh_token"]).status_code == 200
    old = refresh(client, app, tokens["refresh_token"])
    assert old.status_code == 401 and old.data["error"] == "invalid_client"


def test_a_secret_rotated_in_another_container_works_at_once(client, setup):
    """This container's cache still holds the old record (no administrator's write here dropped
    it): the new secret does not match it, so the client is read fresh and accepted."""
    from chalicelib.management.clients import hash_secret, new_client_secret
    from chalicelib.store.dynamo import table

    app = setup["web"]
    tokens = _tokens(client, setup, app)
    assert refresh(client, app, tokens["refresh_token"]).status_code == 200  # client cached
    secret = new_client_secret()
    table().update("CLIENTS", app["client_id"], "SET client_secret_hash = :h",
                   values={":h": hash_secret(secret)})
    response, calls = counted(lambda: refresh(client, {**app, "client_secret": secret},
                                              tokens["refresh_token"]))
    assert response.status_code == 200, response.data
    assert calls == {"GetItem": 2, "TransactWriteItems": 1}, calls  # + the fresh client read


def test_the_throttle_holds_with_a_cached_client(client, setup, monkeypatch):
    """Failed authentications are counted on a fresh read of the client each time, and while the
    client is throttled the right secret is refused too, though the cache holds a record it
    matches."""
    monkeypatch.setattr(client_auth, "FAILURE_LIMIT", 3)
    app = setup["web"]
    tokens = _tokens(client, setup, app)
    assert refresh(client, app, tokens["refresh_token"]).status_code == 200  # client cached
    wrong = {**app, "client_secret": "wrong"}
    for _ in range(3):
        response = refresh(client, wrong, tokens["refresh_token"])
        assert response.status_code == 401, response.data
    for credentials in (wrong, app):
        throttled = refresh(client, credentials, tokens["refresh_token"])
        assert throttled.status_code == 429, throttled.data
        assert throttled.data["error"] == "too_many_requests"
        assert int(throttled.headers["Retry-After"]) >= 1
    # The next window lets the client in again (the clock moves, no sleeping).
    monkeypatch.setattr(client_auth, "_window", lambda now: int(now // 60) + 1)
    assert refresh(client, app, tokens["refresh_token"]).status_code == 200


def test_a_public_client_with_a_secret_is_refused(client, setup):
    app = setup["spa"]
    tokens = _tokens(client, setup, app)
    assert refresh(client, app, tokens["refresh_token"]).status_code == 200  # client cached
    response = refresh(client, {**app, "client_secret": "anything"}, tokens["refresh_token"])
    assert response.status_code == 401 and response.data["error"] == "invalid_client"


@pytest.mark.parametrize("kind", ["web", "spa"])
def test_deleting_the_user_deletes_the_tokens_that_copy_its_profile(client, api, setup, kind):
    """No personal data outlives a deleted user: the exchangeable refresh tokens (which carry the
    profile copy) are deleted with it, and a rotated-away token keeps no copy to begin with."""
    app = setup[kind]
    tokens = _tokens(client, setup, app)
    presented = [tokens["refresh_token"]]
    if kind == "spa":
        rotated = refresh(client, app, tokens["refresh_token"])
        assert rotated.status_code == 200, rotated.data
        presented.append(rotated.data["refresh_token"])
    assert "user_snapshot" in _token_item(presented[-1])
    deleted = api.call("DELETE", f"/api/v2/users/{quote(_user_id(tokens), safe='')}")
    assert deleted.status_code == 204, deleted.data
    for token in presented:
        item = _token_item(token)
        assert item is None or "user_snapshot" not in item, item
    assert _token_item(presented[-1]) is None
    assert_invalid_grant(refresh(client, app, presented[-1]))
