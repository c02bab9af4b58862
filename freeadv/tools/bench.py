"""Per-iteration cost of every method on the same model and batch, in one process.

The paper's claim is a cost claim: a Free-m iteration costs a natural iteration, a K-PGD one about
K+1 (ideally (3+2K)/3, since an input-only backward skips the weight gradients). This times the
real training steps of freeadv.methods (the same code ``freeadv train`` runs), after warm-up,
and reports the median of many repetitions, plus PGD evaluation against a plain autograd loop.

``--amp bf16`` (or ``fp16``, with its loss scaler) times the steps under that autocast and
``--compile`` torch.compiles each timed model, both as ``freeadv train`` does with ``amp: bf16`` /
``compile: true``. With ``trainer``,
each training row also gets the Trainer's own ms per iteration for the same step (a short run of
``freeadv train`` on synthetic data: :func:`trainer_ms_per_iteration`), so whatever the loop adds
around the step (the data feed, the schedule, the loss reads) shows as the gap. Each row also
reports its model FLOP utilisation: the FLOPs of one of its steps (counted once with
torch.utils.flop_counter at the real batch, outside the timing) over its median time, and that
over the device's dense peak for the precision (PEAK_TFLOPS; null on a CPU or an unlisted GPU).
"""
from __future__ import annotations

import math
import re
import statistics
import tempfile
import time
from functools import partial
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .. import config as cfg
from ..attacks.spec import PAPER_STEP
from ..data import DATASETS
from ..perturb import eval_mode, frozen_weights, pgd
from ..methods import METHODS, build_method, method_params
from ..provenance import stamp
from ..runs.eval_device import eval_channels_last
from ..precision import make_scaler
from ..training import Trainer, make_optimizer, model_for, place_batch, place_model, setup_runtime
from ..training.runtime import autocast_dtype
from ..training.folder import read_log
from ..training.tracking import peak_memory_mb, reset_peak_memory
from ..units import to_unit
from ..errors import UserError


# Dense peak TFLOP/s per precision, for MFU. From NVIDIA's datasheets (H100: "NVIDIA H100 Tensor
# Core GPU" datasheet; H200: "NVIDIA H200 Tensor Core GPU" datasheet; A100: "NVIDIA A100 Tensor
# Core GPU" datasheet, 40 and 80 GB alike; L40S: "NVIDIA L40S" datasheet), whose tensor-core
# figures are quoted with 2:4 sparsity ("*": halve for dense), so the tf32/bf16 values below are
# half the printed ones (H100 SXM: 989 and 1,979 printed -> 494.5 and 989.5). fp32 is the
# non-tensor-core FP32 rate. RTX 4090: NVIDIA's "Ada GPU Architecture" whitepaper, appendix table
# (dense; bf16 with FP32 accumulate, which is what PyTorch uses). A10G: NVIDIA publishes no
# datasheet for AWS's A10G; these are the figures quoted for it beside the A10's (A10 datasheet:
# 31.2 / 62.5 / 125), i.e. a less certain entry. Matched on torch.cuda.get_device_name() in
# PEAK_NAMES' order (NVL and PCIe variants before the SXM part of the same chip).
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 SXM": {"bf16": 989.5, "tf32": 494.5, "fp32": 67.0},
    "H100 PCIe": {"bf16": 756.5, "tf32": 378.0, "fp32": 51.0},
    "H100 NVL": {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "H200": {"bf16": 989.5, "tf32": 494.5, "fp32": 67.0},
    "H200 NVL": {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "A100 40GB": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "A100 80GB": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "L40S": {"bf16": 362.05, "tf32": 183.0, "fp32": 91.6},
    "RTX 4090": {"bf16": 165.2, "tf32": 82.6, "fp32": 82.6},
    "A10G": {"bf16": 70.0, "tf32": 35.0, "fp32": 35.0},
}
PEAK_NAMES: tuple[tuple[str, str], ...] = (   # (regex on the lower-cased device name, PEAK_TFLOPS key)
    (r"\bh100\b.*\bnvl\b", "H100 NVL"),
    (r"\bh100\b.*\bpcie\b", "H100 PCIe"),
    (r"\bh100\b", "H100 SXM"),                # "NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB"
    (r"\bh200\b.*\bnvl\b", "H200 NVL"),
    (r"\bh200\b", "H200"),                    # not "GH200": \b
    (r"\ba100\b.*\b80\s?gb\b", "A100 80GB"),  # "NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"
    (r"\ba100\b", "A100 40GB"),
    (r"\bl40s\b", "L40S"),
    (r"\brtx 4090\b(?!\s*d\b)", "RTX 4090"),  # not the cut-down "RTX 4090 D"
    (r"\ba10g\b", "A10G"),
)


def peak_entry(device_name: str) -> str | None:
    """The PEAK_TFLOPS key of a CUDA device name, or None for a GPU not in the table."""
    name = device_name.lower()
    return next((key for pattern, key in PEAK_NAMES if re.search(pattern, name)), None)


def peak_precision(device: torch.device, bf16: bool, fp16: bool = False) -> str:
    """Which peak a step runs against: bf16 or fp16 under autocast; otherwise tf32 where cuDNN may
    use TF32 for convolutions (PyTorch's default on CUDA; these models are convolutions), else fp32."""
    if bf16 or fp16:
        return "bf16" if bf16 else "fp16"
    return "tf32" if device.type == "cuda" and torch.backends.cudnn.allow_tf32 else "fp32"


def device_peak(device: torch.device, bf16: bool, fp16: bool = False) -> dict[str, Any]:
    """The dense peak this device reaches in this precision, with where it came from; ``tflops``
    is None (and ``reason`` says why) on a CPU or an unlisted GPU. fp16 reads the bf16 column: the
    tensor cores of every listed GPU run both at one rate (FP32 accumulate)."""
    precision = peak_precision(device, bf16, fp16)
    if device.type != "cuda":
        return {"device": device.type, "precision": precision, "tflops": None,
                "reason": "peak unknown: no peak table for CPUs (MFU is reported for listed GPUs only)"}
    name = torch.cuda.get_device_name(device)
    entry = peak_entry(name)
    if entry is None:
        return {"device": name, "precision": precision, "tflops": None,
                "reason": f"peak unknown: '{name}' is not in freeadv.tools.bench.PEAK_TFLOPS"}
    column = "bf16" if precision == "fp16" else precision
    return {"device": name, "precision": precision, "tflops": PEAK_TFLOPS[entry][column], "matched": entry,
            "source": "NVIDIA datasheet, dense (freeadv.tools.bench.PEAK_TFLOPS)"}


class _NoModuleTracking:
    """Stands in for FlopCounterMode's per-module tracker, which only splits the count by module:
    its backward hooks make ``torch.autograd.grad`` on a leaf input (every attack step) raise
    "A leaf node was passed to _will_engine_execute_node"; the total is the same without it."""
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (matrix products and convolutions, forward and backward), as
    torch.utils.flop_counter counts them; the call really runs (a step's update happens)."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracking()
    with counter:
        fn()
    return int(counter.get_total_flops())


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
                     reps: int) -> dict[str, dict[str, Any]]:
    """Time several calls round-robin (A B C A B C ...), so that clock-speed drift and noisy
    neighbours hit every method alike and the ratios stay fair; median of ``reps`` each.

    ``peak_memory_mb``: the highest device memory (MiB, CUDA; null elsewhere) while one of the
    call's timed repetitions ran, measured outside the timed span. It counts everything the process
    holds at that moment, the other calls' models included, so it bounds what the call needs."""
    now = _timer(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    peaks: dict[str, float | None] = {name: None for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            reset_peak_memory(device)
            start = now()
            fn()
            samples[name].append(now() - start)
            peak = peak_memory_mb(device)
            peaks[name] = peak if peaks[name] is None else max(peaks[name], peak)
    return {name: {**_summary(values), "peak_memory_mb": peaks[name]} for name, values in samples.items()}


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
AMP_CHOICES = ("off", "bf16", "fp16")   # the training key's values that name one precision ("auto" picks one)

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


def _timed_steps(methods: tuple[str, ...], replays: tuple[int, ...]) -> list[tuple[str, dict[str, Any]]]:
    """(STEPS name, config overrides) of each timed step: the free step once per m in ``replays``."""
    return [(name, {**STEPS[name], "replay": m} if name == "free" else STEPS[name])
            for name in methods for m in (replays if name == "free" else (None,))]


def _training_steps(shared: dict[str, Any], methods: tuple[str, ...], replays: tuple[int, ...], x, y, dev,
                    autocast, channels_last: bool, compile: bool):
    """Each timed training step as a callable on the batch (x, y), with its FLOPs and what it is
    (method and m): one freshly seeded model and optimizer per step, as a run would start."""
    steps: dict[str, Callable[[], Any]] = {}
    flops: dict[str, int] = {}
    what: dict[str, dict[str, Any]] = {}   # label -> the step's method and m, what readers match on
    for name, overrides in _timed_steps(methods, replays):
        config = cfg.resolve({**shared, **overrides})
        torch.manual_seed(0)
        model = place_model(model_for(config), dev, channels_last)
        model.train()
        optimizer = make_optimizer(model, config)
        method = build_method(config, autocast=autocast)
        method.scaler = make_scaler(config["amp"], dev)   # fp16's loss scaler, as the Trainer sets it
        generator = torch.Generator(device=dev).manual_seed(0)
        label = _label(name, config)
        what[label] = {"step": name, "method": config["method"], "replay": config.get("replay")}
        # as the engine does: the optimizer holds the module's parameters, the step runs the compiled wrapper
        step_model = torch.compile(model) if compile else model
        if name == "xgrad":
            flops[label] = count_flops(partial(_step_with_input_gradient, method, model, optimizer, x, y))
            steps[label] = partial(_step_with_input_gradient, method, step_model, optimizer, x, y)
        else:
            flops[label] = count_flops(partial(method.step, model, optimizer, x, y, generator))
            steps[label] = partial(method.step, step_model, optimizer, x, y, generator)
    return steps, flops, what


def _evaluation_rows(base: dict[str, Any], x, y, dev, channels_last: bool, attack_steps: int, reps: int,
                     flops: dict[str, int]) -> list[dict[str, Any]]:
    """PGD-``attack_steps`` on the natural model, freeadv's and a plain loop, in fp32 and eager as
    ``freeadv attack`` runs it; their FLOPs go into ``flops``."""
    torch.manual_seed(0)
    model = place_model(model_for(base), dev, channels_last).eval()
    eps, step = to_unit(8), to_unit(PAPER_STEP["cifar"])   # the paper's CIFAR PGD: eps 8, step 2
    attacks = {f"PGD-{attack_steps} eval (freeadv)":
               lambda: pgd(model, x, y, eps=eps, step_size=step, steps=attack_steps),
               f"PGD-{attack_steps} eval (plain autograd loop)":
               lambda: plain_autograd_pgd(model, x, y, eps, step, attack_steps)}
    with eval_mode(model):
        flops.update({label: count_flops(fn) for label, fn in attacks.items()})
        timings = time_interleaved(attacks, dev, warmup=1, reps=max(3, reps // 3))
    return [{"name": label, "kind": "eval", **timing} for label, timing in timings.items()]


def _autoattack_rows(base: dict[str, Any], x, dev, steps: int) -> list[dict[str, Any]]:
    """Each AutoAttack sub-attack alone (pyautoattack, ``steps`` iterations; 100 is its standard) on
    the bench batch, on the natural model as initialised, labelled with its own predictions so that
    every image is attacked, NCHW and with frozen weights, as ``freeadv attack`` runs it (its
    library's layout: freeadv.runs.eval_device): seconds per 100 images. What an AutoAttack evaluation costs per sub-attack
    depends on the images that reach it (freeadv estimate); this is the rate per image."""
    from .eval_speed import SUB_ATTACKS, sub_attack_seconds
    torch.manual_seed(0)
    model = place_model(model_for(base), dev, eval_channels_last(base["channels_last"], dev, whole_set=True)).eval()
    x = x.contiguous()
    with eval_mode(model), frozen_weights(model):
        with torch.no_grad():
            y = model(x).argmax(1)
        timed = [sub_attack_seconds(model, x, y, name, steps, len(y), dev) for name in SUB_ATTACKS]
    return [{"name": f"AutoAttack {row['attack']}", "kind": "autoattack", **row} for row in timed]


def trainer_ms_per_iteration(config: dict[str, Any], batches: int) -> float:
    """The Trainer's own milliseconds per iteration for ``config``'s step: two passes of
    ``batches`` batches of synthetic images, timed from train_seconds at the pass ends, so the
    first pass (warm-up, compilation) is left out. No checks, no evaluation, no checkpoint
    (those are off the clock or rare in a real run); the loss reads every log_every as in one."""
    settings = {**config, "dataset": "synthetic", "n_train": batches * config["batch_size"],
                "n_test": config["batch_size"], "eval_n": None, "robust_eval_n": 0, "checkpoint_every": 10**9}
    per_pass = batches * cfg.resolve(settings)["replay"]
    with tempfile.TemporaryDirectory(prefix="freeadv-bench-") as folder:
        Trainer(cfg.resolve({**settings, "iterations": 2 * per_pass}), folder, progress=False).run()
        ends = [entry["train_seconds"] for entry in read_log(folder) if "pass" in entry and "loss" in entry]
    return 1000 * (ends[1] - ends[0]) / per_pass


def _add_trainer_timings(rows: list[dict[str, Any]], shared: dict[str, Any], dataset: str, reps: int) -> None:
    """``trainer_ms_per_iter`` beside each training row's median (one short run per row, at least
    ``reps`` timed iterations), and the ratio of the two."""
    if DATASETS[dataset].input_size != DATASETS["synthetic"].input_size:
        raise UserError(f"bench's trainer timing trains on synthetic {DATASETS['synthetic'].input_size}-pixel "
                        f"images; dataset {dataset} has {DATASETS[dataset].input_size}")
    for row in rows:
        if row["step"] == "xgrad":
            row["trainer_ms_per_iter"] = row["trainer_over_bench"] = None
            continue
        overrides = {**STEPS[row["step"]], "replay": row["replay"]}
        batches = max(2, math.ceil(reps / row["replay"]))
        row["trainer_ms_per_iter"] = trainer_ms_per_iteration({**shared, **overrides}, batches)
        row["trainer_over_bench"] = row["trainer_ms_per_iter"] / (1000 * row["median_s"])


def run_bench(arch: str, batch: int, *, dataset: str = "cifar10", device: str = "auto",
              replay: int | tuple[int, ...] = 8,
              warmup: int = 3, reps: int = 10, attack_steps: int = 20, width: int | None = None,
              methods: tuple[str, ...] = tuple(STEPS), amp: str = "off", compile: bool = False,
              eval_rows: bool = True, trainer: bool = False, autoattack_steps: int = 0) -> dict[str, Any]:
    """Time ``methods`` (names in STEPS; natural first; the free step once per m of ``replay``)
    round-robin on one synthetic batch, then,
    with ``eval_rows``, PGD-``attack_steps`` evaluation (freeadv's and a plain loop; always fp32 and
    eager, as ``freeadv attack`` runs). ``amp`` (off | bf16 | fp16) and ``compile`` apply to the training
    steps as the training config keys of the same names do. ``trainer`` adds each training row's
    ``trainer_ms_per_iter`` and ``trainer_over_bench`` (null for xgrad, which no method trains).
    ``autoattack_steps`` > 0 adds ``autoattack_rows``: each sub-attack's seconds per 100 images."""
    if amp not in AMP_CHOICES:
        raise UserError(f"--amp has bad value '{amp}': expected one of {', '.join(AMP_CHOICES)}")
    shared = {"dataset": dataset, "arch": arch, "batch_size": batch, "device": device, "width": width,
              "iterations": 1, "amp": amp, "compile": compile}
    base = cfg.resolve({**shared, "method": "natural"})
    dev, autocast, channels_last = setup_runtime(base)   # fp16 where it cannot run: a one-line ConfigError
    dtype = autocast_dtype(base, dev)
    bf16, fp16 = dtype == torch.bfloat16, dtype == torch.float16
    if compile:
        torch.compiler.reset()   # earlier compilations (another run_bench in this process) neither help nor count
    size = DATASETS[dataset].input_size
    g = torch.Generator().manual_seed(0)
    x = place_batch(torch.rand(batch, 3, size, size, generator=g).to(dev), channels_last)
    y = torch.randint(0, 10, (batch,), generator=g).to(dev)

    replays = (replay,) if isinstance(replay, int) else tuple(replay)
    steps, flops, what = _training_steps(shared, methods, replays, x, y, dev, autocast, channels_last, compile)
    rows = [{"name": label, "kind": "train", **what[label], **timing}
            for label, timing in time_interleaved(steps, dev, warmup=warmup, reps=reps).items()]
    if trainer:
        _add_trainer_timings(rows, shared, dataset, reps)
    if eval_rows:
        rows += _evaluation_rows(base, x, y, dev, channels_last, attack_steps, reps, flops)

    # training rows run in the chosen precision; the evaluation rows in fp32, as attacks always do
    peaks = {"train": device_peak(dev, bf16, fp16), "eval": device_peak(dev, False)}
    natural = next(r for r in rows if r["name"] == _label("natural", base))["median_s"]
    for row in rows:
        row["images_per_s"] = batch / row["median_s"]
        row["relative_to_natural"] = row["median_s"] / natural
        row["flops"] = flops[row["name"]]
        row["tflop_per_s"] = row["flops"] / row["median_s"] / 1e12
        peak = peaks[row["kind"]]["tflops"]
        row["mfu"] = row["tflop_per_s"] / peak if peak else None
    return {"kind": "bench", "arch": arch, "width": width, "batch": batch, "dataset": dataset, "replay": list(replays),
            "warmup": warmup, "reps": reps, "attack_steps": attack_steps if eval_rows else None, "amp": amp,
            "compile": compile, "natural_step_flops": flops[_label("natural", base)], "peak": peaks["train"],
            "eval_peak": peaks["eval"], "rows": rows,
            "autoattack_rows": _autoattack_rows(base, x, dev, autoattack_steps) if autoattack_steps else [],
            **stamp(dev, autocast=dtype)}


def _precision_label(result: dict[str, Any]) -> str:
    precision = result["precision"]
    if precision["compute"] != "fp32":
        return precision["compute"]
    return "fp32 (TF32 convolutions)" if precision.get("cudnn_conv_tf32") else "fp32"


def format_table(result: dict[str, Any]) -> str:
    peak = result["peak"]
    peak_note = (f"peak {peak['tflops']:g} TFLOP/s ({peak['matched']}, {peak['precision']}, dense)"
                 if peak["tflops"] else peak["reason"])
    lines = [f"{result['arch']}, batch {result['batch']}, {result['device']['name']} "
             f"({result['device']['cpu_threads']} threads), median of {result['reps']} after {result['warmup']} warm-up",
             f"{_precision_label(result)}{', torch.compile' if result['compile'] else ''}; MFU against the {peak_note}",
             f"{'step':<38}{'ms/iter':>10}{'images/s':>11}{'x natural':>11}{'TFLOP/s':>10}{'MFU':>8}"]
    trainer = any("trainer_ms_per_iter" in row for row in result["rows"])
    if trainer:   # the Trainer's ms per iteration of the same step, when asked for
        lines[-1] += f"{'trainer ms':>12}"
    for row in result["rows"]:
        mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "-"
        lines.append(f"{row['name']:<38}{1000 * row['median_s']:>10.1f}{row['images_per_s']:>11.0f}"
                     f"{row['relative_to_natural']:>11.2f}{row['tflop_per_s']:>10.3g}{mfu:>8}")
        if trainer:
            ms = row.get("trainer_ms_per_iter")
            lines[-1] += f"{ms:>12.1f}" if ms is not None else f"{'-':>12}"
    for row in result.get("autoattack_rows", []):
        lines.append(f"{row['name'] + ' (' + str(row['steps']) + ' it)':<38}"
                     f"{row['seconds_per_100_images']:>10.2f} s per 100 images")
    return "\n".join(lines)
