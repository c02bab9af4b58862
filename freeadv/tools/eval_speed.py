"""``eval-speed``: how fast the evaluation path runs on a device, and which settings decide it.

A gpucheck on an H200 ran PGD-20 at 128 images/s inside its training process, while ``bench``
ran the same attack step at 1,660 images/s. Three suspects, each measured here rather than argued:
cuDNN's autotuner (``cudnn.benchmark``) left on by training, which re-tunes for every new batch
shape (and AutoAttack's chunks of surviving points give many); the memory layout (NCHW against
the channels_last that training uses); and the first, cold call's one-off costs.

Stages, each written to its JSON as it ends (a call cut short keeps what finished):

- ``pgd20``: PGD-20 (eps 8, step 2) through the library's ``evaluate`` on the first ``n_pgd`` test
  images, for NCHW and channels_last, cudnn.benchmark off and on, each cold (first call) and warm
  (the same call again): images per second of each.
- ``apgd-ce``, ``apgd-t``, ``fab-t``, ``square``: each AutoAttack sub-attack alone (pyautoattack's
  standard settings) on the first ``n_aa`` images: seconds per 100 images.

The model is WRN-32-10 as initialised (``--quick``: a small CNN), in fp32, and each image's label
is the model's own prediction, so every image starts correctly classified and every attack works
on all of them: a measure of speed, not of robustness. Images are cifar10-jpeg's test images when
``--data-root`` holds them, else uniform noise of the same shape.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..attacks import AttackSpec
from ..io import write_json
from ..models import build_model
from ..provenance import stamp
from ..runs.evaluation import evaluate

EVAL_SPEED_BUDGET_S = 540.0
SUB_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
PGD20 = AttackSpec("pgd", 20, 8.0, 2.0)


@dataclass(frozen=True)
class SpeedPlan:
    quick: bool
    model: dict[str, Any]
    n_pgd: int = 1000
    n_aa: int = 200
    batch_size: int = 500
    aa_steps: int = 100          # AutoAttack's standard iterations (Square: 50 queries per iteration)


def speed_plan(quick: bool) -> SpeedPlan:
    if quick:
        return SpeedPlan(True, {"arch": "small_cnn", "width": 4}, n_pgd=64, n_aa=16, batch_size=32, aa_steps=2)
    return SpeedPlan(False, {"arch": "wrn32_10"})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(model: torch.nn.Module, n: int, device: torch.device, data_root: str | None) -> tuple[torch.Tensor, ...]:
    """The first ``n`` cifar10-jpeg test images (or noise) and the model's own labels for them."""
    if data_root and (Path(data_root) / "cifar10-jpeg.tar.gz").exists():
        from ..data import load_data
        x = load_data("cifar10-jpeg", data_root, n_train=128, n_test=n, augment=False).test_tensors()[0]
    else:
        x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    with torch.no_grad():
        y = torch.cat([model(chunk).argmax(1) for chunk in x.split(500)])
    return x, y


def _timed(run: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


def pgd_rates(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, plan: SpeedPlan,
              device: torch.device) -> list[dict[str, Any]]:
    """Cold and warm PGD-20 images/s for each layout and cudnn.benchmark setting."""
    rows, flag = [], torch.backends.cudnn.benchmark
    try:
        for layout, memory_format in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
            model = model.to(memory_format=memory_format)
            images = x.contiguous(memory_format=memory_format)
            batches = [(images[i:i + plan.batch_size], y[i:i + plan.batch_size]) for i in range(0, len(y), plan.batch_size)]
            for benchmark in (False, True):
                torch.backends.cudnn.benchmark = benchmark
                cold, warm = (_timed(lambda: evaluate(model, batches, PGD20, seed=0), device) for _ in range(2))
                rows.append({"layout": layout, "cudnn_benchmark": benchmark, "cold_s": cold, "warm_s": warm,
                             "images_per_s_cold": len(y) / cold, "images_per_s_warm": len(y) / warm})
    finally:
        torch.backends.cudnn.benchmark = flag
    return rows


def sub_attack_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, name: str, steps: int,
                       batch_size: int, device: torch.device) -> dict[str, Any]:
    """One AutoAttack sub-attack alone on every image (``steps``: 100 is AutoAttack's standard),
    eps 8: seconds, and seconds per 100 images. Label the images with the model's own predictions
    so that every image is attacked."""
    from ..attacks.autoattack import build_autoattack
    spec = AttackSpec("autoattack", steps, 8.0)
    adversary = build_autoattack(model, spec, (name,), seed=0, device=device)
    adversary.verbose = False
    seconds = _timed(lambda: adversary.run_standard_evaluation(x, y, batch_size=batch_size), device)
    return {"attack": name, "n": len(y), "steps": steps, "seconds": seconds,
            "seconds_per_100_images": 100 * seconds / len(y)}


def run_eval_speed(device: torch.device, plan: SpeedPlan, data_root: str | None, budget: float,
                   out_dir: Path) -> dict[str, Any]:
    """Every stage in order while the budget lasts; the whole result is rewritten after each."""
    start = time.perf_counter()
    model = build_model(plan.model["arch"], 10, **({"width": plan.model["width"]} if plan.model.get("width") else {}))
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)   # an evaluation needs input gradients only
    x, y = _inputs(model, max(plan.n_pgd, plan.n_aa), device, data_root)
    result: dict[str, Any] = {"kind": "gpu-experiment", "experiment": "eval-speed", "plan": asdict(plan),
                              "images": "cifar10-jpeg test" if data_root else "uniform noise", "stages": {},
                              "budget_seconds": budget, **stamp(device)}
    stages: list[tuple[str, Callable[[], Any]]] = [("pgd20", lambda: pgd_rates(model, x[:plan.n_pgd], y[:plan.n_pgd], plan, device))]
    stages += [(name, lambda name=name: sub_attack_seconds(model, x[:plan.n_aa], y[:plan.n_aa], name, plan.aa_steps,
                                                                 plan.batch_size, device))
               for name in SUB_ATTACKS]
    for name, run in stages:
        if name != "pgd20" and importlib.util.find_spec("pyautoattack") is None:
            record = {"status": "skipped", "reason": "pyautoattack is not installed"}
        elif time.perf_counter() - start > budget:
            record = {"status": "skipped", "reason": f"the budget of {budget:.0f} s is spent"}
        else:
            stage_start = time.perf_counter()
            record = {"status": "done", "result": run(), "seconds": time.perf_counter() - stage_start}
        result["stages"][name] = record
        result["elapsed_seconds"] = time.perf_counter() - start
        write_json(out_dir / f"{name}.json", record)
        write_json(out_dir / "eval-speed.json", result)
    return result


def format_speed(result: dict[str, Any]) -> str:
    lines = [f"eval-speed on {result['device']['name']} ({result['images']}):"]
    pgd = result["stages"].get("pgd20", {})
    for row in pgd.get("result", []):
        lines.append(f"  PGD-20 {row['layout']:<13} benchmark {'on ' if row['cudnn_benchmark'] else 'off'}  "
                     f"cold {row['images_per_s_cold']:8.0f} img/s  warm {row['images_per_s_warm']:8.0f} img/s")
    for name in SUB_ATTACKS:
        record = result["stages"].get(name, {})
        text = (f"{record['result']['seconds_per_100_images']:.2f} s per 100 images" if record.get("status") == "done"
                else record.get("reason", "not run"))
        lines.append(f"  {name:<8} {text}")
    return "\n".join(lines)


def eval_speed_command(device: torch.device, data: str | None, args: argparse.Namespace, out_dir: Path,
                       budget: float) -> int:
    result = run_eval_speed(device, speed_plan(args.quick), data, budget, out_dir)
    print(format_speed(result))
    print(f"[eval-speed] wrote {out_dir}/eval-speed.json and one JSON per stage")
    return 0
