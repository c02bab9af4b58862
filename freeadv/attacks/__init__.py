"""Evaluation attacks: the spec and the registry of kinds (torch-free), and AutoAttack's adapter.

    from freeadv.attacks import AttackSpec
    from freeadv.runs import run_attack
    spec = AttackSpec.parse("pgd20-eps8-step2-r10")        # or AttackSpec("pgd", 20, 8, 2, 10)
    result = run_attack("results/mini/runs/<model>", spec)  # the eval JSON as a dict

Importing this package does not import torch (the experiment plan reads the registry when
Snakemake parses the workflow). A kind's torch work (freeadv.perturb, pyautoattack) loads on
first use. The evaluation job that runs a spec on a trained model is freeadv.runs.evaluation.
"""
from __future__ import annotations

from . import kinds  # noqa: F401  (registers the built-in kinds)
from .spec import ATTACKS, AttackError, AttackKind, AttackSpec, register_attack

__all__ = ["ATTACKS", "AttackError", "AttackKind", "AttackSpec", "register_attack"]
