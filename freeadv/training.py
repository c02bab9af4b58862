"""The one training engine every method runs on: data, replay, schedule, timing, checkpoints.

Resumption is exact: the data order and augmentation of every batch, and the random starts of
the training attacks, are pure functions of (seed, epoch, batch, iteration), so a run resumed from
its checkpoint (model, optimizer, perturbation buffer, iteration, logs) ends with the same weights
as an uninterrupted one.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import config as cfg
from . import cpu, distributed
from .data import DataBundle, load_data
from .io import CheckpointError, load_tensors, save_tensors, write_json, atomic_write_text
from .methods import Method, build_method
from .models import build_model
from .provenance import stamp

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
MODEL = "model.pt"
TRAIN_JSON = "train.json"
CONFIG = "config.yaml"
LOG = "log.jsonl"


class NonFiniteLoss(RuntimeError):
    """Training diverged; stop instead of producing garbage."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise cfg.ConfigError(f"config key 'device' has bad value '{name}': CUDA is not available here")
    return torch.device(name)


def setup_runtime(config: dict[str, Any]) -> tuple[torch.device, Any, bool]:
    """Device, autocast context factory and channels_last flag for this config."""
    device = resolve_device(str(config["device"]))
    use_bf16 = config["amp"] == "bf16" or (config["amp"] == "auto" and device.type == "cuda")
    autocast = partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext
    # channels_last is faster for these conv nets on both cuDNN and oneDNN (measured: small_cnn
    # 1.1x, preact_resnet18 1.2x on a 2-core EPYC), so "auto" turns it on everywhere.
    channels_last = config["channels_last"] in (True, "auto")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cpu.tune(device)   # flush denormals, keep freed memory in the heap (why: freeadv.cpu)
    return device, autocast, channels_last


def model_for(config: dict[str, Any], data: DataBundle | None = None, num_classes: int | None = None,
              mean=None, std=None) -> nn.Module:
    """Build the architecture named in a config (normalisation from the dataset)."""
    if data is not None:
        num_classes, mean, std = data.num_classes, data.mean, data.std
    else:
        from .data import MEAN_STD, NUM_CLASSES
        num_classes = NUM_CLASSES[config["dataset"]]
        mean, std = MEAN_STD[config["dataset"]]
    return build_model(config["arch"], num_classes, mean=mean, std=std, width=config["width"])


def data_for(config: dict[str, Any]) -> DataBundle:
    return load_data(config["dataset"], config["data_root"], n_train=config["n_train"], n_test=config["n_test"],
                     data_seed=config["data_seed"], augment=config["augment"], download=config["download"],
                     num_workers=config["num_workers"])


def make_optimizer(model: nn.Module, config: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD with momentum; weight decay on conv/linear weights only, as in Madry et al.'s code
    (their L2 term covers the 'DW' kernels, not BN scales or biases)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": config["weight_decay"]},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=config["lr"], momentum=config["momentum"])


def step_generator(device: torch.device, seed: int, iteration: int, rank: int = 0) -> torch.Generator:
    """Randomness of one training step (attack random starts) as a function of (seed, iteration,
    rank): each data-parallel rank draws its own starts for its own rows."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + iteration + rank * 7_777_777_777) % (2**63))


@torch.no_grad()
def clean_accuracy(model: nn.Module, data: DataBundle, n: int, device: torch.device, batch_size: int = 500) -> float:
    was_training = model.training
    model.eval()
    correct = seen = 0
    for x, y in data.test_batches(batch_size, device=device):
        x, y = x[: n - seen], y[: n - seen]
        correct += int((model(x).argmax(1) == y).sum())
        seen += len(y)
        if seen >= n:
            break
    model.train(was_training)
    return 100.0 * correct / max(seen, 1)


class Trainer:
    """Trains one run directory to completion, resuming whatever is already there."""

    def __init__(self, config: dict[str, Any], run_dir: str | Path, *, progress: bool = True) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress

    # --- checkpoints -------------------------------------------------------------------------
    def _load_checkpoint(self) -> dict[str, Any] | None:
        """The newest readable checkpoint; a corrupt one falls back to the previous, never to zero."""
        paths = [self.run_dir / CHECKPOINT, self.run_dir / PREVIOUS_CHECKPOINT]
        errors = []
        for path in paths:
            if not path.exists():
                continue
            try:
                state = load_tensors(path)
                if not isinstance(state, dict) or "iteration" not in state:
                    raise CheckpointError(f"'{path}' is not a freeadv checkpoint")
                if errors:
                    warnings.warn(f"{errors[0]}; resuming from the previous checkpoint '{path.name}'")
                return state
            except CheckpointError as err:
                errors.append(str(err))
        if errors:
            raise CheckpointError(f"{errors[0]} (and no older good checkpoint); delete the run folder to restart")
        return None

    def _save_checkpoint(self, state: dict[str, Any]) -> None:
        current = self.run_dir / CHECKPOINT
        if current.exists():
            os.replace(current, self.run_dir / PREVIOUS_CHECKPOINT)
        save_tensors(current, state)

    # --- main loop -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train to completion; under torchrun every rank calls this and rank 0 writes the files."""
        context = distributed.from_environment()
        if context.enabled and self.config["batch_size"] % context.world_size:
            raise cfg.ConfigError(f"config key 'batch_size' has bad value {self.config['batch_size']}: with "
                                  f"{context.world_size} data-parallel processes it must be a multiple of "
                                  f"{context.world_size} (each rank trains on an equal shard)")
        try:
            return self._run(context)
        finally:
            distributed.finish(context)

    def _run(self, context: distributed.Context) -> dict[str, Any]:
        config = self.config
        main = context.is_main
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if (self.run_dir / TRAIN_JSON).exists() and (self.run_dir / MODEL).exists():
            from .io import read_json
            done = read_json(self.run_dir / TRAIN_JSON)
            if done.get("config") == config:
                print(f"[freeadv] {self.run_dir} is already trained; not retraining")
                return done
            raise cfg.ConfigError(f"run folder '{self.run_dir}' holds a finished run with a different config; "
                                  "use a new --out folder")
        saved = self.run_dir / CONFIG
        if saved.exists() and (self.run_dir / CHECKPOINT).exists():
            import yaml
            if yaml.safe_load(saved.read_text()) != config:
                raise cfg.ConfigError(f"run folder '{self.run_dir}' holds a checkpoint of a different config; "
                                      "use a new --out folder")
        if main:
            cfg.save_yaml(config, saved)
            for stale in self.run_dir.glob(".*.tmp"):   # half-written files of a killed process
                stale.unlink(missing_ok=True)

        wall_start = time.perf_counter()
        device, autocast, channels_last = setup_runtime(config)
        context, device = distributed.initialise(context, device)
        torch.manual_seed(config["seed"])
        data = data_for(config)
        model = model_for(config, data).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, config)   # DDP shares these parameters
        method = build_method(config, autocast=autocast)
        batches_per_pass = data.num_train_batches(config["batch_size"])
        total, milestones = cfg.schedule(config, batches_per_pass)
        m = method.replay
        iters_per_pass = m * batches_per_pass

        state = self._load_checkpoint()
        iteration, log, history, train_seconds, resumes = 0, [], [], 0.0, 0
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            # the checkpoint holds every rank's rows of the perturbation buffer, in rank order
            method.load_state_dict({k: distributed.shard_rows(v.to(device), context).clone()
                                    for k, v in state["method"].items()})
            iteration, log, history = state["iteration"], state["log"], state["history"]
            train_seconds, resumes = state["train_seconds"], state["resumes"] + 1
            torch.set_rng_state(state["rng_cpu"])
            print(f"[freeadv] resuming {self.run_dir} at iteration {iteration}/{total}")
        parallel_model = distributed.wrap(model, context, device)
        step_model = torch.compile(parallel_model) if config["compile"] else parallel_model

        def snapshot() -> dict[str, Any]:
            """The resumable state; a collective under DDP (every rank must call it)."""
            method_state = {k: distributed.gather_rows(v, context) for k, v in method.state_dict().items()}
            return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "method": method_state, "iteration": iteration, "log": log, "history": history,
                    "train_seconds": train_seconds, "resumes": resumes, "rng_cpu": torch.get_rng_state(),
                    "schedule": {"total": total, "milestones": milestones}}

        bar = _progress_bar(total, iteration, config, enabled=self.progress and main)
        running_loss = torch.zeros((), device=device)
        since_log = 0
        model.train()
        segment_start = last_log_time = time.perf_counter()
        while iteration < total:
            epoch = iteration // iters_per_pass
            start_batch = (iteration % iters_per_pass) // m
            for x, y in data.train_batches(config["batch_size"], epoch=epoch, seed=config["seed"], device=device,
                                           start_batch=start_batch, shard=(context.rank, context.world_size)):
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                for _ in range(iteration % m, m):
                    lr = cfg.learning_rate(config, milestones, iteration)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    generator = (step_generator(device, config["seed"], iteration, context.rank)
                                 if method.name in ("pgd", "fgsm_rs") else None)
                    running_loss += method.step(step_model, optimizer, x, y, generator)
                    iteration += 1
                    since_log += 1
                    if iteration % config["log_every"] == 0 or iteration == total:
                        # the loop's one host sync (and, under DDP, one all-reduce of the loss)
                        mean_loss = float(distributed.mean_over_ranks(running_loss, context)) / since_log
                        if not math.isfinite(mean_loss):
                            raise NonFiniteLoss(f"training loss became non-finite ({mean_loss}) between iterations "
                                                f"{iteration - since_log + 1} and {iteration}; lower lr or check the data")
                        history.append({"iteration": iteration, "loss": mean_loss, "lr": lr})
                        running_loss.zero_()
                        since_log = 0
                        now = time.perf_counter()
                        rate = config["batch_size"] * config["log_every"] / max(now - last_log_time, 1e-9)
                        last_log_time = now
                        bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:g}", img_s=f"{rate:.0f}", refresh=False)
                    bar.update(1)
                    if iteration % config["checkpoint_every"] == 0 and iteration < total:
                        now = time.perf_counter()
                        train_seconds += now - segment_start
                        segment_start = now   # the write below is counted in the next segment: it is part of the cost
                        state = snapshot()
                        if main:
                            self._save_checkpoint(state)
                    if iteration == total:
                        break
                if iteration == total:
                    break
            # end of a pass (or of training): evaluation is not part of the training time
            train_seconds += time.perf_counter() - segment_start
            passes = iteration / iters_per_pass
            entry = {"pass": math.ceil(passes - 1e-9), "iteration": iteration, "epochs_natural": passes * m,
                     "lr": cfg.learning_rate(config, milestones, max(iteration - 1, 0)),
                     "loss": history[-1]["loss"] if history else None,
                     "clean_acc_eval_n": clean_accuracy(model, data, config["eval_n"], device)
                     if config["eval_n"] and main else None,
                     "train_seconds": train_seconds}
            log.append(entry)
            if main:
                atomic_write_text(self.run_dir / LOG, "".join(_json_line(e) for e in log))
            segment_start = time.perf_counter()
        bar.close()

        from .io import write_json as _write
        images = total * config["batch_size"]   # the global batch: all ranks together
        result = {
            "kind": "train", "config": config, "seed": config["seed"], **stamp(device),
            "distributed": context.describe(),
            "iterations": total, "passes": total / iters_per_pass, "replay": m,
            "batches_per_pass": batches_per_pass, "lr_milestones": milestones,
            "n_train": data.n_train, "dataset": data.name,
            "train_seconds": train_seconds, "train_minutes": train_seconds / 60,
            "wall_seconds_last_session": time.perf_counter() - wall_start, "resumes": resumes,
            "images_per_second": images / train_seconds if train_seconds > 0 else None,
            "seconds_per_iteration": train_seconds / total,
            "final_loss": history[-1]["loss"] if history else None,
            "final_clean_acc_eval_n": log[-1]["clean_acc_eval_n"] if log else None,
            "eval_n": config["eval_n"], "log": log, "loss_history": history,
        }
        distributed.barrier(context)
        if main:
            save_tensors(self.run_dir / MODEL, model.state_dict())
            _write(self.run_dir / TRAIN_JSON, result)
            for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
                (self.run_dir / name).unlink(missing_ok=True)
        return result


def _json_line(entry: dict[str, Any]) -> str:
    import json
    return json.dumps(entry, sort_keys=True) + "\n"


def _progress_bar(total: int, initial: int, config: dict[str, Any], enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=not enabled, unit="it", mininterval=2.0,
                desc=f"{config['method']} m={config['replay']}", dynamic_ncols=True)


def load_trained_model(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The final model of a finished run (weights_only load) and its resolved config."""
    import yaml

    run_dir = Path(run_dir)
    weights = run_dir / MODEL
    if not weights.exists():
        raise FileNotFoundError(f"run folder '{run_dir}' has no {MODEL}; train it first (freeadv train --out {run_dir})")
    config = cfg.resolve(yaml.safe_load((run_dir / CONFIG).read_text()))
    model = model_for(config)
    model.load_state_dict(load_tensors(weights))
    return model.to(device).eval(), config
