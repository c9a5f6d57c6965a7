"""Login transactions: what the callback needs from the /authorize request (SPEC §3.2).

A transaction is keyed by the digest of its ``state`` (≥128 bits), expires after 10 minutes,
is bound to the browser (digest of the binding cookie) and is consumed exactly once: the
consuming ``DeleteItem`` is conditional, so of two concurrent callbacks one wins (SPEC §7).

Each login gets a fresh binding in its own cookie, named after a digest of its ``state``
(SPEC §4): a binding learnt once (a shared computer, an earlier login) never carries over to the
next login, and logins in two tabs do not overwrite each other's cookie. At most
:data:`MAX_PENDING_LOGINS` such cookies are kept; a new login drops the oldest.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.tokens import digest, random_token

LIFETIME_SECONDS = 600
BINDING_COOKIE_PREFIX = "broker_tx_"
MAX_PENDING_LOGINS = 5


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
    # The redirect_uri sent upstream: the code exchange must repeat it (RFC 6749 §4.1.3).
    upstream_redirect_uri: str | None = None
    extra: dict = field(default_factory=dict)


def binding_cookie_name(upstream_state: str) -> str:
    return BINDING_COOKIE_PREFIX + digest(upstream_state)[:24]


def new_binding(now: int) -> str:
    """A fresh random binding value; its issue time comes first so the oldest can be dropped."""
    return f"{now:x}.{random_token(32)}"


def bindings_to_drop(cookies: dict[str, str]) -> list[str]:
    """Names of pending binding cookies to expire so that, with a new login, at most
    :data:`MAX_PENDING_LOGINS` remain (oldest first; unreadable values count as oldest)."""
    def issued(value: str) -> int:
        head = value.partition(".")[0]
        try:
            return int(head, 16) if len(head) <= 12 else 0
        except ValueError:
            return 0

    pending = sorted((issued(value), name) for name, value in cookies.items()
                     if name.startswith(BINDING_COOKIE_PREFIX))
    excess = len(pending) - (MAX_PENDING_LOGINS - 1)
    return [name for _, name in pending[:max(0, excess)]]


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
    if not browser_binding or len(browser_binding) > 128:
        raise TransactionError("The login was started in another browser or has expired")
    key = f"TX#{digest(upstream_state)}"
    # One conditional delete both checks and consumes: the browser binding is part of the
    # condition, so another browser's attempt fails without consuming the rightful login
    # (login CSRF defence), and of two concurrent callbacks exactly one wins.
    try:
        item = table().delete(
            key, "TX", condition="attribute_exists(pk) AND #ttl > :now AND browser_digest = :b",
            names={"#ttl": "ttl"}, values={":now": now, ":b": digest(browser_binding)},
            return_old=True)
    except ConditionFailed:
        raise TransactionError("Unknown, expired or already used state, or a login started in "
                               "another browser") from None
    if item is None:
        raise TransactionError("Unknown, expired or already used state")
    fields = {k: item[k] for k in LoginTransaction.__dataclass_fields__ if k in item}
    return LoginTransaction(**fields)
