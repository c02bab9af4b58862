"""The registry of training methods: ``METHODS = {name: class}``, filled by ``@register_method``.

Every module of this package is imported below and registers its methods, so adding a method is
one new file here (plus its rows in the paper design if a table should show it). Config, engine,
experiment plan, ``estimate``, ``bench`` and the CLI help all read this registry; nothing else lists
the methods. The package imports no torch (see freeadv.lazy): the Snakefile builds the plan from it.

    @register_method
    class MyMethod(Method):
        name = "mine"
        keys = {"mine_steps": Key(3, INT_POS, "inner steps")}   # Key and the kinds: freeadv.keys
        ...
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Mapping

from ..keys import ConfigError, Key
from ..registry import Registry
from .base import ATTACK_BN, Method, StepCost, attack_bn_statistics, frozen_bn_statistics

__all__ = ["METHODS", "Method", "StepCost", "Key", "register_method", "get_method", "build_method",
           "method_keys", "method_params", "frozen_bn_statistics", "attack_bn_statistics", "ATTACK_BN"]

METHODS: Registry[type[Method]] = Registry("training method")
_DECLARED = ("title", "id_fragment", "cost", "from_config")


def _declaration_error(cls: type, what: str) -> TypeError:
    return TypeError(f"training method {cls.__name__} ({cls.__module__}) cannot be registered: {what}")


def _check_declarations(cls: type) -> None:
    """Refuse a half-declared method at import time, naming what is missing."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise _declaration_error(cls, "it must subclass freeadv.methods.Method")
    if not cls.name or not cls.name.isidentifier():
        raise _declaration_error(cls, f"name {cls.name!r} must be a non-empty identifier")
    if cls.name in METHODS:
        raise _declaration_error(cls, f"the name '{cls.name}' is already taken by {METHODS[cls.name].__name__}")
    missing = [attr for attr in _DECLARED if getattr(cls, attr).__func__ is getattr(Method, attr).__func__]
    if missing:
        raise _declaration_error(cls, f"it does not define {', '.join(missing)} (see Method's docstring)")
    if cls.step is Method.step and cls.adversarial_input is Method.adversarial_input and cls.name != "natural":
        raise _declaration_error(cls, "it overrides neither adversarial_input nor step, so it trains naturally")
    if cls.replay_default is not None and (not isinstance(cls.replay_default, int) or cls.replay_default < 1):
        raise _declaration_error(cls, f"replay_default {cls.replay_default!r} must be None or an integer >= 1")
    for key, declared in cls.keys.items():
        if not isinstance(declared, Key):
            raise _declaration_error(cls, f"keys['{key}'] must be a freeadv.keys.Key, got {type(declared).__name__}")
        for other in METHODS.values():
            if key in other.keys and other.keys[key] != declared:
                raise _declaration_error(cls, f"config key '{key}' is declared differently by {other.__name__}")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: check the declarations, then add the class to METHODS under ``cls.name``."""
    _check_declarations(cls)
    return METHODS.add(cls.name, cls)


def get_method(name: str) -> type[Method]:
    if not isinstance(name, str) or name not in METHODS:
        raise ConfigError(f"config key 'method' has bad value {name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[name]


def method_keys() -> dict[str, Key]:
    """Every method-specific config key of every registered method."""
    return {key: declared for cls in METHODS.values() for key, declared in cls.keys.items()}


def default_replay(cls: type[Method]) -> int:
    """m when a config does not set ``replay``: the method's own default, else 1 (the method sees
    each minibatch once). The one place this default is computed."""
    return cls.replay_default or 1


def method_params(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The method's own keys (and replay) from ``given``, defaults filled: what title / id read."""
    cls = get_method(name)
    params = {key: declared.default for key, declared in cls.keys.items()}
    params["replay"] = default_replay(cls)
    params.update((k, v) for k, v in given.items() if k in params or k == "eps")
    return params


def build_method(config: Mapping[str, Any], autocast=None) -> Method:
    """The strategy object that trains with ``config`` (sizes in [0, 1] units)."""
    return get_method(config["method"]).from_config(config, autocast)


def _register_builtin_modules() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


_register_builtin_modules()

# The paper's methods by class name, for code and tests that subclass or patch them.
from .fgsm_rs import FGSMRandomStart  # noqa: E402
from .free import Free  # noqa: E402
from .natural import Natural  # noqa: E402
from .pgd import PGDTraining  # noqa: E402
