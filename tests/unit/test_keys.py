"""The broker's signing keys across containers (SPEC §2.4): two containers are two secret stores
(two independent caches) over one Secrets Manager (moto, in process: nothing leaves the machine)."""
from __future__ import annotations

import base64
import json
import secrets
from types import SimpleNamespace

import pytest

from chalicelib import keys
from chalicelib.keys import TokenRejected, rotate, sign_jwt, verify_jwt
from chalicelib.keysets import b64url
from chalicelib.secrets import SecretStore

SETTINGS = SimpleNamespace(secret_prefix="unit-test/", issuer="https://broker.example/")
CLAIMS = {"iss": "https://broker.example/", "sub": "someone", "aud": "api"}


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


class CountingClient:
    """A Secrets Manager client that counts the reads its container makes."""

    def __init__(self, client) -> None:
        self._client = client
        self.reads = 0

    def get_secret_value(self, **kwargs):
        self.reads += 1
        return self._client.get_secret_value(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


class Container:
    def __init__(self, client, clock: Clock) -> None:
        self.client = CountingClient(client)
        self.clock = clock
        self.store = SecretStore(client_factory=lambda: self.client, clock=clock)


@pytest.fixture
def aws(aws_endpoint, monkeypatch):
    """Secrets Manager on the suite's moto server, under a prefix of this test's own. (Not moto's
    in-process mock: leaving it resets every moto backend of the process, the shared server's
    tables included, and the tests that run after this one find no table.)"""
    import uuid

    import boto3

    settings = SimpleNamespace(secret_prefix=f"unit-test/{uuid.uuid4().hex[:12]}/",
                               issuer=SETTINGS.issuer)
    monkeypatch.setattr(keys, "get_settings", lambda: settings)
    yield boto3.client("secretsmanager", endpoint_url=aws_endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def containers(aws):
    """Container A and container B, both warm: each has read (and cached) the same key set."""
    clock = Clock()
    a, b = Container(aws, clock), Container(aws, clock)
    keys.load_keys(a.store)
    keys.load_keys(b.store)
    a.client.reads = b.client.reads = 0
    return a, b


def _kid(token: str) -> str:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))["kid"]


def _forged_kid_token(kid: str) -> str:
    header = base64.urlsafe_b64encode(json.dumps(
        {"alg": "RS256", "typ": "JWT", "kid": kid}).encode()).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(CLAIMS).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{base64.urlsafe_b64encode(secrets.token_bytes(256)).rstrip(b'=').decode()}"


def test_a_token_signed_after_one_rotation_verifies_in_a_stale_container(containers):
    a, b = containers
    rotate(a.store)
    token = sign_jwt(CLAIMS, store=a.store)
    # B still caches the set from before the rotation, where the new current key is `next`.
    assert verify_jwt(token, store=b.store).claims["sub"] == "someone"
    assert b.client.reads == 0  # accepted from B's cache, no re-read needed


def test_a_token_signed_after_two_rotations_verifies_after_one_reread(containers):
    a, b = containers
    rotate(a.store)
    rotate(a.store)
    token = sign_jwt(CLAIMS, store=a.store)
    assert _kid(token) not in {k.kid for k in keys.signing_keys(b.store)}  # unknown to B's cache
    assert verify_jwt(token, store=b.store).claims["sub"] == "someone"
    assert b.client.reads == 1
    # B now holds the fresh set: the next token costs nothing.
    assert verify_jwt(sign_jwt(CLAIMS, store=a.store), store=b.store)
    assert b.client.reads == 1


def test_random_kids_cost_at_most_one_read_per_interval(containers):
    _, b = containers
    for _ in range(500):
        with pytest.raises(TokenRejected, match="signing key"):
            verify_jwt(_forged_kid_token(b64url(secrets.token_bytes(16))), store=b.store)
    assert b.client.reads == 1
    b.clock.now += keys.REREAD_SECONDS - 0.5
    with pytest.raises(TokenRejected):
        verify_jwt(_forged_kid_token("another-random-kid"), store=b.store)
    assert b.client.reads == 1
    b.clock.now += 1
    with pytest.raises(TokenRejected):
        verify_jwt(_forged_kid_token("yet-another-random-kid"), store=b.store)
    assert b.client.reads == 2


def test_a_random_kid_flood_still_lets_a_real_new_key_in_once_the_interval_passes(containers):
    a, b = containers
    with pytest.raises(TokenRejected):
        verify_jwt(_forged_kid_token("forged"), store=b.store)  # spends B's re-read
    rotate(a.store)
    rotate(a.store)
    token = sign_jwt(CLAIMS, store=a.store)
    with pytest.raises(TokenRejected):
        verify_jwt(token, store=b.store)  # inside the interval: refused, no extra read
    assert b.client.reads == 1
    b.clock.now += keys.REREAD_SECONDS
    assert verify_jwt(token, store=b.store)
    assert b.client.reads == 2


@pytest.mark.parametrize("kid", [None, "", 7, ["k"], "k" * 129])
def test_malformed_kids_are_refused_without_a_read(containers, kid):
    _, b = containers
    header = {"alg": "RS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenRejected, match="signing key"):
        verify_jwt(f"{encoded}.e30.c2ln", store=b.store)
    assert b.client.reads == 0


def test_a_retired_key_is_refused_even_after_the_reread(containers):
    a, _ = containers
    old = sign_jwt(CLAIMS, store=a.store)
    rotate(a.store)
    assert verify_jwt(old, store=a.store)  # previous: still verifies
    rotate(a.store)
    a.client.reads = 0
    with pytest.raises(TokenRejected, match="signing key"):
        verify_jwt(old, store=a.store)  # retired by the second rotation, absent from a fresh read
    assert a.client.reads == 1


def test_a_forged_signature_under_a_next_kid_is_refused(containers):
    a, _ = containers
    next_kid = next(k.kid for k in keys.signing_keys(a.store) if k.status == "next")
    with pytest.raises(TokenRejected, match="signature"):
        verify_jwt(_forged_kid_token(next_kid), store=a.store)


def test_rotation_updates_its_own_container_at_once(containers):
    a, _ = containers
    promoted = rotate(a.store)
    reads = a.client.reads
    assert keys.signing_keys(a.store)[0].kid  # served from A's cache
    token = sign_jwt(CLAIMS, store=a.store)
    assert _kid(token) == promoted.kid
    assert a.client.reads == reads


def test_rotation_in_a_stale_container_builds_on_the_latest_set(containers):
    a, b = containers
    rotate(a.store)
    after_a = {k.status: k.kid for k in keys.signing_keys(a.store)}
    promoted = rotate(b.store)  # B's cache predates A's rotation
    assert promoted.kid == after_a["next"]
    statuses = {k.kid: k.status for k in keys.signing_keys(b.store)}
    assert statuses[after_a["current"]] == "previous"
    assert statuses[after_a["next"]] == "current"
    assert after_a["previous"] not in statuses


def test_connection_key_rotation_in_a_stale_container_builds_on_the_latest_set(containers,
                                                                                 monkeypatch):
    """The per-connection private_key_jwt keys use the same rotation: the same rule holds."""
    from chalicelib import secrets as secrets_module
    from chalicelib.management import connection_keys

    monkeypatch.setattr(connection_keys, "get_settings", keys.get_settings)  # this test's prefix
    a, b = containers
    connection = {"id": "con_unit", "name": "corp",
                  "options": {"token_endpoint_auth_method": "private_key_jwt"}}
    monkeypatch.setattr(secrets_module, "_store", a.store)
    connection_keys.ensure_keys(connection)
    monkeypatch.setattr(secrets_module, "_store", b.store)
    connection_keys.ensure_keys(connection)  # B caches the set too
    monkeypatch.setattr(secrets_module, "_store", a.store)
    connection_keys.rotate(connection, None)
    after_a = {k.status: k.kid for k in connection_keys.list_keys(connection)}
    monkeypatch.setattr(secrets_module, "_store", b.store)
    connection_keys.rotate(connection, None)  # B's cache predates A's rotation
    statuses = {k.kid: k.status for k in connection_keys.list_keys(connection)}
    assert statuses[after_a["next"]] == "current"
    assert statuses[after_a["current"]] == "previous"
    assert after_a["previous"] not in statuses
