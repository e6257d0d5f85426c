"""
The house rules for ``reduct_twisted`` itself (issue #13): no import cycle
between modules, none between its top-level packages (``http``,
``storage``, ``replication``, ``auth``, and each top-level module on its
own), and no module over 500 lines.

The import graph is read from the source with ``ast``, without importing
anything: every ``import`` and ``from ... import`` anywhere in a module,
function-level imports included, relative ones resolved.  ``from p import
n`` counts as an import of ``p.n`` when that is a module, else of ``p``.
That importing ``p.m`` also runs ``p/__init__.py`` is not counted: a
package's ``__init__`` may well gather names from its own modules.
"""

import ast
from pathlib import Path

import pytest

import reduct_twisted

PACKAGE = "reduct_twisted"
ROOT = Path(reduct_twisted.__file__).resolve().parent
MAX_LINES = 500


def module_files(root: Path, package: str) -> dict:
    """``{dotted module name: path}`` of every ``.py`` file under ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([package] + parts)] = path
    return found


def _resolve(name: str, modules: dict) -> str:
    """``name`` or the nearest enclosing module or package that exists."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str, path: Path, modules: dict, package: str = PACKAGE) -> dict:
    """
    ``{imported module: line}`` for the imports of ``module`` that land in
    ``modules`` (the first line importing each).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: dict = {}

    def add(target: str, line: int) -> None:
        target = _resolve(target, modules)
        if target and target != module:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == package:
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                # A package's own name is its first anchor for ``.``.
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop] if drop else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != package:
                continue
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                add(candidate if candidate in modules else source, node.lineno)
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> tuple:
    """:return: ``(modules, {module: {imported: line}})``."""
    modules = module_files(root, package)
    return modules, {name: imports_of(name, path, modules, package) for name, path in modules.items()}


def find_cycles(graph: dict) -> list:
    """
    One cycle (a list of nodes, the first repeated at the end) per strongly
    connected component of more than one node (Tarjan's algorithm).
    """
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    components = []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict, component: set) -> list:
    # The shortest way back to the smallest member: a readable witness.
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    return paths[node] + [start]
                if nxt in component and nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError("a strongly connected component without a cycle")  # pragma: no cover


def unit_of(module: str, package: str = PACKAGE) -> str:
    """The top-level package or module ``module`` belongs to (``http``, ``config``...)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else f"{package}/__init__"


def unit_graph(graph: dict, package: str = PACKAGE) -> tuple:
    """
    :return: ``(units, why)``: ``{unit: {imported unit}}`` and, for each
        edge, one module import that makes it.
    """
    units: dict = {}
    why: dict = {}
    for module, imported in graph.items():
        source = unit_of(module, package)
        units.setdefault(source, set())
        for target, line in imported.items():
            dest = unit_of(target, package)
            if dest != source:
                units[source].add(dest)
                why.setdefault((source, dest), f"{module}:{line} imports {target}")
    return units, why


def describe(cycle: list, graph: dict, modules: dict) -> str:
    """One line per import of a module cycle, with file and line."""
    lines = [" -> ".join(cycle)]
    for a, b in zip(cycle, cycle[1:]):
        path = modules[a].relative_to(ROOT.parent) if ROOT.parent in modules[a].parents else modules[a]
        lines.append(f"    {path}:{graph[a][b]} imports {b}")
    return "\n".join(lines)


# -- the rules ---------------------------------------------------------------------


def test_no_module_import_cycle():
    """No module of reduct_twisted imports itself back, directly or through others."""
    modules, graph = import_graph()
    cycles = find_cycles({m: set(t) for m, t in graph.items()})
    assert not cycles, "import cycles between modules:\n" + "\n".join(
        describe(c, graph, modules) for c in cycles
    )


def test_no_package_import_cycle():
    """The top-level packages and modules (http, storage, replication, auth, config...) form no cycle."""
    _, graph = import_graph()
    units, why = unit_graph(graph)
    cycles = find_cycles(units)
    assert not cycles, "import cycles between top-level packages:\n" + "\n".join(
        " -> ".join(c) + "\n" + "\n".join(f"    {why[a, b]}" for a, b in zip(c, c[1:]))
        for c in cycles
    )


def test_modules_at_most_500_lines():
    """Every module under reduct_twisted/ has at most 500 lines."""
    modules, _ = import_graph()
    too_long = {}
    for name, path in modules.items():
        with open(path, "rb") as f:
            count = sum(1 for _ in f)
        if count > MAX_LINES:
            too_long[str(path.relative_to(ROOT.parent))] = count
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_graph_sees_the_imports():
    """The graph is not vacuous: known imports of the tree are in it."""
    _, graph = import_graph()
    assert "reduct_twisted.auth.tokens" in graph["reduct_twisted.auth.policy"]
    assert "reduct_twisted.wire" in graph["reduct_twisted.replication.remote"]
    assert "reduct_twisted.http.api" in graph["reduct_twisted.http.site"]


# -- the checker itself, on a made-up package ----------------------------------------


@pytest.fixture
def fake_package(tmp_path):
    """
    ``pkg``: ``a`` imports ``b`` inside a function, ``b`` imports ``c``
    relatively, ``c`` imports ``a`` with ``from pkg import a``; ``sub``
    imports ``d`` and ``d`` imports ``sub.e``: module cycle a -> b -> c -> a,
    and the unit cycle d -> sub -> d only through ``sub.e``.
    """
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "def f():\n    import pkg.b\n",
        "b.py": "from . import c\n",
        "c.py": "from pkg import a\n",
        "d.py": "from pkg.sub.e import thing\n",
        "sub/__init__.py": "",
        "sub/e.py": "from ..d import other\nthing = 1\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_checker_finds_cycles(fake_package):
    """Function-level, relative and ``from pkg import module`` imports all count."""
    _, graph = import_graph(fake_package, "pkg")
    assert graph["pkg.a"] == {"pkg.b": 2}
    assert graph["pkg.b"] == {"pkg.c": 1}
    assert graph["pkg.c"] == {"pkg.a": 1}
    assert graph["pkg.sub.e"] == {"pkg.d": 1}
    cycles = find_cycles({m: set(t) for m, t in graph.items()})
    assert sorted(cycles) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"], ["pkg.d", "pkg.sub.e", "pkg.d"]]
    units, why = unit_graph(graph, "pkg")
    assert sorted(find_cycles(units)) == [["a", "b", "c", "a"], ["d", "sub", "d"]]
    assert why["sub", "d"] == "pkg.sub.e:1 imports pkg.d"
