"""Per-iteration cost of every method on the same model and batch, in one process.

The paper's claim is a cost claim: a Free-m iteration costs a natural iteration, a K-PGD one about
K+1 (ideally (3+2K)/3, since an input-only backward skips the weight gradients). This times the
real training steps of freeadv.methods (the same code ``freeadv train`` runs), after warm-up,
and reports the median of many repetitions, plus PGD evaluation against a plain autograd loop.
"""
from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import config as cfg
from .attacks.spec import PAPER_STEP
from .attacks.steps import eval_mode, pgd
from .io import write_json
from .methods import METHODS, build_method, method_params
from .provenance import stamp
from .training import make_optimizer, model_for, place_batch, place_model, setup_runtime
from .units import to_unit

IMAGE_SIZE = {"imagenet": 224}


def _timer(device: torch.device) -> Callable[[], float]:
    if device.type == "cuda":
        def now() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return now
    return time.perf_counter


def _summary(samples: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples),
            "reps": len(samples)}


def time_interleaved(fns: dict[str, Callable[[], Any]], device: torch.device, *, warmup: int,
                     reps: int) -> dict[str, dict[str, float]]:
    """Time several calls round-robin (A B C A B C ...), so that clock-speed drift and noisy
    neighbours hit every method alike and the ratios stay fair; median of ``reps`` each."""
    now = _timer(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = now()
            fn()
            samples[name].append(now() - start)
    return {name: _summary(values) for name, values in samples.items()}


def plain_autograd_pgd(model, x, y, eps, step_size, steps):
    """The straightforward PGD loop a user would write: the reference the library must match."""
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + step_size * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv


# What `bench` can time: name -> config overrides. The paper's methods first (with 2-PGD, Table
# 2's cheap baseline, and 7-PGD named by K), then every other registered method with its defaults;
# `xgrad` is a diagnostic rather than a method: a natural step that also computes the input
# gradient (the work Free adds).
STEPS: dict[str, dict[str, Any]] = {
    "natural": {"method": "natural"},
    "xgrad": {"method": "natural"},
    "free": {"method": "free"},
    "pgd2": {"method": "pgd", "pgd_steps": 2},
    "pgd7": {"method": "pgd", "pgd_steps": 7},
    **{name: {"method": name} for name in METHODS if name not in ("natural", "free", "pgd")},
}


def _label(name: str, config: dict[str, Any]) -> str:
    if name == "xgrad":
        return "natural + input gradient"
    return METHODS[config["method"]].title(method_params(config["method"], config))


def _step_with_input_gradient(method, model, optimizer, x, y):
    """A natural step whose backward also computes the input gradient: the one piece of work a
    Free step adds. Free minus this row is the cost of Free's own bookkeeping (perturbation,
    clipping, sign step), so the bench separates the two."""
    leaf = x.detach().requires_grad_(True)
    method.update(model, optimizer, leaf, y)
    return leaf.grad


def run_bench(arch: str, batch: int, *, dataset: str = "cifar10", device: str = "auto", replay: int = 8,
              warmup: int = 3, reps: int = 10, attack_steps: int = 20, width: int | None = None,
              methods: tuple[str, ...] = tuple(STEPS)) -> dict[str, Any]:
    shared = {"dataset": dataset, "arch": arch, "batch_size": batch, "device": device, "width": width,
              "iterations": 1}
    base = cfg.resolve({**shared, "method": "natural"})
    dev, autocast, channels_last = setup_runtime(base)
    size = IMAGE_SIZE.get(dataset, 32)
    g = torch.Generator().manual_seed(0)
    x = place_batch(torch.rand(batch, 3, size, size, generator=g).to(dev), channels_last)
    y = torch.randint(0, 10, (batch,), generator=g).to(dev)

    steps: dict[str, Callable[[], Any]] = {}
    for name in methods:
        config = cfg.resolve({**shared, **STEPS[name], **({"replay": replay} if name == "free" else {})})
        torch.manual_seed(0)
        model = place_model(model_for(config), dev, channels_last)
        model.train()
        optimizer = make_optimizer(model, config)
        method = build_method(config, autocast=autocast)
        generator = torch.Generator(device=dev).manual_seed(0)
        label = _label(name, config)
        if name == "xgrad":
            steps[label] = partial(_step_with_input_gradient, method, model, optimizer, x, y)
        else:
            steps[label] = partial(method.step, model, optimizer, x, y, generator)
    rows = [{"name": label, "kind": "train", **timing}
            for label, timing in time_interleaved(steps, dev, warmup=warmup, reps=reps).items()]

    torch.manual_seed(0)
    model = place_model(model_for(base), dev, channels_last).eval()
    eps, step = to_unit(8), to_unit(PAPER_STEP["cifar"])   # the paper's CIFAR PGD: eps 8, step 2
    attacks = {f"PGD-{attack_steps} eval (freeadv)":
               lambda: pgd(model, x, y, eps=eps, step_size=step, steps=attack_steps),
               f"PGD-{attack_steps} eval (plain autograd loop)":
               lambda: plain_autograd_pgd(model, x, y, eps, step, attack_steps)}
    with eval_mode(model):
        timings = time_interleaved(attacks, dev, warmup=1, reps=max(3, reps // 3))
    rows += [{"name": label, "kind": "eval", **timing} for label, timing in timings.items()]

    natural = next(r for r in rows if r["name"] == _label("natural", base))["median_s"]
    for row in rows:
        row["images_per_s"] = batch / row["median_s"]
        row["relative_to_natural"] = row["median_s"] / natural
    return {"kind": "bench", "arch": arch, "batch": batch, "dataset": dataset, "replay": replay,
            "warmup": warmup, "reps": reps, "attack_steps": attack_steps, "rows": rows, **stamp(dev)}


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{result['arch']}, batch {result['batch']}, {result['device']['name']} "
             f"({result['device']['cpu_threads']} threads), median of {result['reps']} after {result['warmup']} warm-up",
             f"{'step':<38}{'ms/iter':>10}{'images/s':>11}{'x natural':>11}"]
    for row in result["rows"]:
        lines.append(f"{row['name']:<38}{1000 * row['median_s']:>10.1f}{row['images_per_s']:>11.0f}"
                     f"{row['relative_to_natural']:>11.2f}")
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time every registered training method's step and PGD evaluation side by side",
                       description=__doc__)
    p.add_argument("--arch", default="small_cnn", help="model from the registry (default small_cnn)")
    p.add_argument("--width", type=int, help="small_cnn width")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "imagenet", "synthetic"],
                   help="decides input size (224 for imagenet) and class count")
    p.add_argument("--replay", type=int, default=8, help="m for the free step (default 8)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--attack-steps", type=int, default=20)
    p.add_argument("--methods", default=",".join(STEPS),
                   help=f"comma-separated subset of {','.join(STEPS)} (natural is always timed; xgrad is a "
                        "natural step that also computes the input gradient)")
    p.add_argument("--out", help="write the result JSON here")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    for name in ("batch", "replay", "reps", "attack_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} has bad value {getattr(args, name)}: expected an integer >= 1")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in STEPS:
            raise ValueError(f"--methods has bad value '{m}': expected names from {', '.join(STEPS)}")
    methods = ["natural"] + [m for m in methods if m != "natural"]
    result = run_bench(args.arch, args.batch, dataset=args.dataset, device=args.device, replay=args.replay,
                       warmup=args.warmup, reps=args.reps, attack_steps=args.attack_steps, width=args.width,
                       methods=tuple(methods))
    print(format_table(result))
    if args.out:
        write_json(args.out, result)
    return 0
