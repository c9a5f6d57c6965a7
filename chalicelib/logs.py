"""Logging setup: one line per event, never a secret (callers log hashes or prefixes only)."""
from __future__ import annotations

import logging


def configure_logging(app) -> None:
    app.log.setLevel(logging.INFO)
    broker = logging.getLogger("chalicelib")
    broker.setLevel(logging.INFO)
    logging.getLogger("broker").setLevel(logging.INFO)
