"""The one module that talks to DynamoDB.

One table, keys ``pk``/``sk``, TTL attribute ``ttl`` (epoch seconds). Items are plain dicts; this
module converts to and from DynamoDB's typed JSON. Expiry is re-checked on read because TTL
deletion lags (SPEC §7). Throttling and outages become :class:`ServiceUnavailable` (SPEC §8).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator, cast

from chalicelib import aws
from chalicelib.clock import now as wall_clock
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


# DynamoDB's typed JSON, converted directly (boto3's TypeSerializer/TypeDeserializer dispatch
# through a dozen isinstance checks and ``getattr`` per value and build a Decimal for every
# number: several times the cost of these functions on a warm token request). The output is
# what boto3's serializer makes of the value with floats as ``Decimal(str(f))``, and what
# ``_native`` makes of its deserializer's result (tests/unit/test_dynamo_codec.py compares them
# value by value): None dropped at the top level and NULL inside, numbers as int when integral
# (else float), sets read back as sorted lists; the rare types go through boto3 itself.

_MAX_INT = 10 ** 38  # DynamoDB numbers: 38 significant digits


def to_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _typed(v) for k, v in item.items() if v is not None}


def _typed(value: Any) -> dict[str, Any]:
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is int and -_MAX_INT < value < _MAX_INT:
        return {"N": str(value)}
    if kind is dict:
        return {"M": {k: _typed(v) for k, v in value.items()}}
    if kind is list:
        return {"L": [_typed(v) for v in value]}
    return _typed_other(value)


def _typed_other(value: Any) -> dict[str, Any]:
    """The rarer types as before: floats as ``Decimal(str(f))``, dict and list subclasses
    recursed into, NULL inside; the rest (Decimals, sets, binary, tuples, ...) is boto3's
    serializer's, errors included."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, float):
        from decimal import Decimal

        value = Decimal(str(value))
    elif isinstance(value, dict):
        return {"M": {k: _typed(v) for k, v in value.items()}}
    elif isinstance(value, list) and not isinstance(value, str):
        return {"L": [_typed(v) for v in value]}
    from boto3.dynamodb.types import TypeSerializer

    return cast("dict[str, Any]", TypeSerializer().serialize(value))


def from_dynamo(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain_value(v) for k, v in raw.items()}


def _plain_value(typed: dict[str, Any]) -> Any:
    (kind, value), = typed.items()
    if kind == "S":
        return value
    if kind == "N":
        return _number(value)
    if kind == "BOOL":
        return value
    if kind == "M":
        return {k: _plain_value(v) for k, v in value.items()}
    if kind == "L":
        return [_plain_value(v) for v in value]
    if kind == "SS":
        return sorted(value)
    if kind == "NS":
        return sorted(_number(v) for v in value)
    if kind == "NULL":
        return None
    return _plain_other(kind, value)


def _number(text: str) -> int | float:
    if len(text) < 19 and "." not in text and "e" not in text and "E" not in text:
        try:
            return int(text)
        except ValueError:
            pass
    from boto3.dynamodb.types import DYNAMODB_CONTEXT

    number = DYNAMODB_CONTEXT.create_decimal(text)
    return int(number) if number == number.to_integral_value() else float(number)


def _plain_other(kind: str, value: Any) -> Any:
    """Binary (``B``/``BS``) as boto3 reads it: ``Binary`` objects. botocore hands over bytes;
    the lean client (chalicelib/aws.py) the base64 text of the wire format."""
    import base64

    from boto3.dynamodb.types import TypeDeserializer

    def raw(data: Any) -> Any:
        return base64.b64decode(data) if isinstance(data, str) else data

    if kind == "B":
        value = raw(value)
    elif kind == "BS":
        value = [raw(v) for v in value]
    return _native(TypeDeserializer().deserialize(cast(Any, {kind: value})))


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
    unavailable = ServiceUnavailable("A dependency is temporarily unavailable")
    unavailable.cause = str(code)
    return unavailable


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


def retry_lost_races(send: Callable[[], None], conflict_retries: int,
                     sleep: Callable[[float], None]) -> None:
    """Call ``send`` (one transaction) and send it again, after a short jittered pause, up to
    ``conflict_retries`` times while it is cancelled only by a concurrent transaction
    (:attr:`ConditionFailed.lost_race`); any other failure, or the last one, is raised. Both
    backends' ``transact`` use it."""
    for attempt in range(conflict_retries + 1):
        try:
            return send()
        except ConditionFailed as exc:
            if not exc.lost_race or attempt == conflict_retries:
                raise
            import random

            sleep(_capped_by_budget(random.uniform(0.01, 0.04) * (attempt + 1)))


class Table:
    def __init__(self, name: str | None = None, clock: Callable[[], float] = wall_clock,
                 sleep: Callable[[float], None] = time.sleep):
        self._name = name
        self.clock = clock
        self.sleep = sleep

    @property
    def name(self) -> str:
        return self._name or get_settings().table_name

    def _client(self) -> Any:
        return aws.client("dynamodb")

    def _json_caller(self) -> aws.DynamoJson | None:
        """The store's calls go through chalicelib.aws's lean JSON caller on the client
        :meth:`_client` gives (same events, retries, errors: see chalicelib/aws.py); a table whose
        client was replaced (a test's scripted fake) calls that client as it is."""
        if getattr(self._client, "__func__", None) is not Table._client:
            return None
        return aws.dynamodb_json()

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        lean = self._json_caller()
        try:
            if lean is not None:
                try:
                    return lean.call(operation, kwargs)
                except (AttributeError, TypeError) as exc:
                    # Not an answer from DynamoDB: the runtime's botocore differs from the one the
                    # lean caller knows (it reads botocore's endpoint, credentials and events
                    # before sending), so botocore's own path makes the call, now and from then on.
                    aws.give_up_dynamodb_json(lean, exc)
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

    def _alive(self, item: dict[str, Any] | None) -> dict[str, Any] | None:
        if item is None:
            return None
        expiry = item.get("ttl")
        if expiry is not None and expiry <= self.clock():
            return None
        return item

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        raw = self._call("get_item", TableName=self.name, Key=to_dynamo({"pk": pk, "sk": sk}),
                         ConsistentRead=True).get("Item")
        return self._alive(from_dynamo(raw) if raw else None)

    def batch_get(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The live items of these ``(pk, sk)`` keys, by key; missing and expired ones are left
        out, so the caller keeps its own order. Strongly consistent, like :meth:`get`; one
        BatchGetItem per 100 distinct keys (plus retries of the unprocessed ones)."""
        distinct = list(dict.fromkeys(keys))  # BatchGetItem refuses a repeated key
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(distinct), BATCH_GET_MAX_KEYS):
            chunk = distinct[start:start + BATCH_GET_MAX_KEYS]
            for item in self._batch_get_chunk(chunk):
                found[(item["pk"], item["sk"])] = item
        return {k: item for k, item in found.items() if self._alive(item) is not None}

    def _batch_get_chunk(self, chunk: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {"Keys": [to_dynamo({"pk": pk, "sk": sk}) for pk, sk in chunk],
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

    def put(self, item: dict[str, Any], *, condition: str | None = None, names: dict[str, Any] | None = None,
            values: dict[str, Any] | None = None) -> None:
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": to_dynamo(item)}
        if condition:
            kwargs["ConditionExpression"] = condition
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if values:
            kwargs["ExpressionAttributeValues"] = to_dynamo(values)
        self._call("put_item", **kwargs)

    def put_new(self, item: dict[str, Any]) -> None:
        """Create an item that must not exist yet (or only as an expired leftover)."""
        self.put(item, condition="attribute_not_exists(pk) OR #ttl <= :now",
                 names={"#ttl": "ttl"}, values={":now": int(self.clock())})

    def update(self, pk: str, sk: str, expression: str, *, condition: str | None = None,
               names: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
               return_values: str = "ALL_NEW") -> dict[str, Any] | None:
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
               names: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
               return_old: bool = False) -> dict[str, Any] | None:
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

    def query(self, pk: str, *, sk_prefix: str | None = None, after: str | None = None,
              before: str | None = None, descending: bool = False,
              page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every live item of one partition, in ``sk`` order (strongly consistent); ``after`` /
        ``before``: only ``sk`` strictly above / below (one of them, not with ``sk_prefix``);
        ``descending``: newest ``sk`` first; ``page_size``: items per DynamoDB page (the caller
        stops iterating when it has enough)."""
        values: dict[str, Any] = {":pk": pk}
        condition = "pk = :pk"
        if sk_prefix:
            condition += " AND begins_with(sk, :prefix)"
            values[":prefix"] = sk_prefix
        elif after is not None:
            condition += " AND sk > :bound"
            values[":bound"] = after
        elif before is not None:
            condition += " AND sk < :bound"
            values[":bound"] = before
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "ConsistentRead": True,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": to_dynamo(values),
        }
        if descending:
            kwargs["ScanIndexForward"] = False
        if page_size:
            kwargs["Limit"] = page_size
        while True:
            page = self._call("query", **kwargs)
            for raw in page.get("Items", []):
                item = self._alive(from_dynamo(raw))
                if item is not None:
                    yield item
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def query_index(self, index: str, key: str, value: str, *, range_key: str | None = None,
                    before: str | None = None, descending: bool = False,
                    page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every live item whose ``key`` equals ``value`` in a global secondary index (GSIs are
        eventually consistent: a write may take a moment to show); ``before`` (with the index's
        ``range_key``): only range values strictly below; ``descending`` / ``page_size`` as in
        :meth:`query`."""
        names = {"#k": key}
        values: dict[str, Any] = {":v": value}
        condition = "#k = :v"
        if before is not None and range_key:
            condition += " AND #r < :bound"
            names["#r"] = range_key
            values[":bound"] = before
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_dynamo(values),
        }
        if descending:
            kwargs["ScanIndexForward"] = False
        if page_size:
            kwargs["Limit"] = page_size
        while True:
            page = self._call("query", **kwargs)
            for raw in page.get("Items", []):
                item = self._alive(from_dynamo(raw))
                if item is not None:
                    yield item
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def transact(self, operations: list[dict[str, Any]], *, conflict_retries: int = 0) -> None:
        """All-or-nothing write of several items (each op in DynamoDB's TransactItems shape,
        but with plain-dict ``Item``/``Key``/``ExpressionAttributeValues``).

        ``conflict_retries``: how many times to send the same writes again, after a short
        jittered pause, when DynamoDB cancelled them only for a concurrent transaction on one of
        their items (:attr:`ConditionFailed.lost_race`) — for writes whose conditions do not
        depend on who wins (a login's user, session, grant and code: two tabs signing the same
        user in at once both succeed). Single-use consumption never retries blindly."""
        retry_lost_races(lambda: self._transact_once(operations), conflict_retries, self.sleep)

    def _transact_once(self, operations: list[dict[str, Any]]) -> None:
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
