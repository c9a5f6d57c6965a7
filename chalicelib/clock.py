"""The broker's one clock.

Everything that reads the time asks this module: :func:`now` (wall time, epoch seconds: token
lifetimes, expiry on read, sessions) and :func:`monotonic` (caches and request budgets, immune
to wall-clock jumps). Production runs on :class:`SystemClock`; a test installs a
:class:`FixedClock` (``tests/conftest.py``'s ``fixed_clock`` fixture) and moves it with
:meth:`FixedClock.advance` instead of patching ``time`` in some module.
"""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod


class Clock(ABC):
    """What the broker needs of a clock."""

    @abstractmethod
    def now(self) -> float: ...

    @abstractmethod
    def monotonic(self) -> float: ...


class SystemClock(Clock):
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FixedClock(Clock):
    """A clock that stands still until told to move; both readings move together."""

    def __init__(self, at: float):
        self._at = float(at)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._at

    def monotonic(self) -> float:
        return self._at

    def set(self, at: float) -> None:
        with self._lock:
            self._at = float(at)

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._at += seconds
            return self._at


_current: Clock = SystemClock()


def now() -> float:
    """Wall time in epoch seconds, from the installed clock."""
    return _current.now()


def now_int() -> int:
    """Wall time in whole epoch seconds (what stored items and JWT claims carry)."""
    return int(_current.now())


def monotonic() -> float:
    """Seconds from an arbitrary origin that never go backwards: caches, budgets."""
    return _current.monotonic()


def install(clock: Clock) -> Clock:
    """Make ``clock`` the broker's clock; returns the one it replaced."""
    global _current
    previous, _current = _current, clock
    return previous
