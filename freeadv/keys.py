"""Config keys: one typed declaration each, and the checks behind their one-line errors.

A key is a :class:`Key` (default, :class:`Kind`, meaning). ``config.KEYS`` declares the keys every
run has; each registered training method declares its own the same way (``freeadv.methods``). A
kind is an object holding its test and the words an error shows, so a key checks its own value
(:meth:`Key.check`) and every key, shared or a method's, fails with the same wording:
``config key 'K' has bad value V: expected ...``. The module imports no torch: the experiment plan
checks a scale's settings with it while Snakemake parses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from .errors import UserError


class ConfigError(UserError):
    """A bad configuration value; the message is one line naming the key, the value and what is allowed."""


def bad_value(key: str, value: Any, allowed: str) -> ConfigError:
    """``key`` is a config key, or a command-line option ('--device')."""
    name = key if key.startswith("--") else f"config key '{key}'"
    return ConfigError(f"{name} has bad value {value!r}: expected {allowed}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Kind:
    """What values a key accepts: ``test`` says whether one is allowed, ``allowed`` says which are,
    in the words of the error message."""
    test: Callable[[Any], bool]
    allowed: str

    def __post_init__(self) -> None:
        if not callable(self.test) or not isinstance(self.allowed, str):
            raise TypeError("Kind(test, allowed) takes a function of the value and the words of its error")

    def check(self, key: str, value: Any) -> None:
        """Raise the one-line ConfigError naming ``key`` (or a '--option') when ``value`` is not allowed."""
        if not self.test(value):
            raise bad_value(key, value, self.allowed)


@dataclass(frozen=True)
class _OneOf:
    """The test of :func:`choice`; a dataclass, so two kinds made of the same values are equal."""
    values: tuple[Any, ...]

    def __call__(self, value: Any) -> bool:
        return value in self.values


@dataclass(frozen=True)
class _OrNull:
    """The test of :func:`or_null`."""
    test: Callable[[Any], bool]

    def __call__(self, value: Any) -> bool:
        return value is None or self.test(value)


def _written(value: Any) -> str:
    """A value as a config file writes it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def choice(*values: Any) -> Kind:
    """One of a fixed set of values (an enumeration): ``choice("step", "cyclic")`` allows exactly
    those and says "step or cyclic"."""
    if len(values) < 2:
        raise TypeError("choice() needs at least two values")
    words = [_written(value) for value in values]
    return Kind(_OneOf(tuple(values)), f"{', '.join(words[:-1])} or {words[-1]}")


def or_null(kind: Kind, allowed: str | None = None) -> Kind:
    """``kind`` or null (YAML's null, Python's None: "use the default" for keys that say so)."""
    return Kind(_OrNull(kind.test), allowed or f"{kind.allowed} or null")


def _device(value: Any) -> bool:
    """auto, cpu, cuda or cuda:N: the devices freeadv runs on, checked before torch is asked."""
    device = str(value)
    return device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())


def _pixels(value: Any) -> bool:
    return is_number(value) and 0 < value <= 255


# Seeds go to torch.manual_seed and numpy's generators: numpy takes at most 2**32 - 1.
MAX_SEED = 2**32 - 1

INT_POS = Kind(lambda v: is_int(v) and v >= 1, "an integer >= 1")
INT_POS_OR_NULL = or_null(INT_POS)
INT_NONNEG = Kind(lambda v: is_int(v) and v >= 0, "an integer >= 0")
INT_NONNEG_OR_NULL = or_null(INT_NONNEG)
NUMBER_POS = Kind(lambda v: is_number(v) and v > 0, "a number > 0")
NUMBER_NONNEG = Kind(lambda v: is_number(v) and v >= 0, "a number >= 0")
SEED = Kind(lambda v: is_int(v) and 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]")
# SGD momentum of 1 or more never forgets a gradient: the loss grows without bound (measured:
# momentum=5 reached a loss of 2e15 within one run)
MOMENTUM = Kind(lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)")
FRACTION = Kind(lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]")
FRACTIONS = Kind(lambda v: isinstance(v, list) and all(is_number(x) and 0 < x < 1 for x in v),
                 "a list of fractions of the training length, each in (0, 1)")
PATH = Kind(lambda v: isinstance(v, str) and v.strip() != "", "a folder path (a string)")
BOOL = Kind(lambda v: isinstance(v, bool), "true or false")
PIXELS = Kind(_pixels, "a number in (0, 255] (pixel units, 8 means 8/255)")
PIXELS_OR_NULL = or_null(PIXELS, "a number in (0, 255] (pixel units) or null")
# a registered name (dataset, arch, method): its registry checks it where it is loaded, so this
# kind only refuses what can be no name at all (the plan checks names without the model registry)
NAME = Kind(lambda v: isinstance(v, str) and v != "", "a registered name")
# a description whose fields its own reader checks (freeadv.data.custom: a user's dataset)
MAPPING_OR_NULL = Kind(lambda v: v is None or isinstance(v, dict), "null or a mapping")
DEVICE = Kind(_device, "auto, cpu, cuda or cuda:N")
AMP = choice("auto", "bf16", "fp16", "off")
AUTO_OR_BOOL = choice("auto", True, False)


@dataclass(frozen=True)
class Key:
    """One config key: its default, its :class:`Kind` and what it means."""
    default: Any
    kind: Kind
    doc: str

    def __post_init__(self) -> None:
        if not isinstance(self.kind, Kind):
            raise TypeError(f"Key kind must be a freeadv.keys.Kind (e.g. keys.INT_POS, keys.choice('a', 'b')), "
                            f"got {type(self.kind).__name__} {self.kind!r}")
        if not self.kind.test(self.default):   # a default its own check refuses would fail every run
            raise TypeError(f"Key default {self.default!r} is not of its kind: expected {self.kind.allowed}")

    def check(self, name: str, value: Any) -> None:
        """Raise the one-line ConfigError when ``value`` is not of this key's kind; ``name`` is the
        key's name, which the key itself does not know (the dict that declares it does)."""
        self.kind.check(name, value)
