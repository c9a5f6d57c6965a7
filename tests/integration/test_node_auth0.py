"""node-auth0 (the `auth0` npm package, v7: `ManagementClient`) against the broker served as `make run
HTTPS=1` serves it: tests/tools/node_auth0.mjs drives the SDK (its own client-credentials token
provider, connections, clients, enablement, both kinds of paging, deletion) and prints what every
call returned; this test checks that output and, through the API, that the broker's state matches.
"""

from __future__ import annotations

import json
import secrets

import pytest

from tests.support.idp import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.tools.harness import Api, run_node


@pytest.fixture(scope="module")
def api(https_stack) -> Api:
    return Api(https_stack)


@pytest.fixture(scope="module")
def sdk_run(https_stack, oidc_idp, api):
    """Run the script once; the tests below read its output. Leaves nothing behind."""
    prefix = "sdk" + secrets.token_hex(3)
    config = {
        "domain": https_stack.domain,
        "clientId": https_stack.admin_client_id,
        "clientSecret": https_stack.admin_client_secret,
        "prefix": prefix,
        "idp": {"issuer": oidc_idp.issuer, "clientId": DEFAULT_CLIENT_ID,
                "clientSecret": DEFAULT_CLIENT_SECRET},
    }
    done = run_node(https_stack, "node_auth0.mjs", json.dumps(config))
    try:
        out = json.loads(done.stdout or "{}")
    except json.JSONDecodeError:
        out = {}
    assert done.returncode == 0 and "error" not in out, (
        f"node_auth0.mjs failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}\n"
        + https_stack.output()[-4000:])
    yield prefix, out
    for path in (f"connections/{out['discoveredCreated']['id']}",
                 f"clients/{out['clientCreated']['client_id']}"):
        api.request("DELETE", path)


def test_connections_created_read_and_updated(sdk_run, api, oidc_idp):
    prefix, out = sdk_run
    created = out["discoveredCreated"]
    assert created["id"].startswith("con_") and created["name"] == f"{prefix}-disc"
    assert created["options"]["issuer"] == oidc_idp.issuer
    assert created["options"]["token_endpoint"] and created["options"]["jwks_uri"]
    assert "client_secret" not in created["options"]
    assert out["discoveredRead"]["id"] == created["id"]
    assert out["explicitCreated"]["options"]["authorization_endpoint"] == f"{oidc_idp.issuer}/auth"

    updated = out["discoveredUpdated"]
    assert updated["display_name"] == "Renamed IdP"
    assert updated["options"]["scope"] == "openid profile email offline_access"
    stored = api.get(f"connections/{created['id']}")
    assert stored["display_name"] == "Renamed IdP"
    assert stored["options"]["scope"] == "openid profile email offline_access"
    assert "client_secret" not in stored["options"]


def test_clients_created_read_and_updated(sdk_run, api):
    prefix, out = sdk_run
    created = out["clientCreated"]
    assert created["client_secret"], "create shows the secret once"
    assert "client_secret" not in out["clientRead"]
    assert out["clientUpdated"]["name"] == f"{prefix}-app-renamed"
    stored = api.get(f"clients/{created['client_id']}")
    assert stored["name"] == f"{prefix}-app-renamed"
    assert stored["callbacks"] == ["https://app.example.com/callback", "https://app.example.com/other"]


def test_enablement_through_both_apis(sdk_run, api):
    _, out = sdk_run
    app, spare = out["clientCreated"]["client_id"], out["spareCreated"]["client_id"]
    # connections.clients.update, read back with take=1: two pages joined by `next`.
    assert sorted(out["enabledClients"]) == sorted([app, spare])
    assert out["enabledClientsPages"] == 2
    discovered = out["discoveredCreated"]["id"]
    # the spare client was deleted since: the enablement went with it
    assert api.enabled_client_ids(discovered) == {app}
    assert api.get(f"connections/{discovered}")["enabled_clients"] == [app]
    # Auth0's deprecated enabled_clients list, on PATCH
    assert out["explicitEnabled"]["enabled_clients"] == [app]


def test_checkpoint_paging_of_connections(sdk_run, api):
    prefix, out = sdk_run
    names = out["connectionNames"]
    assert len(names) == len(set(names)), f"a connection came twice across pages: {names}"
    assert {f"{prefix}-disc", f"{prefix}-explicit"} <= set(names)
    assert out["connectionPages"] >= len(names)  # take=1: one connection per page
    [only] = out["connectionsByName"]
    assert only == {"id": out["explicitCreated"]["id"], "name": f"{prefix}-explicit"}  # fields=id,name
    assert {f"{prefix}-disc", f"{prefix}-explicit"} <= set(out["oidcConnectionNames"])
    assert out["noSamlConnections"] == 0


def test_offset_paging_of_clients_with_totals(sdk_run, api):
    _, out = sdk_run
    first = out["clientsFirstPage"]
    assert (first["start"], first["limit"], len(first["clients"])) == (0, 1, 1)
    ids = out["clientIds"]
    assert len(ids) == len(set(ids)) == first["total"]
    assert {out["clientCreated"]["client_id"], out["spareCreated"]["client_id"]} <= set(ids)


def test_deleted_objects_answer_404(sdk_run, api):
    _, out = sdk_run
    assert out["deletedConnectionStatus"] == 404
    assert out["deletedClientStatus"] == 404
    assert api.request("GET", f"connections/{out['explicitCreated']['id']}").status_code == 404
    assert api.request("GET", f"clients/{out['spareCreated']['client_id']}").status_code == 404
