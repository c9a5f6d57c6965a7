"""Login transactions: what the callback needs from the /authorize request (SPEC §3.2).

A transaction is keyed by the digest of its ``state`` (≥128 bits), expires after 10 minutes,
is bound to the browser (digest of the binding cookie) and is consumed exactly once: the
consuming ``DeleteItem`` is conditional, so of two concurrent callbacks one wins (SPEC §7).

Each login gets a fresh binding in its own cookie, named after a digest of its ``state``
(SPEC §4): a binding learnt once (a shared computer, an earlier login) never carries over to the
next login, and logins in two tabs do not overwrite each other's cookie. At most
:data:`MAX_PENDING_LOGINS` such cookies are kept; a new login drops the oldest.

The record, :class:`LoginTransaction` (imported from here by the login flows), and its key and
conditions live in chalicelib/store/login_transactions.py.
"""
from __future__ import annotations

from chalicelib.store import login_transactions as records
from chalicelib.store.login_transactions import LoginTransaction
from chalicelib.tokens import digest, random_token

LIFETIME_SECONDS = 600
BINDING_COOKIE_PREFIX = "broker_tx_"
MAX_PENDING_LOGINS = 5


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
    records.put_new(upstream_state, tx, now + LIFETIME_SECONDS)
    return upstream_state


def consume_transaction(upstream_state: str | None, browser_binding: str | None,
                        now: int) -> LoginTransaction:
    if not upstream_state or len(upstream_state) > 256:
        raise TransactionError("Missing or invalid state")
    if not browser_binding or len(browser_binding) > 128:
        raise TransactionError("The login was started in another browser or has expired")
    # One conditional delete both checks and consumes: the browser binding is part of the
    # condition, so another browser's attempt fails without consuming the rightful login
    # (login CSRF defence), and of two concurrent callbacks exactly one wins.
    tx = records.consume(upstream_state, digest(browser_binding), now)
    if tx is None:
        raise TransactionError("Unknown, expired or already used state, or a login started in "
                               "another browser")
    return tx
