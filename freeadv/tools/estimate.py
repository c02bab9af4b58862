"""`freeadv estimate TARGET --scale S`: the wall time of a target's jobs on this device, before launch.

Two costs are measured per architecture on this device: a training step (forward + full backward +
SGD step) and an attack step (forward + input-only backward). Every job is then a count of those:
each training method declares what one of its iterations costs in those units (``Method.cost``:
natural and Free-m one training step, Free's claim that ``freeadv bench`` checks; K-PGD one
training step plus K attack steps; FGSM-RS one plus one), and each attack kind what it costs per
test batch (``AttackKind.cost``: steps x restarts, an upper bound since restarts attack only the
still-robust examples). On a CPU the steps are timed at a small probe batch and scaled linearly.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .. import config as cfg
from ..attacks import AttackSpec
from ..perturb import input_gradient
from .bench import time_interleaved
from ..data import DATASETS
from ..experiments.plan import Plan
from ..methods import METHODS, get_method
from ..training import make_optimizer, model_for, place_batch, place_model, setup_runtime
from ..errors import UserError
from ..training import schedule as lr_schedule

CPU_PROBE_BATCH = 32
# A step cost's record says whether it was measured at ImageNet's input size ("imagenet": true).
IMAGENET_INPUT = DATASETS["imagenet"].input_size


def split_size(config: dict[str, Any], split: str) -> int:
    """Images in a split: n_train / n_test where set, else the dataset's size (a whole training
    split less the validation images the run holds out of it; generated data such as synthetic
    draws those apart, and has the default sizes of its DatasetSpec)."""
    requested = config["n_train" if split == "train" else "n_test"]
    if requested is not None:
        return requested
    spec = DATASETS[config["dataset"]]
    if spec.split_sizes is None:
        return spec.default_sizes[0 if split == "train" else 1]
    train, test = spec.split_sizes
    return train - cfg.validation_size(config) if split == "train" else test


def iterations(config: dict[str, Any]) -> int:
    batches = math.ceil(split_size(config, "train") / config["batch_size"])
    return lr_schedule.schedule(config, batches)[0]


def measure_step_costs(config: dict[str, Any], device: str, probe_batch: int | None, reps: int) -> dict[str, float]:
    """Seconds per training step and per attack step at the job's batch size, on ``device``."""
    dev, autocast, channels_last = setup_runtime({**config, "device": device})
    batch = config["batch_size"]
    probe = probe_batch or (batch if dev.type == "cuda" else min(batch, CPU_PROBE_BATCH))
    size = DATASETS[config["dataset"]].input_size
    torch.manual_seed(0)
    x = torch.rand(probe, 3, size, size, device=dev)
    y = torch.randint(0, 2, (probe,), device=dev)
    x = place_batch(x, channels_last)
    model = place_model(model_for(config), dev, channels_last)
    optimizer = make_optimizer(model, config)
    natural = METHODS["natural"](autocast=autocast)
    timings = time_interleaved({"train": lambda: natural.step(model, optimizer, x, y),
                                "attack": lambda: input_gradient(model, x, y)}, dev, warmup=1, reps=reps)
    scale = batch / probe
    return {"train_step_s": timings["train"]["median_s"] * scale,
            "attack_step_s": timings["attack"]["median_s"] * scale, "probe_batch": probe, "batch": batch}


def _arch_key(config: dict[str, Any]) -> tuple:
    """What a step's cost depends on: the model, its input size and the batch."""
    return (config["arch"], config["width"], DATASETS[config["dataset"]].input_size, config["batch_size"])


def estimate(plan: Plan, target: str, *, device: str = "auto", probe_batch: int | None = None,
             reps: int = 3) -> dict[str, Any]:
    """Jobs of ``target`` (a table or figure, or ``all``: every target the scale provides, each
    shared model and attack counted once) with their expected seconds."""
    names = plan.available_targets() if target == "all" else [target]
    models: set[str] = set()
    attacks: dict[str, set[tuple[str, str]]] = {}   # model -> {(attack id, weights)}
    for name in names:
        entry = plan.targets[name]
        if not entry.available:
            raise UserError(plan.unavailable_message(name))
        models |= {row.model for row in entry.trained_rows()} | {a.model for a in entry.analyses}
        for row in entry.trained_rows():
            for planned in row.evaluations():
                attacks.setdefault(row.model, set()).add((planned.attack, planned.weights))
    models = sorted(models)
    costs: dict[tuple, dict[str, float]] = {}
    jobs = []
    for model in models:
        config = cfg.resolve(plan.config(model))
        key = _arch_key(config)
        if key not in costs:
            costs[key] = measure_step_costs(config, device, probe_batch, reps)
        cost = costs[key]
        work = get_method(config["method"]).cost(config)
        per_iteration = cost["train_step_s"] * work.train + cost["attack_step_s"] * work.attack
        n_iter = iterations(config)
        jobs.append({"job": "train", "model": model, "method": config["method"], "iterations": n_iter,
                     "seconds": n_iter * per_iteration})
        n_test = split_size(config, "test")
        for attack_id, weights in sorted(attacks.get(model, ())):
            attack = AttackSpec.parse(attack_id)
            steps = attack.attack.cost(attack)
            batches = min(attack.n or n_test, n_test) / config["batch_size"]   # a sized attack: its first n images
            seconds = batches * (steps + 1) * cost["attack_step_s"]   # +1: the clean pass, a generous forward
            label = attack_id if weights == "final" else f"{attack_id} ({weights} weights)"
            jobs.append({"job": "attack", "model": model, "method": label, "iterations": steps,
                         "seconds": seconds})
    total = sum(j["seconds"] for j in jobs)
    return {"target": target, "scale": plan.scale, "jobs": jobs, "total_seconds": total,
            "step_costs": [{"arch": k[0], "width": k[1], "imagenet": k[2] == IMAGENET_INPUT, **v}
                           for k, v in costs.items()]}


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_estimate(result: dict[str, Any], device_name: str) -> str:
    lines = [f"{result['target']} at scale {result['scale']} on {device_name}: measured step costs"]
    for c in result["step_costs"]:
        lines.append(f"  {c['arch']}{' w' + str(c['width']) if c['width'] else ''}, batch {c['batch']}: train step "
                     f"{c['train_step_s']:.3f} s, attack step {c['attack_step_s']:.3f} s"
                     + (f" (timed at batch {c['probe_batch']}, scaled)" if c['probe_batch'] != c['batch'] else ""))
    lines += ["", f"{'job':<7}{'model':<52}{'what':<24}{'iters/steps':>12}{'expected':>12}"]
    for j in result["jobs"]:
        lines.append(f"{j['job']:<7}{j['model']:<52}{j['method']:<24}{j['iterations']:>12}{human(j['seconds']):>12}")
    lines.append(f"\ntotal, one job at a time: {human(result['total_seconds'])}")
    return "\n".join(lines)
