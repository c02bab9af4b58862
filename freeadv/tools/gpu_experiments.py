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

``bridge-cpu``: the same recipe at WRN-32 width 1 on the CPU (freeadv.tools.bridge_plan.cpu_bridge_plan),
hours long, so unlike a device call it keeps its run folders in ``--work-dir`` (checkpoints every
100 iterations) and its records in ``--out-dir``: the same command resumes a killed run, taking the
finished stages' records from the output folder's ``bridge-cpu.json`` and the trainings from their
newest checkpoints. Its stages go model by model (Free m=8's training and evaluations, then
7-PGD's), so a run that stops early has one model's results whole.

``eval-speed``: the evaluation path's speed on the device (layout, cudnn.benchmark, cold and
warm calls, each AutoAttack sub-attack alone): freeadv.tools.eval_speed.

The code: this module is the command's side (choosing stages, reading ``--prior``, the table of
experiments); the plan is freeadv.tools.bridge_plan, the stages and their budgeted runner
freeadv.tools.bridge_stages, and the paired comparison and ``bridge.md`` freeadv.tools.bridge_report.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .. import cpu as cpu_info
from ..errors import UserError
from ..provenance import stamp
from .bridge_plan import STAGE_NAMES, BridgePlan, bridge_plan, cpu_bridge_plan
from .bridge_report import format_markdown
from .bridge_stages import Context, Stage, bridge_stages, run_stages
from .eval_speed import EVAL_SPEED_BUDGET_S, eval_speed_command

BRIDGE_BUDGET_S = 540.0   # of a 10-minute call: ~60 s left for pip, imports, data and the copy back
BRIDGE_CPU_BUDGET_S = 86400.0   # a day: the CPU run is bounded by its resumes, not by a device call
CPU_STAGE_ORDER = ("train-free", "pgd20-free", "apgd-free", "train-pgd7", "pgd20-pgd7", "apgd-pgd7")


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
    """What makes two calls' models comparable: the plan less where the data lies, the guesses and
    how often training saves its state."""
    return {**{k: v for k, v in plan.items() if k not in ("expected_s", "checkpoint_every")},
            "data": {k: v for k, v in plan["data"].items() if k != "data_root"}}


def _finished_records(path: Path, plan: BridgePlan, experiment: str, bad: str) -> dict[str, dict[str, Any]]:
    """The done stage records of an earlier call's ``<experiment>.json`` at ``path``, refused in one
    line (``bad`` + why) when unreadable or of another plan."""
    try:
        earlier = json.loads(path.read_text())
        records, its_plan = earlier["stages"], earlier["plan"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{bad}: not a readable {experiment}.json ({err})") from None
    if earlier.get("experiment") != experiment or _plan_key(its_plan) != _plan_key(dataclasses.asdict(plan)):
        raise UserError(f"{bad}: its plan is not this call's plan")
    return {name: record for name, record in records.items() if record.get("status") == "done"}


def load_prior(path: str, plan: BridgePlan, stages: list[Stage]) -> dict[str, dict[str, Any]]:
    """The finished records of an earlier call (its bridge.json) for the stages this call leaves out."""
    records = _finished_records(Path(path), plan, "bridge", f"--prior has bad value '{path}'")
    running = {s.name for s in stages}
    return {name: {**record, "prior": str(path)} for name, record in records.items() if name not in running}


def resumed_records(out_dir: Path, plan: BridgePlan) -> dict[str, dict[str, Any]]:
    """The finished stages of an earlier bridge-cpu call into ``out_dir`` (none if it holds none);
    refuses a folder whose bridge-cpu.json is of another plan rather than write over it (use a new
    --out-dir and --work-dir)."""
    path = out_dir / "bridge-cpu.json"
    if not path.exists():
        return {}
    return _finished_records(path, plan, "bridge-cpu", f"--out-dir has bad value '{out_dir}'")


def run_bridge(device: torch.device, plan: BridgePlan, budget: float, out_dir: Path,
               clock: Callable[[], float] = time.perf_counter, stages: list[Stage] | None = None,
               prior: dict[str, dict[str, Any]] | None = None, experiment: str = "bridge",
               workdir: Path | None = None) -> dict[str, Any]:
    """The bridge experiment; the run folders (weights) live in ``workdir``, or in a temporary
    folder that goes when the call ends."""
    header = {"kind": "gpu-experiment", "experiment": experiment, "quick": plan.quick,
              "plan": dataclasses.asdict(plan), **stamp(device)}
    stages = bridge_stages() if stages is None else stages
    if workdir is not None:
        return run_stages(stages, Context(plan, device, workdir), budget, out_dir, header, clock, prior)
    with tempfile.TemporaryDirectory(prefix="freeadv-bridge-") as tmp:
        return run_stages(stages, Context(plan, device, Path(tmp)), budget, out_dir, header, clock, prior)


def _bridge_command(device: torch.device, data: str | None, args: argparse.Namespace, out_dir: Path,
                    budget: float) -> int:
    plan = bridge_plan(args.quick, data)
    stages = select_stages(args.stages)
    prior = load_prior(args.prior, plan, stages) if args.prior else None
    result = run_bridge(device, plan, budget, out_dir, stages=stages, prior=prior)
    print(format_markdown(result))
    print(f"[bridge] wrote {out_dir}/bridge.json, bridge.md and one JSON per stage")
    return 1 if any(r["status"] == "failed" for r in result["stages"].values()) else 0


def _bridge_cpu_command(device: torch.device, data: str | None, args: argparse.Namespace, out_dir: Path,
                        budget: float) -> int:
    if args.prior or args.stages:
        raise UserError("--prior and --stages are for bridge's device calls; bridge-cpu resumes from --out-dir")
    plan = cpu_bridge_plan(args.quick, data, bf16=cpu_info.has_bf16_instructions())
    done = resumed_records(out_dir, plan)
    by_name = {s.name: s for s in bridge_stages()}
    stages = [by_name[name] for name in CPU_STAGE_ORDER if name not in done]
    if done:
        print(f"[bridge-cpu] resuming: {', '.join(sorted(done))} finished in an earlier call", flush=True)
    workdir = Path(args.work_dir if args.work_dir is not None else "runs/bridge-cpu")
    result = run_bridge(device, plan, budget, out_dir, stages=stages, prior=done, experiment="bridge-cpu",
                        workdir=workdir)
    print(format_markdown(result))
    print(f"[bridge-cpu] wrote {out_dir}/bridge-cpu.json, bridge-cpu.md and one JSON per stage; weights in {workdir}")
    return 1 if any(r["status"] == "failed" for r in result["stages"].values()) else 0


@dataclass(frozen=True)
class Experiment:
    run: Callable[[torch.device, str | None, argparse.Namespace, Path, float], int]
    budget_s: float        # --budget-seconds' default: the whole experiment's
    out_dir: str           # --out-dir's default
    device: str = "cuda"   # --device's default, and the only device type it runs on


EXPERIMENTS: dict[str, Experiment] = {
    "bridge": Experiment(_bridge_command, BRIDGE_BUDGET_S, "results/gpu/bridge"),
    "bridge-cpu": Experiment(_bridge_cpu_command, BRIDGE_CPU_BUDGET_S, "results/checks/bridge-cpu", "cpu"),
    "eval-speed": Experiment(eval_speed_command, EVAL_SPEED_BUDGET_S, "results/gpu/eval-speed"),
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
