"""`freeadv estimate TARGET --scale S`: the wall time of a target's jobs on this device, before launch.

Two costs are measured per architecture on this device (or read from a committed file,
``--costs``): a training step (forward + full backward + SGD step) and an attack step (forward +
input-only backward). Every job is then a count of those: each training method declares what one
of its iterations costs in those units (``Method.cost``: natural and Free-m one training step,
Free's claim that ``freeadv bench`` checks; K-PGD one training step plus K attack steps; FGSM-RS
one plus one), and each attack kind what it costs per test batch (``AttackKind.cost``: steps x
restarts, an upper bound since restarts attack only the still-robust examples). AutoAttack
attacks only the points still robust, each sub-attack the survivors of the one before, so it is
charged per sub-attack (``AutoAttack.sub_attack_costs``) on the share of images that reach it:
the accuracies an evaluated model of the same method measured in the scale's results, else
DEFAULT_ACCURACY. On a CPU the steps are timed at a small probe batch and scaled linearly.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from .. import config as cfg
from ..attacks import AttackSpec
from ..attacks.kinds import SUB_ATTACK_TITLES, AutoAttack
from ..perturb import input_gradient
from .bench import time_interleaved
from ..data import DATASETS
from ..experiments.plan import Plan, PlanAnalysis
from ..io import read_json
from ..methods import METHODS, get_method
from ..training import make_optimizer, model_for, place_batch, place_model, setup_runtime
from ..errors import UserError
from ..training import schedule as lr_schedule

CPU_PROBE_BATCH = 32
# A step cost's record says whether it was measured at ImageNet's input size ("imagenet": true).
IMAGENET_INPUT = DATASETS["imagenet"].input_size
KINDS = ("train", "attack", "autoattack", "analysis")
STEP_COST_KEYS = {"arch", "batch", "train_step_s", "attack_step_s"}   # what a committed step cost must hold
# A forward pass of a batch, in attack steps: the input backward redoes about the forward's work.
# Measured 0.47 (small_cnn, batch 32, one CPU thread, forward under no_grad against input_gradient).
FORWARD_STEPS = 0.5

# Share of the test images that reaches each AutoAttack sub-attack (clean: APGD-CE runs on the
# clean-correct ones; a sub-attack's entry: the share still robust after it, which the next one
# attacks) when the scale's results hold no AutoAttack evaluation of a model of the same method.
DEFAULT_ACCURACY: dict[str, dict[str, float]] = {
    # Natural training. Clean 95%: the paper's Table 1, natural WRN-32-10, 95.01%. Robust 0% from
    # APGD-CE on: its PGD-20 accuracy is 0.00%, and APGD-CE is at least as strong; results/mini1600's
    # natural model also has 0 of 1,000 points left after APGD-CE.
    "natural": {"clean": 0.95, "apgd-ce": 0.0, "apgd-t": 0.0, "fab-t": 0.0, "square": 0.0},
    # Adversarial training (every other method), CIFAR-10, Linf eps 8. Clean 86%: RobustBench's
    # Shafahi2019Adversarial (the paper's Free m=8 model), 86.11% (the paper's Table 1: 85.96%).
    # After APGD-CE 46%: the paper's Table 1 Free m=8 PGD-20 accuracy, 46.82%, less a little as
    # APGD-CE is a stronger PGD on the same loss. After APGD-T 41.5%: RobustBench's AutoAttack
    # accuracy for the entry, 41.47%, all of it left by APGD-T: FAB-T and Square broke no further
    # image on any of the five models of results/mini1600 (docs/reproduction.md).
    "adversarial": {"clean": 0.86, "apgd-ce": 0.46, "apgd-t": 0.415, "fab-t": 0.415, "square": 0.415},
}


def split_size(config: dict[str, Any], split: str) -> int:
    """Images in a split: n_train / n_test where set, else the dataset's size (a whole training
    split less the validation images the run holds out of it; generated data such as synthetic
    draws those apart, and has the default sizes of its DatasetSpec)."""
    requested = config["n_train" if split == "train" else "n_test"]
    if requested is not None:
        return requested
    spec = DATASETS[config["dataset"]]
    if spec.sized_by_files:
        raise UserError(f"dataset '{spec.name}' is as large as its files: set n_train and n_test for an estimate")
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


def _arch_label(arch: str, width: int | None, imagenet: bool) -> str:
    return f"{arch}{f' w{width}' if width else ''}{' (ImageNet input)' if imagenet else ''}"


def load_step_costs(path: str | Path) -> dict[str, Any]:
    """Step costs measured on another machine, so that its estimate can be made here: the
    ``step_costs`` of an estimate, at the top level or, in a ``freeadv gpucheck`` JSON, under
    ``parts.estimate``. Returns them with the device they were measured on and the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--costs file '{path}' does not exist")
    data = read_json(path)
    data = data if isinstance(data, dict) else {}
    listed = data.get("step_costs") or ((data.get("parts") or {}).get("estimate") or {}).get("step_costs") or []
    entries = [e for e in listed if isinstance(e, dict) and STEP_COST_KEYS <= e.keys()]
    if not entries:
        raise UserError(f"--costs file '{path}' holds no step costs (a 'step_costs' list, or "
                        "parts.estimate.step_costs of a gpucheck JSON)")
    return {"entries": entries, "device": (data.get("device") or {}).get("name") or "the --costs file's device",
            "file": str(path)}


def file_step_costs(costs: dict[str, Any], config: dict[str, Any]) -> dict[str, float]:
    """The committed step costs of the job's architecture and input size, scaled linearly to its batch."""
    arch, width, size, batch = _arch_key(config)
    wanted = (arch, width, size == IMAGENET_INPUT)
    for entry in costs["entries"]:
        if (entry.get("arch"), entry.get("width"), bool(entry.get("imagenet"))) == wanted:
            scale = batch / entry["batch"]
            return {"train_step_s": entry["train_step_s"] * scale, "attack_step_s": entry["attack_step_s"] * scale,
                    "probe_batch": entry["batch"], "batch": batch}
    held = ", ".join(sorted({_arch_label(e.get("arch"), e.get("width"), bool(e.get("imagenet")))
                             for e in costs["entries"]}))
    raise UserError(f"--costs file '{costs['file']}' has no step costs for {_arch_label(*wanted)}: it has {held}")


def evaluated_accuracies(results: Path | None) -> list[dict[str, Any]]:
    """Every evaluation with sub-attacks (AutoAttack, the APGD screen) under results/<scale>/runs:
    the share of images clean-correct and still robust after each sub-attack, with the run's
    model, method and dataset, to find an evaluated model like the one estimated."""
    records = []
    for path in sorted(results.glob("runs/*/evals/*.json")) if results is not None else ():
        data = read_json(path)
        if not (isinstance(data, dict) and data.get("sub_attacks") and data.get("n") and "clean_acc" in data):
            continue
        shares = {"clean": data["clean_acc"] / 100,
                  **{s["attack"]: s["robust_correct"] / data["n"] for s in data["sub_attacks"]}}
        train = data.get("train_config") or {}
        records.append({"model": path.parent.parent.name, "method": train.get("method"),
                        "dataset": train.get("dataset"), "shares": shares})
    return records


def reach_shares(records: list[dict[str, Any]], model: str, config: dict[str, Any],
                 sub_attacks: tuple[str, ...]) -> tuple[dict[str, float], str]:
    """Share of the images each sub-attack attacks (the first the clean-correct ones, every other
    the survivors of the one before) and where it comes from: the model's own evaluation, else the
    mean over evaluated models of its method and dataset, else of its method, else DEFAULT_ACCURACY."""
    before = ("clean", *sub_attacks[:-1])
    method, dataset = config["method"], config["dataset"]
    tiers = (("this model", lambda r: r["model"] == model),
             (f"{method} models on {dataset}", lambda r: (r["method"], r["dataset"]) == (method, dataset)),
             (f"{method} models", lambda r: r["method"] == method))
    for label, matches in tiers:
        found = [r for r in records if matches(r) and all(b in r["shares"] for b in before)]
        if found:
            shares = {b: sum(r["shares"][b] for r in found) / len(found) for b in before}
            source = f"measured: {label}, {len(found)} evaluation{'s' if len(found) > 1 else ''}"
            break
    else:
        group = "natural" if method == "natural" else "adversarial"
        shares, source = DEFAULT_ACCURACY[group], f"default for {group} training"
    return {s: shares[b] for s, b in zip(sub_attacks, before)}, source


def _train_job(model: str, config: dict[str, Any], cost: dict[str, float]) -> dict[str, Any]:
    work = get_method(config["method"]).cost(config)
    per_iteration = cost["train_step_s"] * work.train + cost["attack_step_s"] * work.attack
    n_iter = iterations(config)
    return {"job": "train", "model": model, "method": config["method"], "iterations": n_iter,
            "seconds": n_iter * per_iteration}


def _attack_job(model: str, config: dict[str, Any], attack_id: str, weights: str, step_s: float,
                records: list[dict[str, Any]]) -> dict[str, Any]:
    """An attack's eval job: steps x restarts on every image, or AutoAttack sub-attack by sub-attack
    on the images that reach each; plus one step a batch for the clean pass (a generous forward)."""
    attack = AttackSpec.parse(attack_id)
    n_test = split_size(config, "test")
    batches = min(attack.n or n_test, n_test) / config["batch_size"]   # a sized attack: its first n images
    label = attack_id if weights == "final" else f"{attack_id} ({weights} weights)"
    job = {"model": model, "method": label, "iterations": attack.attack.cost(attack)}
    if not isinstance(attack.attack, AutoAttack):
        return {"job": "attack", **job, "seconds": batches * (job["iterations"] + 1) * step_s}
    per_point = attack.attack.sub_attack_costs(attack)
    reach, source = reach_shares(records, model, config, tuple(per_point))
    sub = {s: batches * reach[s] * steps * step_s for s, steps in per_point.items()}
    job["iterations"] = round(sum(reach[s] * steps for s, steps in per_point.items()))   # per image, on average
    return {"job": "autoattack", **job, "seconds": batches * step_s + sum(sub.values()),
            "all_images_seconds": batches * (1 + sum(per_point.values())) * step_s,
            "sub_attacks": sub, "reach": reach, "accuracy_source": source}


def _analysis_job(analysis: PlanAnalysis, config: dict[str, Any], step_s: float) -> dict[str, Any]:
    """A figure's analysis of a few images, each of its steps charged a whole batch's (small batches
    are bound by kernel launches on a GPU): adv-examples its BIM steps and two predictions;
    loss-surface, per image, a gradient, PGD-20 and two grids of forwards (the plane and its
    clipped copy for the ascent check) in batches of 512 points."""
    options = analysis.options
    if analysis.kind == "adv-examples":
        steps = options.get("steps", 50) + 2
    elif analysis.kind == "loss-surface":
        grid_batches = 2 * math.ceil(options.get("grid", 21) ** 2 / 512) * 512 / config["batch_size"]
        steps = options.get("images", 2) * (1 + 21 + grid_batches * FORWARD_STEPS)
    else:
        steps = 0
    return {"job": "analysis", "model": analysis.model, "method": analysis.id, "iterations": round(steps),
            "seconds": steps * step_s}


def _target_work(plan: Plan, target: str) -> tuple[list[str], dict[str, set[tuple[str, str]]], list[PlanAnalysis]]:
    """The models, attacks (model -> {(attack id, weights)}) and analyses of ``target``, each once."""
    names = plan.available_targets() if target == "all" else [target]
    models: set[str] = set()
    attacks: dict[str, set[tuple[str, str]]] = {}
    analyses: dict[tuple[str, str], PlanAnalysis] = {}
    for name in names:
        entry = plan.targets[name]
        if not entry.available:
            raise UserError(plan.unavailable_message(name))
        models |= {row.model for row in entry.trained_rows()} | {a.model for a in entry.analyses}
        for row in entry.trained_rows():
            for planned in row.evaluations():
                attacks.setdefault(row.model, set()).add((planned.attack, planned.weights))
        analyses.update({(a.model, a.id): a for a in entry.analyses})
    return sorted(models), attacks, [analyses[k] for k in sorted(analyses)]


def estimate(plan: Plan, target: str, *, device: str = "auto", probe_batch: int | None = None,
             reps: int = 3, step_costs: dict[str, Any] | None = None, results: Path | None = None) -> dict[str, Any]:
    """Jobs of ``target`` (a table or figure, or ``all``: every target the scale provides, each
    shared model and attack counted once) with their expected seconds, and the totals by kind.
    ``step_costs`` (:func:`load_step_costs`) replaces timing on ``device``; ``results``
    (results/<scale>) holds the evaluations that say how many images reach each AutoAttack sub-attack."""
    models, attacks, analyses = _target_work(plan, target)
    records = evaluated_accuracies(results)
    costs: dict[tuple, dict[str, float]] = {}
    jobs = []
    for model in models:
        config = cfg.resolve(plan.config(model))
        key = _arch_key(config)
        if key not in costs:
            costs[key] = (file_step_costs(step_costs, config) if step_costs is not None
                          else measure_step_costs(config, device, probe_batch, reps))
        step_s = costs[key]["attack_step_s"]
        jobs.append(_train_job(model, config, costs[key]))
        jobs += [_attack_job(model, config, attack_id, weights, step_s, records)
                 for attack_id, weights in sorted(attacks.get(model, ()))]
        jobs += [_analysis_job(a, config, step_s) for a in analyses if a.model == model]
    autoattacks = [j for j in jobs if j["job"] == "autoattack"]
    return {"target": target, "scale": plan.scale, "jobs": jobs, "total_seconds": sum(j["seconds"] for j in jobs),
            "by_kind": {kind: sum(j["seconds"] for j in jobs if j["job"] == kind) for kind in KINDS},
            "by_sub_attack": {s: sum(j["sub_attacks"].get(s, 0.0) for j in autoattacks) for s in SUB_ATTACK_TITLES
                              if any(s in j["sub_attacks"] for j in autoattacks)},
            "autoattack_all_images_seconds": sum(j["all_images_seconds"] for j in autoattacks),
            "step_costs_from": step_costs["file"] if step_costs is not None else None,
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


def _autoattack_line(job: dict[str, Any]) -> str:
    parts = [f"{SUB_ATTACK_TITLES[s]} {100 * job['reach'][s]:.0f}% {human(sec)}" for s, sec in job["sub_attacks"].items()]
    return f"{'':<11}reached by: {', '.join(parts)} ({job['accuracy_source']})"


def _kind_lines(result: dict[str, Any]) -> list[str]:
    lines = ["", "total by kind, one job at a time:"]
    for kind, seconds in result["by_kind"].items():
        lines.append(f"  {kind:<12}{human(seconds):>12}")
        if kind == "autoattack" and result["by_sub_attack"]:
            lines += [f"    {SUB_ATTACK_TITLES[s]:<10}{human(sec):>12}" for s, sec in result["by_sub_attack"].items()]
            lines.append(f"    (were every image to reach every sub-attack: "
                         f"{human(result['autoattack_all_images_seconds'])})")
    return lines


def format_estimate(result: dict[str, Any], device_name: str) -> str:
    source = f"step costs from {result['step_costs_from']}" if result.get("step_costs_from") else "measured step costs"
    lines = [f"{result['target']} at scale {result['scale']} on {device_name}: {source}"]
    for c in result["step_costs"]:
        lines.append(f"  {c['arch']}{' w' + str(c['width']) if c['width'] else ''}, batch {c['batch']}: train step "
                     f"{c['train_step_s']:.3f} s, attack step {c['attack_step_s']:.3f} s"
                     + (f" (timed at batch {c['probe_batch']}, scaled)" if c['probe_batch'] != c['batch'] else ""))
    lines += ["", f"{'job':<11}{'model':<52}{'what':<24}{'iters/steps':>12}{'expected':>12}"]
    for j in result["jobs"]:
        lines.append(f"{j['job']:<11}{j['model']:<52}{j['method']:<24}{j['iterations']:>12}{human(j['seconds']):>12}")
        if j["job"] == "autoattack":
            lines.append(_autoattack_line(j))
    lines += _kind_lines(result)
    lines.append(f"\ntotal, one job at a time: {human(result['total_seconds'])}")
    return "\n".join(lines)
