"""Issue 17: ``GET /api/v2/users`` reads the page's profiles with BatchGetItem (100 keys a call),
not one GetItem per user; the listing (order, paging, fields) is what per-user reads gave, and a
profile deleted or expired since the index was read is not listed. DynamoDB calls are counted
by operation with botocore's before-call events on the app's own client."""
from __future__ import annotations

import collections
import contextlib
import time
import uuid
from urllib.parse import quote

import pytest

from chalicelib import aws
from chalicelib.errors import ServiceUnavailable
from chalicelib.store import dynamo
from chalicelib.store import users as user_store
from chalicelib.store.dynamo import table
from chalicelib.store.unit_of_work import UnitOfWork


@contextlib.contextmanager
def dynamodb_calls():
    seen: collections.Counter = collections.Counter()

    def on_call(model, **_):
        seen[model.name] += 1

    events = aws.client("dynamodb").meta.events
    events.register("before-call.dynamodb.*", on_call, unique_id="users-batch-read")
    try:
        yield seen
    finally:
        events.unregister("before-call.dynamodb.*", unique_id="users-batch-read")


def seed_users(connection_name: str, count: int) -> list[str]:
    """``count`` profiles of one connection, written the way a login writes them."""
    connection = {"name": connection_name, "id": "con_" + uuid.uuid4().hex[:16],
                  "options": {"issuer": "https://idp.example.com"}}
    ids = []
    now = "2024-01-01T00:00:00.000Z"
    for n in range(count):
        sub = f"u{n:04d}"
        user_id = f"oidc|{connection_name}|{sub}"
        UnitOfWork([user_store.login_update_operation(
            user_id, connection, sub,
            {"email": f"{sub}@example.com", "name": f"User {n}", "email_verified": True}, now)]).commit()
        ids.append(user_id)
    return sorted(ids)


def one_by_one(user_ids: list[str]) -> list[dict]:
    """What the listing showed before: one GetItem per user, then Auth0's user object."""
    from chalicelib import users

    return [users.view(u) for u in (users.get_user(i) for i in user_ids) if u is not None]


@pytest.fixture(scope="module")
def many_users(aws_endpoint):
    name = "batch-" + uuid.uuid4().hex[:8]
    return name, seed_users(name, 130)


@pytest.fixture(scope="module")
def few_users(aws_endpoint):
    name = "batch-" + uuid.uuid4().hex[:8]
    return name, seed_users(name, 30)


def list_users(api, connection_name: str, query: str = ""):
    response = api.call("GET", f"/api/v2/users?connection={connection_name}{query}")
    assert response.status_code == 200, response.data
    return response.data


@pytest.mark.parametrize("fixture, per_page, batches", [
    ("few_users", 50, 1),    # 30 users, one page
    ("many_users", 100, 1),  # 100 of 130 users: one full chunk
])
def test_list_reads_profiles_in_batches_not_one_by_one(request, api, fixture, per_page, batches):
    name, ids = request.getfixturevalue(fixture)
    with dynamodb_calls() as calls:
        listed = list_users(api, name, f"&per_page={per_page}")
    assert calls["GetItem"] == 0, calls
    assert calls["BatchGetItem"] == batches, calls
    assert [u["user_id"] for u in listed] == ids[:per_page]


def test_get_item_count_does_not_grow_with_the_number_of_users(api, few_users, many_users):
    counts = []
    for name, _ids in (few_users, many_users):
        with dynamodb_calls() as calls:
            list_users(api, name, "&per_page=100")
        counts.append((calls["GetItem"], calls["BatchGetItem"]))
    assert counts[0] == counts[1] == (0, 1), counts


def test_the_listing_is_what_per_user_reads_gave(api, many_users):
    name, ids = many_users
    # Offset paging, with totals.
    body = list_users(api, name, "&per_page=40&page=1&include_totals=true")
    assert (body["start"], body["limit"], body["total"]) == (40, 40, 130)
    assert body["users"] == one_by_one(ids[40:80])
    # The last, short page.
    assert list_users(api, name, "&per_page=40&page=3") == one_by_one(ids[120:])
    # A page that ends past the last user.
    assert list_users(api, name, "&per_page=100&page=1") == one_by_one(ids[100:])
    assert list_users(api, name, "&per_page=100&page=2") == []
    # Field selection.
    picked = list_users(api, name, "&per_page=5&fields=user_id,email&include_fields=true")
    assert picked == [{"user_id": u["user_id"], "email": u["email"]}
                      for u in one_by_one(ids[:5])]


def test_a_deleted_or_expired_profile_is_not_listed(api, monkeypatch):
    name = "batch-" + uuid.uuid4().hex[:8]
    ids = seed_users(name, 5)
    expired, deleted = ids[1], ids[3]
    # An expired profile still in the index (TTL deletion lags): the read re-checks expiry.
    table().update(*user_store.key(expired), "SET #ttl = :past", names={"#ttl": "ttl"},
                   values={":past": int(time.time()) - 10})
    # A deleted profile the (eventually consistent) index still lists.
    table().delete(*user_store.key(deleted))
    real = user_store.list_user_ids
    monkeypatch.setattr(user_store, "list_user_ids",
                        lambda names: sorted({*real(names), deleted}))
    from chalicelib import users

    monkeypatch.setattr(users, "list_user_ids", user_store.list_user_ids)
    listed = [u["user_id"] for u in list_users(api, name)]
    assert listed == [i for i in ids if i not in (expired, deleted)]


def test_get_many_crosses_the_100_key_chunk_and_keeps_order(many_users):
    _name, ids = many_users
    wanted = list(reversed(ids)) + ["oidc|nope|missing", ids[0]]
    with dynamodb_calls() as calls:
        found = user_store.get_many(wanted)
    assert calls == {"BatchGetItem": 2}, calls  # 130 distinct keys: ceil(130 / 100)
    assert [u["user_id"] for u in found] == list(reversed(ids)) + [ids[0]]


# --------------------------------------------------------------------------- UnprocessedKeys


class ScriptedClient:
    """A stand-in for the boto3 client's batch_get_item: each answer leaves some keys
    unprocessed, as DynamoDB does under throttling."""

    def __init__(self, table_name: str, keep_unprocessed: list[int]):
        self.table_name = table_name
        self.keep_unprocessed = list(keep_unprocessed)
        self.requests: list[list[str]] = []

    def batch_get_item(self, RequestItems):
        request = RequestItems[self.table_name]
        assert request["ConsistentRead"] is True
        keys = request["Keys"]
        self.requests.append([k["pk"]["S"] for k in keys])
        keep = self.keep_unprocessed.pop(0) if self.keep_unprocessed else 0
        served, left = keys[:len(keys) - keep], keys[len(keys) - keep:]
        answer = {"Responses": {self.table_name: [
            {**k, "user_id": {"S": k["pk"]["S"][5:]}} for k in served]}}
        if left:
            answer["UnprocessedKeys"] = {self.table_name: {"Keys": left, "ConsistentRead": True}}
        return answer


def scripted_table(monkeypatch, keep_unprocessed):
    client = ScriptedClient("t", keep_unprocessed)
    sleeps: list[float] = []
    stub = dynamo.Table("t", clock=lambda: 1000.0, sleep=sleeps.append)
    monkeypatch.setattr(stub, "_client", lambda: client)
    return stub, client, sleeps


def test_unprocessed_keys_are_asked_again_with_a_growing_backoff(monkeypatch):
    stub, client, sleeps = scripted_table(monkeypatch, [3, 2, 1])
    keys = [(f"USER#u{n}", "PROFILE") for n in range(5)]
    found = stub.batch_get(keys)
    assert sorted(found) == sorted(keys)
    assert [len(r) for r in client.requests] == [5, 3, 2, 1]
    assert client.requests[1] == ["USER#u2", "USER#u3", "USER#u4"]
    assert sleeps == [0.05, 0.1, 0.2]


def test_keys_still_unprocessed_after_the_last_attempt_are_an_outage(monkeypatch):
    stub, client, sleeps = scripted_table(monkeypatch, [1] * 10)
    with pytest.raises(ServiceUnavailable):
        stub.batch_get([("USER#a", "PROFILE"), ("USER#b", "PROFILE")])
    assert len(client.requests) == dynamo.BATCH_GET_ATTEMPTS
    assert sum(sleeps) < 1.0  # bounded: 50 + 100 + 200 + 400 ms


def test_throttling_becomes_service_unavailable(monkeypatch):
    from botocore.exceptions import ClientError

    stub = dynamo.Table("t", clock=lambda: 1000.0, sleep=lambda s: None)

    class Throttled:
        def batch_get_item(self, **_):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                         "Message": "slow down"}}, "BatchGetItem")

    monkeypatch.setattr(stub, "_client", lambda: Throttled())
    with pytest.raises(ServiceUnavailable):
        stub.batch_get([("USER#a", "PROFILE")])


def test_repeated_keys_are_asked_once_and_expired_items_left_out(monkeypatch):
    stub, client, _ = scripted_table(monkeypatch, [])
    original = client.batch_get_item

    def with_ttl(RequestItems):
        answer = original(RequestItems)
        for item in answer["Responses"]["t"]:
            if item["pk"]["S"] == "USER#old":
                item["ttl"] = {"N": "999"}  # the stub's clock says 1000
        return answer

    monkeypatch.setattr(client, "batch_get_item", with_ttl)
    found = stub.batch_get([("USER#a", "PROFILE"), ("USER#old", "PROFILE"), ("USER#a", "PROFILE")])
    assert client.requests == [["USER#a", "USER#old"]]
    assert list(found) == [("USER#a", "PROFILE")]


def test_no_keys_no_call(monkeypatch):
    stub, client, _ = scripted_table(monkeypatch, [])
    assert stub.batch_get([]) == {}
    assert client.requests == []


def test_search_reads_profiles_in_batches(api, few_users):
    """A ``q`` search over a connection's list reads the candidates in one BatchGetItem."""
    name, ids = few_users
    blocked = ids[1:3]
    for user_id in blocked:
        patched = api.call("PATCH", f"/api/v2/users/{quote(user_id, safe='')}",
                           body={"blocked": True})
        assert patched.status_code == 200, patched.data
    with dynamodb_calls() as calls:
        response = api.call("GET", f"/api/v2/users?connection={name}&q=blocked:true"
                                   "&search_engine=v3&per_page=50")
    assert response.status_code == 200, response.data
    assert [u["user_id"] for u in response.data] == blocked
    assert calls["GetItem"] == 0, calls
    assert calls["BatchGetItem"] == 1, calls


def test_an_email_search_reads_profiles_in_batches(api, few_users):
    """``q=email:`` goes through the email index (users-by-email's path), then one batch read."""
    name, _ids = few_users
    with dynamodb_calls() as calls:
        response = api.call("GET", f"/api/v2/users?connection={name}"
                                   "&q=email:U0003@Example.com&search_engine=v3")
    assert response.status_code == 200, response.data
    assert [u["user_id"] for u in response.data] == [f"oidc|{name}|u0003"]
    assert calls["GetItem"] == 0, calls
    assert calls["BatchGetItem"] == 1, calls
