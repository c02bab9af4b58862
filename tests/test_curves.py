"""Training-curves figures: one per table, from each model's train.json (robust checks, or the
end-of-pass clean accuracy of runs that predate robust tracking): checks on different images in
different panels, a Wilson band around every point, the learning-rate drops marked, passes over
the data on a top axis and in the legend."""
import json

import matplotlib.pyplot as plt
import pytest

from freeadv.cli import main
from freeadv.report.curves import _lr_drops, _points, training_curves, write_curves
from freeadv.experiments import scales
from freeadv.experiments.layout import curves_name, train_path
from freeadv.stats import wilson

from test_tables import SMALL_SCALE


def _checks(top, source="heldout", steps=10, n=512):
    return [{"iteration": i, "pass": i // 10, "heldout_clean_acc": top - 5 + i / 10, "heldout_robust_acc": top / 2,
             "robust_eval_n": n, "robust_eval_source": source, "robust_eval_steps": steps, "check_seconds": 0.1}
            for i in (10, 20, 30)]


def _write_trains(tmp_path, plan, table, collapse_row=None, wong_row=None):
    """A train.json per row: held-out PGD-10 checks; ``wong_row`` checks PGD-5 on its first
    training batch (Wong et al.'s recipe), 15 points higher."""
    for row in plan.targets[table].rows:
        if not row.model:
            continue
        wong = row.key == wong_row
        train = {"config": plan.models[row.model].config, "catastrophic_overfitting": None,
                 "robust_checks": _checks(75.0, "first_train_batch", 5, 128) if wong else _checks(60.0),
                 "lr_milestones": [] if wong else [20, 25], "batches_per_pass": 10, "replay": 1, "passes": 3.0,
                 "n_train": 256, "git": {"commit": "abcdef0123456789", "dirty": False}}
        if row.key == collapse_row:
            train["catastrophic_overfitting"] = {"iteration": 30, "previous_iteration": 20,
                                                 "robust_before": 30.0, "robust_after": 2.0}
        path = tmp_path / train_path(row.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(train))


def _rows(plan, table):
    return [r for r in plan.targets[table].rows if r.model]


def _labels(ax):
    return [line.get_label().split(" (")[0] for line in ax.get_lines() if not line.get_gid()]


def test_one_line_per_model_in_both_panels_each_with_its_band_and_the_collapse_marked(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    _write_trains(tmp_path, plan, "table1", collapse_row="free_m8")
    fig = training_curves(plan, "table1", tmp_path)
    clean_ax, robust_ax = fig.axes
    rows = _rows(plan, "table1")
    for ax in (clean_ax, robust_ax):
        curves = [l for l in ax.get_lines() if len(l.get_xdata()) == 3]
        assert len(curves) == len(rows)
        assert len([c for c in ax.collections if c.get_gid() == "wilson-band"]) == len(rows)
    assert any("catastrophic overfitting" in t.get_text() for t in robust_ax.texts)
    assert "512 held-out test images" in clean_ax.get_title() and "PGD-10" in robust_ax.get_title()
    plt.close(fig)
    paths = write_curves(plan, "table1", tmp_path, tmp_path / "figures" / f"{curves_name('table1')}.png")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_the_band_is_the_wilson_interval_of_each_check():
    from freeadv.report.curves import _band
    fig, ax = plt.subplots()
    _band(ax, [10, 20], [50.0, 25.0], [128, 128], "C0", 0.2)
    (band,) = ax.collections
    vertices = band.get_paths()[0].vertices
    low, high = wilson(64, 128), wilson(32, 128)
    assert pytest.approx(low[0]) in list(vertices[:, 1]) and pytest.approx(high[1]) in list(vertices[:, 1])
    plt.close(fig)


def test_first_training_batch_checks_are_never_in_a_held_out_panel(tmp_path):
    """Wong et al.'s PGD-5 on a training batch reads higher than PGD-10 on held-out images: its
    own row of panels, titled by what it attacks."""
    plan = scales.build_plan("small", SMALL_SCALE)
    _write_trains(tmp_path, plan, "fast", wong_row="fgsm_rs_wong")
    fig = training_curves(plan, "fast", tmp_path)
    assert len(fig.axes) == 4
    held_clean, held_robust, batch_clean, batch_robust = fig.axes
    wong = next(r.label for r in _rows(plan, "fast") if r.key == "fgsm_rs_wong")
    for ax in (batch_clean, batch_robust):
        assert _labels(ax) == [wong.split(" (")[0]]
    for ax in (held_clean, held_robust):
        assert wong.split(" (")[0] not in _labels(ax) and len(_labels(ax)) == len(_rows(plan, "fast")) - 1
    assert "first training batch" in batch_clean.get_title() and "PGD-5" in batch_robust.get_title()
    assert "held-out" in held_clean.get_title() and "PGD-10" in held_robust.get_title()
    plt.close(fig)


def test_learning_rate_drops_are_marked_and_passes_are_counted(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    _write_trains(tmp_path, plan, "fast", wong_row="fgsm_rs_wong")
    fig = training_curves(plan, "fast", tmp_path)
    held_clean, _, batch_clean, _ = fig.axes
    assert sorted(l.get_xdata()[0] for l in held_clean.get_lines() if l.get_gid() == "lr-drop") == [20, 25]
    assert not [l for l in batch_clean.get_lines() if l.get_gid() == "lr-drop"]   # cyclic: no drop
    tops = [child for child in held_clean.child_axes]
    assert tops and "passes over the 256 training images" in tops[0].get_xlabel()
    assert all("(3.0 passes)" in l.get_label() for l in held_clean.get_lines() if not l.get_gid())
    plt.close(fig)


def test_validation_and_test_checks_get_panels_of_their_own_and_heldout_reads_as_test(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    _write_trains(tmp_path, plan, "table1")
    rows = _rows(plan, "table1")
    for row, source in zip(rows, ("validation", "test", "heldout")):   # 'heldout': earlier runs' 'test'
        path = tmp_path / train_path(row.model)
        train = json.loads(path.read_text())
        train["robust_checks"] = _checks(60.0, source)
        path.write_text(json.dumps(train))
    fig = training_curves(plan, "table1", tmp_path)
    assert len(fig.axes) == 4
    test_clean = next(ax for ax in fig.axes if "held-out test images" in ax.get_title())
    validation_clean = next(ax for ax in fig.axes if "validation images" in ax.get_title())
    assert len(_labels(validation_clean)) == 1 and len(_labels(test_clean)) == len(rows) - 1
    plt.close(fig)


def test_lr_drops_come_from_the_milestones_or_the_logged_lr():
    assert _lr_drops({"lr_milestones": [800, 1200]}) == [800, 1200]
    log = [{"iteration": i, "lr": lr} for i, lr in ((50, 0.1), (800, 0.1), (850, 0.01), (1250, 0.001))]
    assert _lr_drops({"log": log, "config": {"lr_schedule": "step"}}) == [850, 1250]
    assert _lr_drops({"log": log, "config": {"lr_schedule": "cyclic"}}) == []


def test_titles_at_a_small_scale_name_what_was_trained(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    _write_trains(tmp_path, plan, "table1")
    fig = training_curves(plan, "table1", tmp_path)
    heading = fig._suptitle.get_text()
    assert "small CNN width 4" in heading and "WRN-32-10" not in heading and "20 iterations" in heading
    footer = "\n".join(t.get_text() for t in fig.texts)
    assert "Scale small" in footer and "commit abcdef0" in footer and "Scale small" not in heading
    plt.close(fig)


def test_runs_without_robust_checks_draw_clean_from_the_log():
    points = _points({"log": [{"iteration": 100, "clean_acc_eval_n": 40.0},
                              {"iteration": 200, "clean_acc_eval_n": None}], "eval_n": 500})
    assert points == [(100, 40.0, None, 500)]
    points = _points({"robust_checks": _checks(50.0), "log": []})
    assert [p[0] for p in points] == [10, 20, 30] and points[0][2:] == (25.0, 512)


def test_cli_curves_and_a_figure_name_is_refused(tmp_path, capsys):
    plan = scales.build_plan("small", SMALL_SCALE)
    _write_trains(tmp_path, plan, "fast")
    (tmp_path / "plan.json").write_text(json.dumps(plan.to_json()))
    out = tmp_path / "curves_fast.png"
    assert main(["curves", "fast", "--results", str(tmp_path), "--out", str(out)]) == 0
    assert out.exists() and out.with_suffix(".pdf").exists()
    with pytest.raises(ValueError, match="has no table 'figure1'"):
        write_curves(plan, "figure1", tmp_path, out)
