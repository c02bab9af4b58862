"""Evaluation attacks: the spec and registry of kinds (torch-free), their steps and the evaluation job.

    from freeadv.attacks import AttackSpec, run_attack
    spec = AttackSpec.parse("pgd20-eps8-step2-r10")        # or AttackSpec("pgd", 20, 8, 2, 10)
    result = run_attack("results/mini/runs/<model>", spec)  # the eval JSON as a dict

Importing this package does not import torch (the experiment plan reads the registry when
Snakemake parses the workflow); the torch names below load on first use (PEP 562).
"""
from __future__ import annotations

from ..lazy import lazy_attributes
from . import kinds  # noqa: F401  (registers the built-in kinds)
from .spec import ATTACKS, AttackError, AttackKind, AttackSpec, register_attack

# name -> module holding it; imported on first access because they import torch
_TORCH_NAMES = {
    **dict.fromkeys(("LinfStep", "cross_entropy", "cw_margin", "eval_mode", "input_gradient", "pgd",
                     "predict", "uniform_noise", "LOSS_FUNCTIONS", "CW_CONFIDENCE"), "steps"),
    **dict.fromkeys(("worst_case", "evaluate", "run_attack"), "evaluation"),
}

__all__ = ["ATTACKS", "AttackError", "AttackKind", "AttackSpec", "register_attack", *_TORCH_NAMES]


__getattr__ = lazy_attributes(__name__, _TORCH_NAMES)
