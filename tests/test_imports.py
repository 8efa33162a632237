"""The house has floors: no module of src/vitnas imports, at any depth (function-level imports
included), a module that imports it back, and the low floors import nothing above them."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "vitnas"

# Cycles that other parts of issue 16 remove (config.py, references.py, families/ and spaces.py
# belong to another change); the integrator deletes this list once they are merged.
def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file: `from A import b` names the
    module A.b when there is one, else A."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != PACKAGE}
    return out


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components that hold a cycle (Tarjan): modules that import each
    other, directly or around a loop."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, for the failure message."""
    start = min(component)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & component):
            if w == start:
                return path + [start]
            if w not in seen:
                seen.add(w)
                paths.append(path + [w])
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def test_the_graph_is_read():
    graph = import_graph()
    assert "vitnas.families" in graph["vitnas.claims"]  # a function-level import
    assert "vitnas.supernet.train" in graph["vitnas.cli"]  # from .supernet import train
    assert graph["vitnas.results"] == {"vitnas.errors", "vitnas.units"}  # from .errors import ...


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "b"}, "d": {"a"}, "e": {"e"}}
    assert components(graph) == [{"a", "b", "c"}, {"e"}]
    assert cycle_through(graph, {"a", "b", "c"}) == ["a", "b", "c", "a"]
    assert components({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    graph = import_graph()
    found = list(components(graph))
    assert not found, "import cycle(s): " + "; ".join(" -> ".join(cycle_through(graph, c)) for c in found)


# What the low floors may import of the package (besides the standard library and third parties).
FLOORS = {
    "vitnas.units": set(),
    "vitnas.results": {"vitnas.errors", "vitnas.io", "vitnas.units", "vitnas.arch"},
    "vitnas.tables": {"vitnas.errors", "vitnas.io", "vitnas.units"},
    "vitnas.measures": {"vitnas.stats", "vitnas.results"},
}


@pytest.mark.parametrize("module", sorted(FLOORS))
def test_low_floors_import_nothing_above_them(module):
    assert import_graph()[module] <= FLOORS[module]


def test_report_is_the_top_only_the_cli_imports_it():
    assert [m for m, imports in import_graph().items() if "vitnas.report" in imports] == ["vitnas.cli"]
