"""Running Auth0's Node tools (installed here by `make deps`: package.json) against a test broker.

The tools build ``https://{domain}`` URLs, so the tests give them the ``https_stack`` fixture's domain
and trust its local CA through ``NODE_EXTRA_CA_CERTS``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

TOOLS = Path(__file__).resolve().parent
NODE_MODULES = TOOLS / "node_modules"
RUN_TIMEOUT_SECONDS = 300  # the Deploy CLI compiles its whole tenant schema on each import


def node_command(*args: str) -> list[str]:
    """``node <args>``, failing the test (not skipping it) when the tools are not installed."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / ".installed").exists():
        pytest.fail("Auth0's Node tools are not installed: run `make deps` (npm ci in tests/tools)",
                    pytrace=False)
    return [node, *args]


def run_node(stack, *args: str, cwd: Path = TOOLS) -> subprocess.CompletedProcess[str]:
    """Run node with the broker's CA trusted and nothing else from the developer's Node setup."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("NODE_", "AUTH0_"))}
    env.update(NODE_EXTRA_CA_CERTS=str(stack.ca_path), NO_COLOR="1", FORCE_COLOR="0")
    return subprocess.run(node_command(*args), cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_SECONDS, check=False)


class Api:
    """The broker's Management API with the bootstrap admin's token (to check what the tools did)."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or CA bundle from the environment: the local CA only
        self.session.verify = str(stack.ca_path)
        response = self.session.post(stack.url("/oauth/token"), timeout=30, json={
            "grant_type": "client_credentials", "client_id": stack.admin_client_id,
            "client_secret": stack.admin_client_secret, "audience": stack.management_audience})
        response.raise_for_status()
        self.session.headers["authorization"] = "Bearer " + response.json()["access_token"]

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, self.stack.url("/api/v2/" + path.lstrip("/")), timeout=30,
                                    **kwargs)

    def get(self, path: str, **params) -> dict | list:
        response = self.request("GET", path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def every(self, path: str, key: str) -> list[dict]:
        """Every object of an offset-paged list."""
        items: list[dict] = []
        page = 0
        while True:
            body = self.get(path, page=page, per_page=100, include_totals="true")
            items += body[key]
            if len(items) >= body["total"] or not body[key]:
                return items
            page += 1

    def enabled_client_ids(self, connection_id: str) -> set[str]:
        ids: set[str] = set()
        params: dict = {"take": 100}
        while True:
            body = self.get(f"connections/{connection_id}/clients", **params)
            ids |= {item["client_id"] for item in body["clients"]}
            if not body.get("next"):
                return ids
            params["from"] = body["next"]
