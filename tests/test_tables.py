"""The paper's numbers, the plan (model and attack ids) and table building from hand-written JSON
results: ours / paper / difference columns, trials statistics, missing results."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from freeadv.attacks import AttackError, AttackSpec
from freeadv.experiments import design, scales
from freeadv.experiments.layout import train_path
from freeadv.experiments.paper_values import paper_value, paper_values
from freeadv.report.results import MissingResult
from freeadv.report.tables import build_table, write_table

SMALL_SCALE = {
    "datasets": {"cifar10": "synthetic", "cifar100": "synthetic", "imagenet": "synthetic"},
    "architectures": {a: {"arch": "small_cnn", "width": 4} for a in design.PAPER_ARCHS},
    "train": {"iterations": 20, "n_train": 256, "n_test": 100},
    "attacks": {"max_steps": 5, "max_restarts": 2},
}
PAPER_SCALE = {
    "datasets": {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet": "imagenet"},
    "architectures": {a: {"arch": a} for a in design.PAPER_ARCHS},
    "omit": {"table1": {"apgd": ["free_m2", "free_m4", "free_m8", "free_m10", "pgd7"]}},   # as config/config.yaml
}


# --- the paper's numbers --------------------------------------------------------------------------

@pytest.mark.parametrize("table,row,metric,value", [
    ("table1", "free_m10", "cw100", 45.86), ("table1", "pgd7", "cw100", 46.52),
    ("table1", "free_m8", "pgd20_r10", 46.33), ("table1", "natural", "train_min", 780),
    ("table2", "free_m8", "pgd20", 25.88), ("table2", "pgd2", "train_min", 2053),
    ("table3", "free_m4", "pgd100", 43.404), ("table3", "natural", "pgd10", 0.166),
    ("table4", "pgd2", "train_min", 10435), ("table5", "resnet152", "nat", 64.446),
    ("yopo", "free_m10_bs256", "pgd20", 48.03), ("trials", "std", "pgd20_r20", 0.19),
    ("figure1", "cifar100_pgd7", "nat", 59.87),
])
def test_paper_values_are_transcribed(table, row, metric, value):
    assert paper_value(table, row, metric) == pytest.approx(value)


def test_paper_values_have_no_duplicates_and_figure4_has_none():
    values = paper_values()
    assert not values.duplicated(["table", "row", "metric"]).any()
    assert (values["table"] == "figure4").sum() == 0
    assert set(values["unit"]) == {"percent", "minutes"}
    assert paper_value("table1", "free_m10", "no_such_metric") is None


def test_every_paper_value_has_a_row_and_a_column_in_its_target():
    targets = design.TARGETS
    for table, row, metric in paper_values()[["table", "row", "metric"]].itertuples(index=False):
        target = targets[table]
        rows = {r.key for r in target.rows} | ({"mean", "std"} if target.summary == "mean_std" else set())
        assert row in rows, (table, row)
        assert metric in {m.key for m in target.metrics}, (table, metric)


def test_paper_grid_of_table_rows_matches_the_paper():
    rows = {name: [r.key for r in design.TARGETS[name].rows] for name in design.TABLES}
    assert rows["table1"] == ["natural", "free_m2", "free_m4", "free_m8", "free_m10", "pgd7"]
    assert rows["table2"] == ["natural", "free_m2", "free_m4", "free_m6", "free_m8", "free_m10", "pgd2", "pgd7"]
    assert rows["table3"] == ["natural", "free_m2", "free_m4", "free_m6", "free_m8"]
    assert rows["table5"] == ["resnet50", "resnet101", "resnet152"]
    # the paper's columns, AutoAttack, and the APGD screen (a scale that runs AutoAttack everywhere omits it)
    assert [m.key for m in design.TARGETS["table1"].metrics] == ["nat", "pgd20", "pgd100", "cw100", "pgd20_r10", "aa",
                                                             "apgd", "train_min"]


# --- ids and the plan ---------------------------------------------------------------------------

@pytest.mark.parametrize("attack_id", ["clean", "pgd20-eps8-step2", "pgd20-eps8-step2-r10", "cw100-eps8-step2",
                                       "pgd100-eps2.5-step1", "bim50-eps30-step2"])
def test_attack_id_round_trips(attack_id):
    assert AttackSpec.parse(attack_id).id == attack_id


def test_bad_attack_id_is_refused():
    with pytest.raises(AttackError, match="pgd20-eps8-step2-r10"):
        AttackSpec.parse("pgd-twenty")


def test_paper_plan_trains_shared_models_once():
    plan = scales.build_plan("paper", PAPER_SCALE)
    free8 = "cifar10-wrn32_10-free-m8-eps8-s0"
    assert free8 in plan.models
    users = [name for name, entry in plan.targets.items()
             if any(r.model == free8 for r in entry.rows) or any(a.model == free8 for a in entry.analyses)]
    assert users == ["table1", "trials", "fast", "figure2", "figure3", "figure3_surfaces"]
    rn50 = "imagenet-resnet50-free-m4-eps4-s0"
    assert {n for n, e in plan.targets.items() if any(r.model == rn50 for r in e.rows)} == {
        "table4", "table5", "figure4"}
    assert plan.models[free8].config == {"arch": "wrn32_10", "dataset": "cifar10", "eps": 8.0,
                                               "method": "free", "replay": 8, "seed": 0}
    assert plan.models["cifar10-wrn32_10-pgd7-step2-eps8-s0"].config["pgd_steps"] == 7
    assert plan.models["cifar10-wrn34_10-free-m10-eps8-bs256-s0"].config["batch_size"] == 256
    trades = "cifar10-wrn32_10-trades10-step1.785-beta6-eps8-s0"   # the fast table's TRADES row
    assert plan.models[trades].config == {"arch": "wrn32_10", "dataset": "cifar10", "eps": 8.0,
                                                "method": "trades", "seed": 0, "trades_beta": 6.0}
    wong = "cifar10-preact_resnet18-fgsm_rs-eps8-wong2020-s0"   # the fast table's Wong et al. recipe row
    assert plan.models[wong].config == {
        "arch": "preact_resnet18", "batch_size": 128, "dataset": "cifar10", "early_stop": True, "epochs": 15,
        "eps": 8.0, "fgsm_alpha": 10.0, "iterations": None, "lr": 0.2, "lr_schedule": "cyclic", "method": "fgsm_rs",
        "momentum": 0.9, "robust_eval_source": "first_train_batch", "robust_eval_steps": 5,
        "robust_eval_every": None, "seed": 0, "keep_best": False,
        "weight_decay": 5e-4, "weight_decay_all": True}
    assert len(plan.models) == 64
    table1 = plan.targets["table1"]
    attacks = {m.attack for r in table1.rows for m in r.metrics.values() if m.attack}
    assert attacks == {"pgd20-eps8-step2", "pgd100-eps8-step2", "cw100-eps8-step2", "pgd20-eps8-step2-r10",
                       "autoattack100-eps8"}
    assert "aa" in table1.rows[0].metrics, "Table 1 runs AutoAttack on the natural model too"
    from freeadv.config import load_yaml
    configured = load_yaml(Path(__file__).resolve().parents[1] / "config" / "config.yaml")["scales"]["paper"]
    assert configured["omit"] == PAPER_SCALE["omit"]   # AutoAttack's APGD-T flags stand for the APGD screen
    table2 = plan.targets["table2"]
    assert "aa" not in table2.rows[0].metrics, "elsewhere AutoAttack runs on adversarially trained models only"
    trials = plan.targets["trials"].rows
    assert [r.key for r in trials if "aa" in r.metrics] == ["seed0"]
    table4 = plan.targets["table4"].rows
    assert {r.metrics["aa"].attack for r in table4} == {"autoattack100-eps4-n5000"}
    table3 = plan.targets["table3"]
    assert table3.rows[0].metrics["pgd50"].attack == "pgd50-eps2-step1"


def test_scale_maps_datasets_architectures_and_caps_attacks():
    plan = scales.build_plan("small", SMALL_SCALE)
    # CIFAR-10 and CIFAR-100 natural models realise the same config at this scale: one model
    assert plan.targets["table1"].rows[0].model == plan.targets["table2"].rows[0].model \
        == "synthetic-small_cnn-w4-natural-s0"
    row = plan.targets["table1"].rows[1]
    assert row.metrics["pgd100"].attack == "pgd5-eps8-step2"
    assert row.metrics["pgd20_r10"].attack == "pgd5-eps8-step2-r2"
    assert plan.models[row.model].config["iterations"] == 20


def test_a_robust_subset_attacks_the_first_n_and_reads_natural_accuracy_from_a_clean_pass():
    """attacks.n (mini): every attack job on the first n test images, so claims compare attacks on
    the same images; the natural column from the clean pass over the whole test subset."""
    settings = dict(SMALL_SCALE, train={"iterations": 20, "n_train": 256}, attacks={"max_steps": 5, "n": 50})
    plan = scales.build_plan("small", settings)
    for row in plan.targets["table1"].rows:
        metrics = row.metrics
        assert metrics["nat"].attack == "clean", row.key
        assert all(m.attack.endswith("-n50") for key, m in metrics.items() if key not in ("nat", "train_min"))
        assert {s.attack for s in row.sanity} == {"noise-eps8-n50", "pgd5-eps64-step8-n50"}
    trials = plan.targets["trials"].rows[0].metrics
    assert trials["nat"].attack == "clean" and trials["pgd20_r20"].attack == "pgd5-eps8-step2-r20-n50"
    # a model's smaller test subset wins over the scale's n: the smoke scale's 100 images, n 500
    small = scales.build_plan("small", dict(SMALL_SCALE, attacks={"n": 500}))
    assert small.targets["table1"].rows[1].metrics["pgd20"].attack == "pgd20-eps8-step2"


def test_omit_leaves_out_rows_and_cells_and_says_so():
    settings = dict(SMALL_SCALE, omit={"fast": {"rows": ["trades"]}, "table1": {"aa": ["free_m2", "free_m4"]}})
    plan = scales.build_plan("small", settings)
    assert "trades" not in [row.key for row in plan.targets["fast"].rows]
    aa = {row.key: "aa" in row.metrics for row in plan.targets["table1"].rows}
    assert aa == {"natural": True, "free_m2": False, "free_m4": False, "free_m8": True, "free_m10": True, "pgd7": True}
    assert any("AutoAttack on free_m2, free_m4" in note for note in plan.targets["table1"].notes)
    assert any("the rows trades" in note for note in plan.targets["fast"].notes)


@pytest.mark.parametrize("omit, culprit", [
    ({"tabel1": {"aa": ["free_m2"]}}, "'tabel1'"),
    ({"table1": {"autoattack": ["free_m2"]}}, "'autoattack'"),
    ({"table1": {"aa": ["free_m3"]}}, "'free_m3'"),
])
def test_a_typo_in_omit_is_a_plan_error_naming_it(omit, culprit):
    with pytest.raises(scales.PlanError) as info:
        scales.build_plan("small", dict(SMALL_SCALE, omit=omit))
    assert culprit in str(info.value) and "\n" not in str(info.value)


def test_targets_missing_a_dataset_are_not_available():
    settings = dict(SMALL_SCALE, datasets={"cifar10": "cifar10-jpeg"})
    plan = scales.build_plan("mini", settings)
    assert plan.available_targets() == ["table1", "yopo", "trials", "fast", "figure1", "figure2", "figure3",
                                              "figure3_surfaces"]
    assert "cifar100" in plan.unavailable_message("table2")
    # Figure 1 is drawn per dataset: its CIFAR-10 panel only, saying what is left out
    figure1 = plan.targets["figure1"]
    assert {row.group for row in figure1.rows} == {"cifar10"} and len(figure1.rows) == 9
    assert any("does not provide cifar100" in note for note in figure1.notes)
    assert not plan.targets["figure4"].available       # ImageNet only: nothing to draw


def test_two_configs_under_one_id_are_refused():
    settings = dict(SMALL_SCALE, architectures={**SMALL_SCALE["architectures"],
                                                "resnet50": {"arch": "small_cnn", "width": 4, "lr": 0.05}})
    with pytest.raises(scales.PlanError, match="share the model id 'synthetic-small_cnn-w4-natural-s0'.*lr"):
        scales.build_plan("bad", settings)


def test_unknown_training_key_is_refused():
    with pytest.raises(scales.PlanError, match="'iterationz'"):
        scales.build_plan("bad", dict(SMALL_SCALE, train={"iterationz": 5}))


# --- tables from hand-written results -------------------------------------------------------------

def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def fake_results(tmp_path, plan, target, value_of, sanity_value=None):
    """Write every result file a target reads; value_of(row_key, metric_key) gives the number,
    sanity_value(row_key, 'noise' | 'large_eps', clean) the sanity evaluations' accuracy."""
    entry = plan.targets[target]
    sanity_value = sanity_value or sound_sanity
    for row in entry.rows:
        if not row.model:
            continue
        _write(tmp_path / train_path(row.model),
               {"config": plan.models[row.model].config, "train_minutes": value_of(row.key, "train_min"),
                "images_per_second": 1234.0, "device": {"name": "Test GPU"}, "git": {"commit": "abcdef0123456789"}})
    for row in entry.rows:
        evals = {}
        for metric in entry.metrics:
            planned = row.metrics.get(metric.key)
            if planned and planned.attack:
                record = evals.setdefault(planned.file, {"n": 100, "attack": _attack_record(planned.attack),
                                                            "clean_acc": value_of(row.key, "nat")})
                record[metric.field] = value_of(row.key, metric.key)
        clean = next((r["clean_acc"] for r in evals.values() if "clean_acc" in r), 90.0)
        for planned in row.sanity or ():
            which = "noise" if planned.attack.startswith("noise") else "large_eps"
            evals[planned.file] = {"n": 100, "attack": _attack_record(planned.attack), "clean_acc": clean,
                                      "robust_acc": sanity_value(row.key, which, clean)}
        for file, record in evals.items():
            _write(tmp_path / file, record)


def _attack_record(attack_id):
    a = AttackSpec.parse(attack_id)
    return {"kind": a.kind, "steps": a.steps, "eps": a.eps, "step_size": a.step_size, "restarts": a.restarts}


def sound_sanity(row, which, clean):
    """A sound evaluation: noise barely hurts, a large-eps PGD reaches 0%."""
    return clean - 1.0 if which == "noise" else 0.0


def test_table1_has_ours_paper_and_difference(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    fake_results(tmp_path, plan, "table1", lambda row, metric: {"nat": 80.0, "pgd20": 40.0, "pgd100": 39.0,
                                                                "cw100": 41.0, "pgd20_r10": 38.5, "aa": 36.0, "apgd": 37.0,
                                                                "train_min": 2.5}[metric])
    frame = build_table(plan, "table1", tmp_path)
    assert list(frame["row"]) == ["natural", "free_m2", "free_m4", "free_m8", "free_m10", "pgd7"]
    free10 = frame.set_index("row").loc["free_m10"]
    assert free10["cw100_ours"] == 41.0
    assert free10["cw100_paper"] == 45.86
    assert free10["cw100_diff"] == pytest.approx(41.0 - 45.86)
    assert free10["train_min_ours"] == 2.5 and free10["train_min_paper"] == 785
    assert free10["dataset"] == "synthetic" and free10["arch"] == "small_cnn (width 4)"
    assert free10["device"] == "Test GPU" and free10["images_per_second"] == 1234.0
    assert free10["scale"] == "small" and free10["n_eval"] == 100
    for metric in ("nat", "pgd20", "pgd100", "cw100", "pgd20_r10", "train_min"):
        assert {f"{metric}_ours", f"{metric}_paper", f"{metric}_diff"} <= set(frame.columns)

    paths = write_table(plan, "table1", tmp_path, tmp_path / "tables")
    assert [p.name for p in paths] == ["table1.csv", "table1.md", "table1.tex"]
    again = pd.read_csv(paths[0])
    assert again.set_index("row").loc["pgd7", "cw100_paper"] == 46.52
    markdown = paths[1].read_text()
    # n=100, 41 correct: Wilson 95% (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n) = [31.9, 50.8]
    assert "41.00 [31.9, 50.8] / 45.86 (-4.86)" in markdown
    assert "n per column:" in markdown
    assert "stand-ins" in markdown and "synthetic" in markdown and "at most 5 steps" in markdown
    tex = paths[2].read_text()
    assert r"\begin{tabular}" in tex and r"\_" in tex and "45.86" in tex
    # Table 1 measures AutoAttack on the natural model too: its cell is filled
    assert free10["aa_ours"] == 36.0 and not math.isnan(frame.set_index("row").loc["natural", "aa_ours"])
    assert "86.11 / 46.19 / 41.47 (Shafahi2019Adversarial, WRN-34-10)" in markdown   # the row's arch differs
    assert frame.set_index("row").loc["free_m8", "robustbench_aa"] == 41.47


def test_table_shows_sanity_evaluations_and_their_warnings(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    values = {"nat": 80.0, "pgd20": 40.0, "pgd100": 39.0, "cw100": 41.0, "pgd20_r10": 38.5, "aa": 37.0, "apgd": 37.5,
              "train_min": 2.5}

    def masked_free_m8(row, which, clean):   # Free m=8 looks masked: large eps leaves 35%, noise 30%
        if row == "free_m8":
            return 30.0 if which == "noise" else 35.0
        return sound_sanity(row, which, clean)

    fake_results(tmp_path, plan, "table1", lambda row, metric: values[metric], masked_free_m8)
    frame = build_table(plan, "table1", tmp_path).set_index("row")
    assert frame.loc["natural", "sanity_warnings"] == ""
    assert frame.loc["natural", "noise_acc"] == 79.0 and frame.loc["natural", "large_eps_pgd_acc"] == 0.0
    warning = frame.loc["free_m8", "sanity_warnings"]
    assert "unbounded attack leaves 35.00%" in warning
    assert "more than uniform noise of the same eps (30.00%)" in warning
    markdown = write_table(plan, "table1", tmp_path, tmp_path / "tables")[1].read_text()
    assert "## Sanity checks" in markdown and "pgd5-eps64-step8" in markdown
    assert "| Free m=8 | 30.00 | 35.00 | pgd-5 eps 64: an (almost) unbounded attack" in markdown
    assert "**1 row(s) with warnings.**" in markdown


def test_fast_table_takes_paper_values_from_table1(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    fake_results(tmp_path, plan, "fast", lambda row, metric: 50.0)
    frame = build_table(plan, "fast", tmp_path).set_index("row")
    assert frame.loc["free_m8", "nat_paper"] == 85.96
    assert frame.loc["pgd7", "train_min_paper"] == 5418
    assert math.isnan(frame.loc["fgsm_rs", "pgd20_paper"]) and math.isnan(frame.loc["fgsm_rs", "pgd20_diff"])


def test_yopo_keeps_the_reported_only_row(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    fake_results(tmp_path, plan, "yopo", lambda row, metric: 47.0)
    frame = build_table(plan, "yopo", tmp_path).set_index("row")
    assert frame.loc["free_m10_bs256", "pgd20_diff"] == pytest.approx(47.0 - 48.03)
    assert frame.loc["yopo_5_3", "pgd20_paper"] == 47.98
    assert math.isnan(frame.loc["yopo_5_3", "pgd20_ours"]) and frame.loc["yopo_5_3", "model"] == ""


def test_trials_adds_mean_and_sample_std(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    nat = {"seed0": 85.0, "seed1": 86.0, "seed2": 87.0, "seed3": 85.5, "seed4": 86.5}
    fake_results(tmp_path, plan, "trials", lambda row, metric: nat[row] if metric == "nat" else 46.0)
    frame = build_table(plan, "trials", tmp_path).set_index("row")
    assert frame.loc["mean", "nat_ours"] == pytest.approx(86.0)
    assert frame.loc["std", "nat_ours"] == pytest.approx(pd.Series(list(nat.values())).std(ddof=1))
    assert frame.loc["mean", "nat_paper"] == 85.95 and frame.loc["std", "pgd20_r20_paper"] == 0.19
    assert frame.loc["std", "pgd20_r20_ours"] == 0.0


def test_missing_result_names_the_file(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    with pytest.raises(MissingResult, match="train.json"):
        build_table(plan, "table3", tmp_path)


def test_unavailable_table_is_refused(tmp_path):
    plan = scales.build_plan("mini", dict(SMALL_SCALE, datasets={"cifar10": "cifar10-jpeg"}))
    with pytest.raises(ValueError, match="needs the imagenet"):
        build_table(plan, "table4", tmp_path)


def test_a_column_newer_than_the_results_stays_empty_only_when_allowed(tmp_path):
    """Regenerating results made before a column existed (AutoAttack): its cells are '-' and the
    table lists them; the workflow's table rule (allow_missing off) still needs every file."""
    plan = scales.build_plan("small", SMALL_SCALE)
    values = {"nat": 80.0, "pgd20": 40.0, "pgd100": 39.0, "cw100": 41.0, "pgd20_r10": 38.5, "aa": 36.0, "apgd": 37.0,
              "train_min": 2.5}
    fake_results(tmp_path, plan, "table1", lambda row, metric: values[metric])
    free8 = next(r for r in plan.targets["table1"].rows if r.key == "free_m8")
    (tmp_path / free8.metrics["aa"].file).unlink()
    with pytest.raises(MissingResult):
        build_table(plan, "table1", tmp_path)
    frame = build_table(plan, "table1", tmp_path, allow_missing=True)
    assert math.isnan(frame.set_index("row").loc["free_m8", "aa_ours"])
    assert frame.set_index("row").loc["free_m4", "aa_ours"] == 36.0
    markdown = write_table(plan, "table1", tmp_path, tmp_path / "t", allow_missing=True)[1].read_text()
    assert "Not evaluated in this scale's last run" in markdown and "free_m8: AutoAttack" in markdown


def test_catastrophic_overfitting_of_a_row_is_flagged_under_the_table(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    fake_results(tmp_path, plan, "fast", lambda row, metric: 50.0 if metric != "aa" else 45.0)
    wong = next(r for r in plan.targets["fast"].rows if r.key == "fgsm_rs_wong")
    path = tmp_path / train_path(wong.model)
    train = json.loads(path.read_text())
    train.update(catastrophic_overfitting={"iteration": 40, "previous_iteration": 30, "robust_before": 41.0,
                                           "robust_after": 3.0}, stopped_early=True, kept_weights_iteration=30)
    path.write_text(json.dumps(train))
    frame = build_table(plan, "fast", tmp_path).set_index("row")
    assert "catastrophic overfitting: held-out robust accuracy fell from 41.00% (iteration 30) to 3.00%" \
        in frame.loc["fgsm_rs_wong", "sanity_warnings"]
    assert "weights of iteration 30 are kept" in frame.loc["fgsm_rs_wong", "sanity_warnings"]
    assert "catastrophic" not in frame.loc["fgsm_rs", "sanity_warnings"]


def test_an_accuracy_of_zero_gets_a_wilson_interval_not_a_zero_standard_error(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    fake_results(tmp_path, plan, "table1", lambda row, metric: {"nat": 80.0, "train_min": 2.5}.get(metric, 0.0))
    frame = build_table(plan, "table1", tmp_path).set_index("row")
    assert frame.loc["natural", "pgd20_lo"] == pytest.approx(0.0, abs=1e-9)
    assert frame.loc["natural", "pgd20_hi"] == pytest.approx(3.70, abs=0.01)   # 0/100: z^2/(n + z^2) = 3.70%
    markdown = write_table(plan, "table1", tmp_path, tmp_path / "tables")[1].read_text()
    assert "0.00 [0.0, 3.7] / 0.00" in markdown and "± 0.00" not in markdown


def _best_scale():
    return {**SMALL_SCALE, "train": {**SMALL_SCALE["train"], "keep_best": True, "robust_eval_n": 32}}


def test_a_run_that_keeps_its_best_weights_gets_clean_and_pgd20_evaluations_of_them():
    plan = scales.build_plan("small", _best_scale())
    row = next(r for r in plan.targets["table1"].rows if r.key == "free_m8")
    assert sorted(row.best) == ["nat", "pgd20"]
    for key, planned in row.best.items():
        final = row.metrics[key]
        assert planned.attack == final.attack and planned.weights == "best"
        assert planned.file == final.file.replace("/evals/", "/evals/best/")
    files = plan.target_files("table1")
    assert row.best["pgd20"].file in files
    from freeadv.report.cost import plan_jobs
    names = {job.name for job in plan_jobs(plan, ["table1"])}
    assert f"attack/{row.model}/best/{row.best['pgd20'].attack}" in names
    # without keep_best (the paper's protocol) no row plans them
    plain = scales.build_plan("small", SMALL_SCALE)
    assert not any(r.best for r in plain.targets["table1"].rows)


def test_the_table_shows_best_weights_beside_final_and_refuses_an_eval_of_other_weights(tmp_path):
    plan = scales.build_plan("small", _best_scale())
    fake_results(tmp_path, plan, "table1", lambda row, metric: 30.0 if metric != "train_min" else 2.5)
    for row in plan.targets["table1"].rows:
        train = tmp_path / train_path(row.model)
        summary = {**json.loads(train.read_text()), "best": {"iteration": 12, "pass": 3.0}, "best_weights_digest": "b" * 64}
        train.write_text(json.dumps(summary))
        for key, planned in row.best.items():
            _write(tmp_path / planned.file, {"n": 100, "weights": "best", "weights_digest": "b" * 64,
                                                "attack": _attack_record(planned.attack),
                                                "clean_acc": 33.0, "robust_acc": 35.0, "robust_correct": 35})
    frame = build_table(plan, "table1", tmp_path).set_index("row")
    assert frame.loc["free_m8", "pgd20_best"] == 35.0 and frame.loc["free_m8", "pgd20_ours"] == 30.0
    assert frame.loc["free_m8", "best_iteration"] == 12
    markdown = write_table(plan, "table1", tmp_path, tmp_path / "tables")[1].read_text()
    assert "PGD-20, best weights (%)" in markdown and "35.00 [26.4, 44.7] (it. 12)" in markdown
    assert "Best weights: model_best.pt" in markdown
    planned = plan.targets["table1"].rows[1].best["pgd20"]
    stale = json.loads((tmp_path / planned.file).read_text())
    (tmp_path / planned.file).write_text(json.dumps({**stale, "weights_digest": "c" * 64}))
    with pytest.raises(ValueError, match="computed on weights cccccccccccc"):
        build_table(plan, "table1", tmp_path)


def test_table1_seeds_add_rows_of_their_own_with_their_rows_paper_values():
    settings = {**SMALL_SCALE, "sweeps": {"table1_seeds": {"free_m8": [0, 1, 2], "pgd7": [1]}}}
    plan = scales.build_plan("small", settings)
    rows = {r.key: r for r in plan.targets["table1"].rows}
    assert [k for k in rows if "_s" in k] == ["free_m8_s1", "free_m8_s2", "pgd7_s1"]   # seed 0 is the row itself
    assert plan.models[rows["free_m8_s2"].model].config["seed"] == 2
    assert rows["free_m8_s1"].label == "Free m=8, seed 1" and rows["pgd7_s1"].paper_ref == ("table1", "pgd7")
    assert rows["free_m8_s1"].model.endswith("-s1") and rows["free_m8"].model.endswith("-s0")
    with pytest.raises(scales.PlanError, match="table1_seeds names 'free_m3', not a row of Table 1"):
        scales.build_plan("small", {**SMALL_SCALE, "sweeps": {"table1_seeds": {"free_m3": [1]}}})


def test_all_images_runs_one_column_on_every_test_image_and_the_others_on_the_subset():
    settings = {**SMALL_SCALE, "attacks": {"n": 50, "all_images": ["pgd20"]}}
    row = scales.build_plan("small", settings).targets["table1"].rows[3]
    assert row.metrics["pgd20"].attack == "pgd20-eps8-step2"           # every test image
    assert row.metrics["pgd100"].attack == "pgd100-eps8-step2-n50"
    assert row.metrics["apgd"].attack.endswith("-n50")
    with pytest.raises(scales.PlanError, match="all_images names 'pgd21'"):
        scales.build_plan("small", {**SMALL_SCALE, "attacks": {"n": 50, "all_images": ["pgd21"]}})


def test_a_scale_that_keeps_best_weights_leaves_wong_et_al_s_early_stopping_alone_and_conflicts_fail_at_plan_time():
    plan = scales.build_plan("small", {**SMALL_SCALE, "train": {**SMALL_SCALE["train"], "keep_best": True,
                                                                 "robust_eval_n": 32}})
    configs = {m: e.config for m, e in plan.models.items()}
    wong = next(c for m, c in configs.items() if m.endswith("wong2020-s0"))
    assert wong["keep_best"] is False and wong["early_stop"] is True
    assert all(c["keep_best"] for m, c in configs.items() if not m.endswith("wong2020-s0"))
    bad = {**SMALL_SCALE, "train": {**SMALL_SCALE["train"], "keep_best": True, "robust_eval_n": 32,
                                    "robust_eval_source": "first_train_batch"}}
    with pytest.raises(scales.PlanError, match="keep_best.*first_train_batch"):
        scales.build_plan("small", bad)


def test_a_robustbench_reference_evaluated_at_another_eps_says_so(tmp_path):
    """RobustBench evaluated TRADES at eps 0.031, not 8/255: its cell names the eps; the others,
    at the table's 8/255, do not."""
    plan = scales.build_plan("small", SMALL_SCALE)
    fake_results(tmp_path, plan, "fast", lambda row, metric: 50.0 if metric != "aa" else 45.0)
    write_table(plan, "fast", tmp_path, tmp_path / "tables")
    markdown = (tmp_path / "tables" / "fast.md").read_text()
    assert "(Zhang2019Theoretically, WRN-34-10, eps 0.031)" in markdown
    assert "Wong2020Fast" in markdown and "Wong2020Fast, PreAct ResNet-18, eps" not in markdown
