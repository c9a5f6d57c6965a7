"""The token endpoint's log events name the user's connection as the login's events do: name and
``connection_id`` (SPEC §9's event shape), from the registry's per-container connection cache,
never from a read: a refresh stays one read and one transaction, warm or cold. In-memory table."""
from __future__ import annotations

from collections import Counter

import pytest

from chalicelib.errors import OAuthError, ServiceUnavailable
from chalicelib.provider import token_events
from chalicelib.store import log_events
from tests.domain.conftest import cold_caches

CALLS = ("get", "batch_get", "query", "query_index", "put", "put_new", "update", "delete",
         "transact")


class TableCalls:
    """Every call of the memory table, by method."""

    def __init__(self, table, monkeypatch):
        self.calls: Counter = Counter()
        for name in CALLS:
            original = getattr(table, name)

            def counting(*args, _name=name, _original=original, **kwargs):
                self.calls[_name] += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(table, name, counting)


def events(domain, type_: str) -> list[dict]:
    return [e for e in log_events.newest_first(log_events.days_back(domain.now, 1))
            if e["type"] == type_]


def assert_names_the_connection(event: dict, connection: dict) -> None:
    assert event["connection"] == connection["name"]
    assert event["connection_id"] == connection["id"]
    assert event["strategy"] == "oidc" and event["strategy_type"] == "enterprise"


def authorize_reads_the_connections(domain, app) -> None:
    """What ``/authorize`` caches in the container before a login: the connections enabled for
    the application (without ``connection=``)."""
    from chalicelib.management.connections import update_connection
    from chalicelib.registry import connections as registry

    update_connection(domain.connection["id"], {"enabled_clients": [app.client_id]})
    assert [c["name"] for c in registry.cached_enabled_connections_for(app.client_id)] == \
        [domain.connection["name"]]


def test_a_refresh_event_carries_the_connection_id_and_reads_nothing_more(domain, monkeypatch):
    app = domain.app("spa")
    authorize_reads_the_connections(domain, app)
    tokens = domain.tokens(app)
    calls = TableCalls(domain.table, monkeypatch)
    domain.refresh(app, tokens["refresh_token"])
    # A warm refresh: the token read and the transaction, nothing for the event's connection.
    assert calls.calls == {"get": 1, "transact": 1}, calls.calls
    (event,) = events(domain, "sertft")
    assert_names_the_connection(event, domain.connection)
    (exchanged,) = events(domain, "seacft")
    assert_names_the_connection(exchanged, domain.connection)


def test_a_cold_cache_costs_no_read_and_names_the_connection_without_its_id(domain, monkeypatch):
    from chalicelib.registry import connections as registry

    app = domain.app("spa")
    tokens = domain.tokens(app)
    cold_caches()  # another container, or the cache's 30 s gone
    calls = TableCalls(domain.table, monkeypatch)
    refreshed = domain.refresh(app, tokens["refresh_token"])
    assert calls.calls == {"get": 1, "transact": 1}, calls.calls  # no lookup for the event
    (cold,) = events(domain, "sertft")
    assert cold["connection"] == domain.connection["name"] and "connection_id" not in cold
    registry.cached_connection_by_name(domain.connection["name"])  # e.g. an /authorize
    calls.calls.clear()
    domain.refresh(app, refreshed["refresh_token"])
    assert calls.calls == {"get": 1, "transact": 1}, calls.calls
    warm = [e for e in events(domain, "sertft") if e["log_id"] != cold["log_id"]]
    assert len(warm) == 1
    assert_names_the_connection(warm[0], domain.connection)


def test_a_refused_refresh_names_the_connection_id_too(domain):
    app = domain.app("spa")
    authorize_reads_the_connections(domain, app)
    tokens = domain.tokens(app)
    domain.refresh(app, tokens["refresh_token"])
    with pytest.raises(OAuthError):
        domain.refresh(app, tokens["refresh_token"])  # reused: the family is revoked
    (event,) = events(domain, "fertft")
    assert event["details"]["check"] == "reuse"
    assert_names_the_connection(event, domain.connection)


def test_after_a_dependency_failed_the_event_names_the_connection_without_a_lookup(
        domain, monkeypatch):
    user_id = f"oidc|{domain.connection['name']}|alice"
    cold_caches()
    calls = TableCalls(domain.table, monkeypatch)
    token_events.record_failure("fertft", ServiceUnavailable("down"), client_id="app",
                                user_id=user_id)
    assert calls.calls == {"put": 1}, calls.calls  # the event itself, no read
    (event,) = events(domain, "fertft")
    assert event["connection"] == domain.connection["name"] and "connection_id" not in event


def test_a_connection_gone_or_unreadable_leaves_its_name(domain, monkeypatch):
    from chalicelib.registry import connections as registry

    assert token_events.connection_for("oidc|no-such-connection|alice") == "no-such-connection"
    assert token_events.connection_for("auth0|alice") is None
    assert token_events.connection_for(None) is None
    name = domain.connection["name"]
    assert token_events.connection_for(f"oidc|{name}|alice") == name  # nothing cached: no read
    registry.cached_connection_by_name(name)
    assert token_events.connection_for(f"oidc|{name}|alice")["id"] == domain.connection["id"]

    def failing(_name, _client_id=None):
        raise ServiceUnavailable("down")

    monkeypatch.setattr(registry, "known_connection_by_name", failing)
    assert token_events.connection_for(f"oidc|{name}|alice") == name
