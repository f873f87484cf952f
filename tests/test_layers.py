"""The import graph of the installed packages: layers only point down, no cycle, no private name across modules.

Layers, top to bottom: runtime → handlers | migrations → projections → eventstore → schemas (migrations may import
the SQL models; nothing below imports it; handlers and migrations do not import each other). The CLI
(runtime.cli) is the top floor: nothing outside it imports it. `python tests/test_layers.py` prints the graph.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "eventstore", "projections", "handlers", "migrations", "runtime")
RANK = {"schemas": 0, "eventstore": 1, "projections": 2, "handlers": 3, "migrations": 3, "runtime": 4}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path) -> list[tuple[str, list[str], bool]]:
    """(imported module, names taken from it, at module level) of every import statement in a module."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    top = {id(n) for n in tree.body}
    top |= {id(n) for stmt in tree.body if isinstance(stmt, (ast.If, ast.Try)) and not _type_checking(stmt)
            for n in ast.walk(stmt)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, [a.name for a in node.names], id(node) in top))
    return out


def _type_checking(stmt: ast.stmt) -> bool:
    """`if TYPE_CHECKING:` — imports for annotations only, never run."""
    return isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Name) and stmt.test.id == "TYPE_CHECKING"


def graph() -> dict[str, set[tuple[str, bool]]]:
    """Module → (module it imports, at module level) for imports within the project's packages."""
    mods = modules()
    g: dict[str, set[tuple[str, bool]]] = defaultdict(set)
    for name, path in mods.items():
        for mod, names, top in imports(name, path):
            if mod.split(".")[0] not in PACKAGES:
                continue
            targets = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in mods] or [mod]
            for t in targets:
                if t != name:
                    g[name].add((t, top))
    return g


def package_edges() -> dict[tuple[str, str], int]:
    edges: dict[tuple[str, str], int] = defaultdict(int)
    for a, targets in graph().items():
        for b, _ in targets:
            pa, pb = a.split(".")[0], b.split(".")[0]
            if pa != pb:
                edges[(pa, pb)] += 1
    return edges


def test_layers_only_point_down():
    wrong = []
    for (a, b), n in package_edges().items():
        if RANK[b] >= RANK[a]:
            wrong.append(f"{a} → {b} ({n} imports)")
    assert not wrong, "imports that point up or sideways: " + "; ".join(wrong)


def test_nothing_imports_the_cli():
    users = sorted(a for a, targets in graph().items() for b, _ in targets
                   if b.startswith("runtime.cli") and not a.startswith("runtime.cli"))
    assert not users, f"the CLI is the top floor, yet {users} import it"


def test_no_private_name_is_imported_across_modules():
    mods = modules()
    found = []
    for name, path in mods.items():
        for mod, names, _ in imports(name, path):
            if mod.split(".")[0] in PACKAGES and mod != name:
                found += [f"{name}: from {mod} import {n}" for n in names if n.startswith("_") and n != "__future__"]
    assert not found, "; ".join(found)


def test_no_import_cycle_at_module_level():
    g = {a: {b for b, top in targets if top} for a, targets in graph().items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" → ".join(path[path.index(nxt):] + [nxt]) if nxt in path else f"{node} → {nxt}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, "; ".join(cycles)


@pytest.mark.parametrize("broken", ["up", "private", "cycle"])
def test_the_checks_catch_a_broken_house(tmp_path, monkeypatch, broken):
    """Negative control: a copy of the house with one wrong import fails the matching check."""
    import shutil

    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    line = {"up": "from runtime.engine.loop import Engine\n",
            "private": "from projections.portfolio import _CTX\n",
            "cycle": "import projections.state\n"}[broken]
    target = tmp_path / ("projections/market.py" if broken != "private" else "handlers/queue.py")
    target.write_text(line + target.read_text())
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    check = {"up": test_layers_only_point_down, "private": test_no_private_name_is_imported_across_modules,
             "cycle": test_no_import_cycle_at_module_level}[broken]
    with pytest.raises(AssertionError):
        check()


if __name__ == "__main__":
    for (a, b), n in sorted(package_edges().items(), key=lambda e: (-RANK[e[0][0]], RANK[e[0][1]])):
        print(f"{a:>12} → {b:<12} {n:>3} imports")
