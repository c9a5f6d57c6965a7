"""Fixtures for the resilience tests (SPEC §8): one fake IdP, applications and connections per
module; botocore's backoff sleeps removed (the delays are still computed and recorded)."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import ROOT, Api, get_token
from tests.resilience.helpers import APP_CALLBACK, FaultyIdp, cold_caches
from tests.support.fake_idp import connection_body


def pytest_configure(config):
    config.addinivalue_line("markers", "load: bounded load run (part of the default run)")


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    """botocore's jittered backoff would sleep up to 1 + 2 s per failing call; the tests make many
    failing calls. The delays botocore asks for are recorded instead of slept."""
    from botocore.retries import standard

    requested: list[float] = []
    original = standard.ExponentialBackoff.delay_amount

    def record(self, context):
        requested.append(original(self, context))
        return 0

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", record)
    return requested


@pytest.fixture(autouse=True)
def warm_state_reset():
    """Each test starts with cold caches and ends without injected faults (AwsFaults is a
    context manager, so nothing outlives a test)."""
    cold_caches()
    yield
    cold_caches()


@pytest.fixture(scope="module")
def mclient(aws_endpoint, app):
    from chalice.test import Client

    with Client(app, stage_name="local", project_dir=str(ROOT)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def mapi(mclient):
    response = get_token(mclient)
    assert response.status_code == 200, response.body
    import json

    return Api(mclient, json.loads(response.body)["access_token"])


@pytest.fixture(scope="module")
def world(mapi):
    """A fake IdP; a confidential web app and a SPA; front-channel, back-channel and
    back-channel-with-userinfo connections enabled for both."""
    from chalicelib.login.jwks_cache import jwks_cache

    with FaultyIdp() as idp:
        web = mapi.call("POST", "/api/v2/clients", body={
            "name": "resilience-web", "app_type": "regular_web", "callbacks": [APP_CALLBACK],
            "allowed_logout_urls": [APP_CALLBACK]}).data
        spa = mapi.call("POST", "/api/v2/clients", body={
            "name": "resilience-spa", "app_type": "spa", "callbacks": [APP_CALLBACK]}).data
        enabled = [web["client_id"], spa["client_id"]]
        suffix = uuid.uuid4().hex[:6]
        bodies = {
            "front": connection_body(idp, f"rf-front-{suffix}", channel="front",
                                     enabled_clients=enabled),
            "back": connection_body(idp, f"rf-back-{suffix}", channel="back",
                                    enabled_clients=enabled,
                                    token_endpoint_auth_method="client_secret_basic"),
            "info": connection_body(idp, f"rf-info-{suffix}", channel="back",
                                    enabled_clients=enabled,
                                    attribute_map={"mapping_mode": "basic_profile",
                                                   "userinfo_scope": "phone"}),
        }
        connections = {}
        for key, body in bodies.items():
            response = mapi.call("POST", "/api/v2/connections", body=body)
            assert response.status_code == 201, response.data
            connections[key] = response.data
        yield {"idp": idp, "web": web, "spa": spa, **connections}
        for connection in connections.values():
            mapi.call("DELETE", f"/api/v2/connections/{connection['id']}")
        for app_ in (web, spa):
            mapi.call("DELETE", f"/api/v2/clients/{app_['client_id']}")
        jwks_cache().clear()


@pytest.fixture()
def idp(world):
    """The module's IdP, healthy and answering as alice at the start of each test."""
    fake = world["idp"]
    fake.faults.clear()
    fake.token_handler = None
    fake.userinfo = None
    fake.userinfo_status = 200
    fake.user = {"sub": "alice", "email": "alice@example.com", "email_verified": True,
                 "name": "Alice"}
    fake.id_token = type(fake).default_id_token
    fake.requests.clear()
    yield fake
    fake.faults.clear()
    fake.release.set()
    fake.release.clear()
