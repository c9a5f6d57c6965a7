"""SPEC §7 and the Lambda budget: a warm login makes no Secrets Manager call and no discovery or
JWKS fetch; its DynamoDB calls are counted by operation with botocore events."""
from __future__ import annotations

import collections
import uuid

import pytest
import requests

from chalicelib import aws
from tests.support.flow import (
    CALLBACK,
    callback_url,
    Browser,
    authorize_path,
    deliver_callback,
    idp_login,
    location_params,
    pkce_pair,
    token_request,
)
from tests.support.idp import default_idp_config, start_idp

APP_CALLBACK = "https://app.example.com/callback"


@pytest.fixture(scope="module")
def idp():
    with start_idp(default_idp_config(redirect_uris=[CALLBACK])) as running:
        yield running


class Recorder:
    def __init__(self):
        self.aws = collections.Counter()
        self.urls: list[str] = []

    def on_call(self, model, **_):
        self.aws[f"{model.service_model.service_name}.{model.name}"] += 1


def _login(client, app, connection):
    browser = Browser(client)
    verifier, challenge = pkce_pair()
    start = browser.get(authorize_path(
        client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
        scope="openid profile email offline_access", state="s", nonce="n",
        code_challenge=challenge, code_challenge_method="S256", connection=connection["name"]))
    method, params = idp_login(start.headers["Location"])
    code = location_params(deliver_callback(browser, method, params))["code"]
    tokens = token_request(client, {"grant_type": "authorization_code", "code": code,
                                    "redirect_uri": APP_CALLBACK, "code_verifier": verifier,
                                    "client_id": app["client_id"],
                                    "client_secret": app["client_secret"]})
    assert tokens.status_code == 200, tokens.data


def test_warm_login_makes_no_secrets_manager_or_discovery_calls(api, client, idp, monkeypatch):
    app = api.call("POST", "/api/v2/clients", body={
        "name": "warm", "callbacks": [APP_CALLBACK]}).data
    connection = api.call("POST", "/api/v2/connections", body={
        "name": f"warm-{uuid.uuid4().hex[:6]}", "strategy": "oidc",
        "enabled_clients": [app["client_id"]],
        "options": {"type": "back_channel", "discovery_url": idp.issuer,
                    "client_id": "broker-client", "client_secret": "broker-secret",
                    "token_endpoint_auth_method": "client_secret_basic"}}).data
    idp.register_redirect_uri(callback_url(connection["name"]))
    _login(client, app, connection)  # cold: fills the secret, key and JWKS caches

    recorder = Recorder()
    for service in ("dynamodb", "secretsmanager", "sqs"):
        aws.client(service).meta.events.register("before-call.*.*", recorder.on_call)
    original_send = requests.Session.send

    def recording_send(self, request, **kwargs):
        recorder.urls.append(request.url)
        return original_send(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", recording_send)
    try:
        _login(client, app, connection)
    finally:
        for service in ("dynamodb", "secretsmanager", "sqs"):
            aws.client(service).meta.events.unregister("before-call.*.*", recorder.on_call)
    print("AWS calls per warm login:", dict(recorder.aws))
    assert not [c for c in recorder.aws if c.startswith("secretsmanager.")], recorder.aws
    assert recorder.aws, "the recorder saw no call at all: the hook is broken"
    dynamodb_calls = sum(n for op, n in recorder.aws.items() if op.startswith("dynamodb."))
    assert dynamodb_calls <= 7, recorder.aws  # issue budget: DynamoDB ≤ 7 per warm login
    metadata = connection["options"]["oidc_metadata"]
    fetched = set(recorder.urls)
    assert metadata["jwks_uri"] not in fetched
    assert not [u for u in fetched if u.endswith("/.well-known/openid-configuration")]
    assert metadata["token_endpoint"] in fetched  # the code exchange did happen
    api.call("DELETE", f"/api/v2/connections/{connection['id']}")
