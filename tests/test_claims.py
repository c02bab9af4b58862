"""freeadv.claims: each claim passes on results that show the paper's effect and fails on results
built to contradict it (the thresholds themselves are the issue's, fixed in the module)."""
from __future__ import annotations

import pandas as pd
import pytest

from freeadv import claims
from freeadv.io import write_json

ROWS = ("natural", "free_m2", "free_m4", "free_m8", "free_m10", "pgd7")


def table(**changes: dict[str, float]) -> pd.DataFrame:
    """A Table 1 that shows every effect; ``changes`` = {row: {column: value}}."""
    base = {
        "natural": dict(nat_ours=80.0, pgd20_ours=0.0, pgd100_ours=0.0, pgd20_r10_ours=0.0, train_min_ours=10.0),
        "free_m2": dict(nat_ours=70.0, pgd20_ours=30.0, pgd100_ours=29.5, pgd20_r10_ours=29.8, train_min_ours=10.2),
        "free_m4": dict(nat_ours=65.0, pgd20_ours=33.0, pgd100_ours=32.4, pgd20_r10_ours=32.9, train_min_ours=10.3),
        "free_m8": dict(nat_ours=60.0, pgd20_ours=34.0, pgd100_ours=33.5, pgd20_r10_ours=33.9, train_min_ours=10.4),
        "free_m10": dict(nat_ours=58.0, pgd20_ours=33.5, pgd100_ours=33.0, pgd20_r10_ours=33.2, train_min_ours=10.5),
        "pgd7": dict(nat_ours=62.0, pgd20_ours=35.0, pgd100_ours=34.2, pgd20_r10_ours=34.9, train_min_ours=62.0),
    }
    for row, values in changes.items():
        base[row].update(values)
    return pd.DataFrame([{"row": row, **base[row]} for row in ROWS])


NO_PLAN: dict = {}


def verdicts(t1: pd.DataFrame) -> dict[str, bool]:
    return {v.claim: v.passed for v in (check(t1, NO_PLAN, None) for check in claims.CLAIMS[:5])}


def test_a_table_showing_every_effect_passes_c1_to_c5():
    assert verdicts(table()) == {"C1": True, "C2": True, "C3": True, "C4": True, "C5": True}


@pytest.mark.parametrize("changes, failing", [
    ({"natural": {"pgd20_ours": 1.5}}, "C1"),
    ({"free_m8": {"pgd20_ours": 31.9, "pgd100_ours": 31.5, "pgd20_r10_ours": 31.8}}, "C2"),   # 3.1 under 7-PGD
    ({"free_m8": {"pgd20_ours": 19.0, "pgd100_ours": 18.5, "pgd20_r10_ours": 18.9},
      "pgd7": {"pgd20_ours": 19.5, "pgd100_ours": 19.0, "pgd20_r10_ours": 19.4}}, "C2"),      # close, not robust
    ({"free_m4": {"train_min_ours": 10.6}}, "C3"),                   # 1.06 x natural
    ({"pgd7": {"train_min_ours": 45.0}}, "C3"),                      # 4.5 x: cheaper than 7-PGD can be
    ({"pgd7": {"train_min_ours": 95.0}}, "C3"),                      # 9.5 x
    ({"free_m10": {"nat_ours": 60.5}}, "C4"),                        # m=10 above m=8
    ({"free_m2": {"pgd100_ours": 28.0}}, "C5"),                      # PGD-100 2 points under PGD-20
    ({"pgd7": {"pgd20_r10_ours": 33.0}}, "C5"),                      # restarts 2 points under
])
def test_each_claim_fails_on_results_contradicting_it(changes, failing):
    result = verdicts(table(**changes))
    assert result[failing] is False
    assert all(passed for claim, passed in result.items() if claim != failing), result


def test_c3_and_c2_evidence_shows_the_numbers():
    c2 = claims.c2_free_matches_pgd(table(), NO_PLAN, None)
    c3 = claims.c3_cost(table(), NO_PLAN, None)
    assert "Free m=8 34.00%" in c2.evidence and "7-PGD 35.00%" in c2.evidence and "-1.00" in c2.evidence
    assert "7-PGD 6.200" in c3.evidence and "Free m=2 1.020" in c3.evidence


def interleaved_plan(tmp_path, **ratios: float) -> dict:
    """A plan whose cost job timed natural at 100 ms and each other step at ``ratios`` x natural."""
    steps = {"free_m2": 1.01, "free_m4": 1.0, "free_m8": 1.02, "free_m10": 0.99, "pgd7": 7.1, **ratios}
    rows = [{"kind": "train", "method": "natural", "replay": 1, "median_s": 0.1}]
    rows += [{"kind": "train", "method": "pgd" if key == "pgd7" else "free",
              "replay": 1 if key == "pgd7" else int(key[6:]), "median_s": 0.1 * ratio} for key, ratio in steps.items()]
    write_json(tmp_path / "cost" / "interleaved.json", {"rows": rows})
    return {"cost_bench": {"file": "cost/interleaved.json"}}


def test_c3_verdict_comes_from_the_interleaved_steps_not_the_drifting_wall_times(tmp_path):
    """Wall times of sequential runs say Free m=4 costs 1.3x natural (drift); the interleaved steps
    say 1.00x: C3 passes, printing both. And the other way round it fails."""
    drifted = table(free_m4={"train_min_ours": 13.0})
    verdict = claims.c3_cost(drifted, interleaved_plan(tmp_path), tmp_path)
    assert verdict.passed and "interleaved steps" in verdict.statement
    assert "Free m=4 1.000" in verdict.evidence and "Free m=4 1.300" in verdict.evidence
    slow = claims.c3_cost(table(), interleaved_plan(tmp_path, free_m8=1.08), tmp_path)
    assert not slow.passed and "Free m=8 1.080" in slow.evidence
    assert not claims.c3_cost(table(), interleaved_plan(tmp_path, pgd7=4.0), tmp_path).passed


def test_c3_without_a_cost_job_says_its_verdict_is_from_wall_times(tmp_path):
    verdict = claims.c3_cost(table(), {"cost_bench": {"file": "cost/interleaved.json"}}, tmp_path)
    assert verdict.passed and "training wall times" in verdict.statement


def surface_plan(tmp_path, adv_rise: float, rad_rise: float) -> dict:
    """A figure3 plan with one adv-rad loss surface whose ends rise by the given amounts."""
    axis = [-2.0, -1.0, 0.0, 1.0, 2.0]
    losses = [[1.0] * 5 for _ in axis]
    losses[4][2] = 1.0 + adv_rise          # along d1 (adversarial), d2 = 0
    losses[2][4] = 1.0 + rad_rise          # along d2 (Rademacher), d1 = 0
    write_json(tmp_path / "surface.json", {"axis": axis, "images": [{"index": 0, "losses": losses}]})
    return {"targets": {"figure3": {"analyses": [
        {"label": "Free m=8", "file": "surface.json", "options": {"plane": "adv-rad", "span": 2}},
        {"label": "Free m=8", "file": "other.json", "options": {"plane": "rad-rad", "span": 2}}]}}}


def test_c6_reads_the_adversarial_plane(tmp_path):
    assert claims.c6_adversarial_direction(None, surface_plan(tmp_path, 3.0, 0.2), tmp_path).passed
    failed = claims.c6_adversarial_direction(None, surface_plan(tmp_path, 0.1, 0.2), tmp_path)
    assert not failed.passed and "adversarial +0.100" in failed.evidence


def test_missing_results_say_where_to_build_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="no plan at"):
        claims.check_claims(tmp_path)
