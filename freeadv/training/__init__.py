"""The one training engine every method runs on: data, replay, schedule, timing, checkpoints.

Resumption is exact: the data order and augmentation of every batch, and the random starts of
the training attacks, are pure functions of (seed, epoch, batch, iteration), so a run resumed from
its checkpoint (model, optimizer, perturbation buffer, iteration, logs) ends with the same weights
as an uninterrupted one.

Modules by concern:

* ``runtime`` -- device, autocast, memory format (``place_model``/``place_batch``), the model, data
  and optimizer of a config, the per-step random generator, clean accuracy
* ``state``   -- ``Setup`` (built once per process) and ``LoopState`` (what the loop changes)
* ``engine``  -- ``Trainer``: build, restore, the replay loop, loss reads, checkpoints, evaluation
* ``schedule`` -- the run's length in iterations, the step schedule's milestones, each update's rate
* ``robust``  -- robust accuracy checks during training, catastrophic overfitting (Wong et al. 2020)
* ``folder``  -- the run folder: checks before training, log.jsonl, train.json, model.pt and
  model_best.pt, loading (``load_trained_model``: final or best weights),
  ``read_robust_checks`` (a run's check records, finished or not)
* tensor files and the rotating checkpoints are freeadv.checkpoints'
"""
from __future__ import annotations

from ..checkpoints import CHECKPOINT, PREVIOUS_CHECKPOINT
from .engine import NonFiniteLoss, Trainer
from .folder import CONFIG, LOG, MODEL, MODEL_BEST, TRAIN_JSON, load_trained_model, read_robust_checks
from .runtime import (clean_accuracy, data_for, make_optimizer, model_for, place_batch, place_model,
                      resolve_device, setup_runtime, step_generator, uses_bf16)
from .state import LoopState, Setup

__all__ = ["Trainer", "NonFiniteLoss", "Setup", "LoopState", "load_trained_model", "read_robust_checks",
           "resolve_device",
           "setup_runtime", "uses_bf16", "place_model", "place_batch", "model_for", "data_for", "make_optimizer",
           "step_generator", "clean_accuracy", "CHECKPOINT", "PREVIOUS_CHECKPOINT", "MODEL", "MODEL_BEST", "TRAIN_JSON",
           "CONFIG", "LOG"]
