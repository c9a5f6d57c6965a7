"""Client grants (SPEC §2.4): every key format and condition for them.

Two items per grant, written and deleted together in one transaction: the grant,
``CLIENT_GRANTS`` / ``{grant_id}``, and a key item ``CLIENT_GRANT_KEY`` / ``{client_id}|{audience}``
pointing at it, so a client has at most one grant per audience (both puts are conditional) and
the token endpoint finds it with two reads. Writes raise
:class:`~chalicelib.store.dynamo.ConditionFailed` when their condition does not hold.

:class:`ClientGrant` lists the grant item's fields (a ``TypedDict``: at run time, a plain dict).
"""
from __future__ import annotations

from typing import NotRequired, TypedDict, cast

from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.store.unit_of_work import UnitOfWork, Write

PK = "CLIENT_GRANTS"
KEY_PK = "CLIENT_GRANT_KEY"
MAX_GRANT_ID = 64


class ClientGrant(TypedDict):
    """A client grant: ``scope`` is the sorted, unique list management/grants.py validated."""
    id: str  # "cgr_..."
    client_id: str
    audience: str
    scope: list[str]
    # The registration of the API it is for (absent for the Management API's audience): an API
    # deleted and registered again under the same identifier does not inherit the grant.
    resource_server_id: NotRequired[str]
    pk: NotRequired[str]
    sk: NotRequired[str]


class ClientGrantKey(TypedDict):
    """The key item ``CLIENT_GRANT_KEY`` / ``{client_id}|{audience}``."""
    pk: str
    sk: str
    grant_id: str


def _pair(client_id: str, audience: str) -> str:
    return f"{client_id}|{audience}"


def create(record: ClientGrant, *also: Write) -> None:
    """The grant (``id``, ``client_id``, ``audience``, ...) and its key item, then the writes in
    ``also`` (condition checks). Fails when the client already has a grant for the audience; a
    failed check in ``also`` shows as the last of the failure's reasons."""
    key: ClientGrantKey = {"pk": KEY_PK, "sk": _pair(record["client_id"], record["audience"]),
                           "grant_id": record["id"]}
    UnitOfWork([Write.put_if_absent(key),
                Write.put_if_absent({"pk": PK, "sk": record["id"], **record}),
                *also]).commit()


def get(grant_id: str) -> ClientGrant | None:
    if not isinstance(grant_id, str) or not grant_id or len(grant_id) > MAX_GRANT_ID:
        return None
    return cast("ClientGrant | None", table().get(PK, grant_id))


def list_all() -> list[ClientGrant]:
    return [cast(ClientGrant, item) for item in table().query(PK)]


def set_scope(grant_id: str, scopes: list[str]) -> ClientGrant:
    """Fails when the grant is gone; returns the updated grant."""
    updated = table().update(PK, grant_id, "SET #s = :s", condition="attribute_exists(pk)",
                             names={"#s": "scope"}, values={":s": scopes})
    if updated is None:  # ALL_NEW: every update that happened returns the item
        raise ConditionFailed()
    return cast(ClientGrant, updated)


def delete(grant: ClientGrant) -> None:
    table().transact([
        {"Delete": {"Key": {"pk": PK, "sk": grant["id"]}}},
        {"Delete": {"Key": {"pk": KEY_PK, "sk": _pair(grant["client_id"], grant["audience"])}}},
    ])


def for_pair(client_id: str, audience: str) -> ClientGrant | None:
    """The grant of ``client_id`` for ``audience``, if any."""
    key = table().get(KEY_PK, _pair(client_id, audience))
    return cast("ClientGrant | None", table().get(PK, key["grant_id"])) if key else None
