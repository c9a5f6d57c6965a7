"""SPEC §2.4: a rotation never makes a fresh token fail in another warm container.

The app under test is "container A". "Container B" is the same code with a secret store of its
own whose cache still holds the key set from before the rotation (a warm Lambda container that
read it minutes ago)."""
from __future__ import annotations

import base64
import json
import secrets

import pytest

from tests.conftest import get_token


def _kid(token: str) -> str:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))["kid"]


def _name() -> str:
    from chalicelib.secrets import signing_keys_secret_name
    from chalicelib.settings import get_settings

    return signing_keys_secret_name(get_settings().secret_prefix)


@pytest.fixture()
def restore_signing_keys():
    """Put the key set back afterwards (other tests count its keys), through container A."""
    from chalicelib.secrets import secret_store

    container_a = secret_store()
    saved = container_a.get(_name())
    yield saved
    container_a.put(_name(), saved)


class _CountingClient:
    def __init__(self, client, reads: list) -> None:
        self._client, self._reads = client, reads

    def get_secret_value(self, **kwargs):
        self._reads.append(kwargs["SecretId"])
        return self._client.get_secret_value(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def _switch_to_stale_container(monkeypatch, stale_key_set: str) -> list:
    """From here on requests run in container B; returns the list of its Secrets Manager reads."""
    from chalicelib import aws, secrets as secrets_module

    reads: list = []
    container_b = secrets_module.SecretStore(
        client_factory=lambda: _CountingClient(aws.client("secretsmanager"), reads))
    container_b._remember(_name(), stale_key_set)
    monkeypatch.setattr(secrets_module, "_store", container_b)
    return reads


def _fresh_token(client) -> str:
    response = get_token(client)
    assert response.status_code == 200, response.body
    return json.loads(response.body)["access_token"]


def test_rotate_updates_its_own_container_at_once(client, api, restore_signing_keys):
    rotated = api.call("POST", "/api/v2/keys/signing/rotate")
    assert rotated.status_code == 201, rotated.data
    assert _kid(_fresh_token(client)) == rotated.data["kid"]
    current = [k["kid"] for k in api.call("GET", "/api/v2/keys/signing").data if k["current"]]
    assert current == [rotated.data["kid"]]
    published = json.loads(client.http.get("/.well-known/jwks.json").body)
    assert published["keys"][0]["kid"] == rotated.data["kid"]


def test_after_a_rotation_a_new_token_works_in_a_stale_container(client, api, restore_signing_keys,
                                                                 monkeypatch):
    rotated = api.call("POST", "/api/v2/keys/signing/rotate")
    assert rotated.status_code == 201, rotated.data
    token = _fresh_token(client)
    assert _kid(token) == rotated.data["kid"]
    reads = _switch_to_stale_container(monkeypatch, restore_signing_keys)
    response = api.call("GET", "/api/v2/keys/signing", token=token)
    assert response.status_code == 200, response.body
    # The new current key was `next` in B's copy: accepted without going to Secrets Manager.
    assert _name() not in reads


def test_after_two_rotations_a_stale_container_rereads_once(client, api, restore_signing_keys,
                                                            monkeypatch):
    for _ in range(2):
        assert api.call("POST", "/api/v2/keys/signing/rotate").status_code == 201
        api.token = _fresh_token(client)
    token = api.token  # signed by a key created after B cached the set
    reads = _switch_to_stale_container(monkeypatch, restore_signing_keys)
    response = api.call("GET", "/api/v2/keys/signing", token=token)
    assert response.status_code == 200, response.body
    assert reads.count(_name()) == 1
    # A flood of unknown kids after that: refused, and no further Secrets Manager read.
    header, body, signature = token.split(".")
    for _ in range(20):
        forged = json.loads(base64.urlsafe_b64decode(header + "==="))
        forged["kid"] = secrets.token_urlsafe(16)
        forged_header = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
        refused = api.call("GET", "/api/v2/keys/signing", token=f"{forged_header}.{body}.{signature}")
        assert refused.status_code == 401, refused.body
        assert json.loads(refused.body)["statusCode"] == 401
    assert reads.count(_name()) == 1
    assert api.call("GET", "/api/v2/keys/signing", token=token).status_code == 200
