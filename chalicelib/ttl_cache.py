"""A small in-memory TTL cache for warm Lambda containers, with an injectable clock."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable


class TtlCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_items: int = 1024):
        self.ttl = ttl
        self.clock = clock
        self.max_items = max_items
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        now = self.clock()
        found = self._items.get(key)
        if found is not None and found[0] > now:
            return found[1]
        value = load()
        with self._lock:
            if len(self._items) >= self.max_items:
                self._items.clear()
            self._items[key] = (now + self.ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
