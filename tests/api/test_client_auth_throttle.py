"""SPEC §8: repeated failed client authentications for one client_id are slowed down (429)."""
from __future__ import annotations

import json

from chalicelib.provider import client_auth
from tests.conftest import get_token

AUDIENCE = "https://api.example.com/"


def _grant(api, machine) -> None:
    if not [s for s in api.call("GET", "/api/v2/resource-servers").data
            if s["identifier"] == AUDIENCE]:
        api.call("POST", "/api/v2/resource-servers", body={
            "identifier": AUDIENCE, "scopes": [{"value": "read:x"}]})
    grant = api.call("POST", "/api/v2/client-grants", body={
        "client_id": machine["client_id"], "audience": AUDIENCE, "scope": ["read:x"]})
    assert grant.status_code == 201, grant.data


def test_failed_authentications_are_slowed_down(client, api, monkeypatch):
    machine = api.call("POST", "/api/v2/clients", body={"name": "brute",
                                                        "app_type": "non_interactive"}).data
    _grant(api, machine)
    monkeypatch.setattr(client_auth, "FAILURE_LIMIT", 3)
    for _ in range(3):
        response = get_token(client, machine["client_id"], "wrong",
                             audience="https://api.example.com/")
        assert response.status_code == 401
    blocked = get_token(client, machine["client_id"], machine["client_secret"],
                        audience="https://api.example.com/")
    assert blocked.status_code == 429, blocked.body
    assert int(blocked.headers["Retry-After"]) >= 1
    assert json.loads(blocked.body)["error"] == "too_many_requests"
    # another client is not affected
    other = api.call("POST", "/api/v2/clients", body={"name": "other",
                                                      "app_type": "non_interactive"}).data
    assert get_token(client, other["client_id"], "wrong").status_code == 401


def test_window_expiry_lets_the_client_in_again(client, api, monkeypatch):
    machine = api.call("POST", "/api/v2/clients", body={"name": "brute2",
                                                        "app_type": "non_interactive"}).data
    _grant(api, machine)
    monkeypatch.setattr(client_auth, "FAILURE_LIMIT", 2)
    for _ in range(2):
        get_token(client, machine["client_id"], "wrong", audience="https://api.example.com/")
    assert get_token(client, machine["client_id"], machine["client_secret"],
                     audience="https://api.example.com/").status_code == 429
    # next window: the clock moves on (no sleeping)
    monkeypatch.setattr(client_auth, "_window", lambda now: int(now // 60) + 1)
    assert get_token(client, machine["client_id"], machine["client_secret"],
                     audience="https://api.example.com/").status_code == 200


def test_admin_client_is_slowed_down_too(client, monkeypatch):
    from tests.conftest import ADMIN_CLIENT_SECRET

    monkeypatch.setattr(client_auth, "FAILURE_LIMIT", 2)
    monkeypatch.setattr(client_auth, "_window", lambda now: 10**9)  # a window of its own
    for _ in range(2):
        assert get_token(client, client_secret="wrong").status_code == 401
    assert get_token(client, client_secret=ADMIN_CLIENT_SECRET).status_code == 429
    monkeypatch.setattr(client_auth, "_window", lambda now: 10**9 + 1)
    assert get_token(client, client_secret=ADMIN_CLIENT_SECRET).status_code == 200
