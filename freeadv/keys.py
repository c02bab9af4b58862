"""Config keys: one typed declaration each, and the checks behind their one-line errors.

``config.KEYS`` declares the keys every run has as :class:`Key` objects; each registered training
method declares its own the same way (``freeadv.methods``). Both are validated by :func:`check` with the same
wording: ``config key 'K' has bad value V: expected ...``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from .errors import UserError


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _device(value: Any) -> bool:
    """auto, cpu, cuda or cuda:N: the devices freeadv runs on, checked before torch is asked."""
    device = str(value)
    return device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())


def _pixels(value: Any) -> bool:
    return is_number(value) and 0 < value <= 255


# Seeds go to torch.manual_seed and numpy's generators: numpy takes at most 2**32 - 1.
MAX_SEED = 2**32 - 1

# kind -> (test, what the error message says is allowed)
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int>=1": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "int>=1|null": (lambda v: v is None or (is_int(v) and v >= 1), "an integer >= 1 or null"),
    "int>=0": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
    "int>=0|null": (lambda v: v is None or (is_int(v) and v >= 0), "an integer >= 0 or null"),
    "number>0": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "number>=0": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "seed": (lambda v: is_int(v) and 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]"),
    # SGD momentum of 1 or more never forgets a gradient: the loss grows without bound (measured:
    # momentum=5 reached a loss of 2e15 within one run)
    "momentum": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "fraction": (lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "path": (lambda v: isinstance(v, str) and v.strip() != "", "a folder path (a string)"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "pixels": (_pixels, "a number in (0, 255] (pixel units, 8 means 8/255)"),
    "pixels|null": (lambda v: v is None or _pixels(v), "a number in (0, 255] (pixel units) or null"),
    "update|frozen": (lambda v: v in ("update", "frozen"), "update or frozen"),
    # a registered name (dataset, arch, method): its registry checks it where it is loaded
    "name": (lambda v: isinstance(v, str) and v != "", "a registered name"),
    "fractions": (lambda v: isinstance(v, list) and all(is_number(x) and 0 < x < 1 for x in v),
                  "a list of fractions of the training length, each in (0, 1)"),
    "lr_schedule": (lambda v: v in ("step", "cyclic"), "step or cyclic"),
    "robust_eval_source": (lambda v: v in ("validation", "test", "first_train_batch"),
                           "validation, test or first_train_batch"),
    "device": (_device, "auto, cpu, cuda or cuda:N"),
    "amp": (lambda v: v in ("auto", "bf16", "off"), "auto, bf16 or off"),
    "auto|bool": (lambda v: v in ("auto", True, False), "auto, true or false"),
}


class ConfigError(UserError):
    """A bad configuration value; the message is one line naming the key, the value and what is allowed."""


def bad_value(key: str, value: Any, allowed: str) -> ConfigError:
    """``key`` is a config key, or a command-line option ('--device')."""
    name = key if key.startswith("--") else f"config key '{key}'"
    return ConfigError(f"{name} has bad value {value!r}: expected {allowed}")


def check(key: str, value: Any, kind: str) -> None:
    test, allowed = CHECKS[kind]
    if not test(value):
        raise bad_value(key, value, allowed)


@dataclass(frozen=True)
class Key:
    """One config key: its default, its kind (a name in CHECKS) and what it means."""
    default: Any
    kind: str
    doc: str

    def __post_init__(self) -> None:
        if self.kind not in CHECKS:
            raise TypeError(f"Key kind '{self.kind}' is unknown; choose one of {', '.join(CHECKS)}")
