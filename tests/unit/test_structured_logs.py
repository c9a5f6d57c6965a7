"""Structured logs (SPEC §9, chalicelib/logs.py): one JSON object per line, shaped as Lambda's JSON
log format shapes it, a log event under ``log_event`` at the top level, nothing secret.

The log events come from chalicelib/audit.py itself (on the in-memory table), so what is checked is
the line a CloudWatch Logs subscription filter ``{ $.log_event.type = "f" }`` would see.
"""
from __future__ import annotations

import io
import json
import logging
import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from chalice import Chalice

from chalicelib import audit, logs

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture()
def lines():
    """Every record logged under ``broker`` and ``chalicelib`` while the test runs, as the JSON
    lines :class:`logs.JsonLineFormatter` makes of them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonLineFormatter())
    watched = [logging.getLogger(name) for name in (*logs.BROKER_LOGGERS, "probe")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    def read() -> list[str]:
        return stream.getvalue().splitlines()

    yield read
    for logger, level in zip(watched, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture()
def memory_table(fixed_clock, monkeypatch):
    monkeypatch.setenv("BROKER_ISSUER", "http://127.0.0.1:8000/")
    monkeypatch.setenv("BROKER_ALLOW_INSECURE_LOOPBACK", "true")
    from chalicelib.store import dynamo
    from chalicelib.store.memory import MemoryTable

    previous = dynamo.install(MemoryTable(clock=fixed_clock.now))
    yield
    dynamo.install(previous)


def _one(found: list[str], logger: str) -> dict:
    mine = [json.loads(line) for line in found if json.loads(line)["logger"] == logger]
    assert len(mine) == 1, found
    return mine[0]


def test_a_log_event_is_one_json_line_with_the_event_at_the_top_level(lines, memory_table):
    with logs.request_context("req-1"), audit.request_scope(request_id="req-1", ip="192.0.2.7"):
        audit.record(audit.event("f", connection={"name": "acme", "id": "con_1"},
                                 client_id="app1", details={"check": "state",
                                                            "error": "access_denied"}))
    found = lines()
    assert len(found) == 1 and "\n" not in found[0]
    line = _one(found, "broker.events")
    assert TIMESTAMP.fullmatch(line["timestamp"]), line
    assert line["level"] == "INFO" and line["requestId"] == "req-1"
    assert line["message"] == "log event f: Failed login"
    event = line["log_event"]
    assert isinstance(event, dict)  # an object, not text: `{ $.log_event.type = "f" }` matches it
    assert event["type"] == "f" and event["connection"] == "acme" and event["ip"] == "192.0.2.7"
    assert event["details"] == {"check": "state", "error": "access_denied"}
    assert line["log_event_stored"] is True
    assert set(line) == {"timestamp", "level", "message", "logger", "requestId", "log_event",
                         "log_event_stored"}


def test_a_log_event_line_holds_no_credential(lines, memory_table):
    audit.record(audit.event("fertft", client_id="app1", details={
        "refresh_token": "rt-secret-value", "client_secret": "cs-secret-value",
        "reason": f"bad token {JWT}", "nested": {"id_token": JWT, "check": "signature"}}))
    text = "\n".join(lines())
    for secret in ("rt-secret-value", "cs-secret-value", JWT, "eyJ"):
        assert secret not in text
    event = _one(lines(), "broker.events")["log_event"]
    assert event["details"] == {"reason": "bad token [redacted]", "nested": {"check": "signature"}}


def test_extra_fields_are_top_level_and_absent_ones_left_out(lines):
    logging.getLogger("broker.requests").info("GET / 200", extra={
        "route": "/", "status": 200, "user_id": None, "at": datetime(2024, 1, 2, tzinfo=timezone.utc),
        "amount": Decimal("1.5")})
    line = _one(lines(), "broker.requests")
    assert line["route"] == "/" and line["status"] == 200
    assert "user_id" not in line and "requestId" not in line  # None is left out, as Lambda does
    assert line["at"] == "2024-01-02 00:00:00+00:00" and line["amount"] == "1.5"  # as text


def test_an_exception_stays_one_line_with_lambdas_error_fields(lines):
    try:
        raise ValueError("the upstream answered 502")
    except ValueError:
        logging.getLogger("chalicelib.probe").exception("upstream call failed")
    (text,) = lines()
    line = json.loads(text)
    assert line["level"] == "ERROR" and line["message"] == "upstream call failed"
    assert line["errorType"] == "ValueError"
    assert line["errorMessage"] == "the upstream answered 502"
    assert isinstance(line["stackTrace"], list) and "raise ValueError" in "".join(line["stackTrace"])
    assert line["location"].endswith(":test_an_exception_stays_one_line_with_lambdas_error_fields:"
                                     + line["location"].rsplit(":", 1)[1])


def test_lambdas_request_id_wins_over_the_local_one(lines):
    record = logging.LogRecord("broker", logging.INFO, __file__, 1, "hello", None, None)
    record.aws_request_id = "lambda-invocation-1"
    with logs.request_context("api-gateway-1"):
        line = json.loads(logs.JsonLineFormatter().format(record))
        assert line["requestId"] == "lambda-invocation-1"
        del record.aws_request_id
        assert json.loads(logs.JsonLineFormatter().format(record))["requestId"] == "api-gateway-1"
    assert "requestId" not in json.loads(logs.JsonLineFormatter().format(record))
    assert logs.JsonLineFormatter(newline=True).format(record).endswith("}\n")


# -- configure_logging: which formatter writes, where ---------------------------------------------


@pytest.fixture()
def root_handlers(monkeypatch):
    """The root logger's handlers and formatters, restored after the test; no Lambda variables."""
    for name in ("AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    saved = [(h, h.formatter) for h in root.handlers]
    yield root
    for handler in list(root.handlers):
        if handler not in [h for h, _ in saved]:
            root.removeHandler(handler)
    for handler, formatter in saved:
        handler.setFormatter(formatter)


def _ours(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if isinstance(h.formatter, logs.JsonLineFormatter)]


def test_locally_one_json_handler_on_the_root_and_chalices_own_handler_gone(root_handlers, capsys):
    for handler in _ours(root_handlers):
        root_handlers.removeHandler(handler)
    app = Chalice(app_name="probe")
    assert app.log.handlers and not app.log.propagate  # Chalice's plain-text handler
    logs.configure_logging(app)
    logs.configure_logging(app)  # idempotent
    assert len(_ours(root_handlers)) == 1
    assert not app.log.handlers and app.log.propagate
    app.log.error("through the root")
    line = json.loads(capsys.readouterr().out.strip())
    assert line["logger"] == "probe" and line["message"] == "through the root"


def test_in_lambda_with_the_json_format_lambdas_formatter_is_left_alone(root_handlers, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "identity-broker-dev")
    monkeypatch.setenv("AWS_LAMBDA_LOG_FORMAT", "JSON")
    lambdas = logging.StreamHandler(io.StringIO())
    lambdas_formatter = logging.Formatter("%(message)s")
    lambdas.setFormatter(lambdas_formatter)
    root_handlers.addHandler(lambdas)
    before = list(root_handlers.handlers)
    logs.configure_logging(Chalice(app_name="probe"))
    assert root_handlers.handlers == before and lambdas.formatter is lambdas_formatter


def test_in_lambda_with_the_text_format_the_runtimes_handler_writes_our_lines(root_handlers,
                                                                             monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "identity-broker-dev")
    monkeypatch.setenv("AWS_LAMBDA_LOG_FORMAT", "Text")
    stream = io.StringIO()
    lambdas = logging.StreamHandler(stream)
    lambdas.terminator = ""  # the runtime's sink writes the formatted text as it is
    root_handlers.addHandler(lambdas)
    before = list(root_handlers.handlers)
    logs.configure_logging(Chalice(app_name="probe"))
    assert root_handlers.handlers == before  # no second handler: the runtime's keeps writing
    logging.getLogger("broker.probe").info("hello", extra={"route": "/x"})
    assert json.loads(stream.getvalue())["route"] == "/x" and stream.getvalue().endswith("}\n")
