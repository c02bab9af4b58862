"""The training loop in named steps: build, restore, one pass over the data, log, checkpoint,
end-of-pass evaluation, robust checks. ``Trainer`` strings them together; the run folder's files
(checks before, model.pt and train.json after) are freeadv.training.folder's.

Timing: ``train_seconds`` adds up the segments between evaluations; a checkpoint write falls
inside a segment (it is part of what training costs), the end-of-pass evaluation and the robust
checks do not. The loop syncs with the device only every ``log_every`` iterations (the loss read)
and at robust checks.

log.jsonl, one JSON object a line (rewritten whole after every new entry):

* every pass end: ``pass`` (1-based), ``iteration``, ``epochs_natural``, ``lr`` (of the last
  update), ``loss`` (the last loss read), ``clean_acc_eval_n`` (percent on the first eval_n
  validation images when the checks attack them, else test images; or null), ``train_seconds``;
* every robust check (freeadv.training.robust.CHECK_KEYS): ``iteration``, ``pass``,
  ``epochs_natural``, ``heldout_clean_acc``, ``heldout_robust_acc`` (percent; robust <= clean,
  whatever the source), ``robust_eval_n`` (images checked), ``robust_eval_source`` (validation,
  test or first_train_batch; older logs say heldout for test), ``robust_eval_steps``,
  ``check_seconds``. A check at a pass end is merged into that pass's entry. One mid-pass
  (``robust_eval_every``) or at a pass start (``first_train_batch``: before training on the batch,
  so its iteration is the pass's first) is an entry of its own: the check keys plus ``lr`` and
  ``train_seconds``, with ``pass`` the pass it falls in. Entries without a check have none of the
  check keys but ``iteration``, ``pass`` and ``epochs_natural``.

``logger: tensorboard`` also writes each record as TensorBoard scalars (freeadv.training.tracking).
train.json's ``peak_memory_mb`` is this process's peak of device memory (CUDA; null elsewhere).

A pass end's checkpoint is written after its evaluation, so a run resumed from it has that pass's
entry. With ``early_stop``, the weights of every robust check are kept (on the CPU, and in the
checkpoints); the first fall of more than robust.CO_DROP_POINTS stops training and model.pt gets
the kept weights (Wong et al. 2020). With ``keep_best``, the weights of the check with the highest
robust accuracy so far are kept the same way, and become model_best.pt beside the final model.pt.
Test images are read while training only for ``robust_eval_source: test``, or for the pass-end
clean accuracy of a run whose checks attack no validation images.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm import tqdm

from .. import checkpoints
from .. import config as cfg
from .. import distributed
from ..methods import build_method
from . import folder, lock, robust, tracking
from . import schedule as lr_schedule
from ..precision import make_scaler
from .runtime import (clean_accuracy, compile_model, data_for, make_optimizer, model_for, place_batch, place_model,
                      setup_runtime, step_generator)
from .state import LoopState, Setup, close_segment, open_segment


class NonFiniteLoss(RuntimeError, ValueError):   # a user-facing stop: exit 2, one line
    """Training diverged; stop instead of producing garbage."""


class Trainer:
    """Trains one run directory to completion, resuming whatever is already there."""

    def __init__(self, config: dict[str, Any], run_dir: str | Path, *, progress: bool = True,
                 supersede: bool = False, restore: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.state: LoopState | None = None   # the loop's state once training has begun
        self.supersede, self.restore = supersede, restore   # freeadv.training.folder.prepare's

    def run(self) -> dict[str, Any]:
        """Train to completion; under torchrun every rank calls this and rank 0 writes the files."""
        context = distributed.from_environment()
        if context.enabled and self.config["batch_size"] % context.world_size:
            raise cfg.ConfigError(f"config key 'batch_size' has bad value {self.config['batch_size']}: with "
                                  f"{context.world_size} data-parallel processes it must be a multiple of "
                                  f"{context.world_size} (each rank trains on an equal shard)")
        tracking.require(self.config)
        try:
            return self._run(context)
        except KeyboardInterrupt as stop:   # SIGINT, or SIGTERM as freeadv.cli raises it
            stop.note = self._interrupted_note()
            raise
        finally:
            distributed.finish(context)

    def _interrupted_note(self) -> str:
        """Where a stopped run stood, for the one line the CLI prints: the next start resumes it
        from its newest checkpoint (every file is written whole or not at all)."""
        where = "before training began" if self.state is None else f"at iteration {self.state.iteration}"
        return f"interrupted {where}; the same command resumes"

    def _run(self, context: distributed.Context) -> dict[str, Any]:
        if context.is_main:
            folder.check_out_folder(self.run_dir)
        with lock.hold(self.run_dir, main=context.is_main):
            return self._run_locked(context)

    def _run_locked(self, context: distributed.Context) -> dict[str, Any]:
        finished = folder.prepare(self.run_dir, self.config, main=context.is_main, supersede=self.supersede,
                                  restore=self.restore)
        if finished is not None:
            return finished
        state = self.state = LoopState()   # this process's wall clock starts here
        setup = self._build(context)
        tracking.reset_peak_memory(setup.device)   # the peak of this training, not of earlier work in the process
        self._restore(setup, state)
        # wrapped after the restore, as always: DDP broadcasts rank 0's (restored) weights here
        parallel_model = distributed.wrap(setup.model, setup.context, setup.device)
        setup.step_model = compile_model(parallel_model, self.config)
        bar = _progress_bar(self.config, setup.total, state.iteration, enabled=self.progress and context.is_main)
        setup.tracker = tracking.open_tracker(self.config, self.run_dir, state.log, state.iteration,
                                              main=context.is_main)
        try:
            self._train(setup, state, bar)
        finally:
            bar.close()   # also on an error: its line ends before the error message starts
            setup.tracker.close()
        result = folder.summary(self.config, setup, state)
        result["peak_memory_mb"] = tracking.peak_memory_mb(setup.device)
        weights = state.kept_model if state.stopped else setup.model.state_dict()
        folder.finish(self.run_dir, setup, result, weights, best=state.best_model)
        return result

    # --- before the loop -----------------------------------------------------------------------
    def _build(self, context: distributed.Context) -> Setup:
        """Runtime, data, model, optimizer, method and schedule (in this order: the seed is set
        once, before the data and the model draw from it)."""
        config = self.config
        device, autocast, channels_last = setup_runtime(config)
        context, device = distributed.initialise(context, device)
        torch.manual_seed(config["seed"])
        data = data_for(config)
        model = place_model(model_for(config, data), device, channels_last)
        optimizer = make_optimizer(model, config)   # DDP shares these parameters
        method = build_method(config, autocast=autocast)
        method.scaler = make_scaler(config["amp"], device)
        batches_per_pass = data.num_train_batches(config["batch_size"])
        total, milestones = lr_schedule.schedule(config, batches_per_pass)
        return Setup(context, device, channels_last, data, model, optimizer, method, batches_per_pass,
                     total, milestones)

    def _restore(self, setup: Setup, state: LoopState) -> None:
        """Model, optimizer, fp16's loss scaler, method buffers, loop state and CPU RNG from the newest
        good checkpoint."""
        saved = checkpoints.load_checkpoint(self.run_dir)
        if saved is None:
            return
        if "config" in saved and not folder.same_config(saved["config"], self.config):   # older ones lack it
            raise cfg.ConfigError(f"the checkpoint in '{self.run_dir}' was written by a run of a different config "
                                  "than its config.yaml; use a new --out folder")
        setup.model.load_state_dict(saved["model"])
        setup.optimizer.load_state_dict(saved["optimizer"])
        if setup.method.scaler is not None and "scaler" in saved:   # amp: fp16's loss scale and its growth count
            setup.method.scaler.load_state_dict(saved["scaler"])
        # the checkpoint holds every rank's rows of the perturbation buffer, in rank order
        setup.method.load_state_dict({k: distributed.shard_rows(v.to(setup.device), setup.context).clone()
                                      for k, v in saved["method"].items()})
        state.iteration, state.log, state.history = saved["iteration"], saved["log"], saved["history"]
        state.train_seconds, state.resumes = saved["train_seconds"], saved["resumes"] + 1
        state.train_cpu_seconds = saved.get("train_cpu_seconds", 0.0)   # older checkpoints lack it
        state.kept_model, state.kept_iteration = saved.get("kept_model"), saved.get("kept_iteration")
        state.best_model, state.best = saved.get("best_model"), saved.get("best")
        if "running_loss" in saved:   # older checkpoints restart the sum (their loss_history differs, not the weights)
            mine = distributed.shard_rows(saved["running_loss"].to(setup.device), setup.context)
            state.running_loss, state.since_log = mine.reshape(()).clone(), saved["since_log"]
        torch.set_rng_state(saved["rng_cpu"])
        print(f"[freeadv] resuming {self.run_dir} at iteration {state.iteration}/{setup.total}")

    # --- the loop ------------------------------------------------------------------------------
    def _train(self, setup: Setup, state: LoopState, bar: tqdm) -> None:
        if state.running_loss is None:   # else restored from the checkpoint with since_log
            state.running_loss, state.since_log = torch.zeros((), device=setup.device), 0
        setup.model.train()
        state.last_log_time = open_segment(state)
        while state.iteration < setup.total and not state.stopped:
            self._one_pass(setup, state, bar)
            if not state.stopped:
                self._end_of_pass(setup, state)
            if self._checkpoint_due(setup, state):
                self._checkpoint(setup, state)

    def _one_pass(self, setup: Setup, state: LoopState, bar: tqdm) -> None:
        """The rest of the current pass: each minibatch replayed m times, from wherever the state
        stands (mid-pass and mid-replay after a resume), stopping at the last iteration or at an
        early stop. The pass end's check and checkpoint come after its evaluation (_train)."""
        config, m, per_pass = self.config, setup.method.replay, setup.iters_per_pass
        epoch = state.iteration // per_pass
        start_batch = (state.iteration % per_pass) // m
        for x, y in setup.data.train_batches(config["batch_size"], epoch=epoch, seed=config["seed"],
                                             device=setup.device, start_batch=start_batch,
                                             shard=(setup.context.rank, setup.context.world_size)):
            x = place_batch(x, setup.channels_last)
            if state.iteration % per_pass == 0 and robust.at_pass_start(config):
                self._own_check(setup, state, epoch + 1, (x, y))
                if state.stopped:
                    return
            for _ in range(state.iteration % m, m):
                lr = self._step(setup, state, x, y)
                if state.iteration % config["log_every"] == 0 or state.iteration == setup.total:
                    self._log(setup, state, lr, bar)
                bar.update(1)
                if state.iteration == setup.total:
                    return
                if state.iteration % per_pass and self._mid_pass(setup, state, epoch + 1):
                    return

    def _mid_pass(self, setup: Setup, state: LoopState, pass_number: int) -> bool:
        """The robust check and the checkpoint due after an update inside a pass; True when the
        check stopped the run."""
        if robust.due_after(self.config, state.iteration, pass_end=False):
            self._own_check(setup, state, pass_number)
        if self._checkpoint_due(setup, state):
            self._checkpoint(setup, state)
        return state.stopped

    def _checkpoint_due(self, setup: Setup, state: LoopState) -> bool:
        """Every checkpoint_every iterations, but not after the last update or an early stop (the
        run is finished then: model.pt and train.json follow)."""
        return (state.iteration % self.config["checkpoint_every"] == 0 and state.iteration < setup.total
                and not state.stopped)

    def _step(self, setup: Setup, state: LoopState, x: torch.Tensor, y: torch.Tensor) -> float:
        """One parameter update at the scheduled learning rate; returns that rate."""
        config, method = self.config, setup.method
        lr = lr_schedule.learning_rate(config, setup.milestones, state.iteration, setup.total)
        for group in setup.optimizer.param_groups:
            group["lr"] = lr
        generator = (step_generator(setup.device, config["seed"], state.iteration, setup.context.rank)
                     if method.needs_randomness else None)
        state.running_loss += method.step(setup.step_model, setup.optimizer, x, y, generator)
        state.iteration += 1
        state.since_log += 1
        return lr

    def _log(self, setup: Setup, state: LoopState, lr: float, bar: tqdm) -> None:
        """The periodic loss read: the loop's one host sync (and, under DDP, one all-reduce)."""
        mean_loss = float(distributed.mean_over_ranks(state.running_loss, setup.context)) / state.since_log
        if not math.isfinite(mean_loss):
            raise NonFiniteLoss(f"training loss became non-finite ({mean_loss}) between iterations "
                                f"{state.iteration - state.since_log + 1} and {state.iteration}; "
                                "lower lr or check the data")
        state.history.append({"iteration": state.iteration, "loss": mean_loss, "lr": lr})
        state.running_loss.zero_()
        state.since_log = 0
        now = time.perf_counter()
        rate = self.config["batch_size"] * self.config["log_every"] / max(now - state.last_log_time, 1e-9)
        state.last_log_time = now
        bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:g}", img_s=f"{rate:.0f}", refresh=False)

    def _checkpoint(self, setup: Setup, state: LoopState) -> None:
        """Close the timing segment, then write (rank 0) the state every rank snapshots."""
        close_segment(state)
        open_segment(state)   # the write below is counted in the next segment: it is part of the cost
        snapshot = self._snapshot(setup, state)
        if setup.context.is_main:
            checkpoints.save_checkpoint(self.run_dir, snapshot)

    def _snapshot(self, setup: Setup, state: LoopState) -> dict[str, Any]:
        """The resumable state; a collective under DDP (every rank must call it)."""
        method_state = {k: distributed.gather_rows(v, setup.context) for k, v in setup.method.state_dict().items()}
        return {"model": setup.model.state_dict(), "optimizer": setup.optimizer.state_dict(),
                "method": method_state, "iteration": state.iteration, "log": state.log, "history": state.history,
                "train_seconds": state.train_seconds, "train_cpu_seconds": state.train_cpu_seconds,
                "resumes": state.resumes, "rng_cpu": torch.get_rng_state(),
                "schedule": {"total": setup.total, "milestones": setup.milestones},
                "kept_model": state.kept_model, "kept_iteration": state.kept_iteration,
                "best_model": state.best_model, "best": state.best, "config": self.config,
                # each rank's loss summed since the last read, and how many iterations it holds
                "running_loss": distributed.gather_rows(state.running_loss.detach().reshape(1), setup.context).cpu(),
                "since_log": state.since_log,
                **({} if setup.method.scaler is None else {"scaler": setup.method.scaler.state_dict()})}

    def _end_of_pass(self, setup: Setup, state: LoopState) -> None:
        """Evaluate off the clock (clean accuracy, the robust check when due) and append the pass
        to log.jsonl."""
        config, main = self.config, setup.context.is_main
        with _off_the_clock(state):
            passes = state.iteration / setup.iters_per_pass
            split = "validation" if cfg.uses_validation(config) else "test"
            accuracy = (clean_accuracy(setup.model, setup.data, config["eval_n"], setup.device, split=split)
                        if config["eval_n"] and main else None)
            entry = {"pass": math.ceil(passes - 1e-9), "iteration": state.iteration,
                     "epochs_natural": passes * setup.method.replay, "lr": self._last_lr(setup, state),
                     "loss": state.history[-1]["loss"] if state.history else None,
                     "clean_acc_eval_n": accuracy, "train_seconds": state.train_seconds}
            state.log.append(entry)
            if robust.due_after(config, state.iteration, pass_end=True):
                self._robust_check(setup, state, entry)
            if main:
                folder.write_log(self.run_dir, state.log, setup.tracker)

    def _own_check(self, setup: Setup, state: LoopState, pass_number: int,
                   batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """A robust check away from a pass end (mid-pass, or a pass start on ``batch``): an entry
        of its own in log.jsonl, off the clock."""
        main = setup.context.is_main
        with _off_the_clock(state):
            entry = {"pass": pass_number, "iteration": state.iteration,
                     "epochs_natural": state.iteration / setup.iters_per_pass * setup.method.replay,
                     "lr": self._last_lr(setup, state), "train_seconds": state.train_seconds}
            if main:
                state.log.append(entry)
            self._robust_check(setup, state, entry, batch)
            if main:
                folder.write_log(self.run_dir, state.log, setup.tracker)

    def _robust_check(self, setup: Setup, state: LoopState, entry: dict[str, Any],
                      batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """The check (main rank only, like the clean accuracy) into ``entry``; with keep_best, the
        main rank keeps these weights if they are the best so far; with early_stop, every rank then
        keeps these weights or stops."""
        if setup.context.is_main:
            record = robust.check(self.config, setup, state.iteration, entry["pass"], batch)
            entry.update(record)
            if self.config["keep_best"] and robust.better(record, state.best):
                state.best = robust.best_record(record)
                state.best_model = robust.cpu_copy(setup.model.state_dict())
        if self.config["early_stop"]:
            self._keep_or_stop(setup, state)

    def _keep_or_stop(self, setup: Setup, state: LoopState) -> None:
        """Wong et al.'s early stop: at the first fall of more than CO_DROP_POINTS stop (all ranks:
        the main rank's decision is shared), else keep these weights in case a later check falls."""
        main = setup.context.is_main
        fell = main and robust.collapse(robust.checks(state.log)) is not None
        shared = distributed.mean_over_ranks(torch.tensor(float(fell), device=setup.device), setup.context)
        if float(shared) > 0:
            state.stopped = True
        elif main:
            state.kept_model = robust.cpu_copy(setup.model.state_dict())
            state.kept_iteration = state.iteration

    def _last_lr(self, setup: Setup, state: LoopState) -> float:
        """The rate of the latest update (of the first one before any)."""
        return lr_schedule.learning_rate(self.config, setup.milestones, max(state.iteration - 1, 0), setup.total)


@contextmanager
def _off_the_clock(state: LoopState) -> Iterator[None]:
    """Close the timing segment for the block (evaluation is not training time), reopen it after."""
    close_segment(state)
    yield
    open_segment(state)


def _progress_bar(config: dict[str, Any], total: int, initial: int, *, enabled: bool) -> tqdm:
    return tqdm(total=total, initial=initial, disable=not enabled, unit="it", mininterval=2.0,
                desc=f"{config['method']} m={config['replay']}", dynamic_ncols=True)
