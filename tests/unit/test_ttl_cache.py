"""chalicelib.ttl_cache: misses are bounded apart from hits (SPEC §8), with an injected clock."""
from __future__ import annotations

import secrets
from types import SimpleNamespace

import pytest

from chalicelib.ttl_cache import TtlCache, is_miss


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Store:
    """A backing store that counts its reads: one real object, everything else is unknown."""

    def __init__(self, objects: dict) -> None:
        self.objects = objects
        self.reads: list = []

    def loader(self, key):
        def load():
            self.reads.append(key)
            return self.objects.get(key)
        return load


@pytest.fixture
def clock():
    return Clock()


def test_a_hit_is_served_from_the_cache_until_it_expires(clock):
    store = Store({"app": {"client_id": "app"}})
    cache = TtlCache(30, clock=clock)
    assert cache.get("app", store.loader("app")) == {"client_id": "app"}
    clock.now += 29.9
    assert cache.get("app", store.loader("app")) == {"client_id": "app"}
    assert store.reads == ["app"]
    clock.now += 0.2
    cache.get("app", store.loader("app"))
    assert store.reads == ["app", "app"]


def test_peek_answers_a_fresh_entry_and_never_loads(clock):
    store = Store({"app": {"client_id": "app"}})
    cache = TtlCache(30, clock=clock)
    assert cache.peek("app") is None and cache.peek("app", "none") == "none"
    cache.get("app", store.loader("app"))
    cache.get("ghost", store.loader("ghost"))
    assert cache.peek("app") == {"client_id": "app"}
    assert cache.peek("ghost", "none") is None  # a remembered miss is what the cache holds
    clock.now += 30.1
    assert cache.peek("app", "gone") == "gone"
    assert store.reads == ["app", "ghost"]


def test_ten_thousand_random_misses_do_not_evict_a_warm_entry(clock):
    store = Store({"app": {"client_id": "app"}})
    cache = TtlCache(30, clock=clock)
    cache.get("app", store.loader("app"))
    for _ in range(10_000):
        name = secrets.token_urlsafe(12)
        assert cache.get(name, store.loader(name)) is None
    store.reads.clear()
    assert cache.get("app", store.loader("app")) == {"client_id": "app"}
    assert store.reads == []  # served without a store read
    assert len(cache._misses) <= cache.max_misses
    assert len(cache._items) == 1


def test_empty_lists_are_misses_too(clock):
    # cached_enabled_connections_for(random client id) answers [] and must not take a hit's place.
    cache = TtlCache(30, clock=clock, max_items=2)
    cache.get("real-a", lambda: [{"name": "a"}])
    cache.get("real-b", lambda: [{"name": "b"}])
    for i in range(1000):
        cache.get(f"random-{i}", lambda: [])
    reads = []
    assert cache.get("real-a", lambda: reads.append("a")) == [{"name": "a"}]
    assert cache.get("real-b", lambda: reads.append("b")) == [{"name": "b"}]
    assert reads == []


def test_a_repeated_miss_is_remembered_for_the_ttl(clock):
    store = Store({})
    cache = TtlCache(30, clock=clock)
    for _ in range(100):
        assert cache.get("nope", store.loader("nope")) is None
    assert store.reads == ["nope"]
    clock.now += 31
    cache.get("nope", store.loader("nope"))
    assert store.reads == ["nope", "nope"]


def test_the_miss_store_gives_way_oldest_first(clock):
    store = Store({})
    cache = TtlCache(30, clock=clock, max_misses=3)
    for name in ("a", "b", "c", "d"):
        cache.get(name, store.loader(name))
    assert list(cache._misses) == ["b", "c", "d"]
    store.reads.clear()
    cache.get("d", store.loader("d"))
    assert store.reads == []
    cache.get("a", store.loader("a"))
    assert store.reads == ["a"]


def test_hits_are_bounded_too_oldest_first(clock):
    # Hits come from administrator-created objects; past max_items the oldest gives way, the
    # cache is never wiped as a whole.
    cache = TtlCache(30, clock=clock, max_items=3)
    for name in ("a", "b", "c", "d"):
        cache.get(name, lambda name=name: {"name": name})
    assert list(cache._items) == ["b", "c", "d"]


def test_an_object_created_after_a_miss_is_seen_once_the_cache_is_cleared(clock):
    # Administrators' writes call clear(): a remembered miss must go with the hits.
    objects: dict = {}
    cache = TtlCache(30, clock=clock)
    assert cache.get("new", lambda: objects.get("new")) is None
    objects["new"] = {"name": "new"}
    cache.clear()
    assert cache.get("new", lambda: objects.get("new")) == {"name": "new"}


def test_a_miss_that_becomes_a_hit_moves_stores(clock):
    objects: dict = {}
    cache = TtlCache(30, clock=clock)
    cache.get("k", lambda: objects.get("k"))
    clock.now += 31
    objects["k"] = {"name": "k"}
    assert cache.get("k", lambda: objects.get("k")) == {"name": "k"}
    assert "k" in cache._items and "k" not in cache._misses


@pytest.mark.parametrize(("value", "miss"), [
    (None, True), ([], True), ({}, True), ((), True),
    ({"a": 1}, False), ([0], False), (0, False), ("", False), (False, False),
])
def test_is_miss(value, miss):
    assert is_miss(value) is miss


def test_the_client_and_connection_caches_keep_warm_entries_under_random_names(monkeypatch):
    """The caches the login paths use: a flood of unknown client ids and connection names."""
    from chalicelib.registry import clients, connections

    settings = SimpleNamespace(table_name="broker")
    monkeypatch.setattr(clients, "get_settings", lambda: settings)
    monkeypatch.setattr(connections, "get_settings", lambda: settings)
    monkeypatch.setattr(clients, "_client_cache", TtlCache(clients.CONFIG_CACHE_SECONDS))
    monkeypatch.setattr(connections, "_config_cache", TtlCache(connections.CONFIG_CACHE_SECONDS))
    reads: list = []

    def get_client(client_id):
        reads.append(("client", client_id))
        return {"client_id": client_id} if client_id == "app" else None

    def get_connection_by_name(name):
        reads.append(("connection", name))
        return {"name": name} if name == "corp" else None

    monkeypatch.setattr(clients, "get_client", get_client)
    monkeypatch.setattr(connections, "get_connection_by_name", get_connection_by_name)
    clients.cached_client("app")
    connections.cached_connection_by_name("corp")
    for _ in range(5000):
        assert clients.cached_client(secrets.token_urlsafe(16)) is None
        assert connections.cached_connection_by_name(secrets.token_urlsafe(16)) is None
    reads.clear()
    assert clients.cached_client("app") == {"client_id": "app"}
    assert connections.cached_connection_by_name("corp") == {"name": "corp"}
    assert reads == []
