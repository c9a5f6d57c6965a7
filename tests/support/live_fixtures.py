"""Pytest fixture: the app served over real HTTP on 127.0.0.1 (tests/support/live_server.py).

    from tests.support.live_fixtures import live_url  # noqa

    def test_something(live_url):
        requests.get(live_url + "/api/v2/openapi.json")
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.live_server import live_server

__all__ = ["live_url"]


@pytest.fixture(scope="session")
def live_url(app) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:<port>``, no trailing slash) of the app, shared by the session.

    Depends on ``app`` and so on ``aws_endpoint``: moto is up and the environment is set."""
    with live_server(app) as base_url:
        yield base_url
