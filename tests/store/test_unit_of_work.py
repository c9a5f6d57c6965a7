"""The unit of work: Writes in DynamoDB's TransactItems shape, committed all or nothing, with
the cancellation reasons in the order the writes were added."""
from __future__ import annotations

import time

import pytest

from chalicelib.store import grants, sessions
from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.store.unit_of_work import UnitOfWork, Write
from chalicelib.tokens import random_token


def _key() -> dict[str, str]:
    return {"pk": f"UOW#{random_token(12)}", "sk": "X"}


def test_each_kind_has_its_transact_item_shape():
    key = _key()
    assert Write.put_if_absent({**key, "a": 1}).transact_item() == {
        "Put": {"Item": {**key, "a": 1}, "ConditionExpression": "attribute_not_exists(pk)"}}
    assert Write.put({**key}).transact_item() == {"Put": {"Item": key}}
    assert Write.update_item(key, "SET a = :a", condition="attribute_exists(pk)",
                             names={"#t": "ttl"}, values={":a": 1}).transact_item() == {
        "Update": {"Key": key, "UpdateExpression": "SET a = :a",
                   "ConditionExpression": "attribute_exists(pk)",
                   "ExpressionAttributeNames": {"#t": "ttl"},
                   "ExpressionAttributeValues": {":a": 1}}}
    assert Write.check(key, "attribute_exists(pk)").transact_item() == {
        "ConditionCheck": {"Key": key, "ConditionExpression": "attribute_exists(pk)"}}
    assert Write.delete(key).transact_item() == {"Delete": {"Key": key}}


def test_a_check_travels_with_its_names_and_values():
    key = _key()
    assert Write.check(key, "#id = :id", names={"#id": "id"},
                       values={":id": "x"}).transact_item() == {
        "ConditionCheck": {"Key": key, "ConditionExpression": "#id = :id",
                           "ExpressionAttributeNames": {"#id": "id"},
                           "ExpressionAttributeValues": {":id": "x"}}}


def test_writes_are_frozen_and_only_writes_are_collected():
    write = Write.delete(_key())
    with pytest.raises(AttributeError):
        write.kind = "Put"  # type: ignore[misc]
    with pytest.raises(TypeError):
        UnitOfWork().add({"Delete": {"Key": _key()}})  # type: ignore[arg-type]


def test_commit_is_all_or_nothing_with_reasons_in_order():
    first, second = _key(), _key()
    table().put({**second, "v": 1})
    work = UnitOfWork([Write.put_if_absent({**first, "v": 1})])
    work.add(Write.check(second, "attribute_not_exists(pk)"))
    assert len(work) == 2 and [w.kind for w in work] == ["Put", "ConditionCheck"]
    with pytest.raises(ConditionFailed) as caught:
        work.commit()
    assert caught.value.reasons[-1] == "ConditionalCheckFailed"
    assert caught.value.reasons[0] != "ConditionalCheckFailed"
    assert table().get(**first) is None    # nothing written
    UnitOfWork([Write.put_if_absent({**first, "v": 2})]).commit()
    assert table().get(**first)["v"] == 2


def test_a_new_token_of_a_family_keeps_its_creation_time():
    now = int(time.time())
    fields = {"grant_id": random_token(12), "user_id": "u", "client_id": "c", "sid": "s"}
    fresh = grants.new_refresh_token_operation("d1", fields, created_at=now,
                                               idle_expires_at=now + 10, expires_at=now + 100)
    assert fresh.item is not None
    assert fresh.item["family_created_at"] == now and "last_exchanged_at" not in fresh.item
    later = grants.new_refresh_token_operation("d2", fields, created_at=now + 5,
                                               idle_expires_at=now + 15, expires_at=now + 100,
                                               family_created_at=now, last_exchanged_at=now + 5)
    assert later.item is not None
    assert later.item["created_at"] == now + 5 and later.item["family_created_at"] == now
    assert later.item["last_exchanged_at"] == now + 5


def test_session_writes_commit_through_a_unit_of_work():
    now, sid = int(time.time()), random_token(18)
    fields = {"cookie_digest": "d" * 43, "auth_time": now, "updated_at": now,
              "expires_at": now + 3600, "idle_expires_at": now + 600}
    UnitOfWork(sessions.put_operations(sid, fields, "oidc|uow|u", "con", "a", "g")).commit()
    UnitOfWork([sessions.touch_operation(sid, "b", "h", now + 900, now + 1)]).commit()
    assert sessions.get(sid, now + 1)["clients"] == ["a", "b"]
