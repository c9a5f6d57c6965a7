"""The registry (the read side of tenant settings, APIs, applications and connections) loads no
pydantic (issue 17).

``/authorize``, the callback and the token grants read tenant settings, resource servers,
applications and connections through ``chalicelib.registry``; the Management API's body models
(pydantic) must not come with them.
Measured in a fresh interpreter, since this one has long imported everything.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_import_layers import imported, modules

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ("chalicelib.registry.tenant", "chalicelib.registry.resource_servers",
            "chalicelib.registry.clients", "chalicelib.registry.connections")
# What a registry module may import: the registry, the store and the low-level helpers.
REGISTRY_MAY_IMPORT = ("chalicelib.registry", "chalicelib.store", "chalicelib.settings",
                       "chalicelib.errors", "chalicelib.ttl_cache", "chalicelib.provider.lifetimes",
                       "chalicelib.secrets")

PROBE = r"""
import json, sys
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted(name for name in sys.modules
                        if name.split(".")[0] == "pydantic"
                        or name.startswith("chalicelib.management"))))
"""


def loaded_after_importing(*names: str) -> list[str]:
    """pydantic and Management API modules in ``sys.modules`` of a fresh interpreter that
    imported ``names``."""
    done = subprocess.run([sys.executable, "-c", PROBE, *names], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_registry_loads_no_pydantic_and_no_management_module():
    assert loaded_after_importing(*REGISTRY) == []


@pytest.mark.parametrize("name", REGISTRY)
def test_each_registry_module_alone_loads_no_pydantic(name):
    """Each on its own too: a login path imports only the registry modules it reads."""
    assert loaded_after_importing(name) == []


def test_the_probe_sees_pydantic_when_a_management_module_is_imported():
    """The control: the same probe reports the write side's pydantic."""
    loaded = loaded_after_importing(*REGISTRY, "chalicelib.management.tenant_settings")
    assert "pydantic" in loaded and "chalicelib.management.tenant_settings" in loaded

KNOWN = set(modules())


def reaching_up(paths: list[Path]) -> dict[str, list[str]]:
    def allowed(name: str) -> bool:
        return name == "chalicelib" or any(name == low or name.startswith(low + ".")
                                           for low in REGISTRY_MAY_IMPORT)

    found = {path.name: sorted(n for n in imported(path, KNOWN) if not allowed(n))
             for path in paths}
    return {name: bad for name, bad in found.items() if bad}


def test_registry_modules_import_only_lower_layers():
    """Edges go management → registry, never back (STYLE: imports flow one way)."""
    paths = sorted((ROOT / "chalicelib" / "registry").glob("*.py"))
    assert {p.name for p in paths} >= {"tenant.py", "resource_servers.py", "clients.py",
                                       "connections.py"}
    assert reaching_up(paths) == {}


def test_the_layer_check_sees_a_module_reaching_up():
    """The control: a Management API module does import above the registry."""
    write_side = ROOT / "chalicelib" / "management" / "resource_servers.py"
    assert "chalicelib.management.validation" in reaching_up([write_side])["resource_servers.py"]


def test_the_write_side_drops_the_one_cache_the_login_paths_read():
    """SPEC §8: a change drops the stale entry in its own container, so the Management API's
    modules must clear the registry's caches, not caches of their own."""
    from chalicelib.management import clients, connections, resource_servers, tenant_settings
    from chalicelib.registry import clients as client_registry
    from chalicelib.registry import connections as connection_registry
    from chalicelib.registry import resource_servers as server_registry
    from chalicelib.registry import tenant as tenant_registry

    assert (tenant_settings.forget_cached_tenant_settings
            is tenant_registry.forget_cached_tenant_settings)
    assert (resource_servers.forget_cached_resource_servers
            is server_registry.forget_cached_resource_servers)
    assert clients.forget_cached_clients is client_registry.forget_cached_clients
    assert connections.forget_cached_connections is connection_registry.forget_cached_connections
    assert not hasattr(tenant_settings, "_cache") and not hasattr(resource_servers, "_cache")
    assert not hasattr(clients, "_client_cache") and not hasattr(connections, "_config_cache")


def test_a_management_write_drops_the_registry_caches(monkeypatch):
    """The write decorators call the registry's forget (looked up when the write runs), also
    when the write fails half-way."""
    from chalicelib.management import clients, connections

    dropped: list[str] = []
    monkeypatch.setattr(clients, "forget_cached_clients", lambda: dropped.append("clients"))
    monkeypatch.setattr(connections, "forget_cached_connections",
                        lambda: dropped.append("connections"))

    @clients._drops_cached_clients
    @connections._drops_cached_connections
    def failing_write():
        raise RuntimeError("half-way")

    with pytest.raises(RuntimeError):
        failing_write()
    assert dropped == ["connections", "clients"]


def test_old_names_stay_importable_from_the_management_modules():
    """Callers not yet switched (and the Management API) keep working, on the same objects."""
    from chalicelib.management import clients, connections
    from chalicelib.registry import clients as client_registry
    from chalicelib.registry import connections as connection_registry

    for name in ("CONFIG_CACHE_SECONDS", "cached_client", "get_client", "secret_matches",
                 "hash_secret"):
        assert getattr(clients, name) is getattr(client_registry, name), name
    for name in ("CONFIG_CACHE_SECONDS", "cached_connection", "cached_connection_by_name",
                 "cached_enabled_connections_for", "get_connection", "get_connection_by_name",
                 "enabled_connections_for", "connection_secret", "REGISTERED_CLAIMS",
                 "TEMPLATE_EXPR", "TEMPLATE_PART"):
        assert getattr(connections, name) is getattr(connection_registry, name), name


def test_one_list_of_openid_scopes():
    """The registry's list (what APIs cannot define, what every token may carry) is the one
    discovery advertises."""
    from chalicelib.provider import issue
    from chalicelib.registry import resource_servers

    assert tuple(issue.OIDC_SCOPES) == tuple(resource_servers.OIDC_SCOPES)
