"""The bridge experiment's stages (two trainings, then PGD-20 and APGD on each model) and the
runner that fits them into a time budget: before each stage its expected time is checked against
what is left, and a stage that would overrun is skipped with the reason rather than cut short, so
a device call always ends with whole, recorded stages."""
from __future__ import annotations

import gc
import importlib.util
import time
import traceback
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from .. import config as cfg
from ..io import write_json
from ..provenance import stamp
from ..runs.evaluation import run_attack
from ..training import Trainer
from ..training.runtime import uses_bf16
from .bridge_plan import ATTACK_TITLES, METHODS, BridgePlan, attack_spec, train_config
from .bridge_report import comparisons, write_outputs

PGD7_OVER_FREE = 4.8      # 7-PGD / Free m=8 Trainer step time: 113.2 / 24.9 ms = 4.55 measured on WRN-32-10,
                          # bf16, compiled, H200 (results/gpu/2026-12-04-h200-bridge-pgd7), plus 5%
SECOND_MODEL_MARGIN = {"pgd20": 1.1, "apgd": 1.25}   # 7-PGD's model keeps more points robust: more to attack


@dataclass
class Context:
    plan: BridgePlan
    device: torch.device
    workdir: Path           # the run folders (weights stay here: too large for the output folder)


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[Context, dict[str, dict[str, Any]]], dict[str, Any]]
    expected: Callable[[BridgePlan, dict[str, dict[str, Any]]], float]
    needs: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()   # Python packages the stage imports


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def steady_seconds_per_iteration(train: dict[str, Any]) -> tuple[float, float]:
    """(seconds per iteration after the first pass, seconds the first pass took beyond that rate:
    compile and warm-up) from a finished run's pass-end log entries."""
    ends = [e for e in train["log"] if "train_seconds" in e and "pass" in e]
    if len(ends) < 2 or ends[-1]["iteration"] <= ends[0]["iteration"]:
        return train["seconds_per_iteration"], 0.0
    first, last = ends[0], ends[-1]
    rate = (last["train_seconds"] - first["train_seconds"]) / (last["iteration"] - first["iteration"])
    return rate, max(0.0, first["train_seconds"] - rate * first["iteration"])


def run_training(ctx: Context, records: dict[str, dict[str, Any]], method: str) -> dict[str, Any]:
    """One training through the Trainer (what ``freeadv train`` runs)."""
    config = cfg.resolve(train_config(ctx.plan, method, ctx.device))
    if config["compile"]:
        torch.compiler.reset()   # a fresh dynamo cache: the earlier model's entries do not count against its limit
    train = Trainer(config, ctx.workdir / method, progress=False).run()
    rate, warmup = steady_seconds_per_iteration(train)
    return {"method": METHODS[method], "run": method, "model": _model_name(config), "dataset": config["dataset"],
            "n_train": train["n_train"], "batch_size": config["batch_size"], "replay": train["replay"],
            "iterations": train["iterations_trained"], "passes": train["passes"],
            "natural_epochs": train["iterations_trained"] * config["batch_size"] / train["n_train"],
            "lr_milestones": train["lr_milestones"], "amp": config["amp"], "compile": config["compile"],
            "train_seconds": train["train_seconds"], "train_images_per_s": train["images_per_second"],
            "steady_seconds_per_iteration": rate, "first_pass_extra_seconds": warmup,
            "final_loss": train["final_loss"], "weights_digest": train["weights_digest"],
            "provenance": stamp(ctx.device, bf16=uses_bf16(config, ctx.device)), "train": train}


def _model_name(config: dict[str, Any]) -> str:
    return config["arch"] + (f" width {config['width']}" if config["width"] else "")


def run_evaluation(ctx: Context, records: dict[str, dict[str, Any]], method: str, attack: str) -> dict[str, Any]:
    """An attack on a trained model's test images, with the eval JSON (per-image flags) inside."""
    spec = attack_spec(ctx.plan, attack)
    evaluated = run_attack(ctx.workdir / method, spec, batch_size=ctx.plan.eval_batch, seed=0,
                           device=str(ctx.device))
    trained = records[f"train-{method}"]["weights_digest"]
    return {"method": METHODS[method], "attack": spec.id, "attack_description": spec.describe(),
            "n": evaluated["n"], "clean_acc": evaluated["clean_acc"], "robust_acc": evaluated["robust_acc"],
            "eval_seconds": evaluated["wall_seconds"], "eval_images_per_s": evaluated["images_per_second"],
            "sub_attacks": [{k: s[k] for k in ("attack", "robust_acc", "seconds")}
                            for s in evaluated.get("sub_attacks", [])],
            "weights_digest": evaluated["weights_digest"],
            "same_weights_as_training": evaluated["weights_digest"] == trained,
            "warnings": evaluated["warnings"], "eval": evaluated}


def _static(name: str, plan: BridgePlan, records: dict[str, dict[str, Any]]) -> float:
    return plan.expected_s[name]


def _pgd7_training(plan: BridgePlan, records: dict[str, dict[str, Any]]) -> float:
    """From Free's measured steady rate when Free trained: the same iterations at PGD7_OVER_FREE
    times the step cost, plus Free's compile and warm-up once more."""
    free = records.get("train-free", {})
    if free.get("status") != "done":
        return plan.expected_s["train-pgd7"]
    return free["steady_seconds_per_iteration"] * plan.iterations * PGD7_OVER_FREE + free["first_pass_extra_seconds"]


def _like_free(attack: str, plan: BridgePlan, records: dict[str, dict[str, Any]]) -> float:
    """The same attack on Free's model took this long; 7-PGD's model leaves more points to attack."""
    free = records.get(f"{attack}-free", {})
    if free.get("status") != "done":
        return plan.expected_s[f"{attack}-pgd7"]
    return free["seconds"] * SECOND_MODEL_MARGIN[attack]


def bridge_stages() -> list[Stage]:
    """Both trainings, then PGD-20 on both models, then APGD on both: what matters most first."""
    stages = [Stage("train-free", "train Free m=8", partial(run_training, method="free"),
                    partial(_static, "train-free")),
              Stage("train-pgd7", "train 7-PGD", partial(run_training, method="pgd7"), _pgd7_training)]
    for attack in ("pgd20", "apgd"):
        requires = ("pyautoattack",) if attack == "apgd" else ()
        for method in METHODS:
            name = f"{attack}-{method}"
            expected = partial(_static, name) if method == "free" else partial(_like_free, attack)
            stages.append(Stage(name, f"{ATTACK_TITLES[attack]} on {METHODS[method]}",
                                partial(run_evaluation, method=method, attack=attack), expected,
                                needs=(f"train-{method}",), requires=requires))
    return stages


# --- running stages within a budget ----------------------------------------------------------

def skip_reason(stage: Stage, records: dict[str, dict[str, Any]], elapsed: float, expected: float,
                budget: float) -> str | None:
    """Why ``stage`` does not run (None: it runs): a stage it needs did not finish in this call, a
    package it imports is missing, or it would end past the budget."""
    for need in stage.needs:
        status = records.get(need, {}).get("status", "not run")
        if status != "done":
            return f"needs {need}, which is {status}"
        if "prior" in records[need]:
            return f"needs {need}, which ran in an earlier call (its weights are not kept)"
    missing = [name for name in stage.requires if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} is not installed"
    if elapsed + expected > budget:
        return f"{elapsed:.0f} s spent + {expected:.0f} s expected > the {budget:.0f} s budget"
    return None


def run_stage(stage: Stage, ctx: Context, records: dict[str, dict[str, Any]], elapsed: float, budget: float,
              clock: Callable[[], float]) -> dict[str, Any]:
    """One stage's record: done (its numbers), skipped (the reason) or failed (the error)."""
    base = {"stage": stage.name, "title": stage.title, "started_at_s": elapsed}
    expected = stage.expected(ctx.plan, records) if all(
        records.get(n, {}).get("status") == "done" and "prior" not in records[n] for n in stage.needs) else 0.0
    reason = skip_reason(stage, records, elapsed, expected, budget)
    if reason is not None:
        print(f"[bridge] {stage.title}: skipped ({reason})", flush=True)
        return {**base, "status": "skipped", "reason": reason, "expected_seconds": expected, "seconds": 0.0}
    print(f"[bridge] {stage.title} (expected ~{expected:.0f} s, {elapsed:.0f} s of {budget:.0f} s spent)", flush=True)
    began = clock()
    try:
        record = {**base, "status": "done", "expected_seconds": expected, **stage.run(ctx, records)}
    except Exception as err:   # recorded; the stages that do not need this one still run
        record = {**base, "status": "failed", "expected_seconds": expected, "error": f"{type(err).__name__}: {err}",
                  "traceback": traceback.format_exc(limit=8)}
    record["seconds"] = clock() - began
    print(f"[bridge] {stage.title}: {record['status']}{': ' + record['error'] if 'error' in record else ''} "
          f"({record['seconds']:.0f} s)", flush=True)
    return record


def run_stages(stages: list[Stage], ctx: Context, budget: float, out_dir: Path, header: dict[str, Any],
               clock: Callable[[], float] = time.perf_counter,
               prior: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every stage in order, each checked against the budget first; after each, its JSON, the
    whole result so far and the summary are written, so a call cut short keeps what finished.
    ``prior`` holds an earlier call's records of the stages not in ``stages`` (marked ``prior``)."""
    start = clock()
    result: dict[str, Any] = {**header, "budget_seconds": budget, "stages": dict(prior or {}), "finished": False}
    for stage in stages:
        record = run_stage(stage, ctx, result["stages"], clock() - start, budget, clock)
        result["stages"][stage.name] = record
        result["elapsed_seconds"] = clock() - start
        result["comparisons"] = comparisons(result["stages"])
        write_json(out_dir / f"{stage.name}.json", record)
        write_outputs(out_dir, result)
        _release(ctx.device)
    result["finished"] = True
    result["elapsed_seconds"] = clock() - start
    write_outputs(out_dir, result)
    return result
