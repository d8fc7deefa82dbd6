"""The library's shape: no import cycles, small modules, dependencies pointing one way.

Imports are read from the source (``ast``), deferred and ``TYPE_CHECKING`` imports included:
a cycle held together by an import inside a function is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "include" / "imaging_ingest"
MAX_LINES = 600

#: Subpackages from the building blocks up. A module may import from its own layer or below,
#: never from above: later stages and the entry points (CLI, API) depend on earlier ones.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"core", "config"}),
    frozenset({"ops", "storage", "catalog"}),
    frozenset({"intake", "inventory", "deid"}),
    frozenset({"screen", "verify"}),
    frozenset({"curation", "analysis", "publish"}),
    frozenset({"pipeline", "mirror", "download"}),
    frozenset({"api", "cli", "synth"}),
)


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def import_graph(root: Path = LIBRARY) -> dict[str, set[str]]:
    """Module -> the library modules it imports (at any depth of the file, deferred ones included)."""
    modules = _modules(root)
    package = root.name
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        base = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - node.level + 1]
                    module = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                # ``from package import module`` names a module; ``from module import name`` does not
                targets = [
                    f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                    for alias in node.names
                ]
            for target in targets:
                if target == package or target.startswith(package + "."):
                    resolved = _resolve(target, modules)
                    if resolved and resolved != name:
                        graph[name].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    for number, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return number
    return None


def test_no_import_cycle_between_library_modules() -> None:
    assert cycles(import_graph()) == []


def test_no_library_module_over_600_lines() -> None:
    long = {
        str(path.relative_to(LIBRARY)): n
        for path in LIBRARY.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_every_subpackage_has_a_layer_and_no_module_lies_loose() -> None:
    subpackages = {p.name for p in LIBRARY.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set().union(*LAYERS)
    assert sorted(p.name for p in LIBRARY.glob("*.py")) == ["__init__.py"]


def test_dependencies_point_from_later_stages_down_to_building_blocks() -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if (a := _layer(module)) is not None and (b := _layer(target)) is not None and b > a
    )
    assert upward == []


def test_the_library_never_imports_airflow() -> None:
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n == "airflow" or n.startswith("airflow.") for n in names):
                offenders.append(str(path.relative_to(LIBRARY)))
    assert offenders == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"a.py": "from pkg import b\n", "b.py": "def f():\n    from pkg.a import x\n"},
            [["pkg.a", "pkg.b"]],
        ),
        ({"a.py": "from . import b\n", "b.py": "import typing\n"}, []),
        (
            {
                "a.py": "from .b import y\n",
                "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import z\n",
            },
            [["pkg.a", "pkg.b"]],
        ),
    ],
)
def test_the_cycle_check_sees_deferred_and_relative_imports(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    assert cycles(import_graph(root)) == expected
