"""`freeadv gpucheck`: is this GPU ready for the paper-scale runs? Four parts, one report, at most
8 minutes on one H100 with nothing to download.

Why each part exists:

1. **Device tests** (``pytest -m gpu tests/test_gpu.py`` in a subprocess, with a timeout): the CPU
   test suite cannot see what a GPU changes: TF32 convolutions, cuDNN's algorithms, bf16 autocast,
   torch.compile, NCCL. These tests run the library's Free step, a resumed run, a seeded attack,
   bf16, a compiled step and a one-process NCCL group on the device, against CPU fp32 references.
   A subprocess, so that a crash or a hang there is recorded instead of ending the check.
2. **Bench** (freeadv.tools.bench.run_bench): the paper's claim is a cost claim made on GPUs. Free m=8 /
   natural (~1) and 7-PGD / natural (the paper's ~8; (3+2K)/3 = 5.67 with input-only attack
   steps) on WRN-32-10 (Table 1's model) and PreAct ResNet-18 (the FGSM-RS comparison's), batch 128, fp32 (TF32 convolutions, PyTorch's default) and bf16 autocast,
   eager and torch.compile'd, with MFU against the card's datasheet peak. On a CPU the claim could
   not be checked (C3 in docs/reproduction.md): this is where it is.
3. **Training** (freeadv.training.Trainer, then freeadv.runs.evaluation.run_attack): one real
   run end to end, the code ``freeadv train`` and ``freeadv attack`` run: PreAct ResNet-18 Free m=8
   on cifar10-jpeg for ``--budget-seconds`` (iterations sized from a measured step time), then
   PGD-20 (eps 8, step 2) on the first 1,000 test images: clean and robust accuracy, images/s.
4. **Estimate** (freeadv.tools.estimate.estimate): the projected wall time of ``table1`` at paper scale
   on this device, to plan (and budget) the full reproduction.

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
"""
from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from .. import config as cfg
from ..attacks import AttackSpec
from ..runs.evaluation import run_attack
from .bench import run_bench
from .estimate import estimate, format_estimate, human, measure_step_costs
from ..experiments.scales import build_plan, plan_inputs
from ..io import read_json
from ..provenance import device_info, stamp
from ..training import Trainer

REPO = Path(__file__).resolve().parents[2]   # the checkout: freeadv/tools/gpucheck.py -> ./
GPU_TESTS = "tests/test_gpu.py"
JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
TOTAL_TARGET_S = 440          # the whole check on one H100: under 8 minutes with room to spare
FAILURE_MESSAGE_CHARS = 2000   # per failing device test, in the report
TRAIN_RESERVE_S = 70          # beyond --budget-seconds: data decoding, the step probe, overrun, PGD-20, estimate
BENCH_MAX_S = 200             # at most this for the bench
MIN_COMPILED_S = 30           # a compiled configuration starts only with this much of the bench's time left
FREE_STEP_OVERHEAD = 1.15     # Free step + data loading over the probed natural step, to size the run


@dataclass(frozen=True)
class Settings:
    """What each part runs: the full check's models and sizes, or --quick's stand-ins."""
    quick: bool
    bench_models: tuple[tuple[str, str, int | None], ...]   # (what it stands for, arch, width)
    bench_batch: int
    bench_warmup: int
    bench_reps: int
    bench_attack_steps: int
    bench_compile: tuple[bool, ...]
    train: dict[str, Any] = field(default_factory=dict)
    train_budget_cap: float = math.inf
    eval_n: int = 1000
    estimate_stand_in: dict[str, Any] | None = None
    estimate_probe_batch: int | None = None
    estimate_reps: int = 3
    test_timeout_s: int = 150


def settings_for(quick: bool, data_root: str | None) -> Settings:
    if quick:
        return Settings(quick=True, bench_models=(("wrn32_10 and preact_resnet18", "small_cnn", 4),),
                        bench_batch=16, bench_warmup=1, bench_reps=3, bench_attack_steps=3, bench_compile=(False,),
                        train={"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 1024,
                               "n_test": 200, "batch_size": 64},
                        train_budget_cap=4.0, eval_n=200,
                        estimate_stand_in={"arch": "small_cnn", "width": 4}, estimate_probe_batch=16,
                        estimate_reps=1, test_timeout_s=120)
    return Settings(quick=False, bench_models=(("wrn32_10", "wrn32_10", None),
                                               ("preact_resnet18", "preact_resnet18", None)),
                    bench_batch=128, bench_warmup=3, bench_reps=10, bench_attack_steps=20, bench_compile=(False, True),
                    train={"dataset": "cifar10-jpeg", "data_root": data_root, "arch": "preact_resnet18",
                           "n_test": 1000, "batch_size": 128})


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


# --- part 1: the device tests --------------------------------------------------------------------

def run_device_tests(device: torch.device, settings: Settings, workdir: Path) -> dict[str, Any]:
    """``pytest -m gpu tests/test_gpu.py`` on ``device`` in a subprocess; counts and failing ids
    from its JUnit XML."""
    tests = REPO / GPU_TESTS
    if not tests.is_file():
        raise FileNotFoundError(f"{tests} not found: gpucheck runs the device tests of a source checkout")
    report = workdir / "gpu-tests.xml"
    threads = str(torch.get_num_threads() if device.type == "cpu" else max(1, min(8, os.cpu_count() or 1)))
    env = {**os.environ, "FREEADV_TEST_DEVICE": str(device), "FREEADV_TEST_QUICK": "1" if settings.quick else "0",
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", GPU_TESTS, "-p", "no:cacheprovider",
               "-p", "no:xdist", "-rs", f"--junitxml={report}"]
    code, output = run_bounded(command, settings.test_timeout_s, REPO, env)
    if code is None:
        return {"ok": False, "error": f"the device tests timed out after {settings.test_timeout_s} s (killed)",
                "command": " ".join(command), "output_tail": output}
    record: dict[str, Any] = {"command": " ".join(command), "returncode": code, "threads": int(threads)}
    if report.is_file():
        record.update(_junit_counts(report))
    else:
        record.update(passed=0, failed=0, errors=0, skipped=0, failing=[])
    record["ok"] = code == 0 and record["passed"] > 0 and not record["failing"]
    if not record["ok"]:
        record["error"] = ("no device test ran" if code == 0 else
                           f"pytest exited {code}: {', '.join(record['failing']) or 'see output_tail'}")
        record["output_tail"] = output
    return record


def _junit_counts(report: Path) -> dict[str, Any]:
    passed, failing, skipped, messages = [], [], [], {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = f"{GPU_TESTS}::{case.get('name')}"
        failure = case.find("failure") if case.find("failure") is not None else case.find("error")
        if failure is not None:   # its message: the output tail holds only the last failure's traceback
            failing.append(test_id)
            messages[test_id] = (failure.get("message") or failure.text or "")[:FAILURE_MESSAGE_CHARS]
        elif case.find("skipped") is not None:
            skipped.append({"id": test_id, "reason": case.find("skipped").get("message", "")})
        else:
            passed.append(test_id)
    return {"passed": len(passed), "failed": len(failing), "skipped": len(skipped), "failing": failing,
            "failure_messages": messages, "passed_ids": passed, "skipped_ids": skipped}


# --- part 2: the bench -------------------------------------------------------------------------

METHODS = ("natural", "free", "pgd7")


def bench_configs(settings: Settings) -> list[dict[str, Any]]:
    """Eager configurations first (cheap), then the compiled ones (each compile costs tens of
    seconds), fp32 before bf16 and Table 1's WRN-32-10 first within each, so that a bench cut
    short by its time budget still has the numbers that matter most."""
    configs = []
    for compiled in settings.bench_compile:
        for amp in ("off", "bf16"):
            for stands_for, arch, width in settings.bench_models:
                configs.append({"stands_for": stands_for, "arch": arch, "width": width, "amp": amp,
                                "compile": compiled})
    for first in {c["arch"]: c for c in reversed(configs)}.values():
        first["eval_rows"] = True      # PGD eval is fp32 and eager anyway: once per model
    return configs


def _summary(result: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    train_rows = [row for row in result["rows"] if row["kind"] == "train"]
    natural, free, pgd7 = train_rows[:3]        # run_bench keeps the order of METHODS
    return {**config, "precision": result["precision"]["compute"], "batch": result["batch"],
            "ms_per_iter": 1000 * natural["median_s"], "images_per_s": natural["images_per_s"],
            "free_over_natural": free["relative_to_natural"], "pgd7_over_natural": pgd7["relative_to_natural"],
            "tflop_per_s": natural["tflop_per_s"], "mfu": natural["mfu"], "mfu_free": free["mfu"],
            "mfu_pgd7": pgd7["mfu"], "peak": result["peak"], "reps": result["reps"], "rows": result["rows"]}


def bench_command(device: torch.device, settings: Settings, config: dict[str, Any], out: Path) -> list[str]:
    """``freeadv bench`` for one configuration, as a subprocess runs it."""
    command = [sys.executable, "-m", "freeadv", "bench", "--arch", config["arch"], "--batch-size", str(settings.bench_batch),
               "--device", str(device), "--amp", config["amp"], "--methods", ",".join(METHODS), "--replay", "8",
               "--warmup", str(settings.bench_warmup), "--reps", str(settings.bench_reps), "--no-eval",
               "--out", str(out)]
    if config["width"]:
        command += ["--width", str(config["width"])]
    if config["compile"]:
        command.append("--compile")
    return command


def run_bounded(command: list[str], timeout: float, cwd: Path,
                env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Run ``command`` in its own process group; past ``timeout`` kill the whole group (torch.compile's
    worker processes too). Returns (exit code or None when killed, the output's tail)."""
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True) as process:
        try:
            output, _ = process.communicate(timeout=max(timeout, 0.1))
            return process.returncode, output[-4000:]
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            return None, (output or "")[-4000:]


def bench_in_subprocess(device: torch.device, settings: Settings, config: dict[str, Any], timeout: float,
                        workdir: Path) -> dict[str, Any]:
    """One configuration through ``freeadv bench`` in a subprocess: a torch.compile that runs long is
    killed at ``timeout`` (the check's time bound holds), and its compile caches stay out of this process."""
    out = workdir / f"bench-{config['arch']}-{config['amp']}-{'compiled' if config['compile'] else 'eager'}.json"
    code, output = run_bounded(bench_command(device, settings, config, out), timeout, REPO,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                   filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))})
    if code is None:
        raise TimeoutError(f"freeadv bench did not finish within the {timeout:.0f} s left to the bench")
    if code != 0 or not out.is_file():
        raise RuntimeError(f"freeadv bench exited {code}: {output.strip().splitlines()[-1] if output.strip() else ''}")
    return read_json(out)


def run_bench_part(device: torch.device, settings: Settings, seconds: float, workdir: Path) -> dict[str, Any]:
    """Every configuration of bench_configs within ``seconds``: the eager ones here (they always
    run), each compiled one in a subprocess killed when the time is up, and skipped (recorded)
    when less than MIN_COMPILED_S is left."""
    deadline = time.perf_counter() + seconds
    rows, skipped, errors = [], [], []
    for config in bench_configs(settings):
        name = (f"{config['arch']}{' w' + str(config['width']) if config['width'] else ''} amp={config['amp']}"
                f"{' compiled' if config['compile'] else ''}")
        left = deadline - time.perf_counter()
        if config["compile"] and left < MIN_COMPILED_S:
            skipped.append({**config, "reason": f"the bench's time budget ({seconds:.0f} s) was spent"})
            print(f"[gpucheck]   bench {name}: skipped ({left:.0f} s of the bench's time left)", flush=True)
            continue
        began = time.perf_counter()
        try:
            if config["compile"]:
                result = bench_in_subprocess(device, settings, config, left, workdir)
            else:
                result = run_bench(config["arch"], settings.bench_batch, device=str(device), width=config["width"],
                                   warmup=settings.bench_warmup, reps=settings.bench_reps,
                                   attack_steps=settings.bench_attack_steps, methods=METHODS, amp=config["amp"],
                                   eval_rows=config.get("eval_rows", False))
        except Exception as err:   # recorded; the other configurations still run
            errors.append({**config, "error": f"{type(err).__name__}: {err}",
                           "traceback": traceback.format_exc(limit=6)})
            print(f"[gpucheck]   bench {name}: FAILED ({type(err).__name__}: {err})", flush=True)
            _release(device)
            continue
        _release(device)
        row = {**_summary(result, config), "seconds": time.perf_counter() - began}
        rows.append(row)
        mfu = f", MFU {100 * row['mfu']:.1f}%" if row["mfu"] is not None else ""
        print(f"[gpucheck]   bench {name}: {row['ms_per_iter']:.1f} ms/iter, {row['images_per_s']:.0f} images/s, "
              f"Free/natural {row['free_over_natural']:.2f}, 7-PGD/natural {row['pgd7_over_natural']:.2f}{mfu} "
              f"({row['seconds']:.0f} s)", flush=True)
    return {"ok": bool(rows) and not errors, "configs": rows, "skipped": skipped, "errors": errors,
            "budget_seconds": seconds, "batch": settings.bench_batch, "methods": list(METHODS),
            **({"error": f"{len(errors)} configuration(s) failed: " + "; ".join(e["error"] for e in errors)}
               if errors else {})}


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
    evaluated = run_attack(run_dir, replace(spec, n=settings.eval_n), batch_size=500, seed=0, device=str(device))
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

def _workflow_config() -> Path:
    for candidate in (REPO / "config" / "config.yaml", Path("config/config.yaml")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("config/config.yaml (the workflow config) not found: run gpucheck from a checkout")


def run_estimate_part(device: torch.device, settings: Settings, target: str = "table1") -> dict[str, Any]:
    """freeadv.tools.estimate on ``target`` at paper scale; --quick times a stand-in model instead of the
    paper's (the same code, the paper's job list and sizes)."""
    plan = build_plan(**plan_inputs(cfg.load_yaml(_workflow_config()), "paper"))
    if settings.estimate_stand_in:
        entry = plan["targets"][target]
        models = {row["model"] for row in entry["rows"] if row["model"]} | {a["model"] for a in entry["analyses"]}
        for model in models:
            plan["models"][model]["config"].update(settings.estimate_stand_in)
    result = estimate(plan, target, device=str(device), probe_batch=settings.estimate_probe_batch,
                      reps=settings.estimate_reps)
    name = device_info(device)["name"]
    print(format_estimate(result, name), flush=True)
    return {"ok": result["total_seconds"] > 0, "target": target, "scale": "paper",
            "total_seconds": result["total_seconds"], "total": human(result["total_seconds"]),
            "stand_in": settings.estimate_stand_in, "step_costs": result["step_costs"], "jobs": result["jobs"]}


# --- the command ---------------------------------------------------------------------------------

def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _part(title: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    print(f"[gpucheck] {title}", flush=True)
    start = time.perf_counter()
    try:
        record = fn(*args)
    except Exception as err:   # recorded; the other parts still run
        record = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=8)}
    record["seconds"] = time.perf_counter() - start
    if not record["ok"]:
        record.setdefault("error", "failed (see its numbers)")
    print(f"[gpucheck] {title}: {'PASS' if record['ok'] else 'FAIL: ' + record['error']} "
          f"({record['seconds']:.0f} s)", flush=True)
    return record


def checkout_files_missing() -> list[str]:
    """What the full check reads from the checkout and does not find there (the package installed
    without its repository has neither the device tests nor the workflow config)."""
    return [name for name in (GPU_TESTS, "config/config.yaml") if not (REPO / name).is_file()]


def run_gpucheck(device: torch.device, settings: Settings, budget_seconds: float) -> dict[str, Any]:
    start = time.perf_counter()
    parts: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="freeadv-gpucheck-") as tmp:
        workdir = Path(tmp)
        parts["tests"] = _part("1/4 device tests (pytest -m gpu)", run_device_tests, device, settings, workdir)
        elapsed = time.perf_counter() - start
        bench_seconds = (BENCH_MAX_S if settings.quick else
                         max(0.0, min(BENCH_MAX_S, TOTAL_TARGET_S - elapsed - budget_seconds - TRAIN_RESERVE_S)))
        parts["bench"] = _part("2/4 bench", run_bench_part, device, settings, bench_seconds, workdir)
        _release(device)
        parts["train"] = _part("3/4 training + PGD-20", run_training_part, device, settings, budget_seconds, workdir)
        _release(device)
    parts["estimate"] = _part("4/4 estimate of table1 at paper scale", run_estimate_part, device, settings)
    return {"kind": "gpucheck", "quick": settings.quick, "ok": all(p["ok"] for p in parts.values()),
            "parts_ok": {name: p["ok"] for name, p in parts.items()}, "wall_seconds": time.perf_counter() - start,
            "parts": parts, **stamp(device)}


def _fmt(value: Any, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _part_summary(name: str, part: dict[str, Any]) -> str:
    if not part["ok"] and "error" in part and name != "tests":
        return part["error"]
    if name == "tests":
        return (f"{part.get('passed', 0)} passed, {part.get('failed', 0)} failed, {part.get('skipped', 0)} skipped"
                + (f"; {part['error']}" if not part["ok"] else ""))
    if name == "bench":
        return f"{len(part['configs'])} configurations, {len(part['skipped'])} skipped for time"
    if name == "train":
        return (f"{part['iterations']} iterations, clean {part['clean_acc']:.1f}%, "
                f"PGD-20 {part['robust_acc']:.1f}% (n={part['eval_n']})")
    return f"table1 at paper scale: {part['total']}"


def format_markdown(result: dict[str, Any]) -> str:
    device, parts = result["device"], result["parts"]
    git = result["git"]
    lines = [f"# freeadv gpucheck: {device['name']}{' (quick)' if result['quick'] else ''}", "",
             f"{'PASS' if result['ok'] else 'FAIL'} in {result['wall_seconds'] / 60:.1f} min. Commit "
             f"{str(git['commit'])[:12]}{' (dirty)' if git['dirty'] else ''}, torch {result['versions']['torch']}"
             f"{', CUDA ' + str(device['cuda']) if device.get('cuda') else ''}, host {device['host']}.", "",
             "| part | result | seconds | summary |", "|---|---|---|---|"]
    for name, title in (("tests", "1 device tests"), ("bench", "2 bench"), ("train", "3 training + PGD-20"),
                        ("estimate", "4 estimate")):
        part = parts[name]
        lines.append(f"| {title} | {'PASS' if part['ok'] else 'FAIL'} | {part['seconds']:.0f} | "
                     f"{_part_summary(name, part)} |")
    bench = parts["bench"]
    if bench.get("configs"):
        lines += ["", f"## Bench (batch {bench['batch']}; median step time; MFU against the dense datasheet peak)", "",
                  "| model | arch | precision | compile | ms/iter (natural) | images/s | Free m=8 / natural | "
                  "7-PGD / natural | TFLOP/s | MFU natural | MFU Free | MFU 7-PGD |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in bench["configs"]:
            lines.append(f"| {c['stands_for']} | {c['arch']}{' w' + str(c['width']) if c['width'] else ''} | "
                         f"{c['precision']} | {'yes' if c['compile'] else 'no'} | {c['ms_per_iter']:.1f} | "
                         f"{c['images_per_s']:.0f} | {c['free_over_natural']:.2f} | {c['pgd7_over_natural']:.2f} | "
                         f"{c['tflop_per_s']:.3g} | {_fmt(c['mfu'] and 100 * c['mfu'], '.1f', '%')} | "
                         f"{_fmt(c['mfu_free'] and 100 * c['mfu_free'], '.1f', '%')} | "
                         f"{_fmt(c['mfu_pgd7'] and 100 * c['mfu_pgd7'], '.1f', '%')} |")
        peak = bench["configs"][0]["peak"]
        if peak["tflops"] is None:
            lines += ["", f"MFU: {peak['reason']}."]
        for s in bench["skipped"]:
            lines.append(f"\nSkipped: {s['arch']} amp={s['amp']} compiled: {s['reason']}.")
    train = parts["train"]
    if train["ok"]:
        lines += ["", "## Training and PGD-20", "",
                  f"{train['model']} {train['method']} m={train['replay']} on {train['dataset']}, batch "
                  f"{train['batch_size']}, fp32: {train['iterations']} iterations ({train['passes']:.2f} passes) in "
                  f"{train['train_seconds']:.0f} s, {train['train_images_per_s']:.0f} images/s, final loss "
                  f"{train['final_loss']:.3f}. {train['attack']} on the first {train['eval_n']} test images: clean "
                  f"{train['clean_acc']:.2f}%, robust {train['robust_acc']:.2f}%, {train['eval_images_per_s']:.0f} "
                  f"images/s."]
    est = parts["estimate"]
    if est["ok"]:
        stand_in = (f" (step costs of a stand-in, {est['stand_in']['arch']} width {est['stand_in']['width']})"
                    if est["stand_in"] else "")
        lines += ["", "## Estimate", "",
                  f"`table1` at paper scale on this device, one job at a time: **{est['total']}**{stand_in}; "
                  f"{len(est['jobs'])} jobs."]
    failed = [(name, part) for name, part in parts.items() if not part["ok"]]
    if failed:
        lines += ["", "## Failures", ""]
        for name, part in failed:
            lines.append(f"- {name}: {part.get('error', 'failed')}")
            for test_id in part.get("failing", []):
                message = part.get("failure_messages", {}).get(test_id, "").splitlines()
                lines.append(f"  - {test_id}" + (f": {message[0]}" if message else ""))
    return "\n".join(lines) + "\n"
