"""freeadv.report.claims: each claim passes on results that show the paper's effect, fails on results built
to contradict it (with the thresholds fixed in the module), and says INCONCLUSIVE where its inputs
are missing: never PASS.

The results are written as a scale's files: a plan (Table 1 rows with their evaluation files,
the models' configs for seed siblings, Figure 3's surfaces) and eval JSONs with per-image flags.
Flags are nested by default (a model with accuracy p is right on the first p% of a fixed random
order of the images), so two models disagree on exactly |p_a - p_b| of the images."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from freeadv.report import claims
from freeadv.experiments.plan import CostBench, Plan
from freeadv.report.evidence import Evidence
from freeadv.io import write_json
from freeadv.stats import pack_flags

N = 2000
ORDER = np.random.default_rng(0).permutation(N)
ROWS = ("natural", "free_m2", "free_m4", "free_m8", "free_m10", "pgd7")
METRICS = ("nat", "pgd20", "pgd100", "pgd20_r10", "cw100", "apgd")
EFFECTS = {   # accuracy in percent; apgd is its APGD-T flags
    "natural": dict(nat=80.0, pgd20=0.0, pgd100=0.0, pgd20_r10=0.0, cw100=0.0, apgd=0.0),
    "free_m2": dict(nat=70.0, pgd20=30.0, pgd100=29.5, pgd20_r10=29.8, cw100=29.0, apgd=27.0),
    "free_m4": dict(nat=65.0, pgd20=34.0, pgd100=33.5, pgd20_r10=33.8, cw100=33.0, apgd=31.0),
    "free_m8": dict(nat=60.0, pgd20=38.0, pgd100=37.5, pgd20_r10=37.8, cw100=37.0, apgd=35.0),
    "free_m10": dict(nat=58.0, pgd20=37.5, pgd100=37.0, pgd20_r10=37.3, cw100=36.5, apgd=34.5),
    "pgd7": dict(nat=62.0, pgd20=38.5, pgd100=38.0, pgd20_r10=38.3, cw100=37.5, apgd=35.5),
}
METHOD = {"natural": ("natural", 1), "pgd7": ("pgd", 1)}


def nested(acc: float) -> np.ndarray:
    flags = np.zeros(N, bool)
    flags[ORDER[:round(acc * N / 100)]] = True
    return flags


def model_id(row: str, seed: int = 0) -> str:
    return f"{row}-s{seed}"


def eval_json(clean: np.ndarray, robust: np.ndarray, apgd_t: np.ndarray | None = None) -> dict:
    result = {"n": N, "clean_correct": int(clean.sum()), "robust_correct": int(robust.sum()),
              "clean_acc": 100 * clean.mean(), "robust_acc": 100 * robust.mean(),
              "per_image": {"first": 0, "n": N, "clean": pack_flags(clean), "robust": pack_flags(robust)}}
    if apgd_t is not None:
        result["sub_attacks"] = [{"attack": "apgd-ce", "robust": pack_flags(robust), "robust_acc": 100 * robust.mean()},
                                 {"attack": "apgd-t", "robust": pack_flags(apgd_t), "robust_acc": 100 * apgd_t.mean()}]
    return result


def surface(adv_rise: float, rad_rise: float, pgd20_loss: float = 9.0, ball_max: float = 2.0) -> dict:
    axis = [-2.0, -1.0, 0.0, 1.0, 2.0]
    losses = [[1.0] * 5 for _ in axis]
    losses[4][2], losses[2][4] = 1.0 + adv_rise, 1.0 + rad_rise
    return {"axis": axis, "images": [{"index": 0, "losses": losses, "clean_loss": 1.0,
                                      "pgd20_loss": pgd20_loss, "ball_max_loss": ball_max}]}


SURFACES = {"natural": surface(6.0, 0.1), "free_m8": surface(1.0, 0.1), "pgd7": surface(1.2, 0.1)}


def write_results(root, effects=None, flags=None, surfaces=None, seeds=None, drop=()) -> Evidence:
    """A scale's results under ``root``: ``effects`` override accuracies, ``flags`` whole bitmaps
    ({(row, metric): array}), ``surfaces`` Figure 3's, ``seeds`` {row: [flags of pgd20 per extra seed]},
    ``drop`` files ((row, metric) or 'surface:<row>') left uncomputed."""
    effects = {row: {**EFFECTS[row], **(effects or {}).get(row, {})} for row in ROWS}
    models, rows = {}, []
    for row in ROWS:
        method, replay = METHOD.get(row, ("free", int(row[6:]) if row.startswith("free") else 1))
        for seed in range(1 + len((seeds or {}).get(row, []))):
            models[model_id(row, seed)] = {"config": {"method": method, "replay": replay, "seed": seed,
                                                      "iterations": 6400, "batch_size": 128, "n_train": 8000}}
        metrics = {}
        for metric in METRICS:
            file = f"runs/{model_id(row)}/evals/{metric}.json"
            metrics[metric] = {"attack": metric, "file": file}
            if (row, metric) in drop:
                continue
            clean = (flags or {}).get((row, "nat"), nested(effects[row]["nat"]))
            robust = (flags or {}).get((row, metric), nested(effects[row][metric]))
            if metric == "apgd":
                write_json(root / file, eval_json(clean, nested(effects[row]["pgd20"]), robust))
            else:
                write_json(root / file, eval_json(clean, clean if metric == "nat" else robust))
        for seed, robust in enumerate((seeds or {}).get(row, []), start=1):
            write_json(root / f"runs/{model_id(row, seed)}/evals/pgd20.json", eval_json(robust, robust))
        rows.append({"key": row, "label": row, "paper_ref": ["table1", row], "model": model_id(row),
                     "metrics": metrics})
    analyses = []
    for row, data in {**SURFACES, **(surfaces or {})}.items():
        file = f"runs/{model_id(row)}/analysis/surface.json"
        analyses.append({"kind": "loss-surface", "id": "surface", "label": row, "model": model_id(row), "file": file,
                         "options": {"plane": "adv-rad", "span": 2}})
        if f"surface:{row}" not in drop:
            write_json(root / file, data)
    plan = Plan.from_json({"models": models, "targets": {"table1": {"rows": rows}, "figure3": {"analyses": analyses}}})
    times = {"natural": 10.0, "free_m2": 10.2, "free_m4": 10.3, "free_m8": 10.4, "free_m10": 10.5, "pgd7": 62.0}
    table = pd.DataFrame([{"row": row, "train_min_ours": minutes} for row, minutes in times.items()])
    return Evidence(plan, root, table=table)


def statuses(ev: Evidence) -> dict[str, str]:
    return {verdict.claim: verdict.status for verdict in (claim(ev) for claim in claims.CLAIMS)}


def test_results_showing_every_effect_pass_every_claim(tmp_path):
    assert set(statuses(write_results(tmp_path)).values()) == {"PASS"}


@pytest.mark.parametrize("effects, failing", [
    ({"natural": {"pgd20": 2.0}}, "C1"),                                   # Wilson 95% [1.5, 2.7]: above 1%
    ({"free_m8": {"pgd20": 34.0, "pgd100": 33.6, "pgd20_r10": 33.9, "cw100": 33.2}}, "C2"),   # 4.5 under 7-PGD
    ({"free_m8": {"apgd": 31.5}}, "C2"),                                   # ... or on APGD-T only
    ({"free_m8": {"nat": 70.5}}, "C4a"),                                   # m=4 -> 8 rises, and m=2 -> 8
    ({"free_m8": {"pgd20": 31.0, "pgd100": 30.5, "pgd20_r10": 30.8, "cw100": 30.0, "apgd": 29.0},
      "pgd7": {"pgd20": 31.5, "pgd100": 31.0, "pgd20_r10": 31.3, "cw100": 30.5, "apgd": 29.5}}, "C4b"),  # +1 only
    ({"free_m4": {"cw100": 31.0}}, "C5"),                                  # CW-100 3 points under PGD-20
    ({"pgd7": {"pgd100": 35.0}}, "C5"),                                    # PGD-100 3.5 points under
])
def test_each_claim_fails_on_results_contradicting_it(tmp_path, effects, failing):
    got = statuses(write_results(tmp_path, effects))
    assert got[failing] == "FAIL", got
    assert all(status == "PASS" for claim, status in got.items() if claim != failing), got


def test_c4a_fails_when_clean_accuracy_rises(tmp_path):
    ev = write_results(tmp_path, {"free_m4": {"nat": 71.0}, "free_m8": {"nat": 72.0}})
    assert claims.c4a_clean_falls_with_m(ev).status == "FAIL"


@pytest.mark.parametrize("surfaces, failing_part", [
    ({"free_m8": surface(0.4, 0.1)}, "(i)"),                     # adversarial rise only 4x the Rademacher one
    ({"pgd7": surface(2.5, 0.1)}, "(ii)"),                       # not flatter than natural's 6.0 by 3x
    ({"free_m8": surface(1.0, 0.1, pgd20_loss=1.5, ball_max=2.0)}, "(iii)"),   # the surface beats PGD-20
])
def test_c6_fails_each_of_its_three_conditions(tmp_path, surfaces, failing_part):
    verdict = claims.c6_adversarial_direction(write_results(tmp_path, surfaces=surfaces))
    assert verdict.status == "FAIL"
    assert [p["text"][:5].split()[0] for p in verdict.parts if p["status"] == "FAIL"] == [failing_part]


def test_c6_without_the_natural_control_is_inconclusive_not_pass(tmp_path):
    """A sign-gradient direction out-climbs a random one for any unmasked model, natural ones
    too: without the natural model's surface, (ii) cannot be decided."""
    verdict = claims.c6_adversarial_direction(write_results(tmp_path, drop=("surface:natural",)))
    assert verdict.status == "INCONCLUSIVE" and "the natural model (the control)" in verdict.evidence
    assert [p["status"] for p in verdict.parts] == ["PASS", "INCONCLUSIVE", "PASS"]


def test_c2_does_not_pass_an_interval_that_reaches_past_the_margin(tmp_path):
    """Two models right on independent images (36% and 38% of 2,000): a -2.0 point difference whose
    90% interval reaches below -3, as ~930 images are discordant. A point-estimate rule would pass
    it; the interval straddles the margin, so the claim cannot be decided from these images."""
    rng = np.random.default_rng(1)
    free, pgd = np.zeros(N, bool), np.zeros(N, bool)
    free[rng.permutation(N)[:720]], pgd[rng.permutation(N)[:760]] = True, True
    ev = write_results(tmp_path, flags={("free_m8", "pgd20"): free, ("pgd7", "pgd20"): pgd})
    verdict = claims.c2_free_matches_pgd(ev)
    estimate = 100 * (free.mean() - pgd.mean())
    assert estimate == pytest.approx(-2.0) and verdict.status == "INCONCLUSIVE", verdict.evidence
    assert "straddles the threshold" in verdict.evidence
    assert "PGD-20: Free m=8 - 7-PGD" in verdict.evidence and "regime: 102.4 natural epochs" in verdict.evidence


def test_c2_uses_every_seed_of_a_row(tmp_path):
    """Seeds 1 and 2 of Free m=8 beside seed 0's 38.0%: close seeds keep non-inferiority; widely
    spread ones (34% and 42%, a seed SD of 4 points borrowed by 7-PGD's single seed) leave the
    interval too wide to decide."""
    close = claims.c2_free_matches_pgd(write_results(tmp_path / "close", seeds={"free_m8": [nested(37.8), nested(38.2)]}))
    assert close.status == "PASS" and "seeds 3 vs 1" in close.evidence
    assert "seed variance of b pooled from a" in close.evidence
    spread = claims.c2_free_matches_pgd(write_results(tmp_path / "spread", seeds={"free_m8": [nested(34.0), nested(42.0)]}))
    assert spread.status == "INCONCLUSIVE" and "seeds 3 vs 1" in spread.evidence


@pytest.mark.parametrize("drop, claim, reason", [
    ((("natural", "pgd20"),), "C1", "has not been computed"),
    ((("pgd7", "pgd20"),), "C2", "has not been computed"),
    ((("free_m4", "nat"),), "C4a", "has not been computed"),
    ((("free_m2", "pgd20"),), "C4b", "has not been computed"),
    ((("free_m10", "cw100"),), "C5", "has not been computed"),
    (("surface:pgd7",), "C6", "7-PGD"),
])
def test_a_claim_without_its_inputs_is_inconclusive(tmp_path, drop, claim, reason):
    verdict = next(v for v in (c(write_results(tmp_path, drop=drop)) for c in claims.CLAIMS) if v.claim == claim)
    assert verdict.status == "INCONCLUSIVE" and reason in verdict.evidence


def test_an_eval_without_per_image_results_makes_the_claim_inconclusive(tmp_path):
    ev = write_results(tmp_path)
    file = tmp_path / ev.metric_file("free_m8", "pgd20")
    record = __import__("json").loads(file.read_text())
    del record["per_image"]
    write_json(file, record)
    verdict = claims.c2_free_matches_pgd(ev)
    assert verdict.status == "INCONCLUSIVE" and "has no per-image results" in verdict.evidence


def test_c3_verdicts_and_evidence(tmp_path):
    ev = write_results(tmp_path)
    assert claims.c3_cost(ev).status == "PASS" and "7-PGD 6.200" in claims.c3_cost(ev).evidence
    ev.table.loc[ev.table["row"] == "free_m4", "train_min_ours"] = 10.6     # 1.06 x natural
    assert claims.c3_cost(ev).status == "FAIL"


def interleaved_plan(ev: Evidence, root, **ratios: float) -> Evidence:
    """The cost job timed natural at 100 ms and each other step at ``ratios`` x natural."""
    steps = {"free_m2": 1.01, "free_m4": 1.0, "free_m8": 1.02, "free_m10": 0.99, "pgd7": 7.1, **ratios}
    rows = [{"kind": "train", "method": "natural", "replay": 1, "median_s": 0.1}]
    rows += [{"kind": "train", "method": "pgd" if key == "pgd7" else "free",
              "replay": 1 if key == "pgd7" else int(key[6:]), "median_s": 0.1 * ratio} for key, ratio in steps.items()]
    write_json(root / "cost" / "interleaved.json", {"rows": rows})
    ev.plan.cost_bench = CostBench("cost/interleaved.json", [], "")
    return ev


def test_c3_verdict_comes_from_the_interleaved_steps_not_the_drifting_wall_times(tmp_path):
    """Wall times of sequential runs say Free m=4 costs 1.3x natural (drift); the interleaved steps
    say 1.00x: C3 passes, printing both. And the other way round it fails."""
    ev = interleaved_plan(write_results(tmp_path), tmp_path)
    ev.table.loc[ev.table["row"] == "free_m4", "train_min_ours"] = 13.0
    verdict = claims.c3_cost(ev)
    assert verdict.status == "PASS" and "interleaved steps" in verdict.statement
    assert "Free m=4 1.000" in verdict.evidence and "Free m=4 1.300" in verdict.evidence
    assert claims.c3_cost(interleaved_plan(write_results(tmp_path), tmp_path, free_m8=1.08)).status == "FAIL"
    assert claims.c3_cost(interleaved_plan(write_results(tmp_path), tmp_path, pgd7=4.0)).status == "FAIL"


def test_missing_results_say_where_to_build_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="no plan at"):
        claims.check_claims(tmp_path)


def test_c1_with_an_interval_across_its_bound_is_inconclusive(tmp_path):
    """16 of 2,000 images (0.8%): the Wilson interval [0.49, 1.30] holds values on both sides of 1%."""
    verdict = claims.c1_natural_not_robust(write_results(tmp_path, {"natural": {"pgd20": 0.8}}))
    assert verdict.status == "INCONCLUSIVE" and "straddles the threshold" in verdict.evidence
