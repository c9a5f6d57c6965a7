"""The Table contract (chalicelib/store/dynamo.py), case by case, on every backend.

Each case runs on DynamoDB (moto's server) and on ``store.memory.MemoryTable`` (the ``backend``
fixture) and expects the very same answers from both: a backend that passes this file can stand
in for the other. Keys are random, so cases never see each other's items on the shared table.
"""
from __future__ import annotations

import random
import time

import pytest
from botocore.exceptions import ClientError

from chalicelib.errors import ServiceUnavailable
from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.tokens import random_token
from tests.store.conftest import PARALLEL, race

NOW = int(time.time())


@pytest.fixture(autouse=True)
def _now():
    """NOW is this test's moment, not the module's import time: tests that race on the real
    clock put items living NOW + 60 s, and the suite may reach this file minutes after import."""
    global NOW
    NOW = int(time.time())


@pytest.fixture()
def store():
    """The installed backend with a clock standing at NOW (move it with ``store.clock = ...``)."""
    installed = table()
    installed.clock = lambda: NOW
    installed.sleep = lambda _seconds: None
    return installed


def _pk(kind: str = "CONF") -> str:
    return f"{kind}#{random_token(9)}"


def _key(pk: str, sk: str = "ITEM") -> dict:
    return {"pk": pk, "sk": sk}


# --- put_new and conditional writes ----------------------------------------------------------

def test_put_new_creates_once(store):
    pk = _pk()
    store.put_new({**_key(pk), "n": 1, "ttl": NOW + 60})
    with pytest.raises(ConditionFailed) as caught:
        store.put_new({**_key(pk), "n": 2, "ttl": NOW + 60})
    assert caught.value.reasons == [] and not caught.value.lost_race
    assert store.get(pk, "ITEM")["n"] == 1
    store.put_new({**_key(pk, "NO_TTL"), "n": 1})
    with pytest.raises(ConditionFailed):
        store.put_new({**_key(pk, "NO_TTL"), "n": 2})


def test_put_new_replaces_an_expired_leftover(store):
    pk = _pk()
    store.put({**_key(pk), "n": 1, "old": True, "ttl": NOW})   # expires at NOW: a leftover
    assert store.get(pk, "ITEM") is None
    store.put_new({**_key(pk), "n": 2, "ttl": NOW + 60})
    assert store.get(pk, "ITEM") == {**_key(pk), "n": 2, "ttl": NOW + 60}


def test_put_new_has_exactly_one_winner():
    pk = _pk()
    results = race(lambda: table().put_new({**_key(pk), "ttl": NOW + 60}))
    assert results.count(None) == 1, results
    assert all(isinstance(r, ConditionFailed) for r in results if r is not None), results


def test_conditional_put(store):
    pk = _pk()
    with pytest.raises(ConditionFailed):   # nothing to replace
        store.put({**_key(pk), "v": 1}, condition="attribute_exists(pk)")
    assert store.get(pk, "ITEM") is None
    store.put({**_key(pk), "version": 1}, condition="attribute_not_exists(pk)")
    store.put({**_key(pk), "version": 2}, condition="#v = :v", names={"#v": "version"},
              values={":v": 1})
    with pytest.raises(ConditionFailed):   # a stale version
        store.put({**_key(pk), "version": 3}, condition="#v = :v", names={"#v": "version"},
                  values={":v": 1})
    assert store.get(pk, "ITEM")["version"] == 2
    store.put({**_key(pk), "plain": True})   # no condition: replaced whole
    assert store.get(pk, "ITEM") == {**_key(pk), "plain": True}


def test_conditional_update(store):
    pk = _pk()
    with pytest.raises(ConditionFailed):   # an update with attribute_exists never creates
        store.update(pk, "ITEM", "SET a = :a", condition="attribute_exists(pk)", values={":a": 1})
    assert store.get(pk, "ITEM") is None
    store.put({**_key(pk), "state": "new"})
    with pytest.raises(ConditionFailed):
        store.update(pk, "ITEM", "SET #s = :done", condition="#s = :used",
                     names={"#s": "state"}, values={":done": "done", ":used": "used"})
    assert store.get(pk, "ITEM")["state"] == "new"
    updated = store.update(pk, "ITEM", "SET #s = :done", condition="#s = :new",
                           names={"#s": "state"}, values={":done": "done", ":new": "new"})
    assert updated == {**_key(pk), "state": "done"}


def test_conditional_delete(store):
    pk = _pk()
    store.put({**_key(pk), "owner": "alice"})
    with pytest.raises(ConditionFailed):
        store.delete(pk, "ITEM", condition="#o = :o", names={"#o": "owner"}, values={":o": "bob"})
    assert store.get(pk, "ITEM") is not None
    old = store.delete(pk, "ITEM", condition="#o = :o", names={"#o": "owner"},
                       values={":o": "alice"}, return_old=True)
    assert old == {**_key(pk), "owner": "alice"}
    assert store.get(pk, "ITEM") is None
    assert store.delete(pk, "ITEM", return_old=True) is None   # already gone: no error
    with pytest.raises(ConditionFailed):
        store.delete(pk, "ITEM", condition="attribute_exists(pk)")
    store.put({**_key(pk), "owner": "carol"})
    assert store.delete(pk, "ITEM") is None   # without return_old


# Where moto's server is not DynamoDB: DynamoDB evaluates a comparison of two types to false.
MOTO_DIFFERS = {
    "n < :two_text": "moto answers 500 (it compares a Decimal with a str in Python)",
    "b = :one": "moto finds true equal to 1 (Python's True == 1); DynamoDB's BOOL is not a number",
}


@pytest.mark.parametrize(("condition", "holds"), [
    ("n = :one", True),
    ("n = :one_text", False),           # different types are never equal
    ("n <> :one_text", True),
    ("n < :two_text", False),           # nor ordered (MOTO_DIFFERS)
    ("n >= :one AND n < :two", True),
    ("n > :one OR s = :one_text", True),
    ("NOT (n = :one)", False),
    ("NOT attribute_exists(absent) AND attribute_exists(n)", True),
    ("attribute_not_exists(n) OR (s = :one_text AND b = :true)", True),
    ("b = :one", False),                 # a boolean is not a number (MOTO_DIFFERS)
    ("b = :true", True),
    ("s < :two_text", True),            # strings compare by their bytes
    ("begins_with(s, :one_text)", True),
    ("begins_with(n, :one_text)", False),
    ("absent = :one", False),
    ("absent < :one", False),
    ("absent <> :one", True),
    ("m = :same_map", True),             # maps compare by value, in any key order
    ("m = :other_map", False),
    ("l = :same_list", True),
    ("f = :f", True),
    ("f > :one", True),
])
def test_condition_expressions(backend, store, condition, holds):
    if backend == "dynamodb" and condition in MOTO_DIFFERS:
        pytest.skip(MOTO_DIFFERS[condition])
    pk = _pk()
    store.put({**_key(pk), "n": 1, "s": "1", "b": True, "m": {"x": 1, "y": "z"},
               "l": [1, "a"], "f": 1.5})
    values = {":one": 1, ":two": 2, ":one_text": "1", ":two_text": "2", ":true": True,
              ":same_map": {"y": "z", "x": 1}, ":other_map": {"x": 1}, ":same_list": [1, "a"],
              ":f": 1.5}
    used = {k: v for k, v in values.items() if k in condition.split() or f"{k})" in condition
            or f"{k}," in condition}
    try:
        store.update(pk, "ITEM", "SET seen = :true", condition=condition,
                     values={**used, ":true": True})
        outcome = True
    except ConditionFailed:
        outcome = False
    assert outcome is holds


# --- update expressions ----------------------------------------------------------------------

def test_update_creates_an_item_that_is_not_there(store):
    pk = _pk()
    assert store.update(pk, "ITEM", "SET a = :a", values={":a": "x"}) == {**_key(pk), "a": "x"}
    assert store.get(pk, "ITEM") == {**_key(pk), "a": "x"}


def test_set_if_not_exists_and_arithmetic(store):
    pk = _pk()
    store.update(pk, "ITEM", "SET created = if_not_exists(created, :t), n = :n",
                 values={":t": 100, ":n": 10})
    item = store.update(pk, "ITEM", "SET created = if_not_exists(created, :t), n = n + :d, "
                                    "m = n - :d", values={":t": 200, ":d": 3})
    assert item == {**_key(pk), "created": 100, "n": 13, "m": 7}   # both read n as it was
    item = store.update(pk, "ITEM", "SET x = :tenth + :fifth", values={":tenth": 0.1, ":fifth": 0.2})
    assert item["x"] == 0.3   # numbers are decimal, not binary floats
    with pytest.raises(ServiceUnavailable):   # arithmetic on an attribute that does not exist
        store.update(pk, "ITEM", "SET y = nothing + :d", values={":d": 1})
    with pytest.raises(ServiceUnavailable):   # or on a string
        store.update(pk, "ITEM", "SET y = :s + :d", values={":s": "1", ":d": 1})
    assert store.get(pk, "ITEM") == item


def test_remove(store):
    pk = _pk()
    store.put({**_key(pk), "a": 1, "b": 2, "c": 3})
    assert store.update(pk, "ITEM", "REMOVE a, b, never_there") == {**_key(pk), "c": 3}


def test_add_numbers_and_string_sets_and_delete_from_sets(store):
    pk = _pk()
    assert store.update(pk, "ITEM", "ADD n :one, tags :ab", values={":one": 1, ":ab": {"b", "a"}}) \
        == {**_key(pk), "n": 1, "tags": ["a", "b"]}
    assert store.update(pk, "ITEM", "ADD n :half, tags :bc", values={":half": 1.5, ":bc": {"b", "c"}}) \
        == {**_key(pk), "n": 2.5, "tags": ["a", "b", "c"]}
    assert store.update(pk, "ITEM", "DELETE tags :ax", values={":ax": {"a", "x"}}) \
        == {**_key(pk), "n": 2.5, "tags": ["b", "c"]}
    assert store.update(pk, "ITEM", "DELETE tags :bc, gone :bc", values={":bc": {"b", "c"}}) \
        == {**_key(pk), "n": 2.5}   # an emptied set is removed; deleting from nothing is no-op
    with pytest.raises(ServiceUnavailable):   # a number added to a string set
        store.update(pk, "ITEM", "ADD n :s", values={":s": {"a"}})
    with pytest.raises(ServiceUnavailable):   # ADD takes numbers and sets only
        store.update(pk, "ITEM", "ADD n :s", values={":s": "a"})
    assert store.get(pk, "ITEM") == {**_key(pk), "n": 2.5}


def test_paths_into_maps(backend, store):
    pk = _pk()
    store.put({**_key(pk), "m": {"a": 1, "deep": {"b": "x"}}, "s": "text"})
    item = store.update(pk, "ITEM", "SET m.a = m.a + :one, m.#i.c = :c REMOVE m.deep.b",
                        condition="m.deep.b = :x AND attribute_not_exists(m.z)",
                        names={"#i": "deep"}, values={":one": 1, ":c": "y", ":x": "x"})
    assert item == {**_key(pk), "m": {"a": 2, "deep": {"c": "y"}}, "s": "text"}
    assert store.update(pk, "ITEM", "SET m.a = :v", values={":v": 5}, return_values="UPDATED_NEW") \
        == {"m": {"a": 5}}
    assert store.update(pk, "ITEM", "SET m.a = :v", values={":v": 6}, return_values="ALL_OLD") \
        == {**_key(pk), "m": {"a": 5, "deep": {"c": "y"}}, "s": "text"}
    store.update(pk, "ITEM", "SET m.a = :v", values={":v": 5})
    refused = ["SET nothing.a = :v", "SET m.a = :v, m = :v"]
    if backend == "memory":   # moto writes into a string as if it were a map; DynamoDB refuses
        refused.append("SET s.a = :v")
    for expression in refused:
        with pytest.raises(ServiceUnavailable):   # no map there, or two paths overlap
            store.update(pk, "ITEM", expression, values={":v": 1})
    assert store.get(pk, "ITEM")["m"] == {"a": 5, "deep": {"c": "y"}}


def test_every_clause_in_one_expression(store):
    """The shape of a login's update of its user: SET with if_not_exists, REMOVE, then ADD."""
    pk = _pk()
    store.put({**_key(pk), "email_key": "e", "logins_count": 1, "created_at": "then"})
    item = store.update(pk, "ITEM", "SET attributes = :a, created_at = if_not_exists(created_at, "
                        ":now), #c = :c REMOVE email_key ADD logins_count :one",
                        names={"#c": "connection"},
                        values={":a": {"name": "x"}, ":now": "now", ":c": "con", ":one": 1})
    assert item == {**_key(pk), "attributes": {"name": "x"}, "created_at": "then",
                    "connection": "con", "logins_count": 2}


def test_concurrent_adds_lose_nothing():
    pk = _pk()
    results = race(lambda: table().update(pk, "ITEM", "ADD n :one", values={":one": 1},
                                          return_values="NONE"))
    assert results == [None] * PARALLEL
    assert table().get(pk, "ITEM")["n"] == PARALLEL


@pytest.mark.parametrize(("return_values", "expected"), [
    ("ALL_NEW", {"a": 2, "b": 1, "c": 3}),
    ("ALL_OLD", {"a": 1, "b": 1}),
    ("UPDATED_NEW", {"a": 2, "c": 3}),
    ("UPDATED_OLD", {"a": 1}),
    ("NONE", None),
])
def test_return_values(store, return_values, expected):
    pk = _pk()
    store.put({**_key(pk), "a": 1, "b": 1})
    answer = store.update(pk, "ITEM", "SET a = :two, c = :three", values={":two": 2, ":three": 3},
                          return_values=return_values)
    if expected is not None and return_values.startswith("ALL"):
        expected = {**_key(pk), **expected}
    assert answer == expected


def test_all_old_of_a_new_item_is_none(store):
    assert store.update(_pk(), "ITEM", "SET a = :a", values={":a": 1}, return_values="ALL_OLD") \
        is None


# --- values ----------------------------------------------------------------------------------

def test_values_come_back_as_dynamodb_returns_them(store):
    pk = _pk()
    store.put({**_key(pk), "none": None, "whole": 2.0, "half": 0.5, "int": 7, "yes": True,
               "no": False, "empty": "", "words": {"b", "a"}, "numbers": {3, 1, 2},
               "map": {"null": None, "list": [1, "two", 2.5, False, None, {"deep": 1.0}]},
               "tuple": (1, 2), "nothing": [], "no_map": {}})
    assert store.get(pk, "ITEM") == {
        **_key(pk), "whole": 2, "half": 0.5, "int": 7, "yes": True, "no": False, "empty": "",
        "words": ["a", "b"], "numbers": [1, 2, 3],
        "map": {"null": None, "list": [1, "two", 2.5, False, None, {"deep": 1}]},
        "tuple": [1, 2], "nothing": [], "no_map": {}}
    assert type(store.get(pk, "ITEM")["whole"]) is int
    with pytest.raises(TypeError):   # dynamo.py converts floats in maps and lists, not in sets
        store.put({**_key(pk), "numbers": {1.5}})


def test_callers_never_share_stored_state(store):
    pk = _pk()
    item = {**_key(pk), "map": {"list": [1]}}
    store.put(item)
    item["map"]["list"].append(2)
    got = store.get(pk, "ITEM")
    got["map"]["list"].append(3)
    assert store.get(pk, "ITEM")["map"] == {"list": [1]}
    values = {":m": {"list": [1]}}
    store.update(pk, "ITEM", "SET dup = :m", values=values)
    values[":m"]["list"].append(4)
    assert store.get(pk, "ITEM")["dup"] == {"list": [1]}


@pytest.mark.parametrize(("expression", "values", "names"), [
    ("SET a = :a", {":a": 1, ":unused": 2}, None),                  # an unused value
    ("SET a = :undefined", {":a": 1}, None),                        # an undefined one
    ("SET a = :a", {":a": 1}, {"#unused": "b"}),                    # an unused name
    ("SET #undefined = :a", {":a": 1}, None),
    ("SET name = :a", {":a": 1}, None),                             # a reserved word
    ("SET sk = :a", {":a": "x"}, None),                             # a key attribute
    ("SET a = :a, a = :b", {":a": 1, ":b": 2}, None),               # one path twice
    ("SET a = :a SET b = :b", {":a": 1, ":b": 2}, None),            # one clause twice
    ("SET a = :empty", {":empty": set()}, None),                    # an empty set
    ("SET list_pk = :n", {":n": 1}, None),                          # an index key's type
])
def test_what_dynamodb_refuses_is_a_503(store, expression, values, names):
    pk = _pk()
    store.put({**_key(pk), "a": 0})
    with pytest.raises(ServiceUnavailable):
        store.update(pk, "ITEM", expression, values=values, names=names)
    assert store.get(pk, "ITEM") == {**_key(pk), "a": 0}


def test_keys_dynamodb_refuses_are_a_503(store):
    for pk, sk in [("", "x"), ("x", ""), ("x" * 2049, "x"), ("x", "x" * 1025)]:
        with pytest.raises(ServiceUnavailable):
            store.put({"pk": pk, "sk": sk})
    for pk, sk in [("", "x"), ("x", "")]:   # (moto reads an oversized key: DynamoDB refuses it)
        with pytest.raises(ServiceUnavailable):
            store.get(pk, sk)


# --- single use under concurrency ------------------------------------------------------------

def test_consuming_has_exactly_one_winner():
    pk = _pk()
    table().put({**_key(pk), "ttl": NOW + 60, "secret": "s"})
    results = race(lambda: table().delete(pk, "ITEM", condition="attribute_exists(pk) AND #ttl > :now",
                                          names={"#ttl": "ttl"}, values={":now": NOW},
                                          return_old=True))
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1 and winners[0]["secret"] == "s", results
    assert sum(isinstance(r, ConditionFailed) for r in results) == PARALLEL - 1, results


def test_consuming_in_a_transaction_has_exactly_one_winner():
    pk = _pk()
    table().put({**_key(pk), "ttl": NOW + 60})

    def consume():
        table().transact([{"Update": {
            "Key": _key(pk), "UpdateExpression": "SET consumed_at = :now",
            "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(consumed_at)",
            "ExpressionAttributeValues": {":now": NOW}}}])

    results = race(consume)
    assert results.count(None) == 1, results
    losers = [r for r in results if r is not None]
    assert all(isinstance(r, ConditionFailed) and r.reasons == ["ConditionalCheckFailed"]
               for r in losers), results


# --- expiry on read --------------------------------------------------------------------------

def test_expired_items_are_not_read_but_still_count_for_conditions(store):
    pk = _pk()
    store.put({**_key(pk, "A"), "ttl": NOW + 10})
    store.put({**_key(pk, "B"), "ttl": NOW + 20})
    store.put({**_key(pk, "C")})   # never expires
    assert [i["sk"] for i in store.query(pk)] == ["A", "B", "C"]
    store.clock = lambda: NOW + 10   # A's expiry is reached (``ttl <= now``)
    assert store.get(pk, "A") is None and store.get(pk, "B") is not None
    assert [i["sk"] for i in store.query(pk)] == ["B", "C"]
    assert set(store.batch_get([(pk, "A"), (pk, "B"), (pk, "C")])) == {(pk, "B"), (pk, "C")}
    # TTL deletion lags: the item is still there for conditions and returned values.
    assert store.update(pk, "A", "SET seen = :t", condition="attribute_exists(pk)",
                        values={":t": True})["ttl"] == NOW + 10
    with pytest.raises(ConditionFailed):
        store.put({**_key(pk, "A")}, condition="attribute_not_exists(pk)")
    assert store.delete(pk, "A", return_old=True)["seen"] is True
    store.clock = lambda: NOW + 1000
    assert [i["sk"] for i in store.query(pk)] == ["C"]


# --- transactions ----------------------------------------------------------------------------

def test_a_transaction_is_all_or_nothing(store):
    pk = _pk()
    store.put({**_key(pk, "UPDATE"), "n": 1})
    store.put({**_key(pk, "DELETE")})
    operations = [
        {"Put": {"Item": {**_key(pk, "PUT"), "n": 1}, "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Update": {"Key": _key(pk, "UPDATE"), "UpdateExpression": "SET n = n + :one",
                    "ExpressionAttributeValues": {":one": 1}}},
        {"Delete": {"Key": _key(pk, "DELETE")}},
        {"ConditionCheck": {"Key": _key(pk, "CHECK"), "ConditionExpression": "attribute_exists(pk)"}},
    ]
    with pytest.raises(ConditionFailed) as caught:
        store.transact(operations, conflict_retries=3)
    assert caught.value.reasons == ["None", "None", "None", "ConditionalCheckFailed"]
    assert not caught.value.lost_race
    assert [i["sk"] for i in store.query(pk)] == ["DELETE", "UPDATE"]
    assert store.get(pk, "UPDATE")["n"] == 1
    store.put({**_key(pk, "CHECK")})
    store.transact(operations)
    assert {i["sk"]: i.get("n") for i in store.query(pk)} == {"CHECK": None, "PUT": 1, "UPDATE": 2}


def test_a_transaction_reports_every_failed_condition(store):
    pk = _pk()
    store.put({**_key(pk, "A")})
    with pytest.raises(ConditionFailed) as caught:
        store.transact([
            {"Put": {"Item": _key(pk, "A"), "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Put": {"Item": _key(pk, "B"), "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Delete": {"Key": _key(pk, "C"), "ConditionExpression": "#v = :v",
                        "ExpressionAttributeNames": {"#v": "version"},
                        "ExpressionAttributeValues": {":v": 1}}},
        ])
    assert caught.value.reasons == ["ConditionalCheckFailed", "None", "ConditionalCheckFailed"]
    assert [i["sk"] for i in store.query(pk)] == ["A"]


def test_two_operations_on_one_item_are_refused(store):
    pk = _pk()
    with pytest.raises(ServiceUnavailable):
        store.transact([{"Put": {"Item": _key(pk)}},
                        {"ConditionCheck": {"Key": _key(pk),
                                            "ConditionExpression": "attribute_not_exists(pk)"}}])
    assert store.get(pk, "ITEM") is None


@pytest.fixture()
def conflicts(backend, store):
    """``conflicts(n)``: the next n transactions are cancelled as DynamoDB cancels one that met a
    concurrent transaction on an item. moto's server runs one request at a time, so on DynamoDB
    the cancellation is the service's answer put in the client's place (as
    tests/unit/test_transact_conflict_retry.py does); everything else still reaches the server."""
    if backend == "memory":
        return store.conflict_next
    pending = [0]
    real = store._client

    class ConflictingClient:
        def __getattr__(self, name):
            return getattr(real(), name)

        def transact_write_items(self, **kwargs):
            if pending[0]:
                pending[0] -= 1
                others = len(kwargs["TransactItems"]) - 1
                raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "x"},
                                   "CancellationReasons": [{"Code": "TransactionConflict"}]
                                   + [{"Code": "None"}] * others}, "TransactWriteItems")
            return real().transact_write_items(**kwargs)

    store._client = ConflictingClient

    def provoke(count: int = 1) -> None:
        pending[0] += count
    return provoke


def test_a_conflict_is_a_lost_race_that_wrote_nothing(store, conflicts):
    pk = _pk()
    operations = [{"Put": {"Item": _key(pk, "A")}}, {"Put": {"Item": _key(pk, "B")}}]
    conflicts(1)
    with pytest.raises(ConditionFailed) as caught:
        store.transact(operations)
    assert caught.value.lost_race
    assert caught.value.reasons == ["TransactionConflict", "None"]
    assert list(store.query(pk)) == []


def test_conflict_retries_send_the_same_writes_again(store, conflicts):
    pk = _pk()
    waits: list[float] = []
    store.sleep = waits.append
    operations = [{"Put": {"Item": _key(pk, "A")}}, {"Put": {"Item": _key(pk, "B")}}]
    conflicts(2)
    store.transact(operations, conflict_retries=2)
    assert [i["sk"] for i in store.query(pk)] == ["A", "B"]
    assert len(waits) == 2 and all(0 < w <= 0.08 for w in waits)
    conflicts(3)
    with pytest.raises(ConditionFailed) as caught:   # retries are bounded
        store.transact([{"Delete": {"Key": _key(pk, "A")}}], conflict_retries=2)
    assert caught.value.lost_race
    assert store.get(pk, "A") is not None


# --- reading many items ----------------------------------------------------------------------

def test_query_reads_every_page_in_sort_key_order(store, small_pages):
    pk = _pk()
    sort_keys = [f"k{i:02d}" for i in range(9)]
    for sk in random.sample(sort_keys, len(sort_keys)):
        store.put({**_key(pk, sk), "ttl": NOW + (0 if sk == "k04" else 60)})
    store.put({**_key(pk, "other")})
    store.put({**_key(_pk(), "k00")})   # another partition
    live = [sk for sk in sort_keys if sk != "k04"]
    assert [i["sk"] for i in store.query(pk)] == [*live, "other"]
    assert [i["sk"] for i in store.query(pk, sk_prefix="k")] == live
    assert [i["sk"] for i in store.query(pk, sk_prefix="k0")] == live
    assert list(store.query(pk, sk_prefix="none")) == []
    assert list(store.query(_pk())) == []


def test_batch_get_over_more_than_a_hundred_keys(store):
    pk = _pk()
    keys = [(pk, f"{i:03d}") for i in range(130)]
    for key in keys:
        store.put({**_key(*key), "n": int(key[1]), "ttl": NOW + (0 if key[1] == "007" else 60)})
    asked = [*keys, *keys[:5], (pk, "absent"), (_pk(), "000")]
    found = store.batch_get(asked)
    assert set(found) == set(keys) - {(pk, "007")}
    assert all(found[k]["n"] == int(k[1]) for k in found)
    assert store.batch_get([]) == {}


def test_query_index_answers_the_keys_of_a_sparse_index(store):
    pk, listed = _pk(), f"USERS#{random_token(8)}"
    store.put({**_key(pk, "b"), "list_pk": listed, "list_sk": "2", "other": "x", "ttl": NOW + 60})
    store.put({**_key(pk, "a"), "list_pk": listed, "list_sk": "1", "ttl": NOW})   # expired
    store.put({**_key(pk, "c"), "list_pk": listed})   # no range key: not in the index
    store.put({**_key(pk, "d"), "list_pk": f"{listed}x", "list_sk": "0"})
    assert list(store.query_index("users", "list_pk", listed)) == [
        # keys only: the ttl is not projected, so an expired item is still listed
        {**_key(pk, "a"), "list_pk": listed, "list_sk": "1"},
        {**_key(pk, "b"), "list_pk": listed, "list_sk": "2"}]
    store.update(pk, "b", "REMOVE list_pk, list_sk")
    assert [i["sk"] for i in store.query_index("users", "list_pk", listed)] == ["a"]
    email = f"con|{random_token(8)}@example.com"
    store.put({**_key(pk, "e"), "email_key": email})
    store.put({**_key(_pk(), "f"), "email_key": email, "list_pk": listed, "list_sk": "3"})
    found = list(store.query_index("user_email", "email_key", email))
    assert sorted(i["sk"] for i in found) == ["e", "f"]
    assert {frozenset(i) for i in found} == {frozenset({"pk", "sk", "email_key"})}
    assert list(store.query_index("user_email", "email_key", email + "x")) == []


def test_query_index_refuses_an_unknown_index_or_key(store):
    with pytest.raises(ServiceUnavailable):
        list(store.query_index("no_such_index", "list_pk", "x"))
    with pytest.raises(ServiceUnavailable):
        list(store.query_index("users", "email_key", "x"))
