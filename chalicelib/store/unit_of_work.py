"""All-or-nothing writes across aggregates: one :class:`Write` per item, a :class:`UnitOfWork`
to collect them and commit them in one DynamoDB transaction.

Only store modules build a :class:`Write` (they alone know the keys, conditions and update
expressions); domain code collects the writes they return, in the order that gives meaning to
the cancellation reasons (:attr:`~chalicelib.store.dynamo.ConditionFailed.reasons` come back in
operation order), and never looks inside one. :meth:`UnitOfWork.commit` hands them to
:meth:`~chalicelib.store.dynamo.Table.transact` in DynamoDB's ``TransactItems`` shape.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chalicelib.errors import ServiceUnavailable
from chalicelib.store.dynamo import ConditionFailed, table

Kind = Literal["Put", "Update", "Delete", "ConditionCheck"]
ABSENT = "attribute_not_exists(pk)"


@dataclass(frozen=True, eq=True)
class Write:
    """One operation of a transaction: ``Put`` (``item``), or ``Update`` / ``Delete`` /
    ``ConditionCheck`` (``key``), with its expressions, names and values."""
    kind: Kind
    item: Mapping[str, Any] | None = None
    key: Mapping[str, Any] | None = None
    update: str | None = None
    condition: str | None = None
    names: Mapping[str, str] | None = None
    values: Mapping[str, Any] | None = None

    # --- construction (store modules only) ----------------------------------------------------

    @classmethod
    def put(cls, item: Mapping[str, Any], *, condition: str | None = None,
            names: Mapping[str, str] | None = None,
            values: Mapping[str, Any] | None = None) -> Write:
        return cls("Put", item=item, condition=condition, names=names, values=values)

    @classmethod
    def put_if_absent(cls, item: Mapping[str, Any]) -> Write:
        """Create ``item``; fails when an item with its key exists."""
        return cls.put(item, condition=ABSENT)

    @classmethod
    def update_item(cls, key: Mapping[str, Any], expression: str, *, condition: str | None = None,
                    names: Mapping[str, str] | None = None,
                    values: Mapping[str, Any] | None = None) -> Write:
        return cls("Update", key=key, update=expression, condition=condition, names=names,
                   values=values)

    @classmethod
    def delete(cls, key: Mapping[str, Any], *, condition: str | None = None,
               names: Mapping[str, str] | None = None,
               values: Mapping[str, Any] | None = None) -> Write:
        return cls("Delete", key=key, condition=condition, names=names, values=values)

    @classmethod
    def check(cls, key: Mapping[str, Any], condition: str, *,
              names: Mapping[str, str] | None = None,
              values: Mapping[str, Any] | None = None) -> Write:
        return cls("ConditionCheck", key=key, condition=condition, names=names, values=values)

    # --- the wire shape -----------------------------------------------------------------------

    def transact_item(self) -> dict[str, Any]:
        """This write as one entry of :meth:`~chalicelib.store.dynamo.Table.transact`'s list."""
        body: dict[str, Any] = {}
        if self.item is not None:
            body["Item"] = dict(self.item)
        if self.key is not None:
            body["Key"] = dict(self.key)
        if self.update is not None:
            body["UpdateExpression"] = self.update
        if self.condition is not None:
            body["ConditionExpression"] = self.condition
        if self.names is not None:
            body["ExpressionAttributeNames"] = dict(self.names)
        if self.values is not None:
            body["ExpressionAttributeValues"] = dict(self.values)
        return {self.kind: body}


class UnitOfWork:
    """Writes collected across aggregates, committed all or nothing, in the order added."""

    def __init__(self, writes: Iterable[Write] = ()) -> None:
        self._writes: list[Write] = []
        self._riders: list[tuple[Write, Callable[[bool], None]]] = []
        self.add(*writes)

    def add(self, *writes: Write) -> UnitOfWork:
        for write in writes:
            if not isinstance(write, Write):
                raise TypeError(f"not a Write: {type(write).__name__}")
            self._writes.append(write)
        return self

    def ride(self, write: Write, after: Callable[[bool], None]) -> UnitOfWork:
        """A write that only goes along (a log event): unconditional, after every other write
        (so cancellation reasons keep their places), never the reason a commit fails. ``after``
        runs once the commit succeeded, with whether the rider was stored: when DynamoDB
        refuses the transaction as invalid (a rider past the item size limit), it is sent again
        without its riders; a throttle or an outage fails the commit as it would without them."""
        if not isinstance(write, Write) or write.condition is not None:
            raise TypeError("a rider is an unconditional Write")
        self._riders.append((write, after))
        return self

    def __iter__(self) -> Iterator[Write]:
        return iter(self._writes)

    def __len__(self) -> int:
        return len(self._writes)

    def transact_items(self) -> list[dict[str, Any]]:
        return [write.transact_item() for write in self._writes]

    def commit(self, conflict_retries: int = 0) -> None:
        """All-or-nothing; :class:`~chalicelib.store.dynamo.ConditionFailed` (a reason per
        write, in the order added) when any condition lost."""
        if not self._riders:
            table().transact(self.transact_items(), conflict_retries=conflict_retries)
            return
        riders = [write.transact_item() for write, _ in self._riders]
        try:
            table().transact(self.transact_items() + riders, conflict_retries=conflict_retries)
            stored = True
        except ConditionFailed as exc:
            # The riders' reasons (always "None": they have no condition) are not the caller's.
            exc.reasons = exc.reasons[:len(self._writes)]
            raise
        except ServiceUnavailable as exc:
            if exc.cause != "ValidationException":
                raise  # throttled, timed out, down: the writes' own failure, not the riders'
            table().transact(self.transact_items(), conflict_retries=conflict_retries)
            stored = False
        for _, after in self._riders:
            after(stored)


def unit_of(writes: UnitOfWork | Iterable[Write]) -> UnitOfWork:
    return writes if isinstance(writes, UnitOfWork) else UnitOfWork(writes)
