"""The paper's claims checked on a scale's results: ``freeadv claims --scale mini``.

Each claim is one sentence of the paper turned into a test with its threshold and its statistics,
fixed here before any run that tests it; a FAIL is a finding to explain, never a reason to move a
threshold. Every model is attacked on the same test images and each evaluation stores which
images it left correct, so differences between models are decided with paired intervals
(freeadv.stats), over seeds where a row has several. A claim PASSes when its interval lies on the
claim's side of the threshold, FAILs when it lies wholly on the other side, and is INCONCLUSIVE
when it straddles the threshold (too few images or seeds to decide) or when its inputs are not
there (a missing model, an evaluation without per-image results): never PASS.

- C1 (a sanity check): the natural model's PGD-20 accuracy has a 95% Wilson upper bound under 1%.
- C2: Free m=8 is non-inferior to 7-PGD: the 90% interval of (Free - 7-PGD) has a lower bound of
  at least -3 points, on PGD-20 and on APGD-T (the ``apgd`` evaluation, or AutoAttack where only
  that ran). It holds only where Free gets enough passes over the data, so the run's natural
  epochs and Free's passes are printed with it.
- C3: Free-m's step costs at most 1.05x natural's for every m, and 7-PGD's 5-9x (interleaved
  steps in one process where the scale has the cost job).
- C4a: clean accuracy falls from m=2 to m=8: each step's 90% interval (m=2 to 4, 4 to 8) is
  below 0, or the whole fall's 95% interval (about 2 SE) is. C4b: PGD-20 rises from m=2 to m=8
  by at least 3 points: the 90% interval's lower bound is at least +3. m=10 is reported.
- C5: for every robust model, PGD-100, 10-restart PGD-20 and CW-100 are each within 2 points of
  PGD-20 (the 90% paired interval of the difference inside [-2, +2]). The APGD-T and AutoAttack
  gaps are printed beside RobustBench's for this paper's model.
- C6: the adversarial direction, with the natural model as control: (i) for Free m=8 and 7-PGD
  the loss rises at least 5x as much along the adversarial direction as along the Rademacher one,
  (ii) their adversarial rise is at most 1/3 of the natural model's (robust training flattens the
  surface), (iii) no grid point inside the eps-ball has a loss above PGD-20's at that image (the
  surface found no ascent that PGD missed).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from .. import stats
from .evidence import Evidence, Undecided, common_images
from ..experiments.layout import PLAN_FILE, train_path
from ..experiments.robustbench import ENTRIES, THIS_PAPER
from ..experiments.plan import load_plan
from ..io import atomic_write_text, write_json
from .results import read_result
from .surface_claims import c6_adversarial_direction
from .verdicts import CONFIDENCE, FAIL, INCONCLUSIVE, PASS, Verdict, combine, decided, judged, verdict_of
from ..errors import UserError

CLAIMS_NEED = ("table1", "figure3")   # the targets whose results the claims read (the workflow waits for them)
FREE_ROWS = ("free_m2", "free_m4", "free_m8", "free_m10")
ROBUST_ROWS = FREE_ROWS + ("pgd7",)
C1_BOUND = 1.0           # percent: Wilson 95% upper bound of the natural model's PGD-20 accuracy
C2_MARGIN = -3.0         # points: non-inferiority margin of Free m=8 against 7-PGD
C4B_RISE = 3.0           # points: PGD-20 rise from m=2 to m=8
C5_BAND = 2.0            # points: stronger attacks within +-2 of PGD-20


def _short(row: str) -> str:
    return row.replace("free_m", "Free m=").replace("pgd7", "7-PGD")


def difference(ev: Evidence, a: str, b: str, metric: str, which: str = "robust",
               confidence: float = CONFIDENCE) -> stats.Interval:
    """acc(a) - acc(b) on the images both evaluations cover, over seeds where the rows have several."""
    a_runs, b_runs = common_images(ev.flags(a, metric, which), ev.flags(b, metric, which))
    return stats.seeded_difference(a_runs, b_runs, confidence)


# --- C1 -------------------------------------------------------------------------------------------
def c1_natural_not_robust(ev: Evidence) -> Verdict:
    def part():
        file = ev.metric_file("natural", "pgd20")
        result = ev.read(file)
        low, high = stats.wilson(int(result["robust_correct"]), int(result["n"]), 0.95)
        return judged(verdict_of(high < C1_BOUND, low >= C1_BOUND), f"natural PGD-20 {100 * result['robust_correct'] / result['n']:.2f}% of {result['n']} "
                                  f"images, Wilson 95% [{low:.2f}, {high:.2f}]")
    return combine("C1", f"(sanity check) the naturally trained model's PGD-20 accuracy has a 95% Wilson upper "
                         f"bound under {C1_BOUND:g}%", [decided(part)])


# --- C2 -------------------------------------------------------------------------------------------
def _regime(ev: Evidence) -> str:
    """Natural epochs of the run and Free m=8's passes over its data (the regime C2 depends on)."""
    try:
        config = ev.plan.config(ev.row("free_m8").model)
        n_train = config.get("n_train") or 50_000
        epochs = config["iterations"] * config.get("batch_size", 128) / n_train
        return f"regime: {epochs:.1f} natural epochs, Free m=8 {epochs / config.get('replay', 8):.1f} passes"
    except (Undecided, KeyError, TypeError):
        return "regime: unknown (no Free m=8 model in the plan)"


def _second_attack(ev: Evidence) -> tuple[str, str, str]:
    """(metric, which flags, name) of the APGD-T comparison: the apgd screen, else AutoAttack."""
    metrics = ev.row("free_m8").metrics
    if "apgd" in metrics:
        return "apgd", "apgd-t", "APGD-T"
    if "aa" in metrics:
        return "aa", "robust", "AutoAttack"
    raise Undecided("no APGD-T or AutoAttack evaluation of Free m=8 at this scale")


def c2_free_matches_pgd(ev: Evidence) -> Verdict:
    def on(metric_name: Callable[[], tuple[str, str, str]]):
        def part():
            metric, which, name = metric_name()
            iv = difference(ev, "free_m8", "pgd7", metric, which)
            return judged(verdict_of(iv.low >= C2_MARGIN, iv.high < C2_MARGIN), f"{name}: Free m=8 - 7-PGD {iv.text()}")
        return part
    parts = [decided(on(lambda: ("pgd20", "robust", "PGD-20"))), decided(on(lambda: _second_attack(ev)))]
    return combine("C2", f"Free m=8 is non-inferior to 7-PGD: the {CONFIDENCE:.0%} interval of their difference has "
                         f"a lower bound >= {C2_MARGIN:+g} points, on PGD-20 and on APGD-T (or AutoAttack)",
                   parts, _regime(ev))


# --- C3 -------------------------------------------------------------------------------------------
FREE_BOUND, PGD_BOUNDS = 1.05, (5.0, 9.0)   # C3: Free-m / natural, and 7-PGD / natural


def _interleaved_ratios(ev: Evidence) -> dict[str, float] | None:
    """Each robust row's step time / natural's from the cost job (``freeadv bench``, one process)."""
    planned = ev.plan.cost_bench
    if not planned or not (ev.root / planned.file).exists():
        return None
    rows = read_result(ev.root, planned.file, "bench")["rows"]   # every time > 0 (freeadv.schemas)
    median = {(r.get("method"), r.get("replay")): r["median_s"] for r in rows if r.get("kind") == "train"}
    if ("natural", 1) not in median or ("pgd", 1) not in median:
        raise UserError(f"{planned['file']} times {sorted(map(str, median))}, not natural and 7-PGD steps")
    natural = median[("natural", 1)]
    ratios = {row: median[("free", int(row[6:]))] / natural for row in FREE_ROWS if ("free", int(row[6:])) in median}
    ratios["pgd7"] = median[("pgd", 1)] / natural
    if len(ratios) != len(ROBUST_ROWS):
        raise UserError(f"{planned['file']} times {sorted(median)}, not every Table 1 method")
    return ratios


def _cpu_ratios(ev: Evidence) -> dict[str, float] | None:
    """Each robust row's training CPU seconds (train.json) / natural's; None for runs without them."""
    try:
        values = {row: ev.read(train_path(ev.row(row).model)).get("train_cpu_seconds")
                  for row in ("natural",) + ROBUST_ROWS}
    except Undecided:
        return None
    if any(not v for v in values.values()):
        return None
    return {row: values[row] / values["natural"] for row in ROBUST_ROWS}


def c3_cost(ev: Evidence) -> Verdict:
    """The verdict comes from the interleaved cost job where the scale has one; the training runs'
    wall and CPU time ratios are printed beside it (sequential runs: they carry the machine's drift)."""
    interleaved = _interleaved_ratios(ev)
    source = "interleaved steps" if interleaved else "training wall times"
    statement = (f"Free-m training time / natural <= {FREE_BOUND} for every m, and 7-PGD / natural in "
                 f"[{PGD_BOUNDS[0]:g}, {PGD_BOUNDS[1]:g}] (verdict from the {source})")

    def part():
        natural = ev.value("natural", "train_min_ours")
        wall = {row: ev.value(row, "train_min_ours") / natural for row in ROBUST_ROWS}
        ratios = interleaved or wall
        ok = all(ratios[row] <= FREE_BOUND for row in FREE_ROWS) and PGD_BOUNDS[0] <= ratios["pgd7"] <= PGD_BOUNDS[1]
        shown = [f"{name}: " + ", ".join(f"{_short(row)} {value:.3f}" for row, value in values.items())
                 for name, values in (("interleaved steps (one process)", interleaved), ("training wall time", wall),
                                      ("training CPU time", _cpu_ratios(ev))) if values]
        return (PASS if ok else FAIL), f"natural {natural:.2f} min; time / natural: " + "; ".join(shown)
    return combine("C3", statement, [decided(part)])


# --- C4 -------------------------------------------------------------------------------------------
def c4a_clean_falls_with_m(ev: Evidence) -> Verdict:
    def part():
        steps = [difference(ev, later, earlier, "nat", "clean") for earlier, later in
                 (("free_m2", "free_m4"), ("free_m4", "free_m8"))]
        whole = difference(ev, "free_m8", "free_m2", "nat", "clean", confidence=0.95)
        falls = all(iv.high < 0 for iv in steps) or whole.high < 0
        shown = [f"m=2->4 {steps[0].text()}", f"m=4->8 {steps[1].text()}", f"m=2->8 {whole.text()}"]
        return judged(verdict_of(falls, whole.low >= 0), "clean accuracy change " + ", ".join(shown))

    def m10():
        iv = difference(ev, "free_m10", "free_m8", "nat", "clean")
        return PASS, f"m=8->10 (reported, not required) {iv.text()}"
    parts = [decided(part)]
    extra = decided(m10)
    note = extra[1] if extra[0] == PASS else f"m=8->10 not reported: {extra[1]}"
    return combine("C4a", f"clean accuracy falls from m=2 to m=8: each step's {CONFIDENCE:.0%} interval below 0, "
                          "or the whole fall's 95% interval below 0", parts, note)


def c4b_robustness_rises_with_m(ev: Evidence) -> Verdict:
    def part():
        iv = difference(ev, "free_m8", "free_m2", "pgd20")
        return judged(verdict_of(iv.low >= C4B_RISE, iv.high < C4B_RISE), f"PGD-20 m=8 - m=2 {iv.text()}")
    return combine("C4b", f"PGD-20 accuracy rises from m=2 to m=8 by at least {C4B_RISE:g} points (the "
                          f"{CONFIDENCE:.0%} interval's lower bound)", [decided(part)])


# --- C5 -------------------------------------------------------------------------------------------
C5_ATTACKS = (("pgd100", "PGD-100"), ("pgd20_r10", "10-restart PGD-20"), ("cw100", "CW-100"))


def _attack_gap(ev: Evidence, row: str, metric: str, name: str) -> tuple[str, str]:
    (stronger,), (pgd20,) = common_images(ev.flags(row, metric, seeds=False), ev.flags(row, "pgd20", seeds=False))
    iv = stats.paired_difference(stronger, pgd20, CONFIDENCE)
    inside, outside = -C5_BAND <= iv.low and iv.high <= C5_BAND, iv.low > C5_BAND or iv.high < -C5_BAND
    return judged(verdict_of(inside, outside), f"{_short(row)} {name} - PGD-20 {iv.text()}")


def c5_attacks_converged(ev: Evidence) -> Verdict:
    parts = [decided(lambda row=row, metric=metric, name=name: _attack_gap(ev, row, metric, name))
             for row in ROBUST_ROWS for metric, name in C5_ATTACKS]
    return combine("C5", f"PGD-100, 10-restart PGD-20 and CW-100 are each within {C5_BAND:g} points of PGD-20 for "
                         f"every robust model (the {CONFIDENCE:.0%} paired interval inside +-{C5_BAND:g})",
                   parts, _autoattack_gaps(ev))


def _autoattack_gaps(ev: Evidence) -> str:
    """Informational, outside the verdict: how far PGD-20 overstates robustness against APGD-T and
    AutoAttack, absolute and relative, beside RobustBench's gap for this paper's model."""
    reference = ENTRIES[THIS_PAPER]
    shown = []
    for row in ROBUST_ROWS:
        for metric, which, name in (("apgd", "apgd-t", "APGD-T"), ("aa", "robust", "AutoAttack")):
            try:
                pgd20 = ev.read(ev.metric_file(row, "pgd20"))
                result = ev.read(ev.metric_file(row, metric))
            except Undecided:
                continue
            after = [r for r in result.get("sub_attacks", []) if r.get("attack") == which]
            acc = after[0]["robust_acc"] if after else result["robust_acc"]
            gap = acc - pgd20["robust_acc"]
            shown.append(f"{_short(row)} {name} {gap:+.2f} ({gap / pgd20['robust_acc']:+.1%})"
                         if pgd20["robust_acc"] else f"{_short(row)} {name} {gap:+.2f}")
    ours = ", ".join(shown) or "none evaluated"
    return (f"Stronger attacks - PGD-20 (informational; PGD-20 on its own images): {ours}; RobustBench's "
            f"{reference.name} ({reference.architecture}): AutoAttack - reported {-reference.gap:+.2f} "
            f"({-reference.gap / reference.reported:+.1%})")


CLAIMS: tuple[Callable[[Evidence], Verdict], ...] = (
    c1_natural_not_robust, c2_free_matches_pgd, c3_cost, c4a_clean_falls_with_m, c4b_robustness_rises_with_m,
    c5_attacks_converged, c6_adversarial_direction)


def check_claims(results: str | Path) -> list[Verdict]:
    """Every claim over ``results/<scale>`` (its plan.json and the JSON files it names)."""
    results = Path(results)
    plan_path = results / PLAN_FILE
    if not plan_path.exists():
        raise FileNotFoundError(f"no plan at '{plan_path}': run the scale's workflow first "
                                f"(snakemake table1 figure3 --config scale=...)")
    ev = Evidence(load_plan(plan_path), results)
    return [claim(ev) for claim in CLAIMS]


def provenance(results: Path) -> str:
    """Scale, dataset, architecture and commit of the Table 1 natural run: what the claims were tested on."""
    plan = load_plan(results / PLAN_FILE)
    natural = next(r for r in plan.targets["table1"].rows if r.key == "natural")
    train = read_result(results, train_path(natural.model))
    config = train["config"]
    width = f" (width {config['width']})" if config.get("width") else ""
    commit = ((train.get("git") or {}).get("commit") or "unknown")[:12]
    return (f"scale {plan.scale}: {config['dataset']}, {config['arch']}{width}, {config['iterations']} iterations, "
            f"n_train {config.get('n_train')}, commit {commit}")


def claims_text(results: Path, verdicts: list[Verdict]) -> str:
    counts = {status: sum(v.status == status for v in verdicts) for status in (PASS, FAIL, INCONCLUSIVE)}
    return "\n".join([f"Claims of the paper on {results} ({provenance(results)})"]
                     + [v.line() for v in verdicts]
                     + [f"{counts[PASS]} of {len(verdicts)} claims pass, {counts[FAIL]} fail, "
                        f"{counts[INCONCLUSIVE]} inconclusive"]) + "\n"


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
