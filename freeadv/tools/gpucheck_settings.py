"""What each part of ``freeadv gpucheck`` runs, and its time bounds: the full check's models and
sizes, or ``--quick``'s stand-ins. One record that every part reads, kept apart from the parts so
that each part's module depends on it and none on another part."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
TOTAL_TARGET_S = 440          # the whole check on one H100: under 8 minutes with room to spare
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
