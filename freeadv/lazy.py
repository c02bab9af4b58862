"""Lazy imports of torch-heavy modules for the registries.

A registered training method or attack is ONE class holding both what the experiment plan needs
(config keys, title, model-id fragment, cost) and its torch implementation. The plan is built when
Snakemake parses the workflow, on every job of a cluster run, and importing torch costs ~2 s on
this project's CPU VM; so the registry modules bind torch (and the library's torch modules) through
:func:`lazy_import`: the name is bound at the top of the module, and the module is imported on its
first attribute access, i.e. when a training step or an attack actually runs. Until then nothing is
imported or registered in ``sys.modules``.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for a module; imports it on the first attribute access, then forwards to it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module '{self._name}' ({state})>"


def lazy_import(name: str) -> Any:
    """``name`` as an object that imports the module on first attribute access."""
    return LazyModule(name)


def lazy_attributes(package: str, names: dict[str, str]):
    """A PEP 562 module ``__getattr__`` for ``package``: ``names`` maps an attribute to the submodule
    holding it, imported on first access (then cached in the package, so later lookups are direct).
    For packages whose light part is read at parse time and whose torch part is not."""
    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        setattr(importlib.import_module(package), name, value)
        return value
    return __getattr__
