"""The package layering: no import cycle among the modules of ``apel`` nor among those of
``ssm``, ``ssm`` (the messenger, installed on sites without the server) imports
nothing from ``apel``, and the base layer ``acctbase`` imports from neither.

Read from the source with ``ast``, so imports inside functions count too: a cycle
hidden in a function still makes the order in which modules may be imported fragile
(the storage backends and the schema tools imported each other that way).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules() -> dict[str, Path]:
    found = {}
    for package in ("acctbase", "apel", "ssm"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (``from package import module`` names the
    module; anything else the longest project module the import names)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            named.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    targets = set()
    for target in named:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            targets.add(target)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_apel_has_no_import_cycle():
    graph = _graph()
    assert graph["apel.db.mysql_backend"], "the import graph was not read"
    apel = {name: {t for t in targets if t.startswith("apel")} for name, targets in graph.items()
            if name.startswith("apel")}
    assert _cycles(apel) == []


def test_ssm_has_no_import_cycle():
    """Includes the crypto package: its modules import only modules below them, never
    the package itself, whose ``__init__`` imports them all."""
    graph = _graph()
    assert graph["ssm.crypto.signing"], "the import graph was not read"
    ssm = {name: {t for t in targets if t.startswith("ssm")} for name, targets in graph.items()
           if name.startswith("ssm")}
    assert _cycles(ssm) == []


def test_ssm_imports_nothing_from_apel():
    graph = _graph()
    leaks = sorted((name, target) for name, targets in graph.items() if name.startswith("ssm")
                   for target in targets if target.startswith("apel"))
    assert leaks == []


def test_acctbase_imports_neither_ssm_nor_apel():
    graph = _graph()
    assert graph["acctbase.daemon"], "the import graph was not read"
    leaks = sorted((name, target) for name, targets in graph.items() if name.startswith("acctbase")
                   for target in targets if not target.startswith("acctbase"))
    assert leaks == []


def test_services_reach_backends_only_through_the_registry():
    """The services take the SQL from the backend they are given, never from a backend
    module they chose (a plug-in backend must get its own SQL)."""
    graph = _graph()
    backends = {name for name in graph if name.startswith(("apel.db.mysql_", "apel.db.sqlite_"))}
    assert {"apel.db.mysql_backend", "apel.db.mysql_dialect", "apel.db.mysql_bulk",
            "apel.db.sqlite_backend", "apel.db.sqlite_dialect"} <= backends
    for name, targets in graph.items():
        if name.startswith("apel.services"):
            assert not targets & backends, f"{name} imports {sorted(targets & backends)}"
