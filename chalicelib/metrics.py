"""CloudWatch Embedded Metric Format lines (SPEC §9). Placeholder until the metrics work lands:
log events are counted here."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def for_event(event: Mapping[str, Any]) -> None:
    """The metrics one log event counts."""
    return None
