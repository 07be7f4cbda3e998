"""The package graph: layered ops <- models/metrics/data/baselines <- lit <- entry points, no cycles."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "fsan_lightning"
# what each subpackage may import from the project (top-level modules are the entry points)
ALLOWED = {
    "ops": set(),
    "models": {"ops"},
    "metrics": {"ops", "data"},
    "data": {"ops"},
    "baselines": {"ops", "data", "metrics"},
    "viz": {"ops", "metrics", "data"},
    "lit": {"ops", "models", "metrics", "data", "baselines", "viz", "runio"},
}


def _imports(path: Path) -> set[str]:
    """Project modules imported by ``path`` (absolute and relative imports, top level and lazy)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from (also for __init__)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {n for n in found if n.startswith("fsan_lightning")}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_subpackages_import_only_lower_layers():
    bad = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if len(rel.parts) < 2 or rel.parts[0] not in ALLOWED:
            continue
        own = rel.parts[0]
        for target in _imports(path):
            layer = _layer(target)
            if layer and layer != own and layer not in ALLOWED[own]:
                bad.append(f"{rel} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_modules():
    graph = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        graph[name] = {t for t in _imports(path) if t != name}
    cycles = [(a, b) for a, targets in graph.items() for b in targets if a in graph.get(b, set()) and a < b
              and not b.startswith(a + ".") and not a.startswith(b + ".")]
    assert not cycles, cycles
