"""Applications (OAuth clients, SPEC §2.3): where a client's record lives.

One item per client, ``CLIENTS`` / ``{client_id}``. chalicelib/management/clients.py validates
the record and writes it through the functions below; :func:`get` is also the plain read for the
modules below the Management API (back-channel logout's URLs, a connection's enabled clients),
which need no validation models. Conditional writes raise
:class:`~chalicelib.store.dynamo.ConditionFailed` when their condition does not hold.
"""
from __future__ import annotations

from typing import Any

from chalicelib.store.dynamo import table

PK = "CLIENTS"
MAX_CLIENT_ID = 128
_EXISTS = "attribute_exists(pk)"


def get(client_id: str) -> dict[str, Any] | None:
    if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_CLIENT_ID:
        return None
    return table().get(PK, client_id)


def list_all() -> list[dict[str, Any]]:
    return list(table().query(PK))


def create(record: dict[str, Any]) -> None:
    """A new client (``record["client_id"]``); fails when that id is taken."""
    table().put_new({"pk": PK, "sk": record["client_id"], **record})


def put(record: dict[str, Any]) -> None:
    """Write the client whether or not it exists (the built-in Try application)."""
    table().put({"pk": PK, "sk": record["client_id"], **record})


def replace(record: dict[str, Any]) -> None:
    """The whole record of an existing client (fields left out are removed, the failure
    counter included); fails when the client is gone."""
    table().put({"pk": PK, "sk": record["client_id"], **record}, condition=_EXISTS)


def set_secret_hash(client_id: str, secret_hash: str, updated_at: str) -> dict[str, Any] | None:
    """A new secret's hash; fails when the client is gone. Returns the updated record."""
    return table().update(PK, client_id, "SET client_secret_hash = :h, updated_at = :u",
                          condition=_EXISTS, values={":h": secret_hash, ":u": updated_at})


def delete(client_id: str) -> None:
    table().delete(PK, client_id)
