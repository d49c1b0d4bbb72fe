"""The package's layering rules, checked on the source (every import, function-local too).

- ``nopdb_lab.tracing`` (the engine) is a leaf: it imports nothing else from nopdb_lab;
- ``nopdb_lab.analysis`` never imports ``nopdb_lab.jupyter``;
- nothing outside ``nopdb_lab.jupyter`` imports it;
- no import cycles between modules.

Imports under ``if TYPE_CHECKING:`` are ignored (they never run). A failure names the
importing module, its line and the imported module. See docs/architecture.md.
"""

from __future__ import annotations

import ast
import pathlib
from typing import Dict, List, Set, Tuple

ROOT = pathlib.Path(__file__).resolve().parent.parent / "nopdb_lab"
PACKAGE = "nopdb_lab"

Edge = Tuple[str, int]  # (imported module, line)


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> Dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "labextension" not in p.parts}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> List[ast.Import | ast.ImportFrom]:
    found: List[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imports_of(name: str, path: pathlib.Path, modules: Dict[str, pathlib.Path]) -> List[Edge]:
    """The nopdb_lab modules ``name`` imports at run time (a submodule, else its package)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    edges: List[Edge] = []
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]
                if target != name:
                    edges.append((target, node.lineno))
    return edges


def graph() -> Dict[str, List[Edge]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def in_layer(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def where(module: str, line: int) -> str:
    return f"{module.replace('.', '/')}.py:{line}"


def test_the_checker_sees_every_layer_and_function_local_imports() -> None:
    g = graph()
    for layer in ("nopdb_lab.tracing", "nopdb_lab.analysis", "nopdb_lab.jupyter"):
        assert any(in_layer(m, layer) for m in g), f"no module in {layer}"
    # the front end's bootstrap imports the kernel service from inside start()
    assert "nopdb_lab.jupyter.service" in {t for t, _ in g["nopdb_lab.jupyter"]}


def test_tracing_is_a_leaf() -> None:
    bad = [
        f"{where(m, line)}: {m} imports {t}"
        for m, edges in graph().items()
        if in_layer(m, "nopdb_lab.tracing")
        for t, line in edges
        if not in_layer(t, "nopdb_lab.tracing")
    ]
    assert not bad, "the tracing layer imports nothing else from nopdb_lab:\n" + "\n".join(bad)


def test_analysis_never_imports_jupyter() -> None:
    bad = [
        f"{where(m, line)}: {m} imports {t}"
        for m, edges in graph().items()
        if in_layer(m, "nopdb_lab.analysis")
        for t, line in edges
        if in_layer(t, "nopdb_lab.jupyter")
    ]
    assert not bad, "the analysis layer never imports the Jupyter layer:\n" + "\n".join(bad)


def test_nothing_outside_jupyter_imports_it() -> None:
    bad = [
        f"{where(m, line)}: {m} imports {t}"
        for m, edges in graph().items()
        if not in_layer(m, "nopdb_lab.jupyter")
        for t, line in edges
        if in_layer(t, "nopdb_lab.jupyter")
    ]
    assert not bad, "only nopdb_lab.jupyter imports nopdb_lab.jupyter:\n" + "\n".join(bad)


def find_cycle(g: Dict[str, List[Edge]]) -> List[Tuple[str, str, int]] | None:
    """One import cycle as (importer, imported, line) steps, or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[Tuple[str, str, int]] = []

    def visit(module: str) -> List[Tuple[str, str, int]] | None:
        state[module] = 1
        for target, line in g.get(module, []):
            if state.get(target) == 1:
                start = next((i for i, step in enumerate(path) if step[0] == target), len(path))
                return path[start:] + [(module, target, line)]
            if target not in state:
                path.append((module, target, line))
                found = visit(target)
                if found:
                    return found
                path.pop()
        state[module] = 2
        return None

    for module in sorted(g):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_no_import_cycles() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle:\n" + "\n".join(
        f"{where(m, line)}: {m} imports {t}" for m, t, line in cycle or []
    )


def test_cycle_finder_reports_a_cycle() -> None:
    g = {"a": [("b", 3)], "b": [("c", 5)], "c": [("a", 7)], "d": []}
    assert find_cycle(g) == [("a", "b", 3), ("b", "c", 5), ("c", "a", 7)]
    assert find_cycle({"a": [("b", 1)], "b": []}) is None


def test_package_init_imports_only_its_api() -> None:
    # `import nopdb_lab` must not import the Jupyter layer (nor, through it, IPython)
    seen: Set[str] = set()
    todo = ["nopdb_lab"]
    g = graph()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(t for t, _ in g.get(module, []))
    assert not [m for m in seen if in_layer(m, "nopdb_lab.jupyter")], sorted(seen)
