"""Part 2 of ``freeadv gpucheck``: the bench (freeadv.tools.bench.run_bench) of Table 1's models in
each precision, eager and compiled, within the bench's share of the check's time.

The paper's claim is a cost claim made on GPUs, so this is where it is checked: Free m=8 /
natural (~1) and 7-PGD / natural, with MFU against the card's datasheet peak. Eager
configurations run here, first; each compiled one runs as ``freeadv bench`` in a child process,
killed when the bench's time is spent, so that a long torch.compile cannot break the check's bound.
"""
from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from ..io import read_json
from .bench import run_bench
from .gpucheck_settings import MIN_COMPILED_S, Settings
from .processes import package_env, run_bounded

METHODS = ("natural", "free", "pgd7")


def release(device: torch.device) -> None:
    """Give the device's cached memory back between configurations and parts."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


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


def bench_in_subprocess(device: torch.device, settings: Settings, config: dict[str, Any], timeout: float,
                        workdir: Path) -> dict[str, Any]:
    """One configuration through ``freeadv bench`` in a subprocess: a torch.compile that runs long is
    killed at ``timeout`` (the check's time bound holds), and its compile caches stay out of this process."""
    out = workdir / f"bench-{config['arch']}-{config['amp']}-{'compiled' if config['compile'] else 'eager'}.json"
    code, output = run_bounded(bench_command(device, settings, config, out), timeout, workdir, package_env())
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
            release(device)
            continue
        release(device)
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
