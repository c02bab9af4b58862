"""`freeadv gpucheck`: is this GPU ready for the paper-scale runs? Four parts, one report, at most
8 minutes on one H100 with nothing to download, and nothing needed but the installed package.

Why each part exists:

1. **Device tests** (freeadv.tools.device_tests, run as ``python -m pytest --pyargs`` in a
   subprocess with a timeout): the CPU test suite cannot see what a GPU changes: TF32
   convolutions, cuDNN's algorithms, bf16 autocast, torch.compile, NCCL. These tests run the
   library's Free step, a resumed run, a seeded attack, bf16, a compiled step and a one-process
   NCCL group on the device, against CPU fp32 references. They ship in the package, so a machine
   with only the package installed runs them; they need pytest (the test extra), and the part
   fails with that one line where it is missing. A subprocess, so that a crash or a hang there is
   recorded instead of ending the check.
2. **Bench** (freeadv.tools.bench.run_bench): the paper's claim is a cost claim made on GPUs. Free m=8 /
   natural (~1) and 7-PGD / natural (the paper's ~8; (3+2K)/3 = 5.67 with input-only attack
   steps) on WRN-32-10 (Table 1's model) and PreAct ResNet-18 (the FGSM-RS comparison's), batch 128,
   fp32 (TF32 convolutions, PyTorch's default) and bf16 autocast, eager and torch.compile'd, with
   MFU against the card's datasheet peak. On a CPU the claim could not be checked (C3 in
   docs/reproduction.md): this is where it is.
3. **Training** (freeadv.training.Trainer, then freeadv.runs.evaluation.run_attack): one real
   run end to end, the code ``freeadv train`` and ``freeadv attack`` run: PreAct ResNet-18 Free m=8
   on cifar10-jpeg for ``--budget-seconds`` (iterations sized from a measured step time), then
   PGD-20 (eps 8, step 2) on the first 1,000 test images: clean and robust accuracy, images/s.
4. **Estimate** (freeadv.tools.estimate.estimate): the projected wall time of ``table1`` at paper scale
   on this device, to plan (and budget) the full reproduction. The paper scale's settings come from
   the workflow config, ``--workflow-config PATH`` (default: config/config.yaml of the checkout that
   holds this package, else of the working directory). Without one the part is recorded as
   skipped, with the reason: the estimate plans the workflow, and a machine without the workflow
   has nothing for it to plan, while the other three parts still say whether the device is ready.

Writes ``<out-dir>/<device-name-slug>.json`` (every part's numbers, pass/fail and seconds, the
provenance stamp, the total wall time) and a ``.md`` summary; exits 1 if any part failed. A part's
failure (an exception, a timeout) is recorded and the other parts still run.

Under 8 minutes: the tests run under a timeout; the bench runs its eager configurations first,
then each compiled one in a subprocess that is killed when the bench's share of the time (what
TOTAL_TARGET_S leaves after the tests, training and TRAIN_RESERVE_S) is spent; later ones are
skipped, and recorded as skipped; training takes ``--budget-seconds``.

``--quick`` checks this command itself in about half a minute (tests/test_gpucheck.py runs it on a
CPU): tiny stand-ins (small_cnn, batch 16, few repetitions, no torch.compile), synthetic data and
a few seconds of training, the same code paths; its files get a ``-quick`` suffix.

``--experiment NAME`` runs a prepared one-call experiment instead of this check (``full``, the
default, is this check): see freeadv.tools.gpu_experiments (``bridge``: Table 1's WRN-32-10, Free m=8
against 7-PGD at the paper's pass ratio, with PGD-20 and APGD).

The code: this module runs the parts in order and holds parts 3 and 4; part 1 is
freeadv.tools.gpucheck_pytest, part 2 freeadv.tools.gpucheck_bench, the settings every part reads
freeadv.tools.gpucheck_settings, and the ``.md`` summary freeadv.tools.gpucheck_report.
"""
from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from .. import config as cfg
from ..attacks import AttackSpec
from ..experiments.scales import build_plan, plan_inputs
from ..provenance import device_info, stamp
from ..runs.evaluation import run_attack
from ..training import Trainer
from .estimate import estimate, format_estimate, human, measure_step_costs
from .gpucheck_bench import release, run_bench_part
from .gpucheck_pytest import run_device_tests
from .gpucheck_report import is_skipped
from .gpucheck_settings import BENCH_MAX_S, FREE_STEP_OVERHEAD, TOTAL_TARGET_S, TRAIN_RESERVE_S, Settings

REPO = Path(__file__).resolve().parents[2]   # freeadv/tools/gpucheck.py -> the folder above the package
WORKFLOW_CONFIG = Path("config") / "config.yaml"


# --- part 3: training and PGD-20 -----------------------------------------------------------------

def run_training_part(device: torch.device, settings: Settings, budget: float, workdir: Path) -> dict[str, Any]:
    """Free m=8 through the Trainer for ~``budget`` seconds, then PGD-20 on the first eval_n test images."""
    budget = min(budget, settings.train_budget_cap)
    base = {**settings.train, "method": "free", "replay": 8, "device": str(device), "amp": "off",
            "eval_n": None, "robust_eval_n": 0, "log_every": 100, "iterations": 1}
    probe = measure_step_costs(cfg.resolve(base), str(device), None, reps=3)
    seconds_per_iteration = probe["train_step_s"] * FREE_STEP_OVERHEAD
    iterations = max(2 * base["replay"], int(budget / seconds_per_iteration))
    config = cfg.resolve({**base, "iterations": iterations, "checkpoint_every": iterations})
    run_dir = workdir / "train"
    trained = Trainer(config, run_dir, progress=False).run()
    spec = AttackSpec("pgd", 20, 8.0, 2.0, 1)
    evaluated = run_attack(run_dir, replace(spec, n=settings.eval_n), batch_size="auto", seed=0, device=str(device))
    return {"ok": True, "model": config["arch"] + (f" w{config['width']}" if config["width"] else ""),
            "dataset": config["dataset"], "method": "free", "replay": config["replay"],
            "batch_size": config["batch_size"], "budget_seconds": budget,
            "probe_natural_step_s": probe["train_step_s"], "iterations": trained["iterations"],
            "passes": trained["passes"], "train_seconds": trained["train_seconds"],
            "train_images_per_s": trained["images_per_second"], "final_loss": trained["final_loss"],
            "attack": "PGD-20, eps 8, step 2, 1 restart", "eval_n": evaluated["n"],
            "clean_acc": evaluated["clean_acc"], "robust_acc": evaluated["robust_acc"],
            "eval_seconds": evaluated["wall_seconds"], "eval_images_per_s": evaluated["images_per_second"],
            "eval_warnings": evaluated["warnings"]}


# --- part 4: the estimate ------------------------------------------------------------------------

def default_workflow_configs() -> list[Path]:
    """Where the workflow config is looked for without --workflow-config, in order: the checkout
    that holds this package (an editable install or a clone), then the working directory."""
    return [REPO / WORKFLOW_CONFIG, Path.cwd() / WORKFLOW_CONFIG]


def find_workflow_config(given: str | Path | None = None) -> tuple[Path | None, str | None]:
    """(the workflow config, None), or (None, why there is none) when none was given and none is
    at a default place. A config that is given is taken as it is: reading it reports its errors."""
    if given is not None:
        return Path(given), None
    candidates = default_workflow_configs()
    for candidate in candidates:
        if candidate.is_file():
            return candidate, None
    return None, (f"no workflow config: --workflow-config not given, and neither "
                  f"{' nor '.join(str(c) for c in candidates)} exists")


def run_estimate_part(device: torch.device, settings: Settings, workflow_config: str | Path | None = None,
                      target: str = "table1") -> dict[str, Any]:
    """freeadv.tools.estimate on ``target`` at paper scale, with the paper scale of the workflow
    config; --quick times a stand-in model instead of the paper's (the same code, the paper's job
    list and sizes). Skipped, with the reason, where there is no workflow config."""
    path, reason = find_workflow_config(workflow_config)
    if path is None:
        print(f"[gpucheck]   {reason}", flush=True)
        return {"ok": True, "status": "skipped", "reason": reason, "target": target, "scale": "paper"}
    plan = build_plan(**plan_inputs(cfg.load_yaml(path), "paper"))
    if settings.estimate_stand_in:
        entry = plan.targets[target]
        models = {row.model for row in entry.trained_rows()} | {a.model for a in entry.analyses}
        for model in models:
            plan.config(model).update(settings.estimate_stand_in)
    result = estimate(plan, target, device=str(device), probe_batch=settings.estimate_probe_batch,
                      reps=settings.estimate_reps)
    print(format_estimate(result, device_info(device)["name"]), flush=True)
    return {"ok": result["total_seconds"] > 0, "target": target, "scale": "paper", "workflow_config": str(path),
            "total_seconds": result["total_seconds"], "total": human(result["total_seconds"]),
            "stand_in": settings.estimate_stand_in, "step_costs": result["step_costs"], "jobs": result["jobs"]}


# --- the check -----------------------------------------------------------------------------------

def _part(title: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """One part, timed: its record, or (an exception) the error, so that the other parts still run.
    ``status`` says passed, failed or skipped (a skipped part has ``ok`` true and its ``reason``)."""
    print(f"[gpucheck] {title}", flush=True)
    start = time.perf_counter()
    try:
        record = fn(*args)
    except Exception as err:   # recorded; the other parts still run
        record = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=8)}
    record["seconds"] = time.perf_counter() - start
    if not record["ok"]:
        record.setdefault("error", "failed (see its numbers)")
    record.setdefault("status", "passed" if record["ok"] else "failed")
    outcome = {"passed": "PASS", "failed": f"FAIL: {record.get('error')}",
               "skipped": f"SKIP: {record.get('reason')}"}[record["status"]]
    print(f"[gpucheck] {title}: {outcome} ({record['seconds']:.0f} s)", flush=True)
    return record


def run_gpucheck(device: torch.device, settings: Settings, budget_seconds: float,
                 workflow_config: str | Path | None = None) -> dict[str, Any]:
    """The four parts in order, each recorded; ``workflow_config`` None looks in the default places."""
    start = time.perf_counter()
    parts: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="freeadv-gpucheck-") as tmp:
        workdir = Path(tmp)
        parts["tests"] = _part("1/4 device tests (pytest -m gpu)", run_device_tests, device, settings, workdir)
        elapsed = time.perf_counter() - start
        bench_seconds = (BENCH_MAX_S if settings.quick else
                         max(0.0, min(BENCH_MAX_S, TOTAL_TARGET_S - elapsed - budget_seconds - TRAIN_RESERVE_S)))
        parts["bench"] = _part("2/4 bench", run_bench_part, device, settings, bench_seconds, workdir)
        release(device)
        parts["train"] = _part("3/4 training + PGD-20", run_training_part, device, settings, budget_seconds, workdir)
        release(device)
    parts["estimate"] = _part("4/4 estimate of table1 at paper scale", run_estimate_part, device, settings,
                              workflow_config)
    return {"kind": "gpucheck", "quick": settings.quick, "ok": all(p["ok"] for p in parts.values()),
            "parts_ok": {name: p["ok"] for name, p in parts.items()},
            "parts_skipped": [name for name, p in parts.items() if is_skipped(p)],
            "wall_seconds": time.perf_counter() - start, "parts": parts, **stamp(device)}
