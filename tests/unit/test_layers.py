"""The layers hold, and no module imports itself back through others (imports inside functions
count: a circle closed by a lazy import is still a circle)."""

from __future__ import annotations

from pathlib import Path

import grimp
from importlinter import cli

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "bench", "eventstore", "projections")


def test_the_layer_contracts_in_pyproject_hold(monkeypatch):
    monkeypatch.chdir(ROOT)
    # lint-imports configures logging as a command would (dictConfig disabling every logger that
    # exists): the tests after this one would no longer see the app's log lines.
    monkeypatch.setattr(cli, "_configure_logging", lambda verbose: None)
    assert cli.lint_imports(no_cache=True, no_logo=True) == cli.EXIT_STATUS_SUCCESS, "see the broken contract above"


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_circles_anywhere(monkeypatch):
    monkeypatch.chdir(ROOT)
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    assert cycles(graph) == [["a", "b", "c"]]
