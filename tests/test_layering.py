"""The packages of ``src/dinokit`` import one way: down the layers below, never up or sideways,
and no two modules import each other (directly or round a loop).

Every ``import`` in every module counts, at module level and inside functions (a lazy import
is still a dependency), with relative imports resolved. ``from pkg import name`` depends on
``pkg`` (its ``__init__`` runs) and, when ``name`` is a module, on ``pkg.name`` too.
docs/architecture.md explains the layers.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dinokit"

#: Bottom to top. A package (or top-level module) may import its own modules and those of
#: lower layers only. ``__init__`` is ``dinokit/__init__.py``, which re-exports the API, so it
#: sits just above it; ``__main__`` (``python -m dinokit``) calls the CLI.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_version", "_files", "_progress", "_callable"),
    ("config_io",),
    ("runtime",),
    ("data", "sample_data"),
    ("models",),
    ("dino", "embeddings"),
    ("embed",),
    ("search",),
    ("evaluation", "duplicates", "cluster"),
    ("viz",),
    ("training",),
    ("serve",),
    ("api",),
    ("__init__",),
    ("cli",),
    ("__main__",),
)

Graph = dict[str, dict[str, int]]
"""module -> {imported module: line of the first such import}."""


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name of every module under the package folder ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _deepest_module(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` itself when it is a module, else the closest enclosing module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Absolute names an import statement in ``module`` may refer to."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(root: Path) -> Graph:
    """Which module of the package ``root`` imports which (module level and lazy)."""
    modules = module_names(root)
    graph: Graph = {name: {} for name in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _targets(node, module, path.name == "__init__.py"):
                target = _deepest_module(name, modules)
                if target is not None and target != module:
                    graph[module].setdefault(target, node.lineno)
    return graph


def unit_of(module: str) -> str:
    """The top-level package or module a module belongs to (``__init__`` for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer_index(layers: tuple[tuple[str, ...], ...]) -> dict[str, int]:
    return {unit: i for i, layer in enumerate(layers) for unit in layer}


def layer_violations(graph: Graph, layers: tuple[tuple[str, ...], ...]) -> list[str]:
    """One message per import that points up or sideways, or leaves a module in no layer."""
    index = _layer_index(layers)
    messages = []
    for module, targets in sorted(graph.items()):
        unit = unit_of(module)
        if unit not in index:
            messages.append(f"{module}: {unit!r} is in no layer; add it to LAYERS")
            continue
        for target, line in sorted(targets.items()):
            other = unit_of(target)
            if other == unit or other not in index or index[other] < index[unit]:
                continue
            direction = "up" if index[other] > index[unit] else "sideways"
            messages.append(
                f"{module} (line {line}; layer {index[unit]}: {unit}) imports {target} "
                f"(layer {index[other]}: {other}): {direction}"
            )
    return messages


def import_cycles(graph: Graph) -> list[list[str]]:
    """Each group of modules that import one another round a loop (strongly connected
    components of more than one module, Tarjan's algorithm without recursion), sorted."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for start in sorted(graph):
        if start in order:
            continue
        work = [(start, iter(sorted(graph[start])))]
        order[start] = low[start] = len(order)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in order:
                    order[child] = low[child] = len(order)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], order[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == order[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return sorted(cycles)


def cycle_path(graph: Graph, members: list[str]) -> list[str]:
    """One loop through the first module of a cycle group, for the error message."""
    start, inside = members[0], set(members)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child in inside and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return members


GRAPH = import_graph(SRC)
UNITS = sorted({unit_of(module) for module in GRAPH})


def test_every_package_is_in_one_layer() -> None:
    placed = [unit for layer in LAYERS for unit in layer]
    assert len(placed) == len(set(placed)), "a name appears in two layers"
    assert sorted(set(UNITS) - set(placed)) == [], "add these to LAYERS"


@pytest.mark.parametrize("unit", UNITS)
def test_imports_point_down(unit: str) -> None:
    """Each package's imports, one test per package so a failure names it."""
    mine = {module: targets for module, targets in GRAPH.items() if unit_of(module) == unit}
    violations = layer_violations(mine, LAYERS)
    assert not violations, "imports against the layering:\n" + "\n".join(violations)


@pytest.mark.parametrize("unit", UNITS)
def test_no_import_cycle_through(unit: str) -> None:
    """No loop of imports passes through this package's modules."""
    loops = [
        " -> ".join(cycle_path(GRAPH, members)) + f"  (group of {len(members)} modules)"
        for members in import_cycles(GRAPH)
        if any(unit_of(member) == unit for member in members)
    ]
    assert not loops, "import cycles:\n" + "\n".join(loops)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_checks_find_upward_and_sideways_imports_and_cycles(tmp_path: Path) -> None:
    """A small package with one import of each wrong kind, each of them found."""
    _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": """
                def late():
                    from ..high import b  # lazy, relative and upward
                    return b
            """,
            "high/__init__.py": "",
            "high/b.py": "from pkg.low import a\nimport pkg.side\n",
            "high/c.py": "from . import d\n",
            "high/d.py": "def late():\n    import pkg.high.c\n",
            "side.py": "",
            "other.py": "import pkg.side\n",
        },
    )
    layers = (("low",), ("high", "side"), ("other", "__init__"))
    graph = import_graph(tmp_path / "pkg")
    assert graph["pkg.low.a"] == {"pkg.high": 3, "pkg.high.b": 3}
    assert graph["pkg.high.c"] == {"pkg.high": 1, "pkg.high.d": 1}
    violations = layer_violations(graph, layers)
    assert violations == [
        "pkg.high.b (line 2; layer 1: high) imports pkg.side (layer 1: side): sideways",
        "pkg.low.a (line 3; layer 0: low) imports pkg.high (layer 1: high): up",
        "pkg.low.a (line 3; layer 0: low) imports pkg.high.b (layer 1: high): up",
    ]
    assert import_cycles(graph) == [["pkg.high.b", "pkg.low.a"], ["pkg.high.c", "pkg.high.d"]]
    assert cycle_path(graph, ["pkg.high.c", "pkg.high.d"]) == [
        "pkg.high.c",
        "pkg.high.d",
        "pkg.high.c",
    ]
    one_layer = layer_violations(graph, (("low", "high", "side", "other", "__init__"),))
    # On one layer every import between two packages is sideways, downward ones included.
    assert len(one_layer) == 6 and all(m.endswith(": sideways") for m in one_layer)
    assert "pkg.high.b: 'high' is in no layer; add it to LAYERS" in layer_violations(
        graph, (("low", "side", "other", "__init__"),)
    )
