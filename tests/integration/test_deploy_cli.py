"""The Auth0 Deploy CLI (`a0deploy`, auth0-deploy-cli 8.x) against the broker served as `make run
HTTPS=1` serves it, with the bootstrap admin's client credentials, as a team migrating from Auth0
runs it in CI: import tests/tools/tenant.yaml (two oidc connections, two applications, one API),
export the tenant to YAML, import that export back, and check that the second import changed
nothing (every object as the API returns it, `updated_at` aside).

One import costs about half a minute of CPU: the CLI compiles its whole tenant JSON schema each time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support.idp import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.tools.harness import TOOLS, Api, run_node

A0DEPLOY = str(TOOLS / "node_modules" / ".bin" / "a0deploy")
TENANT = TOOLS / "tenant.yaml"
CONNECTIONS = {"tools-idp-discovered", "tools-idp-explicit"}
CLIENTS = {"Tools web app", "Tools worker"}
API_IDENTIFIER = "https://api.tools.example.com/"


def _a0deploy(stack, config: Path, *args: str) -> None:
    done = run_node(stack, A0DEPLOY, *args, "--config_file", str(config))
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"a0deploy {args[0]} failed (exit {done.returncode}):\n{output}"


def _snapshot(api: Api) -> dict:
    """The tenant's objects as the API returns them, keyed by name, `updated_at` left out."""
    def strip(item: dict) -> dict:
        return {key: value for key, value in item.items() if key != "updated_at"}

    clients = {c["name"]: strip(c) for c in api.every("clients", "clients") if c["name"] in CLIENTS}
    connections = {}
    for connection in api.every("connections", "connections"):
        if connection["name"] in CONNECTIONS:
            connections[connection["name"]] = dict(
                strip(connection), enabled=sorted(api.enabled_client_ids(connection["id"])))
    servers = {s["identifier"]: strip(s) for s in api.every("resource-servers", "resource_servers")
               if s["identifier"] == API_IDENTIFIER}
    return {"clients": clients, "connections": connections, "resource_servers": servers}


@pytest.fixture(scope="module")
def deploy(https_stack, oidc_idp, tmp_path_factory):
    """Import, export, import the export; the tests read what each step left."""
    work = tmp_path_factory.mktemp("a0deploy")
    config = work / "config.json"
    config.write_text(json.dumps({
        "AUTH0_DOMAIN": https_stack.domain,
        "AUTH0_CLIENT_ID": https_stack.admin_client_id,
        "AUTH0_CLIENT_SECRET": https_stack.admin_client_secret,
        "AUTH0_ALLOW_DELETE": False,
        "AUTH0_INCLUDED_ONLY": ["connections", "clients", "resourceServers"],
        "AUTH0_KEYWORD_REPLACE_MAPPINGS": {"IDP_ISSUER": oidc_idp.issuer,
                                           "IDP_CLIENT_SECRET": DEFAULT_CLIENT_SECRET},
    }))
    api = Api(https_stack)
    _a0deploy(https_stack, config, "import", "--input_file", str(TENANT))
    imported = _snapshot(api)
    _a0deploy(https_stack, config, "export", "--format", "yaml", "--output_folder", str(work / "export"))
    exported = yaml.safe_load((work / "export" / "tenant.yaml").read_text())
    # The export holds whatever else this test session created: import back only this tenant's part.
    own = {
        "connections": [c for c in exported["connections"] if c["name"] in CONNECTIONS],
        "clients": [c for c in exported["clients"] if c["name"] in CLIENTS],
        "resourceServers": [s for s in exported["resourceServers"] if s["identifier"] == API_IDENTIFIER],
    }
    (work / "again.yaml").write_text(yaml.safe_dump(own))
    _a0deploy(https_stack, config, "import", "--input_file", str(work / "again.yaml"))
    yield {"api": api, "imported": imported, "exported": own, "again": _snapshot(api)}
    for connection in imported["connections"].values():
        api.request("DELETE", f"connections/{connection['id']}")
    for client in imported["clients"].values():
        api.request("DELETE", f"clients/{client['client_id']}")
    for server in imported["resource_servers"].values():
        api.request("DELETE", f"resource-servers/{server['id']}")


def test_import_creates_the_tenant(deploy, oidc_idp):
    state = deploy["imported"]
    assert set(state["connections"]) == CONNECTIONS and set(state["clients"]) == CLIENTS
    web, worker = state["clients"]["Tools web app"], state["clients"]["Tools worker"]
    assert web["app_type"] == "regular_web" and web["callbacks"] == ["https://app.tools.example.com/callback"]
    assert web["allowed_logout_urls"] == ["https://app.tools.example.com/"]
    assert worker["app_type"] == "non_interactive" and worker["grant_types"] == ["client_credentials"]

    discovered = state["connections"]["tools-idp-discovered"]
    assert discovered["display_name"] == "Tools IdP (discovery)"
    assert discovered["options"]["issuer"] == oidc_idp.issuer  # fetched from the discovery URL
    assert discovered["options"]["token_endpoint"]
    assert "client_secret" not in discovered["options"]
    explicit = state["connections"]["tools-idp-explicit"]
    assert explicit["options"]["type"] == "front_channel"
    assert explicit["options"]["jwks_uri"] == f"{oidc_idp.issuer}/jwks"
    # enabled_clients in the YAML name applications; the CLI maps them to ids
    assert discovered["enabled"] == [web["client_id"]]
    assert explicit["enabled"] == sorted([web["client_id"], worker["client_id"]])

    server = state["resource_servers"][API_IDENTIFIER]
    assert server["name"] == "Tools API" and server["token_lifetime"] == 3600
    assert [scope["value"] for scope in server["scopes"]] == ["read:things", "write:things"]


def test_export_holds_the_same_objects(deploy, oidc_idp):
    exported = deploy["exported"]
    connections = {c["name"]: c for c in exported["connections"]}
    assert set(connections) == CONNECTIONS
    assert connections["tools-idp-discovered"]["enabled_clients"] == ["Tools web app"]
    assert sorted(connections["tools-idp-explicit"]["enabled_clients"]) == ["Tools web app", "Tools worker"]
    assert connections["tools-idp-discovered"]["options"]["discovery_url"] == oidc_idp.issuer
    assert connections["tools-idp-discovered"]["options"]["client_id"] == DEFAULT_CLIENT_ID
    assert "client_secret" not in connections["tools-idp-discovered"]["options"]
    clients = {c["name"]: c for c in exported["clients"]}
    assert set(clients) == CLIENTS
    assert clients["Tools web app"]["callbacks"] == ["https://app.tools.example.com/callback"]
    assert all("client_secret" not in c and "client_id" not in c for c in clients.values())
    [server] = exported["resourceServers"]
    assert server["name"] == "Tools API"
    assert [s["value"] for s in server["scopes"]] == ["read:things", "write:things"]


def test_importing_the_export_again_changes_nothing(deploy):
    assert deploy["again"] == deploy["imported"]
