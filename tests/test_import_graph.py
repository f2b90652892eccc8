"""The import graph of ``synthmed`` is a DAG and no module imports another's private names.

The graph is read from the source with :mod:`ast`, nothing is imported. Its rules:

- a node is a module under ``src/synthmed`` (a package is its ``__init__.py``);
- every ``import`` statement counts wherever it stands: at the top, inside a function (a lazy
  import that closes a cycle is still a cycle) or under ``if TYPE_CHECKING:``;
- ``import a.b.c`` is an edge to ``a.b.c`` (the longest prefix that is a module); the parent
  packages Python initialises on the way are not edges, so a package's ``__init__`` re-exporting
  its modules does not by itself make a cycle with them;
- ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``;
  relative imports are resolved against the importing module's package.

A private name is one starting with a single underscore. Taking one from another synthmed
module fails the second test: ``from x import _y``, ``import x._y``, and ``m._y`` on a module
``m`` imported whole; a private attribute of an object (``store._cache``) needs types and is
not seen.

The root scanned is ``src/synthmed`` next to ``tests/``, or ``$SYNTHMED_IMPORT_ROOT`` (a
``synthmed`` package folder) to check another tree.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

ROOT = Path(os.environ.get("SYNTHMED_IMPORT_ROOT") or Path(__file__).resolve().parents[1] / "src" / "synthmed")
PACKAGE = "synthmed"


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module under ``root`` (the ``synthmed`` folder)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


class Import(NamedTuple):
    """One synthmed import: the module it reaches, the names it takes from it (empty when it
    takes the module itself), its line and, for a module taken whole, the name it is bound to
    (``m`` for ``import a.b as m`` or ``from a import b as m``, ``a.b`` for ``import a.b``)."""

    target: str
    names: list[str]
    line: int
    bound: str | None


def _imports(tree: ast.Module, package: str, modules: set[str]) -> Iterator[Import]:
    """Every import of one of ``modules`` in a module's ``tree`` (relative imports resolve against ``package``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                target = next((".".join(parts[:n]) for n in range(len(parts), 0, -1)
                               if ".".join(parts[:n]) in modules), None)
                if target is not None:
                    yield Import(target, [], node.lineno, (alias.asname or alias.name) if target == alias.name else None)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source not in modules:
                continue
            plain = []
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    yield Import(f"{source}.{alias.name}", [], node.lineno, alias.asname or alias.name)
                else:
                    plain.append(alias.name)
            if plain:
                yield Import(source, plain, node.lineno, None)


def parsed(root: Path = ROOT) -> dict[str, tuple[ast.Module, list[Import]]]:
    """``{module: (its syntax tree, its synthmed imports)}`` of every module under ``root``."""
    files = module_files(root)
    out = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        out[module] = tree, list(_imports(tree, package, set(files)))
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: modules it imports}`` among the synthmed modules under ``root`` (self-imports left out)."""
    return {module: {i.target for i in imports if i.target != module} for module, (_, imports) in parsed(root).items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one module, each sorted
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _cycle(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One cycle through ``component``'s first module, as the modules along it (first repeated at the end)."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                return paths[node] + [start]
            if child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    return component


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` of a chain of attribute accesses on a name, else ``None``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def private_imports(root: Path = ROOT) -> list[str]:
    """``"module:line …"`` for every underscore-prefixed name one synthmed module takes from
    another: ``from x import _y``, ``import x._y``, or ``m._y`` where ``m`` is a synthmed module
    it imported whole (``import x as m``, ``from pkg import m``, ``import x`` then ``x._y``).
    Private attributes of objects (``store._cache``) are not seen: that needs types."""
    found = []
    for module, (tree, imports) in parsed(root).items():
        bound = {}
        for i in imports:
            private = [n for n in i.names if _private(n)]
            if i.target != module and _private(i.target.rpartition(".")[2]):
                private.append(i.target.rpartition(".")[2])
            found += [(i.line, f"{module}:{i.line} imports {name} from {i.target}") for name in private]
            if i.bound is not None:
                bound[i.bound] = i.target
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                target = bound.get(_dotted(node.value) or "")
                if target is not None and target != module:
                    found.append((node.lineno, f"{module}:{node.lineno} uses {node.attr} of {target}"))
    return [text for _, text in sorted(set(found), key=lambda f: (f[1].split(":")[0], f[0], f[1]))]


def test_import_graph_is_acyclic() -> None:
    graph = import_graph()
    assert len(graph) > 50, f"found only {len(graph)} modules under {ROOT}"
    cycles = [" -> ".join(_cycle(c, graph)) + f"  (component: {', '.join(c)})" for c in strongly_connected(graph)]
    assert not cycles, "import cycles inside synthmed:\n" + "\n".join(cycles)


def test_no_private_names_imported_across_modules() -> None:
    found = private_imports()
    assert not found, "private names imported from other synthmed modules:\n" + "\n".join(found)


def test_the_checks_catch_a_cycle_and_a_private_import(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from synthmed.sub import a\n")
    (pkg / "sub" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from synthmed.sub.a import _hidden, shown\n")
    (pkg / "c.py").write_text("import synthmed.sub.b\nfrom synthmed.sub import a as m\nimport os\n"
                              "x = m._x + m.y + synthmed.sub.b._z + os._exit\n")
    graph = import_graph(pkg)
    assert graph["synthmed.sub"] == {"synthmed.sub.a"}
    assert graph["synthmed.sub.a"] == {"synthmed.sub.b"}  # under TYPE_CHECKING: still an edge
    assert graph["synthmed.c"] == {"synthmed.sub.a", "synthmed.sub.b"}
    assert strongly_connected(graph) == [["synthmed.sub.a", "synthmed.sub.b"]]
    assert _cycle(["synthmed.sub.a", "synthmed.sub.b"], graph) == ["synthmed.sub.a", "synthmed.sub.b", "synthmed.sub.a"]
    assert private_imports(pkg) == ["synthmed.c:4 uses _x of synthmed.sub.a", "synthmed.c:4 uses _z of synthmed.sub.b",
                                    "synthmed.sub.b:2 imports _hidden from synthmed.sub.a"]
