"""The registry (the read side of tenant settings and APIs) loads no pydantic (issue 17).

``/authorize`` and the token grants read tenant settings and resource servers through
``chalicelib.registry``; the Management API's body models (pydantic) must not come with them.
Measured in a fresh interpreter, since this one has long imported everything.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ("chalicelib.registry.tenant", "chalicelib.registry.resource_servers")
# What a registry module may import: the registry, the store and the low-level helpers.
REGISTRY_MAY_IMPORT = ("chalicelib.registry", "chalicelib.store", "chalicelib.settings",
                       "chalicelib.errors", "chalicelib.ttl_cache", "chalicelib.provider.lifetimes")

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


def test_the_probe_sees_pydantic_when_a_management_module_is_imported():
    """The control: the same probe reports the write side's pydantic."""
    loaded = loaded_after_importing(*REGISTRY, "chalicelib.management.tenant_settings")
    assert "pydantic" in loaded and "chalicelib.management.tenant_settings" in loaded


def package_imports(path: Path) -> set[str]:
    """The ``chalicelib`` modules a file imports anywhere, function-local imports too."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name for name in names if name.split(".")[0] == "chalicelib"}


def reaching_up(paths: list[Path]) -> dict[str, list[str]]:
    def allowed(name: str) -> bool:
        return name == "chalicelib" or any(name == low or name.startswith(low + ".")
                                           for low in REGISTRY_MAY_IMPORT)

    found = {path.name: sorted(n for n in package_imports(path) if not allowed(n))
             for path in paths}
    return {name: bad for name, bad in found.items() if bad}


def test_registry_modules_import_only_lower_layers():
    """Edges go management → registry, never back (STYLE: imports flow one way)."""
    paths = sorted((ROOT / "chalicelib" / "registry").glob("*.py"))
    assert {p.name for p in paths} >= {"tenant.py", "resource_servers.py"}
    assert reaching_up(paths) == {}


def test_the_layer_check_sees_a_module_reaching_up():
    """The control: a Management API module does import above the registry."""
    write_side = ROOT / "chalicelib" / "management" / "resource_servers.py"
    assert "chalicelib.management.validation" in reaching_up([write_side])["resource_servers.py"]


def test_the_write_side_drops_the_one_cache_the_login_paths_read():
    """SPEC §8: a change drops the stale entry in its own container, so the Management API's
    modules must clear the registry's caches, not caches of their own."""
    from chalicelib.management import resource_servers, tenant_settings
    from chalicelib.registry import resource_servers as server_registry
    from chalicelib.registry import tenant as tenant_registry

    assert (tenant_settings.forget_cached_tenant_settings
            is tenant_registry.forget_cached_tenant_settings)
    assert (resource_servers.forget_cached_resource_servers
            is server_registry.forget_cached_resource_servers)
    assert not hasattr(tenant_settings, "_cache") and not hasattr(resource_servers, "_cache")


def test_one_list_of_openid_scopes():
    """The registry's list (what APIs cannot define, what every token may carry) is the one
    discovery advertises."""
    from chalicelib.provider import issue
    from chalicelib.registry import resource_servers

    assert tuple(issue.OIDC_SCOPES) == tuple(resource_servers.OIDC_SCOPES)
