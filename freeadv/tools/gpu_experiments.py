"""Prepared GPU experiments, one ``freeadv gpucheck --experiment NAME`` call each, sized to finish
within a 10-minute device call; ``full`` (the acceptance check) stays freeadv.tools.gpucheck's.

``bridge``: the paper's model at the paper's pass ratio. Table 1 trains every row for natural
training's number of iterations, so Free m=8 makes 1/8 of the passes over the data that 7-PGD
makes, at about the cost of natural training. The CPU scale (``mini``) makes that comparison on
WRN-32 at width 1; ``bridge`` makes it on Table 1's own WRN-32-10, both methods on one seeded
subset of cifar10-jpeg, a step between the CPU numbers and the paper's:

- WRN-32-10, batch 128, bf16 autocast training, torch.compile; eps 8; Free m=8 with step = eps
  (Algorithm 1); 7-PGD with K = 7, step 2 (Madry et al.); SGD at lr 0.1, dropping 10x at 1/2 and
  3/4 of the iterations (the library's default schedule, as the scales use it).
- 4,000 training images (``n_train: 4000``, ``data_seed: 0``), 3,200 iterations each: 102 natural
  epochs, 12.8 passes of Free m=8, 102 epochs of 7-PGD (in images; the Trainer's passes count full
  batches, 31 of 128, so its records say 12.9 and 103.2).
- Stages, most informative first: (1) train Free m=8 (~52 s on an H200, plus compile),
  (2) train 7-PGD (~274 s), (3) PGD-20 (eps 8, step 2, 1 restart) on all 10,000 test images for
  each model, (4) APGD-CE then APGD-T on the first 500 test images for each model.
- The summary gives Free m=8 minus 7-PGD PGD-20 accuracy with the paired interval of
  freeadv.stats.paired_difference over the per-image flags (both models see the same images).

A call may run some of the stages (``--stages train-pgd7,pgd20-pgd7``) and take the others'
records from an earlier call's ``bridge.json`` (``--prior FILE``, the same plan): the comparison
then pairs this call's evals with the earlier ones. A stage whose input ran only in the earlier
call is skipped: that call's weights are gone.

Before each stage the experiment compares its elapsed time plus the stage's expected time with
``--budget-seconds`` (default BRIDGE_BUDGET_S: the 10-minute call less install, imports and the copy
back) and skips the stage, recording why, rather than overrun. Each stage's JSON is written (atomic)
as the stage ends, so a call cut short still returns what it finished. ``--quick`` runs the same
stages with a tiny model on synthetic data in seconds, on a CPU too.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from .. import config as cfg
from .. import stats
from ..attacks import AttackSpec
from ..runs.evaluation import run_attack
from ..io import atomic_write_text, write_json
from ..provenance import stamp
from ..training import Trainer
from ..training.runtime import uses_bf16
from ..errors import UserError

BRIDGE_BUDGET_S = 540.0   # of a 10-minute call: ~60 s left for pip, imports, data and the copy back
PGD7_OVER_FREE = 4.8      # 7-PGD / Free m=8 Trainer step time: 113.2 / 24.9 ms = 4.55 measured on WRN-32-10,
                          # bf16, compiled, H200 (results/gpu/2026-12-04-h200-bridge-pgd7), plus 5%
SECOND_MODEL_MARGIN = {"pgd20": 1.1, "apgd": 1.25}   # 7-PGD's model keeps more points robust: more to attack
METHODS = {"free": "Free m=8", "pgd7": "7-PGD"}
ATTACK_TITLES = {"pgd20": "PGD-20", "apgd": "APGD-CE + APGD-T"}
COMPARISON_CONFIDENCE = 0.90


@dataclass(frozen=True)
class BridgePlan:
    """The bridge's model, data, schedule and evaluation sizes; ``expected_s`` holds each stage's
    expected seconds before anything is measured (H200 figures for the full plan)."""
    quick: bool
    model: dict[str, Any]
    data: dict[str, Any]
    iterations: int
    batch_size: int = 128
    amp: str = "bf16"
    compile: bool = True
    pgd_n: int | None = None          # PGD-20 images: None = the whole test split (10,000)
    apgd_n: int = 500
    apgd_steps: int = 100             # AutoAttack's standard APGD iterations
    eval_batch: int = 500
    expected_s: dict[str, float] = field(default_factory=dict)


def bridge_plan(quick: bool, data_root: str | None, **overrides: Any) -> BridgePlan:
    """The full plan (WRN-32-10 on cifar10-jpeg at ``data_root``) or --quick's stand-in; keyword
    ``overrides`` replace plan fields (tests and sanity runs shorten a plan this way). The stand-in
    trains in fp32: bf16 autocast on a CPU makes a tiny model's step 5x slower (measured), and
    amp is a config key of the same Trainer path; compile is off (no compiler is assumed)."""
    if quick:
        plan = BridgePlan(quick=True, model={"arch": "small_cnn", "width": 4},
                          data={"dataset": "synthetic", "n_train": 128, "n_test": 48, "data_seed": 0},
                          iterations=64, batch_size=32, amp="off", compile=False, pgd_n=48, apgd_n=16,
                          apgd_steps=5, eval_batch=48, expected_s=dict.fromkeys(STAGE_NAMES, 10.0))
    else:
        plan = BridgePlan(quick=False, model={"arch": "wrn32_10", "width": None},
                          data={"dataset": "cifar10-jpeg", "data_root": data_root, "n_train": 4000,
                                "n_test": None, "data_seed": 0},
                          iterations=3200,
                          expected_s={"train-free": 150.0, "train-pgd7": 340.0, "pgd20-free": 45.0,
                                      "pgd20-pgd7": 50.0, "apgd-free": 50.0, "apgd-pgd7": 60.0})
    return dataclasses.replace(plan, **overrides)


def train_config(plan: BridgePlan, method: str, device: torch.device) -> dict[str, Any]:
    """The user config of one training (cfg.resolve fills in and checks the rest): no evaluation
    while training, one checkpoint at the end (the run is short and is not resumed)."""
    steps = {"free": {"method": "free", "replay": 8, "free_step": None},
             "pgd7": {"method": "pgd", "pgd_steps": 7, "pgd_step_size": 2.0}}[method]
    return {**plan.model, **plan.data, **steps, "eps": 8.0, "batch_size": plan.batch_size,
            "iterations": plan.iterations, "lr": 0.1, "lr_milestones": [0.5, 0.75], "amp": plan.amp,
            "compile": plan.compile, "device": str(device), "eval_n": None, "robust_eval_n": 0,
            "log_every": 100, "checkpoint_every": plan.iterations}


# --- the stages ------------------------------------------------------------------------------

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


def attack_spec(plan: BridgePlan, attack: str) -> AttackSpec:
    """The attack, with its image count as its ``n``. ``apgd`` is the registered kind of AutoAttack's APGD-CE
    followed by APGD-T on the points APGD-CE left robust (pyautoattack, standard settings), run
    through run_attack as ``freeadv attack`` runs it; its record keeps the robust flags after each
    sub-attack, so APGD-CE's accuracy and the combined (worst-case) one are both there."""
    if attack == "pgd20":
        return AttackSpec("pgd", 20, 8.0, 2.0, 1, n=plan.pgd_n)
    return AttackSpec("apgd", plan.apgd_steps, 8.0, n=plan.apgd_n)


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


STAGE_NAMES = ("train-free", "train-pgd7", "pgd20-free", "pgd20-pgd7", "apgd-free", "apgd-pgd7")


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


def write_outputs(out_dir: Path, result: dict[str, Any]) -> None:
    name = result["experiment"]
    write_json(out_dir / f"{name}.json", result)
    atomic_write_text(out_dir / f"{name}.md", format_markdown(result))


# --- Free m=8 against 7-PGD on the same images -----------------------------------------------

def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """acc(a) - acc(b), clean and robust, from two evals' per-image records of the same images."""
    if (a["first"], a["n"]) != (b["first"], b["n"]):
        raise ValueError(f"the evals cover different images ({a['first']}+{a['n']} and {b['first']}+{b['n']})")
    result: dict[str, Any] = {"n": a["n"]}
    for which in ("clean", "robust"):
        interval = stats.paired_difference(stats.unpack_flags(a[which], a["n"]),
                                           stats.unpack_flags(b[which], b["n"]), COMPARISON_CONFIDENCE)
        result[which] = {**dataclasses.asdict(interval), "text": interval.text()}
    return result


def comparisons(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Free m=8 minus 7-PGD for each attack that both models finished."""
    out = {}
    for attack in ATTACK_TITLES:
        a, b = records.get(f"{attack}-free", {}), records.get(f"{attack}-pgd7", {})
        if a.get("status") == "done" and b.get("status") == "done":
            out[attack] = paired(a["eval"]["per_image"], b["eval"]["per_image"])
    return out


# --- the summary -----------------------------------------------------------------------------

def _cell(record: dict[str, Any], key: str, spec: str) -> str:
    value = record.get(key)
    return "-" if value is None else f"{value:{spec}}"


def _stage_rows(stages: dict[str, dict[str, Any]]) -> list[str]:
    rows = ["| stage | status | seconds | iterations | passes | train img/s | clean % | robust % | n |",
            "|---|---|---|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(STAGE_NAMES)}   # an earlier call's records come first in the dict
    for record in sorted(stages.values(), key=lambda r: order.get(r.get("stage"), len(order))):
        status = record["status"] + (" (earlier call)" if "prior" in record else "")
        rows.append(f"| {record['title']} | {status} | {record['seconds']:.0f} | "
                    f"{_cell(record, 'iterations', 'd')} | {_cell(record, 'passes', '.2f')} | "
                    f"{_cell(record, 'train_images_per_s', '.0f')} | {_cell(record, 'clean_acc', '.2f')} | "
                    f"{_cell(record, 'robust_acc', '.2f')} | {_cell(record, 'n', 'd')} |")
    return rows


def _comparison_lines(result: dict[str, Any]) -> list[str]:
    lines = ["", "## Free m=8 minus 7-PGD, in percentage points (the same test images: paired interval)", ""]
    for attack, title in ATTACK_TITLES.items():
        found = result.get("comparisons", {}).get(attack)
        if found is None:
            lines.append(f"- {title}: not available (both models' {attack} stages must finish)")
        else:
            lines.append(f"- {title} on {found['n']} test images, robust accuracy: **{found['robust']['text']}**; "
                         f"clean accuracy: {found['clean']['text']}")
    return lines


def format_markdown(result: dict[str, Any]) -> str:
    plan, stages, git = result["plan"], result["stages"], result["git"]
    state = "finished" if result["finished"] else "in progress (or cut short)"
    lines = [f"# freeadv gpucheck --experiment {result['experiment']}: {result['device']['name']}"
             f"{' (quick)' if result['quick'] else ''}", "",
             f"{state}: {result.get('elapsed_seconds', 0):.0f} s of the {result['budget_seconds']:.0f} s budget. "
             f"Commit {str(git['commit'])[:12]}{' (dirty)' if git['dirty'] else ''}, torch "
             f"{result['versions']['torch']}.", "",
             f"{plan['model']['arch']}{' width ' + str(plan['model']['width']) if plan['model']['width'] else ''} on "
             f"{plan['data']['n_train']} {plan['data']['dataset']} training images (data_seed "
             f"{plan['data']['data_seed']}), {plan['iterations']} iterations of batch {plan['batch_size']} for "
             f"each method, amp {plan['amp']}, compile {'on' if plan['compile'] else 'off'}; eps 8.", ""]
    lines += _stage_rows(stages)
    lines += _comparison_lines(result)
    unfinished = [r for r in stages.values() if r["status"] != "done"]
    if unfinished:
        lines += ["", "## Skipped and failed", ""]
        lines += [f"- {r['title']}: {r['status']}: {r.get('reason') or r.get('error')}" for r in unfinished]
    return "\n".join(lines) + "\n"


# --- the command -----------------------------------------------------------------------------

def select_stages(names: str | None) -> list[Stage]:
    """The stages named in ``--stages`` (comma-separated; None: all), in the experiment's order."""
    stages = bridge_stages()
    if names is None:
        return stages
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in STAGE_NAMES]
    if unknown or not chosen:
        raise UserError(f"--stages has bad value '{names}': expected names from {', '.join(STAGE_NAMES)}")
    return [s for s in stages if s.name in chosen]


def _plan_key(plan: dict[str, Any]) -> dict[str, Any]:
    """What makes two calls' models comparable: the plan less where the data lies and the guesses."""
    return {**{k: v for k, v in plan.items() if k != "expected_s"},
            "data": {k: v for k, v in plan["data"].items() if k != "data_root"}}


def load_prior(path: str, plan: BridgePlan, stages: list[Stage]) -> dict[str, dict[str, Any]]:
    """The finished records of an earlier call (its bridge.json) for the stages this call leaves out."""
    try:
        earlier = json.loads(Path(path).read_text())
        records, its_plan = earlier["stages"], earlier["plan"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"--prior has bad value '{path}': not a readable bridge.json ({err})") from None
    if earlier.get("experiment") != "bridge" or _plan_key(its_plan) != _plan_key(dataclasses.asdict(plan)):
        raise UserError(f"--prior has bad value '{path}': its plan is not this call's plan")
    running = {s.name for s in stages}
    return {name: {**record, "prior": str(path)} for name, record in records.items()
            if name not in running and record.get("status") == "done"}


def run_bridge(device: torch.device, plan: BridgePlan, budget: float, out_dir: Path,
               clock: Callable[[], float] = time.perf_counter, stages: list[Stage] | None = None,
               prior: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The bridge experiment; the run folders (weights) live in a temporary folder."""
    header = {"kind": "gpu-experiment", "experiment": "bridge", "quick": plan.quick,
              "plan": dataclasses.asdict(plan), **stamp(device)}
    with tempfile.TemporaryDirectory(prefix="freeadv-bridge-") as tmp:
        return run_stages(bridge_stages() if stages is None else stages, Context(plan, device, Path(tmp)),
                          budget, out_dir, header, clock, prior)


def _bridge_command(device: torch.device, data: str | None, args: argparse.Namespace, out_dir: Path,
                    budget: float) -> int:
    plan = bridge_plan(args.quick, data)
    stages = select_stages(args.stages)
    prior = load_prior(args.prior, plan, stages) if args.prior else None
    result = run_bridge(device, plan, budget, out_dir, stages=stages, prior=prior)
    print(format_markdown(result))
    print(f"[bridge] wrote {out_dir}/bridge.json, bridge.md and one JSON per stage")
    return 1 if any(r["status"] == "failed" for r in result["stages"].values()) else 0


@dataclass(frozen=True)
class Experiment:
    run: Callable[[torch.device, str | None, argparse.Namespace, Path, float], int]
    budget_s: float        # --budget-seconds' default: the whole experiment's
    out_dir: str           # --out-dir's default


EXPERIMENTS: dict[str, Experiment] = {
    "bridge": Experiment(_bridge_command, BRIDGE_BUDGET_S, "results/gpu/bridge"),
}


def run_experiment(args: argparse.Namespace, device: torch.device, data: str | None) -> int:
    """``freeadv gpucheck --experiment NAME`` for a NAME of EXPERIMENTS (arguments already checked)."""
    experiment = EXPERIMENTS[args.experiment]
    budget = args.budget_seconds if args.budget_seconds is not None else experiment.budget_s
    out_dir = Path(args.out_dir if args.out_dir is not None else experiment.out_dir)
    threads = torch.get_num_threads()
    if args.quick and device.type == "cpu":
        torch.set_num_threads(1)   # tiny models gain nothing from more threads (as the full check's --quick)
    try:
        return experiment.run(device, data, args, out_dir, budget)
    finally:
        torch.set_num_threads(threads)
