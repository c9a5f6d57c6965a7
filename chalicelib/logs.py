"""Structured logs (SPEC §9): one JSON object per line, the same shape in Lambda and locally.

In Lambda the function's log format is JSON (``LoggingConfig`` in ``infra/resources.yaml``): the
Python runtime puts a JSON formatter on the root logger, and every record becomes one line with
``timestamp``, ``level``, ``message``, ``logger``, ``requestId`` (Lambda's invocation id) and each
field passed in ``extra`` at the top level. That is how a log event reaches CloudWatch Logs as
``{"logger": "broker.events", ..., "log_event": {"type": "f", ...}}``, which a subscription filter
``{ $.log_event.type = "f" }`` selects (docs/OPERATIONS.md).

Everywhere else (``chalice local``, ``make run``, the tests, and a Lambda function left on the
plain-text format, e.g. by ``chalice deploy``) :func:`configure_logging` installs
:class:`JsonLineFormatter`, which writes the same keys, so a line reads the same wherever it was
written. Callers never pass a credential: digests and prefixes only (chalicelib/tokens.py), and
log events go through ``audit.clean_details``.
"""
from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

# Loggers whose INFO lines are part of the contract: log events, request lines, the flows' own.
BROKER_LOGGERS = ("broker", "chalicelib")

# What every LogRecord carries by itself; anything else on a record came in through ``extra``.
_RECORD_FIELDS = frozenset(logging.LogRecord("n", 0, "p", 0, "m", None, None).__dict__) | {
    "message", "asctime", "aws_request_id", "tenant_id", "_frame_type", "taskName"}

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "broker_log_request_id", default=None)


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Lines logged while the block runs carry ``requestId`` (where Lambda's formatter, which sets
    it from the invocation, is not the one writing)."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


class JsonLineFormatter(logging.Formatter):
    """A record as one JSON object, keyed as Lambda's JSON log format keys it (``timestamp``,
    ``level``, ``message``, ``logger``, ``requestId``; ``errorType``, ``errorMessage``,
    ``stackTrace`` and ``location`` for an exception), with every ``extra`` field at the top level.
    Values JSON cannot hold are written as text; a field that is None is left out."""

    def __init__(self, *, newline: bool = False):
        super().__init__()
        self._newline = newline

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "requestId": getattr(record, "aws_request_id", None) or _request_id.get(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            line["errorType"] = record.exc_info[0].__name__
            line["errorMessage"] = str(record.exc_info[1])
            line["stackTrace"] = traceback.format_tb(record.exc_info[2])
            line["location"] = f"{record.pathname}:{record.funcName}:{record.lineno}"
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in line:
                line[key] = value
        text = json.dumps({k: v for k, v in line.items() if v is not None}, default=str,
                          ensure_ascii=False, separators=(",", ":"))
        return text + "\n" if self._newline else text


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (test runners swap it), one line each."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):  # noqa: ANN201 - the file object logging writes to
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001 - logging assigns it in __init__
        pass


def in_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def lambda_writes_json() -> bool:
    """Lambda's own formatter writes JSON lines (the function's log format is JSON)."""
    return in_lambda() and os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"


def configure_logging(app: Any) -> None:
    """Every line one JSON object: Lambda's JSON formatter when the function has the JSON log
    format, else :class:`JsonLineFormatter` on the root logger. Chalice's own logger (its
    unhandled-exception line) goes the same way instead of its plain-text handler."""
    for handler in list(app.log.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, _StdoutHandler):
            app.log.removeHandler(handler)
    app.log.propagate = True
    app.log.setLevel(logging.INFO)
    for name in BROKER_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    root = logging.getLogger()
    if lambda_writes_json():
        return
    if in_lambda():
        # The runtime's plain-text handler keeps writing (its sink, its request id filter), in
        # our shape; it needs the newline its own format string ends with.
        for handler in root.handlers:
            handler.setFormatter(JsonLineFormatter(newline=True))
        return
    if not any(isinstance(h, _StdoutHandler) for h in root.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(JsonLineFormatter())
        root.addHandler(handler)
