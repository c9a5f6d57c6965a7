"""The admin console's "Try" logins and the demo (chalicelib/login/try_connection.py): the
records, their key formats and their conditions.

Three short-lived items, each keyed by the digest of a random bearer value (never the value):
- a *ticket* (``TRYTICKET#{digest(ticket)}``): the connection to try, single use;
- a *flow* (``TRYFLOW#{digest(state)}``): what the try's callback needs (PKCE verifier, client,
  browser binding), consumed once by the browser that started it;
- a *result* (``TRYRESULT#{digest(id)}``): the outcome, shown only to that browser.
All are created only if absent, and consumed by one conditional ``DeleteItem`` that also checks
the expiry (and the browser binding), so of concurrent uses exactly one wins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.tokens import digest

SK = "TRY"
TICKET_PREFIX = "TRYTICKET#"
FLOW_PREFIX = "TRYFLOW#"
RESULT_PREFIX = "TRYRESULT#"

# Consumes a live item; a flow adds its browser binding and kind to the condition.
_LIVE = "attribute_exists(pk) AND #ttl > :now"


@dataclass(frozen=True)
class TryFlow:
    kind: str                   # "try" or "demo"
    client_id: str
    browser_digest: str
    verifier: str = field(repr=False)   # the PKCE code verifier
    connection_name: str | None = None

    def fields(self) -> dict[str, Any]:
        body = {"kind": self.kind, "client_id": self.client_id, "verifier": self.verifier,
                "browser_digest": self.browser_digest}
        if self.connection_name:
            body["connection_name"] = self.connection_name
        return body

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> TryFlow:
        return cls(kind=item["kind"], client_id=item["client_id"],
                   browser_digest=item["browser_digest"], verifier=item["verifier"],
                   connection_name=item.get("connection_name"))


@dataclass(frozen=True)
class TryResult:
    kind: str
    browser_digest: str
    result: str                 # JSON


def _key(prefix: str, secret: str) -> tuple[str, str]:
    return f"{prefix}{digest(secret)}", SK


def _consume(pk: str, sk: str, now: int, condition: str = "", values: dict[str, Any] | None = None
             ) -> dict[str, Any] | None:
    try:
        return table().delete(pk, sk, condition=_LIVE + condition, names={"#ttl": "ttl"},
                              values={":now": now, **(values or {})}, return_old=True)
    except ConditionFailed:
        return None


def put_ticket(ticket: str, connection_id: str, expires_at: int) -> None:
    pk, sk = _key(TICKET_PREFIX, ticket)
    table().put_new({"pk": pk, "sk": sk, "ttl": expires_at, "connection_id": connection_id})


def consume_ticket(ticket: str, now: int) -> str | None:
    """The id of the connection the ticket is for, once; None when unknown, used or expired."""
    item = _consume(*_key(TICKET_PREFIX, ticket), now)
    return item["connection_id"] if item else None


def put_flow(state: str, flow: TryFlow, expires_at: int) -> None:
    pk, sk = _key(FLOW_PREFIX, state)
    table().put_new({"pk": pk, "sk": sk, "ttl": expires_at, **flow.fields()})


def consume_flow(state: str, browser_digest: str, kind: str, now: int) -> TryFlow | None:
    """The flow ``state`` names, once, if this browser of this kind of flow started it; None
    otherwise (another browser's attempt leaves the flow in place)."""
    item = _consume(*_key(FLOW_PREFIX, state), now, " AND browser_digest = :b AND kind = :k",
                    {":b": browser_digest, ":k": kind})
    return TryFlow.from_item(item) if item else None


def put_result(result_id: str, result: TryResult, expires_at: int) -> None:
    pk, sk = _key(RESULT_PREFIX, result_id)
    table().put_new({"pk": pk, "sk": sk, "ttl": expires_at, "kind": result.kind,
                     "browser_digest": result.browser_digest, "result": result.result})


def get_result(result_id: str, now: int) -> TryResult | None:
    """The stored result, or None when unknown or expired by ``now`` (TTL deletion lags)."""
    item = table().get(*_key(RESULT_PREFIX, result_id))
    if item is None or int(item.get("ttl", 0)) <= now:
        return None
    return TryResult(kind=item.get("kind", ""), browser_digest=item.get("browser_digest", ""),
                     result=item["result"])
