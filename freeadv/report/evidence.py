"""What the claims read: per-image flags of a plan row's evaluations, with the row's seeds.

A claim compares models on the same test images, so it needs the per-image bitmaps an
evaluation stores (``per_image``; freeadv.runs.evaluation). A result that lacks them, a file
that is not there, or a row the plan does not have makes the claim :class:`Undecided`: it prints
INCONCLUSIVE with the reason, never PASS.

Seeds: a row trains one model (seed 0 in the design); every other model of the plan whose
training config differs from it only in ``seed`` is the same recipe at another seed, and its
evaluation of the same attack (the same file name in its own run folder) counts as a further
seed of the row where it exists.

Each result under ``runs/<model>/`` is checked against that run's train.json
(:func:`freeadv.report.results.check_weights`): a claim never reads numbers of other weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..stats import unpack_flags
from ..experiments.layout import train_path
from ..experiments.plan import Plan, PlanRow
from .results import check_weights, read_result
from .tables import build_table


class Undecided(Exception):
    """The results cannot decide the claim; the message says what is missing."""


@dataclass
class Evidence:
    """A scale's plan and results folder, read on demand (``table``: Table 1 as the tables build
    it, made on first use)."""
    plan: Plan
    root: Path
    table: Any = None
    trains: dict[str, dict[str, Any]] = field(default_factory=dict)   # train.json by model, read once

    def table1(self):
        if self.table is None:
            self.table = build_table(self.plan, "table1", self.root, allow_missing=True)
        return self.table

    def value(self, key: str, column: str) -> float:
        """One Table 1 number (e.g. ``train_min_ours``); Undecided where it is missing."""
        t1 = self.table1()
        rows = t1[t1["row"] == key] if "row" in t1 else t1.iloc[0:0]
        value = float(rows.iloc[0][column]) if len(rows) and column in rows else float("nan")
        if math.isnan(value):
            raise Undecided(f"table1 row '{key}' has no value for '{column}'")
        return value

    def row(self, key: str, target: str = "table1") -> PlanRow:
        entry = self.plan.targets.get(target)
        rows = [r for r in (entry.rows if entry else []) if r.key == key]
        if not rows:
            raise Undecided(f"the plan's {target} has no row '{key}'")
        return rows[0]

    def metric_file(self, key: str, metric: str, target: str = "table1") -> str:
        planned = self.row(key, target).metrics.get(metric)
        if not planned:
            raise Undecided(f"{target} row '{key}' has no '{metric}' evaluation at this scale")
        return planned.file

    def read(self, file: str, kind: str | None = None) -> dict[str, Any]:
        """A result file, validated against the schema of ``kind`` (:mod:`freeadv.schemas`; None: the
        one its path or its own ``kind`` names); one under ``runs/<model>/evals`` or ``analysis``
        must describe the weights its run's train.json records (a ValueError otherwise: the results
        are wrong, not missing)."""
        if not (self.root / file).exists():
            raise Undecided(f"'{file}' has not been computed")
        result = read_result(self.root, file, kind)
        parts = Path(file).parts
        if len(parts) > 3 and parts[0] == "runs" and parts[2] in ("evals", "analysis"):
            train = train_path(parts[1])
            if parts[1] not in self.trains and (self.root / train).exists():
                self.trains[parts[1]] = read_result(self.root, train)
            check_weights(result, self.trains.get(parts[1]), self.root / file)
        return result

    def seed_files(self, key: str, metric: str, target: str = "table1") -> list[str]:
        """The row's evaluation file, then the same evaluation of each seed sibling that has it."""
        file, model = self.metric_file(key, metric, target), self.row(key, target).model
        siblings = [m for m in seed_siblings(self.plan, model) if m != model]
        others = [file.replace(model, m) for m in siblings]
        return [file] + [f for f in others if (self.root / f).exists()]

    def flags(self, key: str, metric: str, which: str = "robust", *, seeds: bool = True,
              target: str = "table1") -> list[np.ndarray]:
        """Per-image flags of a row's evaluation, one array per seed (the row's own first)."""
        files = self.seed_files(key, metric, target) if seeds else [self.metric_file(key, metric, target)]
        return [eval_flags(self.read(f), f, which) for f in files]


def seed_siblings(plan: Plan, model: str) -> list[str]:
    """Models of the plan whose training config equals ``model``'s but for the seed, by seed."""
    models = plan.models
    if model not in models:
        return [model]
    recipe = {k: v for k, v in models[model].config.items() if k != "seed"}
    same = [m for m, entry in models.items()
            if {k: v for k, v in entry.config.items() if k != "seed"} == recipe]
    return sorted(same, key=lambda m: models[m].config.get("seed", 0))


def eval_flags(result: dict[str, Any], file: str, which: str = "robust") -> np.ndarray:
    """``which`` = clean, robust, or a sub-attack of AutoAttack (e.g. apgd-t: the flags after it)."""
    record = result.get("per_image")
    if not record:
        raise Undecided(f"'{file}' has no per-image results")
    if which in ("clean", "robust"):
        return unpack_flags(record[which], record["n"])
    after = [r for r in result.get("sub_attacks", []) if r.get("attack") == which]
    if not after or "robust" not in after[0]:
        raise Undecided(f"'{file}' has no per-image results after {which}")
    return unpack_flags(after[0]["robust"], record["n"])


def common_images(*groups: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Every array cut to the images all of them cover: each eval covers the first n test images
    of the fixed order, so the shortest one's n is the common set."""
    n = min(len(a) for group in groups for a in group)
    return [[a[:n] for a in group] for group in groups]
