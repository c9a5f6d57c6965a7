"""The one module that talks to DynamoDB.

One table, keys ``pk``/``sk``, TTL attribute ``ttl`` (epoch seconds). Items are plain dicts; this
module converts to and from DynamoDB's typed JSON. Expiry is re-checked on read because TTL
deletion lags (SPEC §7). Throttling and outages become :class:`ServiceUnavailable` (SPEC §8).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator

from chalicelib import aws
from chalicelib.errors import ServiceUnavailable
from chalicelib.settings import get_settings

log = logging.getLogger(__name__)


class ConditionFailed(Exception):
    """A conditional write lost: the item exists (or not) contrary to the condition."""

    def __init__(self, reasons: list[str] | None = None):
        super().__init__("condition failed")
        self.reasons = reasons or []

    @property
    def lost_race(self) -> bool:
        """Cancelled only because a concurrent transaction held one of its items: no condition
        failed and nothing was written, so the very same writes may be sent again."""
        return "TransactionConflict" in self.reasons and "ConditionalCheckFailed" not in self.reasons


def _serializer():
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer()


def _deserializer():
    from boto3.dynamodb.types import TypeDeserializer

    return TypeDeserializer()


def to_dynamo(item: dict) -> dict:
    ser = _serializer()
    return {k: ser.serialize(_plain(v)) for k, v in item.items() if v is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        from decimal import Decimal

        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def from_dynamo(raw: dict) -> dict:
    de = _deserializer()
    return {k: _native(de.deserialize(v)) for k, v in raw.items()}


def _native(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _native(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_native(v) for v in value]
    if isinstance(value, set):
        return sorted(_native(v) for v in value)
    return value


def _unavailable(exc: Exception) -> ServiceUnavailable:
    # BotoCoreErrors have no ``response``, and some (ReadTimeoutError, via requests' exception
    # base) have ``response = None``: a read timeout must still become a 503, not a crash.
    response = getattr(exc, "response", None)
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    code = error.get("Code", type(exc).__name__)
    # DynamoDB's messages name attributes and limits, not values; keep them short anyway.
    log.error("dynamodb call failed: %s %s", code, str(error.get("Message", ""))[:200])
    return ServiceUnavailable("A dependency is temporarily unavailable")


# BatchGetItem takes at most 100 keys a call. Keys it leaves unprocessed (throttling, or the 16 MB
# answer cap) are asked again after 50, 100, 200, 400 ms (AWS's advice: exponential backoff);
# what is still unprocessed after the last attempt is an outage like any other (SPEC §8).
BATCH_GET_MAX_KEYS = 100
BATCH_GET_ATTEMPTS = 5
BATCH_GET_FIRST_BACKOFF = 0.05


def _capped_by_budget(delay: float) -> float:
    """A backoff never sleeps past the request's budget (the next call is refused then)."""
    left = aws.remaining()
    return delay if left is None else max(0.0, min(delay, left))


class Table:
    def __init__(self, name: str | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self._name = name
        self.clock = clock
        self.sleep = sleep

    @property
    def name(self) -> str:
        return self._name or get_settings().table_name

    def _client(self):
        return aws.client("dynamodb")

    def _call(self, operation: str, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client(), operation)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed() from None
            if code == "TransactionCanceledException":
                reasons = [r.get("Code", "") for r in exc.response.get("CancellationReasons", [])]
                # A conflict with a concurrent transaction on the same item is a lost race too:
                # single-use things must have exactly one winner, never a 5xx for the loser.
                if "ConditionalCheckFailed" in reasons or "TransactionConflict" in reasons:
                    raise ConditionFailed(reasons) from None
            raise _unavailable(exc) from None
        except BotoCoreError as exc:
            raise _unavailable(exc) from None

    def _alive(self, item: dict | None) -> dict | None:
        if item is None:
            return None
        expiry = item.get("ttl")
        if expiry is not None and expiry <= self.clock():
            return None
        return item

    def get(self, pk: str, sk: str) -> dict | None:
        raw = self._call("get_item", TableName=self.name, Key=to_dynamo({"pk": pk, "sk": sk}),
                         ConsistentRead=True).get("Item")
        return self._alive(from_dynamo(raw) if raw else None)

    def batch_get(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """The live items of these ``(pk, sk)`` keys, by key; missing and expired ones are left
        out, so the caller keeps its own order. Strongly consistent, like :meth:`get`; one
        BatchGetItem per 100 distinct keys (plus retries of the unprocessed ones)."""
        distinct = list(dict.fromkeys(keys))  # BatchGetItem refuses a repeated key
        found: dict[tuple[str, str], dict] = {}
        for start in range(0, len(distinct), BATCH_GET_MAX_KEYS):
            chunk = distinct[start:start + BATCH_GET_MAX_KEYS]
            for item in self._batch_get_chunk(chunk):
                found[(item["pk"], item["sk"])] = item
        return {k: item for k, item in found.items() if self._alive(item) is not None}

    def _batch_get_chunk(self, chunk: list[tuple[str, str]]) -> Iterator[dict]:
        request = {"Keys": [to_dynamo({"pk": pk, "sk": sk}) for pk, sk in chunk],
                   "ConsistentRead": True}
        delay = BATCH_GET_FIRST_BACKOFF
        for attempt in range(BATCH_GET_ATTEMPTS):
            if attempt:
                self.sleep(_capped_by_budget(delay))
                delay *= 2
            answer = self._call("batch_get_item", RequestItems={self.name: request})
            for raw in answer.get("Responses", {}).get(self.name, []):
                yield from_dynamo(raw)
            unprocessed = (answer.get("UnprocessedKeys") or {}).get(self.name)
            if not unprocessed or not unprocessed.get("Keys"):
                return
            request = {"Keys": unprocessed["Keys"], "ConsistentRead": True}
        log.error("dynamodb call failed: BatchGetItem left %d keys unprocessed after %d attempts",
                  len(request["Keys"]), BATCH_GET_ATTEMPTS)
        raise ServiceUnavailable("A dependency is temporarily unavailable")

    def put(self, item: dict, *, condition: str | None = None, names: dict | None = None,
            values: dict | None = None) -> None:
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": to_dynamo(item)}
        if condition:
            kwargs["ConditionExpression"] = condition
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if values:
            kwargs["ExpressionAttributeValues"] = to_dynamo(values)
        self._call("put_item", **kwargs)

    def put_new(self, item: dict) -> None:
        """Create an item that must not exist yet (or only as an expired leftover)."""
        self.put(item, condition="attribute_not_exists(pk) OR #ttl <= :now",
                 names={"#ttl": "ttl"}, values={":now": int(self.clock())})

    def update(self, pk: str, sk: str, expression: str, *, condition: str | None = None,
               names: dict | None = None, values: dict | None = None,
               return_values: str = "ALL_NEW") -> dict | None:
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": to_dynamo({"pk": pk, "sk": sk}),
            "UpdateExpression": expression,
            "ReturnValues": return_values,
        }
        if condition:
            kwargs["ConditionExpression"] = condition
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if values:
            kwargs["ExpressionAttributeValues"] = to_dynamo(values)
        raw = self._call("update_item", **kwargs).get("Attributes")
        return from_dynamo(raw) if raw else None

    def delete(self, pk: str, sk: str, *, condition: str | None = None,
               names: dict | None = None, values: dict | None = None,
               return_old: bool = False) -> dict | None:
        kwargs: dict[str, Any] = {"TableName": self.name, "Key": to_dynamo({"pk": pk, "sk": sk})}
        if condition:
            kwargs["ConditionExpression"] = condition
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if values:
            kwargs["ExpressionAttributeValues"] = to_dynamo(values)
        if return_old:
            kwargs["ReturnValues"] = "ALL_OLD"
        raw = self._call("delete_item", **kwargs).get("Attributes")
        return from_dynamo(raw) if raw else None

    def query(self, pk: str, *, sk_prefix: str | None = None) -> Iterator[dict]:
        """Every live item of one partition, in ``sk`` order (strongly consistent)."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": to_dynamo({":pk": pk}),
        }
        if sk_prefix:
            kwargs["KeyConditionExpression"] += " AND begins_with(sk, :prefix)"
            kwargs["ExpressionAttributeValues"] = to_dynamo({":pk": pk, ":prefix": sk_prefix})
        while True:
            page = self._call("query", **kwargs)
            for raw in page.get("Items", []):
                item = self._alive(from_dynamo(raw))
                if item is not None:
                    yield item
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def query_index(self, index: str, key: str, value: str) -> Iterator[dict]:
        """Every live item whose ``key`` equals ``value`` in a global secondary index (GSIs are
        eventually consistent: a write may take a moment to show)."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": index,
            "KeyConditionExpression": "#k = :v",
            "ExpressionAttributeNames": {"#k": key},
            "ExpressionAttributeValues": to_dynamo({":v": value}),
        }
        while True:
            page = self._call("query", **kwargs)
            for raw in page.get("Items", []):
                item = self._alive(from_dynamo(raw))
                if item is not None:
                    yield item
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def transact(self, operations: list[dict], *, conflict_retries: int = 0) -> None:
        """All-or-nothing write of several items (each op in DynamoDB's TransactItems shape,
        but with plain-dict ``Item``/``Key``/``ExpressionAttributeValues``).

        ``conflict_retries``: how many times to send the same writes again, after a short
        jittered pause, when DynamoDB cancelled them only for a concurrent transaction on one of
        their items (:attr:`ConditionFailed.lost_race`) — for writes whose conditions do not
        depend on who wins (a login's user, session, grant and code: two tabs signing the same
        user in at once both succeed). Single-use consumption never retries blindly."""
        for attempt in range(conflict_retries + 1):
            try:
                return self._transact_once(operations)
            except ConditionFailed as exc:
                if not exc.lost_race or attempt == conflict_retries:
                    raise
                import random

                self.sleep(_capped_by_budget(random.uniform(0.01, 0.04) * (attempt + 1)))

    def _transact_once(self, operations: list[dict]) -> None:
        items = []
        for op in operations:
            (kind, body), = op.items()
            body = dict(body)
            body["TableName"] = self.name
            for field in ("Item", "Key", "ExpressionAttributeValues"):
                if field in body:
                    body[field] = to_dynamo(body[field])
            items.append({kind: body})
        self._call("transact_write_items", TransactItems=items)


_table: Table | None = None


def table() -> Table:
    """The backend every store module writes through: DynamoDB unless :func:`install` put
    another one (``store.memory.MemoryTable``, same methods and semantics) in its place."""
    global _table
    if _table is None:
        _table = Table()
    return _table


def install(backend: Table | None) -> Table | None:
    """Put ``backend`` in place of the DynamoDB table (``None``: back to DynamoDB on next use);
    returns the one it replaced, so a test can put it back."""
    global _table
    previous, _table = _table, backend
    return previous
