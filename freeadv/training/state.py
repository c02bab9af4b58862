"""The two objects the engine's steps share: ``Setup`` (built once per process) and ``LoopState``
(what the loop changes, most of it checkpointed)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..data import DataBundle
from ..methods import Method
from .tracking import NoTracker, TensorBoardTracker


@dataclass
class Setup:
    """What one process trains with, built once per process and fixed for the whole run."""
    context: distributed.Context
    device: torch.device
    channels_last: bool
    data: DataBundle
    model: nn.Module                 # the bare model: state dicts, evaluation
    optimizer: torch.optim.Optimizer
    method: Method
    batches_per_pass: int
    total: int                       # iterations of the whole run
    milestones: list[int]
    step_model: nn.Module | None = None   # what method.step trains: DDP / torch.compile around model
    tracker: NoTracker | TensorBoardTracker = field(default_factory=NoTracker)   # log records, also elsewhere

    @property
    def iters_per_pass(self) -> int:
        return self.method.replay * self.batches_per_pass


@dataclass
class LoopState:
    """What changes while training. iteration, log, history, train_seconds, resumes, the kept
    and the best weights and the loss summed since the last read (so that a checkpoint between two loss reads
    resumes to the same loss_history) go into every checkpoint; the timers and ``stopped`` belong
    to this process (a run is never checkpointed after it stops: a restart replays up to the same
    stop)."""
    iteration: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)       # per pass, and per robust check (log.jsonl)
    history: list[dict[str, Any]] = field(default_factory=list)   # one entry per loss read
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0             # this process's CPU time (all its threads) over the same segments
    resumes: int = 0
    kept_model: dict[str, torch.Tensor] | None = None   # early_stop: CPU weights at the last robust check
    kept_iteration: int | None = None                   # ... and the iteration they are of
    best_model: dict[str, torch.Tensor] | None = None   # keep_best: CPU weights of the best check so far
    best: dict[str, Any] | None = None                  # ... and that check (robust.best_record)
    stopped: bool = False                               # early_stop caught catastrophic overfitting
    running_loss: torch.Tensor | None = None   # summed on the device between loss reads
    since_log: int = 0                         # iterations summed into running_loss
    wall_start: float = field(default_factory=time.perf_counter)
    segment_start: float = 0.0                 # start of the training time not yet in train_seconds
    segment_cpu_start: float = 0.0             # ... and of the CPU time not yet in train_cpu_seconds
    last_log_time: float = 0.0


def open_segment(state: LoopState) -> float:
    """Start counting training time (wall and process CPU); returns the wall clock's now."""
    state.segment_start, state.segment_cpu_start = time.perf_counter(), time.process_time()
    return state.segment_start


def close_segment(state: LoopState) -> None:
    """Add the time since :func:`open_segment` to ``train_seconds`` and ``train_cpu_seconds``.

    CPU time beside wall time: on a shared or drifting machine the wall time of a run carries
    whatever else ran; its CPU time does not count the time it waited for the cores."""
    state.train_seconds += time.perf_counter() - state.segment_start
    state.train_cpu_seconds += time.process_time() - state.segment_cpu_start
