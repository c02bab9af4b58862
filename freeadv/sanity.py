"""Sanity checks that flag an evaluation that looks wrong (weak attack or gradient masking).

In the spirit of auto-attack's warnings: each check compares numbers that must be ordered a
certain way if the attack is working, and returns a human-readable warning when they are not.
``check_eval`` looks at one eval JSON; ``check_model`` at all evals of one model. What a check
needs to know of an attack kind (a gradient attack? AutoAttack's whole-set kind?) it reads from
the eval record's ``attack`` entry, so this module depends on nothing of the library; a record
without those flags is not checked where they matter.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

TOLERANCE = 1.0           # percentage points of slack for comparisons between two attacks
UNBOUNDED_EPS = 64.0      # pixel units; at or above this an attack should reach ~0% accuracy
UNBOUNDED_MAX_ACC = 5.0   # percent


def _label(ev: dict[str, Any]) -> str:
    a = ev["attack"]
    restarts = f"x{a['restarts']}" if a.get("restarts", 1) > 1 else ""
    return f"{a['kind']}-{a['steps']}{restarts} eps {a['eps']:g}"


def _whole_set(ev: dict[str, Any]) -> bool:
    return bool(ev["attack"].get("whole_set"))


def _gradient(ev: dict[str, Any]) -> bool:
    return bool(ev["attack"].get("gradient"))


def check_eval(ev: dict[str, Any]) -> list[str]:
    """Checks that need only one evaluation."""
    warnings = []
    if ev["robust_acc"] > ev["clean_acc"] + 1e-9:
        warnings.append(f"{_label(ev)}: robust accuracy {ev['robust_acc']:.2f}% is above clean accuracy "
                        f"{ev['clean_acc']:.2f}%: the attack is not counting clean errors")
    if _gradient(ev) and ev["attack"]["eps"] >= UNBOUNDED_EPS and ev["robust_acc"] > UNBOUNDED_MAX_ACC:
        warnings.append(f"{_label(ev)}: an (almost) unbounded attack leaves {ev['robust_acc']:.2f}% accuracy "
                        f"(> {UNBOUNDED_MAX_ACC}%): gradient masking or a broken attack")
    return warnings


def standard_error(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy (percent) measured on n images, in points."""
    p = accuracy / 100.0
    return 100.0 * math.sqrt(p * (1 - p) / max(n, 1))


def _autoattack_above_pgd20(group: list[dict[str, Any]]) -> list[str]:
    """AutoAttack starts with a stronger PGD (APGD-CE) and adds three attacks, so it must not leave
    more accuracy than PGD-20 beyond noise: more than one standard error above flags the evaluation."""
    pgd20 = [e for e in group if e["attack"]["kind"] == "pgd" and e["attack"]["steps"] == 20
             and e["attack"].get("restarts", 1) == 1]
    warnings = []
    for ev in (e for e in group if _whole_set(e)):
        for base in pgd20:
            se = standard_error(base["robust_acc"], min(ev["n"], base["n"]))
            if ev["robust_acc"] > base["robust_acc"] + se:
                warnings.append(f"{_label(ev)} gives {ev['robust_acc']:.2f}%, more than {_label(base)} "
                                f"({base['robust_acc']:.2f}%) by over one standard error ({se:.2f}): "
                                "the AutoAttack evaluation looks broken")
    return warnings


def check_model(evals: Iterable[dict[str, Any]], tolerance: float = TOLERANCE) -> list[str]:
    """Checks across the evaluations of one model at the same eps."""
    evals = list(evals)
    warnings = [w for ev in evals for w in check_eval(ev)]
    by_eps: dict[float, list[dict[str, Any]]] = {}
    for ev in evals:
        by_eps.setdefault(ev["attack"]["eps"], []).append(ev)
    for group in by_eps.values():
        def find(kind, steps=None, restarts=1):
            return [e for e in group if e["attack"]["kind"] == kind and e["attack"].get("restarts", 1) == restarts
                    and (steps is None or e["attack"]["steps"] == steps)]
        gradient = [e for e in group if _gradient(e)]
        weakest_steps = min((e["attack"]["steps"] for e in find("pgd")), default=None)
        if weakest_steps is not None:
            base = find("pgd", weakest_steps)[0]
            for ev in gradient:
                if _whole_set(ev):
                    continue   # AutoAttack: its own check below, against PGD-20's standard error
                if ev["attack"]["steps"] > base["attack"]["steps"] and ev["robust_acc"] > base["robust_acc"] + tolerance:
                    warnings.append(f"{_label(ev)} gives {ev['robust_acc']:.2f}%, more than {_label(base)} "
                                    f"({base['robust_acc']:.2f}%): a stronger attack should not do worse")
                if ev["attack"]["steps"] == base["attack"]["steps"] and ev["attack"].get("restarts", 1) > 1 \
                        and ev["attack"]["kind"] == "pgd" and ev["robust_acc"] > base["robust_acc"] + tolerance:
                    warnings.append(f"{_label(ev)} gives {ev['robust_acc']:.2f}%, more than one run "
                                    f"({base['robust_acc']:.2f}%): restarts must not raise accuracy")
        warnings += _autoattack_above_pgd20(group)
        for noise in find("noise", None):
            for ev in gradient:
                if ev["robust_acc"] > noise["robust_acc"] + tolerance:
                    warnings.append(f"{_label(ev)} gives {ev['robust_acc']:.2f}%, more than uniform noise of the "
                                    f"same eps ({noise['robust_acc']:.2f}%): the gradient attack is broken or masked")
    return warnings


def check_training(train: dict[str, Any] | None) -> list[str]:
    """A training run that overfit catastrophically (its train.json records the fall, see
    freeadv.training.robust): its final robustness is not what its method can give."""
    collapse = (train or {}).get("catastrophic_overfitting")
    if not collapse:
        return []
    kept = train.get("kept_weights_iteration")
    stopped = (f"; training stopped there, the weights of iteration {kept} are kept"
               if train.get("stopped_early") else "; the final weights are evaluated")
    return [f"catastrophic overfitting: held-out robust accuracy fell from {collapse['robust_before']:.2f}% "
            f"(iteration {collapse['previous_iteration']}) to {collapse['robust_after']:.2f}% "
            f"(iteration {collapse['iteration']}){stopped}"]
