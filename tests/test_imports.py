"""Imports in the data path flow one way (issue 16 item 4).

Every import is counted, also those inside functions and under ``TYPE_CHECKING``: a lazy import
hides a cycle from the interpreter, not from the design.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pattogis"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the pattogis modules it imports (anywhere in the file)."""
    mods = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                if n in mods and n != m:
                    graph[m].add(n)
    return graph


def part(module: str) -> str:
    """The part of the data path a module belongs to."""
    if module.startswith("pattogis.data"):
        return "data"
    return module.removeprefix("pattogis.").split(".")[0]


def test_data_modules_form_a_dag_and_derive_never_imports_build():
    g = import_graph()
    data = {m: {d for d in deps if d.startswith("pattogis.data")}
            for m, deps in g.items() if m.startswith("pattogis.data")}
    order = list(TopologicalSorter(data).static_order())  # raises CycleError on a cycle
    assert order.index("pattogis.data.derive") < order.index("pattogis.data.build")
    assert "pattogis.data.build" not in g["pattogis.data.derive"]


def test_territory_and_urbanized_do_not_import_the_data_package():
    g = import_graph()
    for m in ("pattogis.territory", "pattogis.urbanized", "pattogis.vector", "pattogis.layers"):
        assert not {d for d in g[m] if d.startswith("pattogis.data")}, m


def test_no_cycle_between_data_territory_urbanized():
    g = import_graph()
    keep = {"data", "territory", "urbanized", "vector", "layers", "config", "errors", "io"}
    parts: dict[str, set[str]] = {}
    for m, deps in g.items():
        if part(m) in keep:
            parts.setdefault(part(m), set()).update(
                part(d) for d in deps if part(d) in keep and part(d) != part(m))
    order = list(TopologicalSorter(parts).static_order())
    assert order.index("territory") < order.index("data")
    assert order.index("urbanized") < order.index("data")


def test_the_checker_sees_a_cycle():
    # the graph check is not vacuous: a lazy back-import (as build <-> derive had) is a cycle
    with pytest.raises(CycleError):
        list(TopologicalSorter({"build": {"derive"}, "derive": {"build"}}).static_order())
