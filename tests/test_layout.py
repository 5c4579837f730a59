"""The package's layout: imports run one way (cli -> applications -> layers/ops -> kernels ->
backend), with no circles, and the library never imports click (nor the command line).

The import graph is read from the source with ``ast``, imports inside functions included
(a lazy import is still a dependency: it only moves the circle to run time).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nbcnn"


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module under nbcnn/ (a package is its __init__.py)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported_names(name: str, path: Path, node) -> list[str]:
    """The dotted names one import statement depends on. ``from . import layers`` depends on
    the module nbcnn.layers; ``from .model import Model`` on nbcnn.model."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: count packages up from this module's own package
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules (of nbcnn, or other top-level names such as "click") it imports."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = _imported_names(name, path, node)
            if isinstance(node, ast.ImportFrom):
                # `from X import a, b`: a submodule X.a if there is one, else X itself
                base, names = targets[-1], targets[:-1]
                targets = [t for t in names if t in modules] or [base]
                if len(targets) < len(names):
                    targets.append(base)
            for target in targets:
                if target in modules:
                    if target != name:
                        deps.add(target)
                else:
                    deps.add(target.split(".")[0])  # a third-party or standard module: its top name
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state = {}  # 1: on the current path, 2: done
    path = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_reader_sees_relative_lazy_and_absolute_imports():
    graph = import_graph()
    assert "nbcnn.layers" in graph["nbcnn.model"]        # from . import layers as L
    assert "nbcnn.checkpoint" in graph["nbcnn.model"]    # Model.save
    assert "nbcnn.train" in graph["nbcnn.model"]         # imported inside Model.fit
    assert "nbcnn.config" in graph["nbcnn.backend"]
    assert "numpy" in graph["nbcnn.ops"]


def test_find_cycle_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_two_modules_import_each_other_and_no_longer_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("forbidden", ["click", "cli"])
def test_the_library_never_imports_the_command_line(forbidden):
    offenders = sorted(name for name, deps in import_graph().items() if forbidden in deps)
    assert not offenders, f"{offenders} import {forbidden}: report progress through a callback instead"
