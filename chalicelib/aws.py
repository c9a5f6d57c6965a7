"""The one place that creates boto3 clients: short timeouts, bounded retries, created on first use.

boto3 is imported lazily: it is the heaviest import on the cold path and some requests never
touch AWS. ``AWS_ENDPOINT_URL`` (honoured by botocore itself) points everything at the local
embedded endpoint during ``make run`` and the tests.
"""
from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_clients: dict[tuple, object] = {}


def _config():
    from botocore.config import Config

    # SPEC §8: AWS calls get short connect/read timeouts and bounded, jittered retries.
    return Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=32,
    )


def client(service: str):
    """A cached client for ``service``; a new one when the endpoint or region changes (tests)."""
    key = (
        service,
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"),
    )
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            import boto3

            session = boto3.session.Session()
            found = session.client(service, config=_config(), region_name=key[2] or "us-east-1")
            _clients[key] = found
    return found


def reset_clients() -> None:
    with _lock:
        _clients.clear()
