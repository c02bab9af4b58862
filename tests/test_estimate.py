"""`freeadv estimate`: every job of a target gets a time from costs measured on this device."""
import json
import math
import re
from pathlib import Path

import pytest

from freeadv.attacks import kinds
from freeadv.tools import estimate
from freeadv.experiments.scales import build_plan, plan_inputs
from freeadv.cli import main
from freeadv.config import load_yaml

REPO_CONFIG = "config/config.yaml"
ROOT = Path(__file__).resolve().parents[1]
H200_COSTS = ROOT / "results" / "gpu" / "2026-11-27-h200" / "nvidia-h200.json"


@pytest.fixture(scope="module")
def smoke_plan():
    from pathlib import Path
    config = load_yaml(Path(__file__).resolve().parents[1] / REPO_CONFIG)
    return build_plan(**plan_inputs(config, "smoke"))


def test_table1_estimate_covers_every_job_and_charges_pgd_for_its_steps(smoke_plan):
    result = estimate.estimate(smoke_plan, "table1", device="cpu", reps=2)
    trains = {j["model"]: j for j in result["jobs"] if j["job"] == "train"}
    attacks = [j for j in result["jobs"] if j["job"] in ("attack", "autoattack")]
    assert len(trains) == 6
    assert len(attacks) == len(smoke_plan.target_files("table1")) - 6
    natural = next(j for m, j in trains.items() if "natural" in m)
    free = next(j for m, j in trains.items() if "free-m8" in m)
    pgd7 = next(j for m, j in trains.items() if "pgd7" in m)
    assert natural["iterations"] == free["iterations"] == pgd7["iterations"] == 20
    assert free["seconds"] == pytest.approx(natural["seconds"])       # same model, one train step each
    assert pgd7["seconds"] > 2 * natural["seconds"]                   # plus 7 attack steps
    assert result["total_seconds"] == pytest.approx(sum(j["seconds"] for j in result["jobs"]))
    assert result["total_seconds"] == pytest.approx(sum(result["by_kind"].values()))


def test_iterations_follow_the_paper_schedules():
    from freeadv import config as cfg
    paper = {"dataset": "imagenet", "method": "free", "replay": 4, "arch": "resnet50", "robust_eval_source": "test"}
    # the paper scale's checks (test images): ceil(90 / 4) = 23 passes of ceil(1281167 / 256) = 5005
    # batches, each replayed 4 times
    assert estimate.iterations(cfg.resolve(paper)) == 23 * 5005 * 4
    # the default checks attack 512 validation images held out of the training folder
    validation = cfg.resolve({**paper, "robust_eval_source": "validation"})
    assert estimate.iterations(validation) == 23 * math.ceil((1281167 - 512) / 256) * 4
    assert estimate.iterations(cfg.resolve({"dataset": "cifar10"})) == 80_000


def test_unknown_target_is_one_clear_line(capsys):
    assert main(["estimate", "table9", "--scale", "smoke"]) == 2
    assert "target 'table9' is unknown" in capsys.readouterr().err


def test_an_attack_on_a_robust_subset_is_charged_for_its_images_only(smoke_plan, monkeypatch):
    """mini attacks the first 1,000 of 10,000 test images: its attack jobs cost a tenth."""
    from freeadv.config import load_yaml as load
    from pathlib import Path
    monkeypatch.setattr(estimate, "measure_step_costs",
                        lambda *a, **k: {"train_step_s": 0.1, "attack_step_s": 0.1})
    config = load(Path(__file__).resolve().parents[1] / REPO_CONFIG)
    config["scales"]["smoke"]["attacks"] = {"max_steps": 5, "max_restarts": 2, "n": 10}   # of n_test 100
    subset_plan = build_plan(**plan_inputs(config, "smoke"))

    def attack_seconds(plan):
        return {j["method"].replace("-n10", ""): j["seconds"]
                for j in estimate.estimate(plan, "table1", device="cpu")["jobs"]
                if j["job"] == "attack" and "natural" in j["model"]}

    full, subset = attack_seconds(smoke_plan), attack_seconds(subset_plan)
    assert full["pgd5-eps8-step2"] == pytest.approx(10 * subset["pgd5-eps8-step2"])
    # natural accuracy now comes from a clean pass over every test image: one forward a batch of 100
    assert "clean" not in full and subset["clean"] == pytest.approx(100 / 64 * 0.1)


@pytest.fixture(scope="module")
def paper_plan():
    return build_plan(**plan_inputs(load_yaml(ROOT / REPO_CONFIG), "paper"))


def autoattack_jobs(result):
    return {j["model"]: j for j in result["jobs"] if j["job"] == "autoattack"}


def charged(job, step_s, batches):
    """What an AutoAttack job should cost: a clean pass, then each sub-attack on the images reaching it."""
    per_point = {"apgd-ce": 100 * kinds.APGD_ITERATION_STEPS, "apgd-t": 9 * 100 * kinds.APGD_ITERATION_STEPS,
                 "fab-t": 9 * 100 * kinds.FAB_ITERATION_STEPS, "square": 5000 * kinds.SQUARE_QUERY_STEPS}
    reached = sum(job["reach"][s] * steps for s, steps in per_point.items())
    return batches * step_s * (1 + reached), batches * step_s * (1 + sum(per_point.values()))


def test_a_natural_models_autoattack_is_apgd_ce_on_its_clean_correct_points(paper_plan):
    """Nothing survives APGD-CE on a natural model, so APGD-T, FAB-T and Square cost it nothing."""
    costs = estimate.load_step_costs(H200_COSTS)
    result = estimate.estimate(paper_plan, "table1", step_costs=costs)
    jobs = autoattack_jobs(result)
    natural, free = jobs["cifar10-wrn32_10-natural-s0"], jobs["cifar10-wrn32_10-free-m8-eps8-s0"]
    step_s, batches = costs["entries"][0]["attack_step_s"], 10_000 / 128     # equal n: the whole test set
    assert natural["sub_attacks"]["apgd-ce"] == pytest.approx(batches * 0.95 * 100 * step_s)
    assert natural["sub_attacks"]["apgd-t"] == natural["sub_attacks"]["fab-t"] == natural["sub_attacks"]["square"] == 0
    assert natural["seconds"] < 0.05 * free["seconds"]
    for job in (natural, free):
        assert job["seconds"] == pytest.approx(charged(job, step_s, batches)[0])
        assert job["seconds"] < job["all_images_seconds"]
    assert result["total_seconds"] == pytest.approx(sum(result["by_kind"].values()))
    clean_passes = len(jobs) * batches * step_s
    assert result["by_kind"]["autoattack"] == pytest.approx(sum(result["by_sub_attack"].values()) + clean_passes)


def test_an_evaluated_model_of_the_same_method_gives_the_share_reaching_each_sub_attack(paper_plan, tmp_path):
    evals = tmp_path / "runs" / "cifar10-wrn32_10-free-m8-eps8-s0" / "evals"
    evals.mkdir(parents=True)
    record = {"n": 1000, "clean_acc": 80.0, "train_config": {"method": "free", "dataset": "cifar10"},
              "sub_attacks": [{"attack": "apgd-ce", "robust_correct": 500}, {"attack": "apgd-t", "robust_correct": 400},
                              {"attack": "fab-t", "robust_correct": 300}, {"attack": "square", "robust_correct": 300}]}
    (evals / "autoattack100-eps8.json").write_text(json.dumps(record))
    result = estimate.estimate(paper_plan, "table1", step_costs=estimate.load_step_costs(H200_COSTS),
                               results=tmp_path)
    jobs = autoattack_jobs(result)
    own, other = jobs["cifar10-wrn32_10-free-m8-eps8-s0"], jobs["cifar10-wrn32_10-free-m2-eps8-s0"]
    assert own["reach"] == {"apgd-ce": 0.8, "apgd-t": 0.5, "fab-t": 0.4, "square": 0.3}
    assert own["accuracy_source"].startswith("measured: this model")
    assert other["reach"] == own["reach"] and other["accuracy_source"].startswith("measured: free models on cifar10")
    pgd = jobs["cifar10-wrn32_10-pgd7-step2-eps8-s0"]
    assert pgd["reach"]["apgd-ce"] == estimate.DEFAULT_ACCURACY["adversarial"]["clean"]


def test_costs_file_gives_the_h200_estimate_with_totals_by_kind(paper_plan, capsys):
    assert main(["estimate", "table1", "--scale", "paper", "--costs", str(H200_COSTS)]) == 0
    out = capsys.readouterr().out
    assert "on NVIDIA H200: step costs from" in out
    entry = json.loads(H200_COSTS.read_text())["parts"]["estimate"]["step_costs"][0]
    step_s, batches = entry["attack_step_s"], 10_000 / 128
    result = estimate.estimate(paper_plan, "table1", step_costs=estimate.load_step_costs(H200_COSTS))
    reached, all_images = (sum(pair) for pair in zip(*(charged(j, step_s, batches)
                                                     for j in autoattack_jobs(result).values())))
    assert reached < 0.5 * all_images
    totals = dict(re.findall(r"^  (train|attack|autoattack|analysis) +(.+)$", out, re.M))
    assert set(totals) == set(estimate.KINDS)
    assert totals["autoattack"] == estimate.human(reached)
    assert f"every sub-attack: {estimate.human(all_images)})" in out


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ({"step_costs": [{"arch": "preact_resnet18", "width": None, "imagenet": False, "batch": 128,
                      "train_step_s": 0.006, "attack_step_s": 0.004}]},
     "has no step costs for wrn32_10: it has preact_resnet18"),
    ({"kind": "bench"}, "holds no step costs"),
])
def test_a_bad_costs_file_is_one_clear_line(tmp_path, capsys, content, message):
    path = tmp_path / "costs.json"
    if content is not None:
        path.write_text(json.dumps(content))
    assert main(["estimate", "table1", "--scale", "paper", "--costs", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
