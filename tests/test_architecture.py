"""The house plan holds: each package imports only the packages below it (docs/architecture.md).

Every import of an edgepilot module counts, at the top of a file or inside a function: an import deferred for
start-up time still makes a dependency, and a cycle hidden inside a function is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "edgepilot"
ROOT = ""  # errors.py, actions.py, config.py, paths.py, yamltext.py: the root package's own modules

# package -> the packages it may import (itself and the root package always)
BELOW: dict[str, set[str]] = {
    ROOT: set(),
    "perception": set(),
    "controllers": {"perception"},
    "models": set(),
    "sop": {"perception"},
    "memory": {"perception", "controllers", "sop"},
    "policy": {"perception", "controllers"},
    "sim": {"perception", "controllers"},
    "devices": {"perception", "controllers", "sim"},
    "agent": {"perception", "controllers", "models", "sop", "policy", "memory"},
    "daemon": {"perception", "controllers", "models", "sop", "policy", "memory", "agent", "sim", "devices"},
    "bench": {"perception", "controllers", "models", "sop", "policy", "memory", "agent", "sim", "devices", "daemon"},
    "distill": {"perception", "controllers", "models", "sop", "policy", "memory", "agent", "sim", "devices", "bench"},
    "tui": {"perception", "controllers", "models", "sop", "policy", "memory", "agent", "sim", "devices", "daemon"},
    "mcp": {"perception", "controllers", "models", "sop", "policy", "memory", "agent", "sim", "devices"},
    "api": {"perception", "controllers", "models", "sop", "policy", "memory", "agent", "sim", "devices"},
    "cli": {"perception", "controllers", "models", "sop", "policy", "memory", "agent", "sim", "devices", "bench",
            "distill", "daemon", "tui", "mcp"},
}


def _package_of(module: str) -> str:
    """``edgepilot.agent.loop`` -> ``agent``; ``edgepilot.errors`` and ``edgepilot`` -> the root package."""
    parts = module.split(".")
    if module == "edgepilot.__main__":  # ``python -m edgepilot`` is the command line
        return "cli"
    if len(parts) > 1 and (SRC / parts[1]).is_dir():
        return parts[1]
    return ROOT


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def _typing_only(tree: ast.Module) -> set[ast.AST]:
    """The import statements inside ``if TYPE_CHECKING:`` blocks (names for annotations, never run)."""
    return {n for block in ast.walk(tree) if isinstance(block, ast.If) and isinstance(block.test, ast.Name)
            and block.test.id == "TYPE_CHECKING" for stmt in block.body for n in ast.walk(stmt)}


def _imports(path: Path, *, typing: bool = True) -> set[str]:
    """Every edgepilot module named by an import anywhere in the file (``typing=False``: those that run)."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = set() if typing else _typing_only(tree)
    for node in ast.walk(tree):
        if node in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "edgepilot"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "edgepilot":
            assert node.level == 0, f"{path}: relative import"
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if (SRC.parent / node.module.replace(".", "/") / a.name).with_suffix(".py").exists()}
    return found


MODULES = _modules()


def test_the_plan_names_every_package():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(BELOW) - {ROOT}


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_point_down(module, path):
    here = _package_of(module)
    allowed = BELOW[here] | {here, ROOT}
    wrong = sorted(m for m in _imports(path) if _package_of(m) not in allowed)
    assert not wrong, f"{module} ({here or 'edgepilot'}) imports {wrong}; it may import only {sorted(allowed)}"


def test_the_check_sees_an_import_hidden_in_a_function(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from edgepilot.cli.main import main\n    import edgepilot.agent.loop\n")
    assert _imports(path) == {"edgepilot.cli.main", "edgepilot.agent.loop"}
    assert {_package_of(m) for m in _imports(path)} == {"cli", "agent"}
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edgepilot.sim.phone import Phone\n")
    assert _imports(path) == {"edgepilot.sim.phone"} and _imports(path, typing=False) == set()


def test_no_module_imports_itself_in_a_cycle():
    """Strongly connected modules make import order matter; none may exist among edgepilot's modules (imports
    for annotations only, under ``if TYPE_CHECKING:``, never run and do not count)."""
    names = {m for m, _ in MODULES}
    graph = {m: {i for i in _imports(p, typing=False) if i in names and i != m} for m, p in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"
