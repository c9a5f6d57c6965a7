"""The one transaction that records a login or a silent authentication.

Its operations come from the record modules (the user's update, the session, the grant and its
code, or a session touch and a user check); they are written all or nothing. Two tabs signing one
user in at once touch the same items: a transaction cancelled only by that race is sent again
(:meth:`~chalicelib.store.dynamo.Table.transact`'s ``conflict_retries``), since none of its
conditions depends on who wins. Any other cancellation raises
:class:`~chalicelib.store.dynamo.ConditionFailed` with DynamoDB's reasons, in operation order.
"""
from __future__ import annotations

from collections.abc import Iterable

from chalicelib.store.unit_of_work import UnitOfWork, Write, unit_of

CONFLICT_RETRIES = 2


def record(writes: UnitOfWork | Iterable[Write]) -> None:
    unit_of(writes).commit(conflict_retries=CONFLICT_RETRIES)
