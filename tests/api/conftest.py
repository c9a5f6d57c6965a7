"""The HTTP tests' world: the scriptable upstream IdP and the applications and connections a test
makes through the Management API (each deleted after the test, connections first).

A module that wants another IdP (the real oidc-provider, a subclass of FakeIdp) defines its own
``idp`` fixture, which wins over this one."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.support.fake_idp import FakeIdp, running_idp
from tests.support.flow import APP_CALLBACK
from tests.support.idp_fixtures import oidc_idp  # noqa: F401


@pytest.fixture()
def idp() -> Iterator[FakeIdp]:
    """The test's own fake IdP (tests/support/fake_idp.py) on loopback."""
    with running_idp() as running:
        yield running


@contextmanager
def _created(api, collection: str, id_field: str) -> Iterator[Callable[[dict], dict]]:
    """``create(body)``: POST to ``collection``, 201 asserted; what was made is deleted after."""
    made: list[str] = []

    def create(body: dict) -> dict:
        response = api.call("POST", collection, body=body)
        assert response.status_code == 201, response.data
        made.append(response.data[id_field])
        return response.data

    try:
        yield create
    finally:
        for made_id in made:
            api.call("DELETE", f"{collection}/{made_id}")


@pytest.fixture()
def make_app(api):
    """``make_app(name, app_type="regular_web", **fields)``: a new application (redirect URI
    :data:`APP_CALLBACK` unless ``fields`` say otherwise)."""
    with _created(api, "/api/v2/clients", "client_id") as create:
        def make(name: str, app_type: str = "regular_web", **fields) -> dict:
            return create({"name": name, "app_type": app_type, "callbacks": [APP_CALLBACK], **fields})

        yield make


@pytest.fixture()
def add_connection(api, make_app):
    """``add_connection(body)``: a new connection. (It asks for ``make_app`` so the connections
    go before the applications they list.)"""
    with _created(api, "/api/v2/connections", "id") as create:
        yield create
