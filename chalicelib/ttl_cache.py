"""A small in-memory TTL cache for warm Lambda containers, with an injectable clock.

SPEC §8: a cache keyed by request input (a client id, a connection name) must not be flushed or
bloated by unauthenticated requests with random names. Hits and misses therefore live apart:

- a hit (an object that exists) goes to the main store, bounded by ``max_items``; only real,
  administrator-created objects can be hits, so random names never take a place there;
- a miss (``None`` or an empty list: nothing found) goes to a small store of ``max_misses``
  entries whose oldest entry gives way to a new one. No number of misses evicts a hit.

Both expire after ``ttl``; :meth:`clear` (called by every administrator's write) drops both.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from chalicelib.clock import monotonic as monotonic_clock


def is_miss(value: Any) -> bool:
    """Nothing found: ``None`` or an empty collection."""
    return value is None or (isinstance(value, (list, tuple, dict, set, frozenset)) and not value)


class TtlCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = monotonic_clock, max_items: int = 1024,
                 max_misses: int = 256, is_miss: Callable[[Any], bool] = is_miss):
        self.ttl = ttl
        self.clock = clock
        self.max_items = max_items
        self.max_misses = max_misses
        self._is_miss = is_miss
        self._items: dict[Any, tuple[float, Any]] = {}
        self._misses: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        now = self.clock()
        found = self._items.get(key)
        if found is None:
            found = self._misses.get(key)
        if found is not None and found[0] > now:
            return found[1]
        value = load()
        with self._lock:
            self._items.pop(key, None)
            self._misses.pop(key, None)
            if self._is_miss(value):
                _put(self._misses, key, (now + self.ttl, value), self.max_misses)
            else:
                _put(self._items, key, (now + self.ttl, value), self.max_items)
        return value

    def peek(self, key: Any, default: Any = None) -> Any:
        """The fresh cached value of ``key`` without loading it: ``default`` when there is none
        (for callers that must not pay a read, e.g. a log event's decoration)."""
        found = self._items.get(key) or self._misses.get(key)
        if found is not None and found[0] > self.clock():
            return found[1]
        return default

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._misses.clear()


def _put(store: dict, key: Any, entry: tuple[float, Any], limit: int) -> None:
    """Insert, dropping the oldest entries first when full. Every entry has the same TTL and is
    re-inserted when reloaded, so insertion order is expiry order: the oldest is the stalest."""
    while len(store) >= limit:
        del store[next(iter(store))]
    store[key] = entry
