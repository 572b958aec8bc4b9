"""The package's shape: no import cycles, no private name across packages, no file past 400 lines,
no type name that means two things.

Static: the imports are read with :mod:`ast` from the source, nothing is imported or
run. An import counts wherever it is written (a function-level import is still a
dependency) except under ``if TYPE_CHECKING:``, which never runs. A *package* here
is a top-level subpackage of ``mcp_cascade`` (``mcp_cascade.bridge``,
``mcp_cascade.remote``, ``mcp_cascade.testing``...); the top-level modules together
are one more. A private name is one with a single leading underscore (``_walk``,
``_reference``), whether it is the imported name or a module on the path.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mcp_cascade"
MAX_LINES = 400
# Not the project's own code: environments, caches, build output.
SKIPPED_DIRS = {"build", "dist", "node_modules", "__pycache__"}


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module (and the names taken from it), where it is written."""

    importer: str
    module: str
    names: tuple[str, ...]
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name."""
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    """What module ``name`` (at ``path``) imports; ``from a import b`` names a.b when that is a module."""
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend(Import(name, alias.name, (), node.lineno) for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = name.split(".") if is_package else name.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        # ``from package import module`` depends on the module (the package's __init__ runs first, as it
        # does for every import of a submodule, which is not counted as a dependency).
        if plain := [alias.name for alias in node.names if f"{base}.{alias.name}" not in known]:
            found.append(Import(name, base, tuple(plain), node.lineno))
        found.extend(
            Import(name, f"{base}.{alias.name}", (), node.lineno)
            for alias in node.names
            if f"{base}.{alias.name}" in known
        )
    return found


@cache
def graph(root: Path) -> tuple[dict[str, set[str]], list[Import]]:
    """The package's import graph (edges between its own modules) and every import it makes."""
    modules = package_modules(root)
    known = set(modules)
    everything = [imp for name, path in modules.items() for imp in imports_of(name, path, known)]
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for imp in everything:
        if imp.module in known and imp.module != imp.importer:
            edges[imp.importer].add(imp.module)
    return edges, everything


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def package_of(module: str, subpackages: set[str]) -> str:
    """``mcp_cascade.bridge.app`` → ``mcp_cascade.bridge``; a top-level module → ``mcp_cascade``."""
    head = ".".join(module.split(".")[:2])
    return head if head in subpackages else PACKAGE


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_crossings(everything: list[Import], modules: set[str]) -> list[str]:
    """Each import of a private name or module from another of the package's packages."""
    subpackages = {".".join(name.split(".")[:2]) for name in modules if name.count(".") >= 2}
    found: list[str] = []
    for imp in everything:
        if imp.module.split(".")[0] != PACKAGE:
            continue
        if package_of(imp.module, subpackages) == package_of(imp.importer, subpackages):
            continue
        private = [part for part in imp.module.split(".") if _private(part)]
        private += [name for name in imp.names if _private(name)]
        if private:
            found.append(f"{imp.importer}:{imp.line} imports {', '.join(private)} from {imp.module}")
    return found


# The roles' one-way rules: the sending and the receiving side never import each other or the bridge, and
# the shared top level imports none of the roles' packages. ``cli`` is the exception: it dispatches to each.
FORBIDDEN = {
    f"{PACKAGE}.send": {f"{PACKAGE}.receive", f"{PACKAGE}.bridge"},
    f"{PACKAGE}.receive": {f"{PACKAGE}.send", f"{PACKAGE}.bridge"},
    PACKAGE: {f"{PACKAGE}.{role}" for role in ("receive", "send", "bridge", "ops", "remote", "testing")},
}
DISPATCHER = f"{PACKAGE}.cli"


def role_crossings(edges: dict[str, set[str]]) -> list[str]:
    """Each import that goes against :data:`FORBIDDEN`."""
    subpackages = {".".join(name.split(".")[:2]) for name in edges if name.count(".") >= 2}
    found: list[str] = []
    for importer, targets in sorted(edges.items()):
        banned = FORBIDDEN.get(package_of(importer, subpackages), set())
        if importer != DISPATCHER:
            crossing = [t for t in sorted(targets) if package_of(t, subpackages) in banned]
            found += [f"{importer} imports {t}" for t in crossing]
    return found


def python_files(root: Path) -> Iterator[Path]:
    """Every .py file of the repository, outside hidden folders and build output."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS and not d.endswith(".egg-info")
        )
        yield from (Path(folder) / f for f in sorted(files) if f.endswith(".py"))


def too_long(root: Path) -> list[str]:
    found: list[str] = []
    for path in python_files(root):
        lines = len(path.read_text(encoding="utf-8", errors="replace").splitlines())
        if lines > MAX_LINES:
            found.append(f"{path.relative_to(root)}: {lines} lines")
    return found


def doubled_types(root: Path) -> dict[str, list[str]]:
    """Public class and type-alias names (CamelCase, at a module's top) defined in more than one module."""
    where: dict[str, list[str]] = {}
    for name, path in package_modules(root).items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                defined = node.name
            elif (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                defined = node.targets[0].id
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                defined = node.target.id
            else:
                continue
            if defined[:1].isupper() and not defined.isupper():
                where.setdefault(defined, []).append(name)
    return {n: modules for n, modules in sorted(where.items()) if len(modules) > 1}


def test_no_class_or_type_name_means_two_things() -> None:
    assert doubled_types(ROOT) == {}


def test_no_import_cycles_among_the_packages_modules() -> None:
    edges, _ = graph(ROOT)
    assert len(edges) > 50  # the package was found and read
    assert cycles(edges) == []


def test_no_private_name_is_imported_across_packages() -> None:
    edges, everything = graph(ROOT)
    assert private_crossings(everything, set(edges)) == []


def test_the_roles_import_one_way() -> None:
    edges, _ = graph(ROOT)
    assert role_crossings(edges) == []


def test_every_python_file_has_at_most_400_lines() -> None:
    assert too_long(ROOT) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_the_checks_see_planted_violations(tmp_path: Path) -> None:
    """Each check finds what it exists for, in every spelling of an import."""
    root = _tree(
        tmp_path,
        {
            "mcp_cascade/__init__.py": "",
            "mcp_cascade/a.py": "def f() -> None:\n    from mcp_cascade import b\n",
            "mcp_cascade/b.py": "from . import c\n",
            "mcp_cascade/c.py": "import mcp_cascade.a\n",
            # d imports e for type checking only (no dependency), e takes a private name of its own package
            "mcp_cascade/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import e\n",
            "mcp_cascade/e.py": "from .d import _x\n",
            "mcp_cascade/sub/__init__.py": "from ..a import _hidden\n",
            "mcp_cascade/sub/m.py": "from mcp_cascade._walk import Walk\nfrom . import _ok\n",
            "mcp_cascade/sub/_ok.py": "",
            "mcp_cascade/_walk.py": "from .sub.m import run\n",
            "long.py": "x = 1\n" * (MAX_LINES + 1),
            "short.py": "x = 1\n" * MAX_LINES,
            ".hidden/long.py": "x = 1\n" * (MAX_LINES + 1),
            "mcp_cascade/f.py": "class Outbox: ...\nEntry = tuple[int, int]\nLIMIT = 1\n",
            "mcp_cascade/sub/g.py": "class Outbox: ...\nclass Entry: ...\nLIMIT = 2\n",
            "mcp_cascade/send/w.py": "from mcp_cascade.receive import r\nfrom mcp_cascade.ops import o\n",
            "mcp_cascade/receive/r.py": "def f() -> None:\n    import mcp_cascade.bridge.z\n",
            "mcp_cascade/bridge/z.py": "",
            "mcp_cascade/ops/o.py": "",
            "mcp_cascade/h.py": "from mcp_cascade.ops import o\n",
            "mcp_cascade/cli.py": "from mcp_cascade.send import w\n",
        },
    )
    assert doubled_types(root) == {
        "Entry": ["mcp_cascade.f", "mcp_cascade.sub.g"],
        "Outbox": ["mcp_cascade.f", "mcp_cascade.sub.g"],
    }
    edges, everything = graph(root)
    assert cycles(edges) == [
        ["mcp_cascade._walk", "mcp_cascade.sub.m"],
        ["mcp_cascade.a", "mcp_cascade.b", "mcp_cascade.c"],
    ]
    assert sorted(edges["mcp_cascade.d"]) == []
    assert too_long(root) == ["long.py: 401 lines"]
    assert [line.split(" imports ")[1] for line in private_crossings(everything, set(edges))] == [
        "_hidden from mcp_cascade.a",
        "_walk from mcp_cascade._walk",
    ]
    assert role_crossings(edges) == [
        "mcp_cascade.h imports mcp_cascade.ops.o",
        "mcp_cascade.receive.r imports mcp_cascade.bridge.z",
        "mcp_cascade.send.w imports mcp_cascade.receive.r",
    ]
