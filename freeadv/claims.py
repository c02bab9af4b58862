"""The paper's claims checked on a scale's results: ``freeadv claims --scale mini``.

Each claim is one sentence of the paper turned into a test over the committed JSON results
(through the same tables the workflow builds), printed with the numbers behind it and PASS or
FAIL. The thresholds are fixed here, before any result is seen; a FAIL is a finding to explain,
never a reason to move a threshold.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .experiments.layout import PLAN_FILE, train_path
from .experiments.robustbench import ENTRIES, THIS_PAPER
from .experiments.scales import load_plan
from .io import atomic_write_text, write_json
from .tables import build_table, read_result

CLAIMS_NEED = ("table1", "figure3")   # the targets whose results the claims read
FREE_ROWS = ("free_m2", "free_m4", "free_m8", "free_m10")
ROBUST_ROWS = FREE_ROWS + ("pgd7",)


@dataclass
class Verdict:
    claim: str          # C1 ... C6
    statement: str      # what the paper says, as a checkable sentence
    passed: bool
    evidence: str       # the numbers, one line

    def line(self) -> str:
        return f"{self.claim} {'PASS' if self.passed else 'FAIL'}  {self.statement}\n     {self.evidence}"


def _row(table: pd.DataFrame, key: str) -> pd.Series:
    rows = table[table["row"] == key]
    if rows.empty:
        raise ValueError(f"table1 has no row '{key}'")
    return rows.iloc[0]


def _value(table: pd.DataFrame, row: str, column: str) -> float:
    value = float(_row(table, row)[column])
    if math.isnan(value):
        raise ValueError(f"table1 row '{row}' has no value for '{column}'")
    return value


def c1_natural_not_robust(t1: pd.DataFrame, plan: dict[str, Any], results: Path) -> Verdict:
    acc = _value(t1, "natural", "pgd20_ours")
    return Verdict("C1", "the naturally trained model's PGD-20 accuracy is below 1%",
                   acc < 1.0, f"natural PGD-20 {acc:.2f}%")


def c2_free_matches_pgd(t1: pd.DataFrame, plan: dict[str, Any], results: Path) -> Verdict:
    free, pgd = _value(t1, "free_m8", "pgd20_ours"), _value(t1, "pgd7", "pgd20_ours")
    return Verdict("C2", "Free m=8 PGD-20 accuracy is within 3 points of 7-PGD's, and both are above 20%",
                   abs(free - pgd) <= 3.0 and free > 20.0 and pgd > 20.0,
                   f"Free m=8 {free:.2f}%, 7-PGD {pgd:.2f}%, difference {free - pgd:+.2f} points")


FREE_BOUND, PGD_BOUNDS = 1.05, (5.0, 9.0)   # C3: Free-m / natural, and 7-PGD / natural


def _short(row: str) -> str:
    return row.replace("free_m", "Free m=").replace("pgd7", "7-PGD")


def _interleaved_ratios(plan: dict[str, Any], results: Path) -> dict[str, float] | None:
    """Each robust row's step time / natural's from the cost job (``freeadv bench``, one process)."""
    planned = plan.get("cost_bench")
    if not planned or not (results / planned["file"]).exists():
        return None
    rows = read_result(results, planned["file"])["rows"]
    median = {(r.get("method"), r.get("replay")): r["median_s"] for r in rows if r.get("kind") == "train"}
    natural = median[("natural", 1)]
    ratios = {row: median[("free", int(row[6:]))] / natural for row in FREE_ROWS if ("free", int(row[6:])) in median}
    ratios["pgd7"] = median[("pgd", 1)] / natural
    if len(ratios) != len(ROBUST_ROWS):
        raise ValueError(f"{planned['file']} times {sorted(median)}, not every Table 1 method")
    return ratios


def _cpu_ratios(t1: pd.DataFrame, results: Path | None) -> dict[str, float] | None:
    """Each robust row's training CPU seconds (train.json) / natural's; None for runs without them."""
    if results is None or "model" not in t1:
        return None
    values = {row: read_result(results, train_path(str(_row(t1, row)["model"]))).get("train_cpu_seconds")
              for row in ("natural",) + ROBUST_ROWS}
    if any(not v for v in values.values()):
        return None
    return {row: values[row] / values["natural"] for row in ROBUST_ROWS}


def c3_cost(t1: pd.DataFrame, plan: dict[str, Any], results: Path) -> Verdict:
    """The verdict comes from the interleaved cost job where the scale has one; the training runs'
    wall and CPU time ratios are printed beside it (sequential runs: they carry the machine's drift)."""
    interleaved = _interleaved_ratios(plan, results) if results is not None else None
    natural = _value(t1, "natural", "train_min_ours")
    wall = {row: _value(t1, row, "train_min_ours") / natural for row in ROBUST_ROWS}
    cpu = _cpu_ratios(t1, results)
    ratios, source = (interleaved, "interleaved steps") if interleaved else (wall, "training wall times")
    ok = all(ratios[row] <= FREE_BOUND for row in FREE_ROWS) and PGD_BOUNDS[0] <= ratios["pgd7"] <= PGD_BOUNDS[1]
    shown = [f"{name}: " + ", ".join(f"{_short(row)} {value:.3f}" for row, value in values.items())
             for name, values in (("interleaved steps (one process)", interleaved), ("training wall time", wall),
                                  ("training CPU time", cpu)) if values]
    return Verdict("C3", f"Free-m training time / natural <= {FREE_BOUND} for every m, and 7-PGD / natural in "
                         f"[{PGD_BOUNDS[0]:g}, {PGD_BOUNDS[1]:g}] (verdict from the {source})",
                   ok, f"natural {natural:.2f} min; time / natural: " + "; ".join(shown))


def c4_clean_falls_with_m(t1: pd.DataFrame, plan: dict[str, Any], results: Path) -> Verdict:
    accs = [_value(t1, row, "nat_ours") for row in FREE_ROWS]
    falls = all(later < earlier for earlier, later in zip(accs, accs[1:]))
    shown = ", ".join(f"m={row[6:]} {acc:.2f}%" for row, acc in zip(FREE_ROWS, accs))
    return Verdict("C4", "clean accuracy falls as m grows over m = 2, 4, 8, 10", falls, shown)


def c5_attacks_converged(t1: pd.DataFrame, plan: dict[str, Any], results: Path) -> Verdict:
    parts, ok = [], True
    for row in ROBUST_ROWS:
        pgd20 = _value(t1, row, "pgd20_ours")
        gaps = {"PGD-100": _value(t1, row, "pgd100_ours") - pgd20,
                "10-restart": _value(t1, row, "pgd20_r10_ours") - pgd20}
        ok &= all(abs(gap) <= 1.5 for gap in gaps.values())
        parts.append(f"{row}: " + ", ".join(f"{name} {gap:+.2f}" for name, gap in gaps.items()))
    return Verdict("C5", "PGD-100 and 10-restart PGD-20 are within 1.5 points of PGD-20 for every robust model",
                   ok, "; ".join(parts) + " (points vs PGD-20). " + _autoattack_gaps(t1))


def _autoattack_gaps(t1: pd.DataFrame) -> str:
    """Informational, outside the PASS/FAIL rule: how far PGD-20 overstates robustness against
    AutoAttack for each robust model, beside RobustBench's gap for this paper's model."""
    reference = ENTRIES[THIS_PAPER]
    gaps = []
    for row in ROBUST_ROWS:
        aa = float(_row(t1, row)["aa_ours"]) if "aa_ours" in t1 else float("nan")
        gap = "no AutoAttack result" if math.isnan(aa) else f"{aa - _value(t1, row, 'pgd20_ours'):+.2f}"
        gaps.append(f"{row} {gap}")
    return (f"AutoAttack - PGD-20 (informational): {', '.join(gaps)}; RobustBench's {reference.name} "
            f"({reference.architecture}): {-reference.gap:+.2f}")


def _rise(surface: dict[str, Any], image: dict[str, Any]) -> tuple[float, float]:
    """Loss increase from the image to the far positive end of each axis of the plane."""
    axis = surface["axis"]
    centre, end = axis.index(min(axis, key=abs)), len(axis) - 1
    losses = image["losses"]
    base = losses[centre][centre]
    return losses[end][centre] - base, losses[centre][end] - base


def c6_adversarial_direction(t1: pd.DataFrame, plan: dict[str, Any], results: Path) -> Verdict:
    surfaces = [a for a in plan["targets"]["figure3"]["analyses"] if a["options"].get("plane") == "adv-rad"]
    if not surfaces:
        raise ValueError("the plan has no adversarial-direction loss surface (figure3, plane adv-rad)")
    parts, ok = [], True
    for analysis in surfaces:
        surface = read_result(results, analysis["file"])
        for image in surface["images"]:
            adv, rad = _rise(surface, image)
            ok &= adv > rad
            parts.append(f"{analysis['label']} image {image['index']}: adversarial +{adv:.3f}, Rademacher {rad:+.3f}")
    span = surfaces[0]["options"].get("span")
    return Verdict("C6", "on the loss surfaces the loss rises faster along the adversarial direction than along "
                         f"the Rademacher one (rise from the image to {span}/255 along each)", ok, "; ".join(parts))


CLAIMS: tuple[Callable[[pd.DataFrame, dict[str, Any], Path], Verdict], ...] = (
    c1_natural_not_robust, c2_free_matches_pgd, c3_cost, c4_clean_falls_with_m, c5_attacks_converged,
    c6_adversarial_direction)


def check_claims(results: str | Path) -> list[Verdict]:
    """Every claim over ``results/<scale>`` (its plan.json and the JSON files it names)."""
    results = Path(results)
    plan_path = results / PLAN_FILE
    if not plan_path.exists():
        raise FileNotFoundError(f"no plan at '{plan_path}': run the scale's workflow first "
                                f"(snakemake table1 figure3 --config scale=...)")
    plan = load_plan(plan_path)
    t1 = build_table(plan, "table1", results, allow_missing=True)   # a column newer than the run: its claim says so
    return [claim(t1, plan, results) for claim in CLAIMS]


def provenance(results: Path) -> str:
    """Scale, dataset, architecture and commit of the Table 1 natural run: what the claims were tested on."""
    plan = load_plan(results / PLAN_FILE)
    natural = next(r for r in plan["targets"]["table1"]["rows"] if r["key"] == "natural")
    train = read_result(results, train_path(natural["model"]))
    config = train["config"]
    width = f" (width {config['width']})" if config.get("width") else ""
    commit = ((train.get("git") or {}).get("commit") or "unknown")[:12]
    return (f"scale {plan['scale']}: {config['dataset']}, {config['arch']}{width}, {config['iterations']} iterations, "
            f"n_train {config.get('n_train')}, commit {commit}")


def claims_text(results: Path, verdicts: list[Verdict]) -> str:
    return "\n".join([f"Claims of the paper on {results} ({provenance(results)})"]
                     + [v.line() for v in verdicts]
                     + [f"{sum(v.passed for v in verdicts)} of {len(verdicts)} claims pass"]) + "\n"


def claims_record(results: Path, verdicts: list[Verdict]) -> dict[str, Any]:
    """The verdicts as JSON: where they were checked, on what, and each claim's numbers."""
    return {"results": str(results), "provenance": provenance(results), "claims": [asdict(v) for v in verdicts]}


def write_claims(results: str | Path, text_path: str | Path, json_path: str | Path) -> list[Path]:
    """Check the claims and write them as text (what ``freeadv claims`` prints) and JSON."""
    results = Path(results)
    verdicts = check_claims(results)
    atomic_write_text(text_path, claims_text(results, verdicts))
    write_json(json_path, claims_record(results, verdicts))
    return [Path(text_path), Path(json_path)]
