"""Connections to upstream identity providers (SPEC §2.2): every key format and condition for them.

The connection lives at ``CONNECTIONS/{id}``; a lock item ``CONNECTION_NAME/{name}`` makes names
unique, both written in one transaction so concurrent creates have one winner. Its enabled
clients are a string set on the record, changed with ADD and DELETE so concurrent enablement
changes never overwrite each other. Every write below raises
:class:`~chalicelib.store.dynamo.ConditionFailed` when its condition does not hold.
"""
from __future__ import annotations

from typing import Any

from chalicelib.store.dynamo import ConditionFailed, table

PK = "CONNECTIONS"
NAME_PK = "CONNECTION_NAME"
ENABLED_CLIENTS = "enabled_clients"
_NEW = "attribute_not_exists(pk)"
_EXISTS = "attribute_exists(pk)"


def create(record: dict[str, Any]) -> None:
    """The record (with ``id`` and ``name``) and its name lock; fails when the name is taken."""
    table().transact([
        {"Put": {"Item": {"pk": NAME_PK, "sk": record["name"], "connection_id": record["id"]},
                 "ConditionExpression": _NEW}},
        {"Put": {"Item": {"pk": PK, "sk": record["id"], **record}, "ConditionExpression": _NEW}},
    ])


def get(connection_id: str) -> dict[str, Any] | None:
    return table().get(PK, connection_id)


def id_for_name(name: str) -> str | None:
    lock = table().get(NAME_PK, name)
    return lock["connection_id"] if lock else None


def list_all() -> list[dict[str, Any]]:
    return list(table().query(PK))


def update(connection_id: str, sets: dict[str, Any], enabled: list[str] | None) -> dict[str, Any]:
    """Set the fields in ``sets`` and, unless ``enabled`` is None, replace the enabled clients
    (an empty list removes the set); fails when the connection is gone. Returns the record."""
    names, values, parts = {}, {}, []
    for index, (field, value) in enumerate(sets.items()):
        names[f"#f{index}"] = field
        values[f":v{index}"] = value
        parts.append(f"#f{index} = :v{index}")
    expression = "SET " + ", ".join(parts) if parts else ""
    if enabled is not None:
        names["#ec"] = ENABLED_CLIENTS
        if enabled:
            values[":ec"] = set(enabled)
            expression = (expression + ", " if expression else "SET ") + "#ec = :ec"
        else:
            expression = (expression + " " if expression else "") + "REMOVE #ec"
    updated = table().update(PK, connection_id, expression, condition=_EXISTS, names=names,
                             values=values or None)
    if updated is None:  # ALL_NEW: every update that happened returns the item
        raise ConditionFailed()
    return updated


def add_enabled_clients(connection_id: str, client_ids: set[str]) -> None:
    table().update(PK, connection_id, f"ADD {ENABLED_CLIENTS} :v", condition=_EXISTS,
                   values={":v": client_ids}, return_values="NONE")


def remove_enabled_clients(connection_id: str, client_ids: set[str]) -> None:
    table().update(PK, connection_id, f"DELETE {ENABLED_CLIENTS} :v", condition=_EXISTS,
                   values={":v": client_ids}, return_values="NONE")


def delete(connection_id: str, name: str) -> None:
    """The record and its name lock, in one transaction."""
    table().transact([
        {"Delete": {"Key": {"pk": PK, "sk": connection_id}}},
        {"Delete": {"Key": {"pk": NAME_PK, "sk": name}}},
    ])
