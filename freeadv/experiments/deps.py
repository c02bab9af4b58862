"""The library files a command depends on, from the import graph: the workflow's ``code`` inputs.

A job's result depends on the code it runs, and Snakemake reruns a job when one of its inputs has
changed since its outputs were made; so each rule lists, as inputs, the library files its command
imports.
Lists kept by hand drift (they had missed sanity.py and cpu.py); this module walks the imports
instead, statically with :mod:`ast` (nothing is imported, so no torch at Snakemake parse time).

What counts as an import of a module (conservatively: a command may run any of its functions):

- every ``import a.b`` and ``from a.b import c`` statement anywhere in its file, relative ones
  resolved; ``from p import x`` counts ``p.x`` where that is a module of the tree, else ``p``;
- ``lazy_import("freeadv.x")`` and ``importlib.import_module("freeadv.x")`` with a constant name;
- importing ``a.b.c`` runs the packages ``a`` and ``a.b`` (their ``__init__.py``);
- a package whose ``__init__`` imports its modules by iterating them (``pkgutil.iter_modules``,
  the registries) imports all of them;
- ``from p import x`` where package ``p`` does not bind ``x`` itself but loads names on attribute
  access (a PEP 562 ``__getattr__``, e.g. freeadv.attacks' torch names) may import any module
  of ``p``: all of them count, for this importer only (a package import alone adds none, so
  training does not depend on the evaluation code that freeadv.attacks also holds).

Only modules under the top package of the one asked for (``freeadv``) are followed. Data files
(:data:`DATA_PATTERNS`) in the folder of any module of the closure count too (paper_values.csv).
"""
from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_PATTERNS = ("*.csv",)
LOADERS = ("lazy_import", "import_module")   # calls whose constant first argument is a module name


def default_root() -> Path:
    """The folder holding the ``freeadv`` package (the repository root of a checkout)."""
    return Path(__file__).resolve().parents[2]


def module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` under ``root`` (a package's ``__init__.py``), None if none."""
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.parent / f"{base.name}.py"):
        if candidate.is_file():
            return candidate
    return None


def _callee(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _absolute(module: str | None, level: int, package: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` inside ``package``."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    if level - 1 >= len(parts):
        raise ImportError(f"relative import beyond the top package in {package}")
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _bound_names(body: list[ast.stmt]) -> set[str]:
    """Names a module binds at its top level (also inside if / try blocks)."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try)):
            blocks = [node.body, node.orelse] + ([node.finalbody] + [h.body for h in node.handlers]
                                                 if isinstance(node, ast.Try) else [])
            names.update(*(_bound_names(block) for block in blocks))
    return names


@dataclass(frozen=True)
class _Module:
    """What one file imports: module names (``imports``) and ``from base import name`` pairs, the
    names it binds itself, and how it loads modules by computed name."""
    imports: frozenset[str]
    from_names: frozenset[tuple[str, str]]
    bound: frozenset[str]
    lazy_attributes: bool              # a module-level __getattr__ (PEP 562)
    iterates_modules: bool             # calls pkgutil.iter_modules


@lru_cache(maxsize=None)
def _parse(name: str, path: Path, mtime_ns: int) -> _Module:
    """``mtime_ns`` keys the cache to the file's version."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imports: set[str] = set()
    from_names: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            imports.add(base)
            from_names.update((base, alias.name) for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and _callee(node) in LOADERS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                imports.add(first.value)
    return _Module(frozenset(imports), frozenset(from_names), frozenset(_bound_names(tree.body)),
                   "__getattr__" in _bound_names(tree.body),
                   any(isinstance(n, ast.Call) and _callee(n) == "iter_modules" for n in ast.walk(tree)))


def _submodules(package: str, root: Path) -> set[str]:
    folder = root.joinpath(*package.split("."))
    names = {f"{package}.{path.stem}" for path in folder.glob("*.py") if path.name != "__init__.py"}
    return names | {f"{package}.{path.parent.name}" for path in folder.glob("*/__init__.py")}


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


class _Graph:
    """The modules of one tree, parsed once each."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def module(self, name: str) -> _Module | None:
        path = module_file(name, self.root)
        return None if path is None else _parse(name, path, path.stat().st_mtime_ns)

    def edges(self, name: str, module: _Module, is_package: bool) -> list[str]:
        """The modules that importing ``name`` imports (names that are not modules are dropped later)."""
        found = [*_parents(name), *module.imports]
        for base, attr in module.from_names:
            found.append(f"{base}.{attr}")
            package = self.module(base)
            if package is not None and package.lazy_attributes and attr not in package.bound:
                found += _submodules(base, self.root)   # a lazily loaded name: from any of its modules
        if is_package and module.iterates_modules:
            found += _submodules(name, self.root)
        return found


def direct_imports(module: str, root: str | Path | None = None) -> set[str]:
    """The modules of ``module``'s top package that its own file imports (not transitively, and
    not the packages above it, which any import runs): the edges of the import graph."""
    root = Path(root) if root is not None else default_root()
    path = module_file(module, root)
    if path is None:
        raise ModuleNotFoundError(f"no module '{module}' under {root}")
    graph, top = _Graph(root), module.split(".")[0]
    found = set(graph.edges(module, graph.module(module), path.name == "__init__.py")) - set(_parents(module))
    return {name for name in found if name.split(".")[0] == top and name != module and module_file(name, root)}


def closure(module: str, root: str | Path | None = None) -> list[str]:
    """The files ``module`` depends on: its own, those of every module of its package it imports
    transitively, and the data files next to them; sorted, relative to ``root`` (POSIX paths)."""
    root = Path(root) if root is not None else default_root()
    top = module.split(".")[0]
    if module_file(module, root) is None:
        raise ModuleNotFoundError(f"no module '{module}' under {root}")
    graph, files = _Graph(root), {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in files or not (name == top or name.startswith(top + ".")):
            continue
        path = module_file(name, root)
        if path is None:   # an attribute (`from .x import y`) rather than a module
            continue
        files[name] = path
        if name != top:   # the top package's own file is the public facade (freeadv.evaluate): what
            # it imports on a call is not what importing the package runs, nor what a command uses
            todo += graph.edges(name, graph.module(name), path.name == "__init__.py")
    found = set(files.values())
    for folder in {path.parent for path in found}:
        found.update(p for pattern in DATA_PATTERNS for p in folder.glob(pattern))
    return sorted(path.relative_to(root).as_posix() for path in found)


def code_digest(module: str, root: str | Path | None = None) -> str:
    """SHA-256 of the files ``module`` depends on (:func:`closure`): their paths and bytes. A
    finished run records it for its training code, so that its outputs are restored only for the
    same code; any edit of one of these files, a comment too, counts as other code."""
    root = Path(root) if root is not None else default_root()
    digest = hashlib.sha256()
    for relative in closure(module, root):
        digest.update(relative.encode() + b"\0" + (root / relative).read_bytes() + b"\0")
    return digest.hexdigest()
