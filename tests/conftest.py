"""Shared fixtures: a real DynamoDB/Secrets Manager/SQS endpoint (moto's server on loopback),
the stack provisioned from infra/, a bootstrap admin client, and the Chalice test client."""
from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_CLIENT_ID = "AdminBootstrapClient0000000000001"
ADMIN_CLIENT_SECRET = "test-admin-secret-" + secrets.token_urlsafe(24)

_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "BROKER_STAGE": "local",
    "BROKER_ISSUER": "http://127.0.0.1:8000/",
    "BROKER_ALLOW_INSECURE_LOOPBACK": "true",
    "BROKER_ADMIN_CLIENT_ID": ADMIN_CLIENT_ID,
}


def pytest_configure(config):
    """Watch the whole run for credentials in log lines (tests/support/secret_scan.py)."""
    from tests.support import idp, secret_scan

    config.addinivalue_line("markers", "run_last: runs after every other test of the run")
    secret_scan.install()
    secret_scan.declare(ADMIN_CLIENT_SECRET, idp.DEFAULT_CLIENT_SECRET)


def pytest_collection_modifyitems(session, config, items):
    """The full-run scans (``run_last``) see what every other test wrote."""
    items.sort(key=lambda item: item.get_closest_marker("run_last") is not None)


def pytest_runtest_logreport(report):
    """Every test's captured output (stdout: JSON log lines, EMF metrics; stderr) is scanned."""
    from tests.support import secret_scan

    secret_scan.check(f"output of {report.nodeid}", [report.capstdout, report.capstderr])


@pytest.fixture(scope="session")
def aws_endpoint():
    """moto's server on 127.0.0.1: real AWS wire protocol, nothing leaves the machine."""
    from scripts.embedded_aws import EmbeddedAws

    server = EmbeddedAws()
    server.start()
    endpoint = server.endpoint
    saved = {k: os.environ.get(k) for k in [*_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(_ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ.pop("AWS_PROFILE", None)
    from chalicelib import aws

    aws.reset_clients()
    from scripts.provision import provision

    provision("local", endpoint)
    from chalicelib.settings import get_settings

    sm = aws.client("secretsmanager")
    sm.put_secret_value(SecretId=get_settings().admin_secret_name, SecretString=ADMIN_CLIENT_SECRET)
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def app(aws_endpoint):
    from app import app as chalice_app

    return chalice_app


@pytest.fixture()
def fixed_clock():
    """The broker's one clock (chalicelib/clock.py) stopped at the present second for this test;
    move it with ``.set(moment)`` or ``.advance(seconds)``. Every expiry, token lifetime, cache
    and request budget reads it, so no test patches ``time`` in a module."""
    import time

    from chalicelib import clock

    fixed = clock.FixedClock(int(time.time()))
    previous = clock.install(fixed)
    yield fixed
    clock.install(previous)


@pytest.fixture()
def client(app):
    from chalice.test import Client

    with Client(app, stage_name="local", project_dir=str(ROOT)) as test_client:
        yield test_client


class Api:
    """Management API calls through Chalice's test client, Auth0-style."""

    def __init__(self, client, token: str):
        self.client = client
        self.token = token

    def call(self, method: str, path: str, body=None, token: str | None = "default",
             headers: dict | None = None):
        all_headers = {}
        if token == "default":
            token = self.token
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        payload = None
        if body is not None:
            all_headers["Content-Type"] = "application/json"
            payload = body if isinstance(body, (str, bytes)) else json.dumps(body)
        all_headers.update(headers or {})
        response = getattr(self.client.http, method.lower())(path, headers=all_headers,
                                                             body=payload)
        response.data = json.loads(response.body) if response.body else None
        return response


def get_token(client, client_id=ADMIN_CLIENT_ID, client_secret=ADMIN_CLIENT_SECRET,
              audience="http://127.0.0.1:8000/api/v2/", scope=None):
    form = {"grant_type": "client_credentials", "client_id": client_id,
            "client_secret": client_secret, "audience": audience}
    if scope is not None:
        form["scope"] = scope
    from urllib.parse import urlencode

    response = client.http.post("/oauth/token", body=urlencode(form),
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    return response


@pytest.fixture()
def admin_token(client):
    response = get_token(client)
    assert response.status_code == 200, response.body
    return json.loads(response.body)["access_token"]


@pytest.fixture()
def api(client, admin_token):
    return Api(client, admin_token)


def token_with_scopes(client, scopes: str) -> str:
    response = get_token(client, scope=scopes)
    assert response.status_code == 200, response.body
    return json.loads(response.body)["access_token"]
