"""Reading log events back from the shared table (SPEC §9) in tests.

The table is shared by every test (and the log partitions by every event of the day), so a test
reads only what happened since it started, newest first, and keeps what names something it
created itself (a client_id, a connection, a user, a path)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable

from chalicelib.store import log_events
from chalicelib.store.log_events import LogEvent



def now_ms() -> int:
    return int(time.time() * 1000)


def events_since(start_ms: int, match: Callable[[LogEvent], bool]) -> list[LogEvent]:
    """Events stored since ``start_ms`` (epoch ms) for which ``match`` holds, newest first."""
    found = []
    for event in log_events.newest_first(log_events.days_back(time.time(), 1)):
        # The broker's clock (not fixed by these tests) is this process's wall clock.
        if int(event["log_id"][3:19]) < start_ms:
            break
        if match(event):
            found.append(event)
    return found


def one(start_ms: int, match: Callable[[LogEvent], bool]) -> LogEvent:
    found = events_since(start_ms, match)
    assert len(found) == 1, found
    return found[0]


def text_of(event: LogEvent) -> str:
    """The event as stored and as printed: what must never hold a secret."""
    return json.dumps(event, sort_keys=True, default=str)
