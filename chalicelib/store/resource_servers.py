"""Resource servers (APIs, SPEC §2.5): the record and every key format and condition for it.

Two items per API, always written together in one transaction:
- the record, keyed by its ``identifier`` (the audience), so ``/authorize`` and the token endpoint
  find it with one read, and a token request can check inside its own transaction that the API
  it mints for still exists;
- an id item pointing at the identifier, for the Management API's ``/{id}`` routes.
Both puts are conditional, so an identifier is unique even under concurrent creates.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from chalicelib.store.dynamo import table
from chalicelib.store.unit_of_work import Write

PK = "RESOURCE_SERVERS"          # sk = identifier: the record
ID_PK = "RESOURCE_SERVER_IDS"    # sk = id: {"identifier"}
MAX_IDENTIFIER_BYTES = 1024      # DynamoDB's sort-key limit
ID_LENGTH = 24


@dataclass(frozen=True)
class ResourceServer:
    id: str
    identifier: str
    name: str
    scopes: list[dict[str, Any]] = field(default_factory=list)  # [{"value", "description"}]
    signing_alg: str = "RS256"
    token_lifetime: int = 86400
    token_lifetime_for_web: int = 7200
    allow_offline_access: bool = False
    skip_consent_for_verifiable_first_party_clients: bool = True
    # Auth0 fields the broker stores and echoes but does not act on (docs: inert).
    inert: dict[str, Any] = field(default_factory=dict)

    def scope_values(self) -> set[str]:
        return {s["value"] for s in self.scopes}

    def access_token_lifetime(self, app_type: str | None) -> int:
        # Auth0: token_lifetime_for_web applies to tokens issued to browser-based (SPA) clients.
        return self.token_lifetime_for_web if app_type == "spa" else self.token_lifetime

    def item(self) -> dict[str, Any]:
        return {"pk": PK, "sk": self.identifier, **asdict(self)}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ResourceServer:
        return cls(id=item["id"], identifier=item["identifier"], name=item["name"],
                   scopes=list(item.get("scopes") or []),
                   signing_alg=item.get("signing_alg", "RS256"),
                   token_lifetime=int(item["token_lifetime"]),
                   token_lifetime_for_web=int(item["token_lifetime_for_web"]),
                   allow_offline_access=bool(item.get("allow_offline_access")),
                   skip_consent_for_verifiable_first_party_clients=bool(
                       item.get("skip_consent_for_verifiable_first_party_clients", True)),
                   inert=dict(item.get("inert") or {}))


def _storable(identifier: str) -> bool:
    return (isinstance(identifier, str) and 0 < len(identifier)
            and len(identifier.encode("utf-8")) <= MAX_IDENTIFIER_BYTES)


def create(server: ResourceServer) -> None:
    """:class:`ConditionFailed` when the identifier (or, improbably, the id) is taken."""
    table().transact([
        {"Put": {"Item": server.item(), "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Put": {"Item": {"pk": ID_PK, "sk": server.id, "identifier": server.identifier},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
    ])


def get_by_identifier(identifier: str) -> ResourceServer | None:
    if not _storable(identifier):
        return None
    item = table().get(PK, identifier)
    return ResourceServer.from_item(item) if item else None


def get_by_id(server_id: str) -> ResourceServer | None:
    if not isinstance(server_id, str) or not server_id or len(server_id) > 64:
        return None
    pointer = table().get(ID_PK, server_id)
    if pointer is None:
        return None
    found = get_by_identifier(pointer["identifier"])
    return found if found is not None and found.id == server_id else None


def list_all() -> list[ResourceServer]:
    return sorted((ResourceServer.from_item(i) for i in table().query(PK)), key=lambda s: s.id)


def replace(server: ResourceServer) -> None:
    """:class:`ConditionFailed` when the API was deleted meanwhile (or recreated: another id)."""
    table().put(server.item(), condition="attribute_exists(pk) AND #id = :id",
                names={"#id": "id"}, values={":id": server.id})


def delete(server: ResourceServer) -> None:
    """:class:`ConditionFailed` when it is already gone."""
    table().transact([
        {"Delete": {"Key": {"pk": PK, "sk": server.identifier},
                    "ConditionExpression": "#id = :id",
                    "ExpressionAttributeNames": {"#id": "id"},
                    "ExpressionAttributeValues": {":id": server.id}}},
        {"Delete": {"Key": {"pk": ID_PK, "sk": server.id}}},
    ])


def still_exists_check(identifier: str, server_id: str) -> Write:
    """A transaction check that holds only while this very API (not one deleted and registered
    again under the same identifier) exists: token and grant writes carry it, so they cannot
    race the API's deletion."""
    return Write.check({"pk": PK, "sk": identifier}, "#id = :id", names={"#id": "id"},
                       values={":id": server_id})
