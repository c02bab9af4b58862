"""Plugins: the user's own modules that register methods, models, datasets, attack kinds or targets.

A plugin is an ordinary module that calls ``register_method``, ``register_model``,
``register_dataset``, ``register_attack`` or ``register_targets`` when imported. Two ways name one:

- the environment variable ``FREEADV_PLUGINS=pkg.mod,other.mod`` (a module on ``sys.path``: for a
  file next to the work, or one the workflow's jobs must see, since Snakemake passes the
  environment on to every job, on a workstation and through SLURM);
- an entry point of an installed distribution, in one of :data:`GROUPS`
  (``[project.entry-points."freeadv.methods"] my_method = "my_pkg.method"``).

The command line, the workflow and :func:`freeadv.training.folder.load_trained_model` load them
before anything reads a registry, so a config, a plan or a run folder that names a plugin's entry
resolves the same way in every process. Loading is idempotent: Python imports a module once.
"""
from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Mapping

from .errors import UserError

ENV = "FREEADV_PLUGINS"
GROUPS = ("freeadv.methods", "freeadv.models", "freeadv.datasets", "freeadv.attacks", "freeadv.targets")


class PluginError(UserError):
    """A named plugin that cannot be imported; one line naming it and where it was named."""


def plugin_modules(environ: Mapping[str, str] | None = None) -> list[str]:
    """The module names of ``FREEADV_PLUGINS``, in order, without blanks or repeats."""
    text = (os.environ if environ is None else environ).get(ENV, "")
    return list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


def _import(name: str, where: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError as err:
        raise PluginError(f"{where} names the plugin module '{name}', which cannot be imported: {err}") from None


def load_plugins(environ: Mapping[str, str] | None = None) -> list[str]:
    """Import every plugin: the entry points of :data:`GROUPS`, then ``FREEADV_PLUGINS``. Returns
    the module names imported. An error inside a plugin's own code (not an ImportError) keeps its
    traceback: it is the plugin's bug, not a bad name."""
    loaded = []
    for group in GROUPS:
        for point in entry_points(group=group):
            module = point.value.split(":")[0]
            dist = getattr(point.dist, "name", "an installed package")
            _import(module, f"entry point '{point.name}' ({group}) of {dist}")
            loaded.append(module)
    for name in plugin_modules(environ):
        _import(name, ENV)
        loaded.append(name)
    return list(dict.fromkeys(loaded))
