"""Login transactions: what the callback needs from the /authorize request (SPEC §3.2).

A transaction is keyed by the digest of its ``state`` (≥128 bits), expires after 10 minutes,
is bound to the browser (digest of the binding cookie) and is consumed exactly once: the
consuming ``DeleteItem`` is conditional, so of two concurrent callbacks one wins (SPEC §7).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.tokens import digest, random_token, same

LIFETIME_SECONDS = 600
BINDING_COOKIE = "broker_tx"


@dataclass
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
    extra: dict = field(default_factory=dict)


class TransactionError(Exception):
    """The callback's state does not name a usable transaction; the message is public."""


def create_transaction(tx: LoginTransaction, now: int) -> str:
    upstream_state = random_token(32)  # 256 bits
    item = {"pk": f"TX#{digest(upstream_state)}", "sk": "TX", "ttl": now + LIFETIME_SECONDS,
            **{k: v for k, v in asdict(tx).items() if v is not None}}
    table().put_new(item)
    return upstream_state


def consume_transaction(upstream_state: str | None, browser_binding: str | None,
                        now: int) -> LoginTransaction:
    if not upstream_state or len(upstream_state) > 256:
        raise TransactionError("Missing or invalid state")
    key = f"TX#{digest(upstream_state)}"
    item = table().get(key, "TX")
    if item is None:
        raise TransactionError("Unknown, expired or already used state")
    if not browser_binding or not same(digest(browser_binding), item.get("browser_digest", "")):
        # Another browser's state: leave the transaction alone (the rightful browser may still
        # finish) but refuse this one (login CSRF / session fixation defence).
        raise TransactionError("The login was started in another browser")
    try:
        table().delete(key, "TX", condition="attribute_exists(pk) AND #ttl > :now",
                       names={"#ttl": "ttl"}, values={":now": now})
    except ConditionFailed:
        raise TransactionError("Unknown, expired or already used state") from None
    fields = {k: item[k] for k in LoginTransaction.__dataclass_fields__ if k in item}
    return LoginTransaction(**fields)
