"""BROKER_LOG_RETENTION_DAYS (SPEC §9): how long log events are kept. The settings refuse a value
that is not a whole number of days from 1 to 3650 when they are first read, and every stored
event expires (``ttl``) that many days after it was recorded, whether it was one ``PutItem``
(``audit.record``) or rode in a transaction (``audit.ride``). In-memory table, fixed clock."""
from __future__ import annotations

import pytest

from chalicelib import audit
from chalicelib.errors import ConfigurationError
from chalicelib.settings import get_settings
from chalicelib.store import log_events
from chalicelib.store.unit_of_work import UnitOfWork

DAY = 86400
VARIABLE = "BROKER_LOG_RETENTION_DAYS"


@pytest.mark.parametrize("value", ["0", "3651", "x", "-1", "7.5", "1e3", " ", "30 days"])
def test_a_retention_that_is_not_1_to_3650_days_is_refused_when_the_settings_load(monkeypatch,
                                                                                   value):
    monkeypatch.setenv(VARIABLE, value)
    with pytest.raises(ConfigurationError, match=VARIABLE):
        get_settings()


@pytest.mark.parametrize(("value", "days"), [("1", 1), ("3650", 3650), (" 7 ", 7), ("", 30)])
def test_the_bounds_are_accepted_and_30_days_is_the_default(monkeypatch, value, days):
    monkeypatch.setenv(VARIABLE, value)
    assert get_settings().log_retention_days == days
    monkeypatch.delenv(VARIABLE)
    assert get_settings().log_retention_days == 30


def _stored(domain, event) -> dict:
    item = domain.table.get(log_events.PREFIX + log_events.day_of(event["log_id"]),
                            event["log_id"])
    assert item is not None, event
    return item


@pytest.mark.parametrize("days", [1, 7, 3650])
def test_a_recorded_event_expires_its_retention_after_now(domain, monkeypatch, days):
    monkeypatch.setenv(VARIABLE, str(days))
    event = audit.event("sapi", client_id="retention-test", details={"days": days})
    domain.advance(5)  # stored a moment after it was made: the ttl counts from the write
    audit.record(event)
    assert _stored(domain, event)["ttl"] == domain.now + days * DAY
    # The item is gone once the retention has passed, not a second earlier.
    domain.advance(days * DAY - 1)
    assert log_events.get(event["log_id"]) is not None
    domain.advance(1)
    assert log_events.get(event["log_id"]) is None


def test_an_event_riding_a_transaction_expires_its_retention_after_now(domain, monkeypatch):
    monkeypatch.setenv(VARIABLE, "9")
    event = audit.event("sapi", client_id="retention-test")
    operations = UnitOfWork()
    audit.ride(operations, event)
    operations.commit()
    assert _stored(domain, event)["ttl"] == domain.now + 9 * DAY
