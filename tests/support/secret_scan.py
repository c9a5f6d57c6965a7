"""The whole test run, watched for credentials in log lines and log events (SPEC §9: never a
token, code, secret, assertion or cookie).

While the run goes on, this module remembers every credential the run makes:

- every value of ``secrets.token_urlsafe`` of 32 bytes or more (the broker's codes, refresh
  tokens, session cookies, states, nonces, PKCE verifiers, client secrets, and the tests' own
  secrets; the shorter ones are identifiers: ``sid``, grant ids, ``jti``),
- literal secrets the tests declare (:func:`declare`),

and it reads every log line written in the test process (a handler on the root logger, message and
extra fields, e.g. a log event under ``log_event``) and every captured stdout/stderr of each test
(the JSON lines, EMF metrics). A line holding a remembered credential, or anything shaped like a
JWT (``eyJ…`` header and payload: ID, access, logout and GTR tokens, client assertions), is a
finding. The stored log events are scanned at the end by
``tests/api/test_secret_scan.py``, which the run orders last.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import threading
from collections.abc import Iterable

# Opaque credentials are urlsafe base64 of 32+ bytes: 43+ characters.
_CANDIDATE = re.compile(r"[A-Za-z0-9_-]{40,}")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
MIN_BYTES = 32
_lock = threading.Lock()
_made: set[str] = set()
_declared: set[str] = set()
findings: list[str] = []
counts = {"lines": 0, "credentials": 0}
_installed = False


def declare(*values: str) -> None:
    """Secrets the tests hold as literals (client secrets of the test IdPs, the admin secret)."""
    with _lock:
        _declared.update(v for v in values if v)


def _remember(value: str) -> str:
    with _lock:
        _made.add(value)
        counts["credentials"] += 1
    return value


def leaks(text: str) -> list[str]:
    """What in ``text`` is a credential: remembered or declared values, JWT-shaped strings."""
    found = [m.group(0)[:24] + "…" for m in JWT.finditer(text)]
    with _lock:
        found += [m[:8] + "…" for m in _CANDIDATE.findall(text) if m in _made]
        found += [v[:4] + "…" for v in _declared if v in text]
    return found


def check(where: str, texts: Iterable[str]) -> None:
    for text in texts:
        if not text:
            continue
        counts["lines"] += text.count("\n") + 1
        for leak in leaks(text):
            findings.append(f"{where}: {leak}")


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
            text = record.getMessage()
            if extras:
                text += " " + json.dumps(extras, default=str)
            if record.exc_info and record.exc_info[1] is not None:
                text += " " + repr(record.exc_info[1])
        except Exception as exc:  # noqa: BLE001 - a broken record is itself worth a finding
            text = f"unformattable log record {record.name}: {exc!r}"
        check(f"log {record.name}", [text])


_STANDARD = set(logging.LogRecord("n", 0, "p", 0, "m", None, None).__dict__) | {"message", "asctime"}


def install() -> None:
    """Start watching (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    original = secrets.token_urlsafe

    def token_urlsafe(nbytes: int | None = None) -> str:
        value = original(nbytes)
        return _remember(value) if (nbytes is None or nbytes >= MIN_BYTES) else value

    secrets.token_urlsafe = token_urlsafe  # type: ignore[assignment]
    handler = _Handler(level=logging.DEBUG)
    logging.getLogger().addHandler(handler)
