"""Auth0's own Python SDK (auth0-python 6.x, Fern-generated) against the stack `make run` starts.

A customer points the SDK at the broker and manages connections and applications with it exactly as
against an Auth0 tenant (SPEC §0, §2). Everything goes over real HTTP on 127.0.0.1: scripts/run_local.py
(moto + chalice local) and a real upstream OpenID Provider (tests/idp).

Every SDK call goes through an httpx client that only records the exchanges, so a failure shows the
exact request and response the SDK saw.
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
import requests
from auth0.authentication import GetToken
from auth0.authentication.exceptions import Auth0Error
from auth0.management import Auth0
from auth0.management.core.api_error import ApiError
from auth0.management.errors import NotFoundError

from tests.support.idp import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

SCOPE = "openid profile email"


class Exchanges:
    """httpx response hook: remembers every request/response the SDK made (for failure messages)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        body = request.content.decode("utf-8", "replace") if request.content else ""
        self.items.append(
            f"{request.method} {request.url}\n  request body: {body or '-'}\n"
            f"  -> {response.status_code} {response.text[:4000]}"
        )

    def last(self, n: int = 3) -> str:
        return "\n".join(self.items[-n:]) or "(no HTTP exchange recorded)"


def _dump(model) -> dict:
    """An SDK response model as a plain dict (extra fields the SDK does not model included)."""
    return json.loads(model.json()) if hasattr(model, "json") else dict(model)


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _options(idp, **extra) -> dict:
    options = {
        "discovery_url": idp.issuer,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "type": "back_channel",
        "scope": SCOPE,
    }
    options.update(extra)
    return options


@pytest.fixture(scope="module")
def discovery(oidc_idp) -> dict:
    response = requests.get(oidc_idp.discovery_url, timeout=10)
    response.raise_for_status()
    return response.json()


def _raw_token(local_stack) -> dict:
    response = requests.post(
        f"{local_stack.base_url}/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": local_stack.admin_client_id,
            "client_secret": local_stack.admin_client_secret,
            "audience": local_stack.management_audience,
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text + "\n" + local_stack.output()
    return response.json()


@pytest.fixture(scope="module")
def access_token(local_stack) -> str:
    """A management token by plain HTTP, so that the management tests below do not depend on the
    SDK's token call (test_sdk_get_token checks that one on its own)."""
    return _raw_token(local_stack)["access_token"]


@pytest.fixture(scope="module")
def exchanges() -> Exchanges:
    return Exchanges()


@pytest.fixture(scope="module")
def mgmt(local_stack, access_token, exchanges) -> Auth0:
    # The same client the SDK builds by default (timeout 60, follow redirects), plus the recorder.
    http = httpx.Client(timeout=60, follow_redirects=True, event_hooks={"response": [exchanges]})
    return Auth0(base_url=f"{local_stack.base_url}/api/v2", token=access_token, httpx_client=http)


def _raw_create(local_stack, access_token, idp, name: str) -> dict:
    """Setup outside the SDK (so an SDK create problem does not hide the other checks)."""
    response = requests.post(
        f"{local_stack.base_url}/api/v2/connections",
        json={"name": name, "strategy": "oidc", "options": _options(idp)},
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


# --- raw HTTP sanity first: if these fail, the SDK tests cannot say anything useful --------------


def test_raw_http_token_and_management_call(local_stack):
    assert local_stack.issuer == f"{local_stack.base_url}/"
    body = _raw_token(local_stack)
    assert body["token_type"] == "Bearer"
    listed = requests.get(
        f"{local_stack.base_url}/api/v2/connections",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=30,
    )
    assert listed.status_code == 200, listed.text
    assert isinstance(listed.json(), list)
    denied = requests.get(f"{local_stack.base_url}/api/v2/connections", timeout=30)
    assert denied.status_code == 401, denied.text
    assert denied.json()["statusCode"] == 401


# --- the customer path through the SDK ----------------------------------------------------------


def test_sdk_get_token(local_stack):
    """What a customer does first: a management token through the SDK's authentication API.

    auth0-python sends a JSON body {client_id, audience, grant_type, organization: null,
    client_secret}."""
    get_token = GetToken(
        domain=local_stack.domain,
        client_id=local_stack.admin_client_id,
        client_secret=local_stack.admin_client_secret,
        protocol="http",
    )
    try:
        token = get_token.client_credentials(audience=f"{local_stack.base_url}/api/v2/")
    except Auth0Error as exc:
        pytest.fail(
            f"GetToken.client_credentials: POST {local_stack.base_url}/oauth/token -> "
            f"{exc.status_code} {exc.error_code}: {exc.message}",
            pytrace=False,
        )
    assert token["token_type"] == "Bearer", token
    assert token["expires_in"] == 86400, token
    for scope in ("create:connections", "read:connections", "update:connections",
                  "delete:connections", "read:connections_options", "create:clients"):
        assert scope in token["scope"].split(), token
    # The SDK's token is accepted by the management API (404 for a missing connection, not 401).
    mgmt = Auth0(base_url=f"{local_stack.base_url}/api/v2", token=token["access_token"])
    with pytest.raises(NotFoundError):
        mgmt.connections.get("con_" + "0" * 16)


def test_sdk_create_connection_discovers_endpoints_and_hides_secret(mgmt, exchanges, oidc_idp, discovery):
    name = _name("sdk-create")
    try:
        created = mgmt.connections.create(name=name, strategy="oidc", options=_options(oidc_idp))
    except ApiError as exc:
        pytest.fail(f"connections.create raised {exc.status_code}:\n{exchanges.last()}", pytrace=False)
    except Exception as exc:  # e.g. a pydantic model that cannot parse the response
        pytest.fail(f"connections.create failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    data = _dump(created)
    assert data["id"].startswith("con_"), data
    assert data["name"] == name
    assert data["strategy"] == "oidc"
    options = data["options"]
    assert options["authorization_endpoint"] == discovery["authorization_endpoint"], options
    assert options["token_endpoint"] == discovery["token_endpoint"], options
    assert options["jwks_uri"] == discovery["jwks_uri"], options
    assert options["client_id"] == DEFAULT_CLIENT_ID
    assert "client_secret" not in options or options["client_secret"] is None, options
    assert DEFAULT_CLIENT_SECRET not in exchanges.items[-1].split("-> ", 1)[1]

    fetched = _dump(mgmt.connections.get(data["id"]))
    assert fetched["id"] == data["id"] and fetched["name"] == name
    assert fetched["options"]["token_endpoint"] == discovery["token_endpoint"]
    assert "client_secret" not in fetched["options"] or fetched["options"]["client_secret"] is None
    mgmt.connections.delete(data["id"])


def test_sdk_get_connection(mgmt, exchanges, local_stack, access_token, oidc_idp, discovery):
    raw = _raw_create(local_stack, access_token, oidc_idp, _name("sdk-get"))
    try:
        fetched = mgmt.connections.get(raw["id"])
    except Exception as exc:
        pytest.fail(f"connections.get failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    data = _dump(fetched)
    assert data["id"] == raw["id"]
    assert data["name"] == raw["name"]
    assert data["options"]["jwks_uri"] == discovery["jwks_uri"]
    assert "client_secret" not in data["options"] or data["options"]["client_secret"] is None


def test_sdk_list_connections_pager_and_name_filter(mgmt, exchanges, local_stack, access_token, oidc_idp):
    first = _raw_create(local_stack, access_token, oidc_idp, _name("sdk-list-a"))
    second = _raw_create(local_stack, access_token, oidc_idp, _name("sdk-list-b"))
    try:
        all_ids = [connection.id for connection in mgmt.connections.list()]
    except Exception as exc:
        pytest.fail(f"connections.list() failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    assert first["id"] in all_ids and second["id"] in all_ids, (all_ids, exchanges.last())
    assert len(all_ids) == len(set(all_ids)), all_ids

    try:
        # Small pages: the pager must walk them all (checkpoint paging: take + from/next).
        paged_ids = [connection.id for connection in mgmt.connections.list(take=1)]
    except Exception as exc:
        pytest.fail(f"connections.list(take=1) failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    assert sorted(paged_ids) == sorted(all_ids), (paged_ids, exchanges.last(6))

    try:
        named = list(mgmt.connections.list(name=first["name"]))
    except Exception as exc:
        pytest.fail(f"connections.list(name=) failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    assert [connection.id for connection in named] == [first["id"]], exchanges.last()
    assert named[0].name == first["name"]


def test_sdk_update_connection(mgmt, exchanges, local_stack, access_token, oidc_idp, discovery):
    raw = _raw_create(local_stack, access_token, oidc_idp, _name("sdk-update"))
    options = _options(oidc_idp, scope="openid profile email offline_access")
    del options["client_secret"]  # absent: the broker keeps the stored secret (SPEC §2.2)
    try:
        updated = mgmt.connections.update(raw["id"], display_name="Updated by the SDK", options=options)
    except Exception as exc:
        pytest.fail(f"connections.update failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    data = _dump(updated)
    assert data["id"] == raw["id"]
    assert data["display_name"] == "Updated by the SDK"
    assert "offline_access" in data["options"]["scope"].replace(",", " ").split(), data["options"]
    assert data["options"]["token_endpoint"] == discovery["token_endpoint"]
    assert "client_secret" not in data["options"] or data["options"]["client_secret"] is None

    fetched = _dump(mgmt.connections.get(raw["id"]))
    assert fetched["display_name"] == "Updated by the SDK"


def test_sdk_create_client_returns_secret_once(mgmt, exchanges, local_stack):
    callback = f"{local_stack.base_url.replace(str(local_stack.port), '9')}/callback"
    try:
        created = mgmt.clients.create(name=_name("sdk-app"), app_type="regular_web", callbacks=[callback])
    except Exception as exc:
        pytest.fail(f"clients.create failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    data = _dump(created)
    assert data["client_id"], data
    assert data["client_secret"], data
    assert data["app_type"] == "regular_web"
    assert data["callbacks"] == [callback]
    try:
        fetched = _dump(mgmt.clients.get(data["client_id"]))
    except Exception as exc:
        pytest.fail(f"clients.get failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    assert fetched["client_id"] == data["client_id"]
    assert not fetched.get("client_secret"), fetched


def test_sdk_delete_connection_then_get_is_not_found(mgmt, exchanges, local_stack, access_token, oidc_idp):
    raw = _raw_create(local_stack, access_token, oidc_idp, _name("sdk-delete"))
    try:
        assert mgmt.connections.delete(raw["id"]) is None
    except Exception as exc:
        pytest.fail(f"connections.delete failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    with pytest.raises(NotFoundError) as caught:
        mgmt.connections.get(raw["id"])
    assert caught.value.status_code == 404
    assert caught.value.body["errorCode"] == "inexistent_connection", caught.value.body


def test_sdk_reads_log_events(mgmt, exchanges, local_stack):
    """SPEC §9 through auth0-python 6.x: logs.list (search paging; the SDK sends q as search=,
    with include_totals=true and page by page until a page is empty), logs.get and
    users.logs.list. The event comes from a refused client_credentials call naming a client_id
    of this test only (the broker records feccft with the presented client_id, never the
    presented secret)."""
    presented, wrong_secret = _name("sdk-logs-client"), "wrong-" + secrets.token_hex(16)
    refused = requests.post(
        f"{local_stack.base_url}/oauth/token",
        json={"grant_type": "client_credentials", "client_id": presented,
              "client_secret": wrong_secret, "audience": local_stack.management_audience},
        timeout=30,
    )
    assert refused.status_code == 401, refused.text
    try:
        found = [_dump(event) for event in mgmt.logs.list(search=f'client_id:"{presented}"')]
    except Exception as exc:
        pytest.fail(f"logs.list failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    assert [(e["type"], e["client_id"]) for e in found] == [("feccft", presented)], exchanges.last()
    assert wrong_secret not in json.dumps(found)
    log_id = found[0]["log_id"]

    try:
        one = _dump(mgmt.logs.get(log_id))
    except Exception as exc:
        pytest.fail(f"logs.get failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    assert one["log_id"] == log_id and one["type"] == "feccft" and one["date"] == found[0]["date"]
    with pytest.raises(NotFoundError) as caught:
        mgmt.logs.get("900" + "0" * 53)
    assert caught.value.body["errorCode"] == "inexistent_log", caught.value.body

    typed = [_dump(e) for e in mgmt.logs.list(search=f"type:feccft AND client_id:{presented}",
                                              per_page=5, sort="date:-1")]
    assert [e["log_id"] for e in typed] == [log_id], exchanges.last()
    assert list(mgmt.logs.list(search=f"type:seccft AND client_id:{presented}")) == []

    try:  # nothing happened to this user: an empty answer, in the shape the SDK reads
        user_events = list(mgmt.users.logs.list(f"oidc|sdk-logs|{secrets.token_hex(4)}"))
    except Exception as exc:
        pytest.fail(f"users.logs.list failed: {exc!r}\n{exchanges.last()}", pytrace=False)
    assert user_events == []
