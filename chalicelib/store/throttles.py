"""Failed client authentications at the token endpoint, counted in fixed windows (SPEC §8).

The counter of an application lives on its own item (``CLIENTS`` / ``{client_id}``, attributes
``auth_failures`` and ``auth_fail_window``), so a success costs nothing extra and a deleted
client's item is never recreated. The bootstrap admin client has no item: its counter is
``AUTH_FAILURES`` / ``{client_id}``, created on its first failure. Both carry the two attributes
of :class:`FailureCounter`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, cast

from chalicelib.store import clients
from chalicelib.store.dynamo import ConditionFailed, table

ADMIN_PK = "AUTH_FAILURES"
COUNT = "auth_failures"
WINDOW = "auth_fail_window"


class FailureCounter(TypedDict, total=False):
    """The failure counter's attributes, on a client's item (``store.clients.Client``) or on the
    admin client's own ``AUTH_FAILURES`` item."""
    pk: str
    sk: str
    auth_failures: int  # failures counted in the window below
    auth_fail_window: int  # the window's number (time // window length)


def failures_in(record: Mapping[str, Any] | None, window: int) -> int:
    """How many failures ``record`` (a client item or an admin counter: the fields of
    :class:`FailureCounter`) holds for ``window``."""
    if not record or record.get(WINDOW) != window:
        return 0
    return int(record.get(COUNT, 0))


def admin_counter(client_id: str) -> FailureCounter | None:
    return cast("FailureCounter | None", table().get(ADMIN_PK, client_id))


def count_client_failure(client_id: str, window: int) -> None:
    _count(clients.PK, client_id, window, must_exist=True)


def count_admin_failure(client_id: str, window: int) -> None:
    _count(ADMIN_PK, client_id, window, must_exist=False)


def _count(pk: str, client_id: str, window: int, *, must_exist: bool) -> None:
    try:
        table().update(pk, client_id, f"ADD {COUNT} :one",
                       condition=f"attribute_exists(pk) AND {WINDOW} = :w",
                       values={":one": 1, ":w": window}, return_values="NONE")
    except ConditionFailed:
        try:
            # Never recreate a deleted client's item; the admin counter item may be new.
            table().update(pk, client_id, f"SET {WINDOW} = :w, {COUNT} = :one",
                           condition="attribute_exists(pk)" if must_exist else None,
                           values={":one": 1, ":w": window}, return_values="NONE")
        except ConditionFailed:
            pass  # the client was deleted meanwhile
