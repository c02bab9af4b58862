"""`freeadv estimate`: every job of a target gets a time from costs measured on this device."""
import math

import pytest

from freeadv.tools import estimate
from freeadv.experiments.scales import build_plan, plan_inputs
from freeadv.cli import main
from freeadv.config import load_yaml

REPO_CONFIG = "config/config.yaml"


@pytest.fixture(scope="module")
def smoke_plan():
    from pathlib import Path
    config = load_yaml(Path(__file__).resolve().parents[1] / REPO_CONFIG)
    return build_plan(**plan_inputs(config, "smoke"))


def test_table1_estimate_covers_every_job_and_charges_pgd_for_its_steps(smoke_plan):
    result = estimate.estimate(smoke_plan, "table1", device="cpu", reps=2)
    trains = {j["model"]: j for j in result["jobs"] if j["job"] == "train"}
    attacks = [j for j in result["jobs"] if j["job"] == "attack"]
    assert len(trains) == 6
    assert len(attacks) == len(smoke_plan.target_files("table1")) - 6
    natural = next(j for m, j in trains.items() if "natural" in m)
    free = next(j for m, j in trains.items() if "free-m8" in m)
    pgd7 = next(j for m, j in trains.items() if "pgd7" in m)
    assert natural["iterations"] == free["iterations"] == pgd7["iterations"] == 20
    assert free["seconds"] == pytest.approx(natural["seconds"])       # same model, one train step each
    assert pgd7["seconds"] > 2 * natural["seconds"]                   # plus 7 attack steps
    assert result["total_seconds"] == pytest.approx(sum(j["seconds"] for j in result["jobs"]))


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
