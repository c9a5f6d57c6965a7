"""Login transactions (SPEC §3.2): the record, its key format and its conditions.

One item per pending login, ``TX#{digest(upstream state)}`` / ``TX``: the ``state`` sent upstream
is a bearer secret, so only its digest is stored. Created only if absent (an expired leftover
counts as absent) and consumed by one conditional ``DeleteItem`` that also checks the expiry and
the browser binding, so of concurrent callbacks exactly one gets the record (SPEC §7).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.tokens import digest

PREFIX = "TX#"
SK = "TX"


@dataclass(frozen=True)
class LoginTransaction:
    connection_id: str
    client_id: str
    redirect_uri: str
    response_mode: str
    scope: str
    upstream_nonce: str
    browser_digest: str
    created_at: int
    state: str | None = None  # the application's state
    nonce: str | None = None  # the application's nonce
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    upstream_code_verifier: str | None = None
    max_age: int | None = None
    prompt: str | None = None
    audience: str | None = None
    # The redirect_uri sent upstream: the code exchange must repeat it (RFC 6749 §4.1.3).
    upstream_redirect_uri: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> LoginTransaction:
        return cls(**{f.name: item[f.name] for f in fields(cls) if f.name in item})


def key(upstream_state: str) -> tuple[str, str]:
    return f"{PREFIX}{digest(upstream_state)}", SK


def put_new(upstream_state: str, tx: LoginTransaction, expires_at: int) -> None:
    """Store ``tx`` under ``upstream_state`` until ``expires_at``; :class:`ConditionFailed` when
    a live transaction already has that state."""
    pk, sk = key(upstream_state)
    table().put_new({"pk": pk, "sk": sk, "ttl": expires_at,
                     **{k: v for k, v in asdict(tx).items() if v is not None}})


def consume(upstream_state: str, browser_digest: str, now: int) -> LoginTransaction | None:
    """Delete and return the transaction if it exists, has not expired by ``now`` and is bound
    to ``browser_digest``; None otherwise (unknown, expired, used, or another browser's: such an
    attempt leaves the rightful login in place)."""
    try:
        item = table().delete(
            *key(upstream_state),
            condition="attribute_exists(pk) AND #ttl > :now AND browser_digest = :b",
            names={"#ttl": "ttl"}, values={":now": now, ":b": browser_digest}, return_old=True)
    except ConditionFailed:
        return None
    return LoginTransaction.from_item(item) if item else None
