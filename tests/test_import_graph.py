"""The import graph between the package's subpackages, read from the source with ``ast`` (every
``import`` statement, also those inside functions): the methods never reach the engine, so the
engine (which drives methods) and the methods form no cycle; the shared helpers in
``personsearch.comm`` import nothing from the package."""

from __future__ import annotations

import ast
from pathlib import Path

import personsearch

PACKAGE_ROOT = Path(personsearch.__file__).parent


def imported_modules(source: str) -> set[str]:
    """Absolute ``personsearch.*`` modules named by the import statements of ``source``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == "personsearch"}


def subpackage_of(module: str) -> str:
    """``personsearch.methods.cgps`` -> ``methods``; ``personsearch.comm`` -> ``comm``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def subpackage_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """subpackage -> the other subpackages its modules import."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        own = subpackage_of(".".join(relative.parts))
        targets = {subpackage_of(name) for name in imported_modules(path.read_text(encoding="utf-8"))}
        graph.setdefault(own, set()).update(t for t in targets if t and t != own)
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), set()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_graph_helpers_on_a_hand_built_package(tmp_path):
    package = tmp_path / "personsearch"
    (package / "engine").mkdir(parents=True)
    (package / "methods").mkdir()
    (package / "engine" / "trainer.py").write_text("from personsearch.methods.base import Method\n")
    (package / "methods" / "base.py").write_text(
        "def f():\n    from personsearch import comm\n    import personsearch.engine.trainer\n")
    graph = subpackage_graph(package)
    assert graph["engine"] == {"methods"}
    assert graph["methods"] == {"comm", "engine"}
    assert "methods" in reachable(graph, "methods")  # the cycle this file forbids, detected


def test_methods_never_reach_the_engine():
    graph = subpackage_graph()
    assert "methods" in graph and "engine" in graph
    assert "methods" in graph["engine"], "the engine drives the methods"
    assert "engine" not in reachable(graph, "methods"), graph


def test_comm_imports_nothing_from_the_package():
    source = (PACKAGE_ROOT / "comm.py").read_text(encoding="utf-8")
    assert imported_modules(source) == set()
