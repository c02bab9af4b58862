"""Training-curves figures: one per table, from each model's train.json (robust checks, or the
end-of-pass clean accuracy of runs that predate robust tracking)."""
import json

import matplotlib.pyplot as plt
import pytest

from freeadv.cli import main
from freeadv.curves import _points, training_curves, write_curves
from freeadv.experiments import scales
from freeadv.experiments.layout import curves_name, train_path

from test_tables import SMALL_SCALE


def _checks(top):
    return [{"iteration": i, "pass": i // 10, "heldout_clean_acc": top - 5 + i / 10, "heldout_robust_acc": top / 2,
             "robust_eval_n": 512, "robust_eval_source": "heldout", "check_seconds": 0.1} for i in (10, 20, 30)]


def _write_trains(tmp_path, plan, table, collapse_row=None):
    for row in plan["targets"][table]["rows"]:
        if not row["model"]:
            continue
        train = {"config": plan["models"][row["model"]]["config"], "robust_checks": _checks(60.0),
                 "catastrophic_overfitting": None}
        if row["key"] == collapse_row:
            train["catastrophic_overfitting"] = {"iteration": 30, "previous_iteration": 20,
                                                 "robust_before": 30.0, "robust_after": 2.0}
        path = tmp_path / train_path(row["model"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(train))


def test_one_line_per_model_in_both_panels_and_the_collapse_marked(tmp_path):
    plan = scales.build_plan("small", SMALL_SCALE)
    _write_trains(tmp_path, plan, "table1", collapse_row="free_m8")
    fig = training_curves(plan, "table1", tmp_path)
    clean_ax, robust_ax = fig.axes
    rows = [r for r in plan["targets"]["table1"]["rows"] if r["model"]]
    assert len(clean_ax.get_lines()) == len(rows)
    assert len([l for l in robust_ax.get_lines() if len(l.get_xdata()) == 3]) == len(rows)
    assert any("catastrophic overfitting" in t.get_text() for t in robust_ax.texts)
    assert "512 held-out test images" in fig._suptitle.get_text()
    plt.close(fig)
    paths = write_curves(plan, "table1", tmp_path, tmp_path / "figures" / f"{curves_name('table1')}.png")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_runs_without_robust_checks_draw_clean_from_the_log():
    clean, robust = _points({"log": [{"iteration": 100, "clean_acc_eval_n": 40.0},
                                     {"iteration": 200, "clean_acc_eval_n": None}]})
    assert clean == [(100, 40.0)] and robust == []
    clean, robust = _points({"robust_checks": _checks(50.0), "log": []})
    assert [x for x, _ in clean] == [10, 20, 30] and robust[0] == (10, 25.0)


def test_cli_curves_and_a_figure_name_is_refused(tmp_path, capsys):
    plan = scales.build_plan("small", SMALL_SCALE)
    _write_trains(tmp_path, plan, "fast")
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "curves_fast.png"
    assert main(["curves", "fast", "--results", str(tmp_path), "--out", str(out)]) == 0
    assert out.exists() and out.with_suffix(".pdf").exists()
    with pytest.raises(ValueError, match="unknown table 'figure1'"):
        write_curves(plan, "figure1", tmp_path, out)


def test_checks_on_the_first_training_batch_are_not_called_held_out():
    from freeadv.curves import _checked_on
    check = {"robust_eval_n": 128, "robust_eval_source": "first_train_batch", "robust_eval_steps": 5}
    assert _checked_on(check) == "PGD-5, 128 images of each pass's first training batch"
    assert "held-out" in _checked_on({**check, "robust_eval_source": "heldout"})
