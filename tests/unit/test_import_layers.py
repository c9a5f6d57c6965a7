"""Imports flow one way: api → flows → registry/records → store → aws (STYLE).

Counted over every import in a file, function-local ones too: a local import may delay loading
a module for cold start, but it never hides a cycle.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "chalicelib"
# What a store module may import: other store modules and the low-level helpers below them.
STORE_MAY_IMPORT = ("chalicelib.store", "chalicelib.aws", "chalicelib.settings",
                    "chalicelib.errors", "chalicelib.tokens", "chalicelib.clock")


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imported(path: Path, known: set[str]) -> set[str]:
    """The package's modules ``path`` imports anywhere in the file (``from a import b`` counts
    as importing ``a.b`` when that is a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names & known


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imported(path, set(found)) - {name} for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


def store_imports_outside(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Per store module, what it imports from the package beyond ``STORE_MAY_IMPORT``."""
    def allowed(name: str) -> bool:
        return name == PACKAGE or any(name == low or name.startswith(low + ".")
                                      for low in STORE_MAY_IMPORT)

    outside = {}
    for name, targets in graph.items():
        if name == "chalicelib.store" or name.startswith("chalicelib.store."):
            bad = sorted(t for t in targets if not allowed(t))
            if bad:
                outside[name] = bad
    return outside


def test_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], f"{len(found)} import cycle(s): {found}"


def test_store_modules_import_nothing_above_them():
    assert store_imports_outside(import_graph()) == {}


def test_the_checks_see_a_cycle_and_a_store_module_reaching_up():
    """The control: both checks find what they look for."""
    graph = {"chalicelib.store.a": {"chalicelib.users"}, "chalicelib.users": {"chalicelib.x"},
             "chalicelib.x": {"chalicelib.store.a", "chalicelib.settings"},
             "chalicelib.settings": set()}
    assert cycles(graph) == [["chalicelib.store.a", "chalicelib.users", "chalicelib.x"]]
    assert store_imports_outside(graph) == {"chalicelib.store.a": ["chalicelib.users"]}
    real = import_graph()
    assert "chalicelib.store.dynamo" in real["chalicelib.store.users"]
    assert "chalicelib.aws" in real["chalicelib.store.dynamo"]  # ``from chalicelib import aws``
