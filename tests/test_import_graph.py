"""The package's modules import one another one way only: no import circle, even a deferred one.

Every ``import`` / ``from ... import`` statement of every module under ``lstm_backends`` is read
with :mod:`ast` — module level and inside functions alike, since a deferred import still ties
two modules together — and the resulting graph must be acyclic.  The tree is walked, so modules
added, moved or split later are covered without editing this file.

Definitions used by the report (``python tests/test_import_graph.py`` prints it):

* an edge ``a -> b``: a statement in ``a`` imports ``b`` (``from . import x`` is an edge to the
  submodule ``x`` when there is one, else to the package); importing a submodule implicitly
  runs its parent packages' ``__init__`` too, which is not counted (every module would then
  depend on the package root);
* levels: a module that imports no module of the package is on level 0, any other one level
  above the highest module it imports (deferred imports included); the modules of a circle
  share a level;
* an upward import: one to a module on the same or a higher level than the importer's, which
  only an import inside a circle can be.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lstm_backends

PACKAGE = "lstm_backends"
ROOT = Path(lstm_backends.__file__).resolve().parent


@dataclass(frozen=True)
class Edge:
    """One import statement from one module of the package to another.

    Attributes
    ----------
    source, target : str
        Dotted module names (a package is named by its ``__init__``'s dotted name).
    line : int
        Line of the statement in ``source``.
    deferred : bool
        The statement sits inside a function (it runs on call, not on import).
    """

    source: str
    target: str
    line: int
    deferred: bool


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (``__init__.py`` names its package).

    Parameters
    ----------
    root : Path
        The package's directory.
    package : str
        Its dotted name.

    Returns
    -------
    dict of str to Path
    """
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((package, *parts))] = path
    return modules


def _statements(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of ``tree`` with whether it sits inside a function."""

    def visit(node: ast.AST, deferred: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, deferred
            inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from visit(child, inner)

    yield from visit(tree, False)


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest dotted prefix of ``name`` that is a module of the package."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    """The import statements between modules of the package.

    Parameters
    ----------
    modules : dict of str to Path
        As :func:`module_files` returns.

    Returns
    -------
    list of Edge
        One per (statement, imported module); ``import numpy`` and other outside imports are left out.
    """
    edges = []
    for source, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for stmt, deferred in _statements(tree):
            targets: set[str] = set()
            if isinstance(stmt, ast.Import):
                targets = {t for alias in stmt.names if (t := _known(alias.name, modules))}
            else:
                if stmt.level:
                    anchor = source.split(".")
                    if not is_package:
                        anchor = anchor[:-1]
                    anchor = anchor[: len(anchor) - (stmt.level - 1)]
                    base = ".".join(anchor + ([stmt.module] if stmt.module else []))
                else:
                    base = stmt.module or ""
                for alias in stmt.names:
                    target = _known(f"{base}.{alias.name}", modules) if alias.name != "*" else None
                    if target != f"{base}.{alias.name}":  # a name defined in ``base``, not a submodule
                        target = _known(base, modules)
                    if target:
                        targets.add(target)
            edges += [Edge(source, t, stmt.lineno, deferred) for t in sorted(targets) if t != source]
    return edges


def import_cycles(modules: dict[str, Path], edges: list[Edge]) -> list[list[str]]:
    """The import circles: strongly connected groups of more than one module (Tarjan).

    Returns
    -------
    list of list of str
        Each circle's modules, sorted; empty when the graph is acyclic.
    """
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(modules) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                connect(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(cycles)


def levels(modules: dict[str, Path], edges: list[Edge]) -> dict[str, int]:
    """Each module's level: 0 when it imports no module of the package, else one above the highest it imports.

    Deferred imports count (they are dependencies too).  The modules of an import circle share
    one level, as if the circle were one module.

    Returns
    -------
    dict of str to int
    """
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        graph[e.source].add(e.target)
    circle_of = {m: tuple(c) for c in import_cycles(modules, edges) for m in c}
    level: dict[str, int] = {}

    def of(m: str) -> int:
        if m not in level:
            members = circle_of.get(m, (m,))
            below = [of(t) for member in members for t in graph[member] if t not in members]
            for member in members:
                level[member] = 1 + max(below) if below else 0
        return level[m]

    for m in sorted(modules):
        of(m)
    return level


def upward_imports(modules: dict[str, Path], edges: list[Edge]) -> list[Edge]:
    """Imports of a module on the same or a higher level than the importer's (those inside a circle).

    Returns
    -------
    list of Edge
    """
    level = levels(modules, edges)
    return [e for e in edges if level[e.target] >= level[e.source]]


def report(modules: dict[str, Path], edges: list[Edge]) -> str:
    """The graph's shape in words: modules, levels, circles, upward imports."""
    level = levels(modules, edges)
    cycles = import_cycles(modules, edges)
    up = upward_imports(modules, edges)
    lines = [
        f"{len(modules)} modules on {max(level.values()) + 1} levels, {len(cycles)} import circle(s), "
        f"{len(up)} upward import(s)"
    ]
    for n in range(max(level.values()) + 1):
        lines.append(f"  level {n}: {', '.join(sorted(m for m in modules if level[m] == n))}")
    lines += [f"  circle: {' <-> '.join(c)}" for c in cycles]
    lines += [f"  upward: {e.source}:{e.line} -> {e.target}{' (deferred)' if e.deferred else ''}" for e in up]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- tests
def test_the_package_has_no_import_circle() -> None:
    modules = module_files()
    edges = import_edges(modules)
    assert import_cycles(modules, edges) == [], report(modules, edges)


def test_the_registry_depends_on_the_base_class_never_the_reverse() -> None:
    edges = import_edges(module_files())
    targets = {e.target for e in edges if e.source == f"{PACKAGE}.backends._base"}
    assert f"{PACKAGE}._registry" not in targets
    assert f"{PACKAGE}.backends._base" in {e.target for e in edges if e.source == f"{PACKAGE}._registry"}


#: the rooms' sizes (issue 16): a kernel module of the numba backend stays readable on its own,
#: and no module of the package grows into a second one-file backend
MAX_LINES_NUMBA, MAX_LINES = 600, 1000


def test_every_module_stays_a_room_of_its_own() -> None:
    numba_pkg = f"{PACKAGE}.backends._numba."
    over = []
    for name, path in sorted(module_files().items()):
        limit = MAX_LINES_NUMBA if name.startswith(numba_pkg) else MAX_LINES
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > limit:
            over.append(f"{name}: {n} lines (at most {limit})")
    assert not over, "split these modules by concern: " + "; ".join(over)


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The parser itself: relative and absolute, module level and deferred, submodule or name."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\nfrom . import b\n")
    (pkg / "a.py").write_text("import numpy\n\ndef f():\n    from .sub import c\n    import pkg.b\n")
    (pkg / "b.py").write_text("from pkg.sub.c import g\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("def g():\n    from .. import f\n    from ..a import f as h\n")
    modules = module_files(pkg, "pkg")
    assert sorted(modules) == ["pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c"]
    got = {(e.source, e.target, e.deferred) for e in import_edges(modules)}
    assert got == {
        ("pkg", "pkg.a", False), ("pkg", "pkg.b", False), ("pkg.a", "pkg.sub.c", True), ("pkg.a", "pkg.b", True),
        ("pkg.b", "pkg.sub.c", False), ("pkg.sub.c", "pkg", True), ("pkg.sub.c", "pkg.a", True),
    }
    edges = import_edges(modules)
    assert import_cycles(modules, edges) == [["pkg", "pkg.a", "pkg.b", "pkg.sub.c"]]
    assert levels(modules, edges) == {"pkg": 0, "pkg.a": 0, "pkg.b": 0, "pkg.sub": 0, "pkg.sub.c": 0}
    assert len(upward_imports(modules, edges)) == len(edges) == 7
    (pkg / "sub" / "c.py").write_text("def g():\n    pass\n")  # the circle broken: four levels
    edges = import_edges(modules)
    assert import_cycles(modules, edges) == [] and upward_imports(modules, edges) == []
    assert levels(modules, edges) == {"pkg": 3, "pkg.a": 2, "pkg.b": 1, "pkg.sub": 0, "pkg.sub.c": 0}


if __name__ == "__main__":  # the report: python tests/test_import_graph.py
    found = module_files()
    print(report(found, import_edges(found)))
