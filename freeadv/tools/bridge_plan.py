"""The bridge experiment's plan: Table 1's model and recipe on a seeded subset of cifar10-jpeg,
sized for one device call, or --quick's tiny stand-in; the training config of each method and
the attack of each evaluation stage. Records only (nothing is trained or attacked here), so the
stages, the summary and the command all read it and it reads none of them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from ..attacks import AttackSpec

METHODS = {"free": "Free m=8", "pgd7": "7-PGD"}
ATTACK_TITLES = {"pgd20": "PGD-20", "apgd": "APGD-CE + APGD-T"}
STAGE_NAMES = ("train-free", "train-pgd7", "pgd20-free", "pgd20-pgd7", "apgd-free", "apgd-pgd7")


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
    checkpoint_every: int | None = None   # None: one checkpoint at the end (a device call is not resumed)
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


# Seconds per stage of the CPU plan on 2 cores of an AMD EPYC in fp32, from the Trainer's steps
# (bench: natural 409, Free m=8 415, 7-PGD 2,248 ms per iteration of WRN-32 width 1 at batch 128).
CPU_EXPECTED_S = {"train-free": 1400.0, "train-pgd7": 7400.0, "pgd20-free": 500.0, "pgd20-pgd7": 600.0,
                  "apgd-free": 300.0, "apgd-pgd7": 450.0}


def cpu_bridge_plan(quick: bool, data_root: str | None, bf16: bool) -> BridgePlan:
    """The bridge's recipe at WRN-32 width 1 (the CPU scales' model, 0.46M parameters against
    WRN-32-10's 46M) on the CPU: the same data, schedule and evaluations, so the Free - 7-PGD gap
    can be set beside the H200's across a 100x change in width. bf16 autocast where the CPU has bf16
    instructions, else fp32: emulated bf16 made WRN-32 width 1's natural step 13x slower (5,273 ms
    against 409 ms on an AVX2-only EPYC, measured). No compile (no compiler is assumed). A checkpoint
    every 100 iterations, since the run spans hours and resumes where a killed call stopped."""
    plan = bridge_plan(quick, data_root)
    if quick:
        return dataclasses.replace(plan, checkpoint_every=16)
    return dataclasses.replace(plan, model={"arch": "wrn32_k", "width": 1}, amp="bf16" if bf16 else "off",
                               compile=False, checkpoint_every=100, expected_s=dict(CPU_EXPECTED_S))


def train_config(plan: BridgePlan, method: str, device: torch.device) -> dict[str, Any]:
    """The user config of one training (cfg.resolve fills in and checks the rest): no evaluation
    while training; checkpoints as the plan says."""
    steps = {"free": {"method": "free", "replay": 8, "free_step": None},
             "pgd7": {"method": "pgd", "pgd_steps": 7, "pgd_step_size": 2.0}}[method]
    return {**plan.model, **plan.data, **steps, "eps": 8.0, "batch_size": plan.batch_size,
            "iterations": plan.iterations, "lr": 0.1, "lr_milestones": [0.5, 0.75], "amp": plan.amp,
            "compile": plan.compile, "device": str(device), "eval_n": None, "robust_eval_n": 0,
            "log_every": 100, "checkpoint_every": plan.checkpoint_every or plan.iterations}


def attack_spec(plan: BridgePlan, attack: str) -> AttackSpec:
    """The attack, with its image count as its ``n``. ``apgd`` is the registered kind of AutoAttack's APGD-CE
    followed by APGD-T on the points APGD-CE left robust (pyautoattack, standard settings), run
    through run_attack as ``freeadv attack`` runs it; its record keeps the robust flags after each
    sub-attack, so APGD-CE's accuracy and the combined (worst-case) one are both there."""
    if attack == "pgd20":
        return AttackSpec("pgd", 20, 8.0, 2.0, 1, n=plan.pgd_n)
    return AttackSpec("apgd", plan.apgd_steps, 8.0, n=plan.apgd_n)
