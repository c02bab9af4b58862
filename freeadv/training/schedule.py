"""The learning-rate schedule of a run: its length in iterations, the step schedule's milestones,
and the rate of each update as a pure function of the iteration (so a resumed run gets the same
rates). Read by the engine and by the time estimate."""
from __future__ import annotations

import math
from typing import Any

from ..keys import ConfigError


def schedule(config: dict[str, Any], batches_per_pass: int) -> tuple[int, list[int]]:
    """Total iterations and the learning-rate milestones (in iterations) for this run; the cyclic
    schedule has none (it is a function of the iteration and the total only)."""
    total, milestones = _length_and_milestones(config, batches_per_pass)
    return total, ([] if config["lr_schedule"] == "cyclic" else milestones)


def _length_and_milestones(config: dict[str, Any], batches_per_pass: int) -> tuple[int, list[int]]:
    """Total iterations and the step schedule's milestones (in iterations).

    With ``iterations`` set (CIFAR) every method gets the same number of parameter updates; free-m
    makes ``iterations / (m * batches)`` passes over the data. With ``epochs`` set (ImageNet) free-m
    makes ceil(epochs / m) passes and decays every ceil(lr_step_epochs / m) passes, as in the paper.
    """
    m = config["replay"]   # 1 for methods without replay (validate checks it)
    iters_per_pass = m * batches_per_pass
    if config["iterations"] is not None:
        total = config["iterations"]
        milestones = [round(f * total) for f in config["lr_milestones"]]
        if config["lr_step_epochs"] is not None:
            raise ConfigError("config keys 'iterations' and 'lr_step_epochs' conflict: set epochs for a per-epoch schedule")
        return total, milestones
    passes = math.ceil(config["epochs"] / m)
    total = passes * iters_per_pass
    if config["lr_step_epochs"] is not None:
        every = math.ceil(config["lr_step_epochs"] / m) * iters_per_pass
        milestones = list(range(every, total, every))
    else:
        milestones = [round(f * total) for f in config["lr_milestones"]]
    return total, milestones


def learning_rate(config: dict[str, Any], milestones: list[int], iteration: int, total: int | None = None) -> float:
    """The rate of update ``iteration`` (0-based): a pure function of it, so a resumed run gets the
    same rates. Step schedule: lr * gamma ** (milestones already reached). Cyclic (Wong et al.'s
    triangle, torch's CyclicLR with base 0 and step_size_up = step_size_down = total / 2): 0 at
    the first update, lr at total / 2, back to 0 at total; ``total`` is required."""
    if config["lr_schedule"] == "cyclic":
        if total is None:
            raise ValueError("the cyclic learning-rate schedule needs the run's total iterations")
        return config["lr"] * max(0.0, 1.0 - abs(2.0 * iteration / total - 1.0))
    passed = sum(1 for mark in milestones if iteration > mark or (iteration == mark and _per_pass(config)))
    return config["lr"] * config["lr_gamma"] ** passed


def _per_pass(config: dict[str, Any]) -> bool:
    """Whether the step schedule's milestones are pass boundaries (``epochs`` set: ImageNet) rather
    than update counts (``iterations`` set: CIFAR). The official ImageNet code sets the rate at each
    epoch's start, so the first update of a new pass already has the new rate. The CIFAR code
    (Madry et al.'s TF, which the paper's TF code keeps) uses ``tf.train.piecewise_constant``, whose
    value is the old rate while the global step is <= the boundary: update 40,000 (0-based) still
    runs at 0.1, so 40,001 updates get the first rate."""
    return config["iterations"] is None
