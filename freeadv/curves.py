"""Training curves of a table's models: held-out clean and robust accuracy against iteration.

One figure per table (``figures/<scale>/curves_<table>.png``), one line per model, drawn from the
``robust_checks`` of each row's train.json (PGD-10 on a fixed held-out test subset, see
freeadv.training.robust). Catastrophic overfitting (Wong et al.: a fall of more than 20 points
between two checks) is marked where a run recorded it. Runs trained before robust tracking have
only the end-of-pass clean accuracy (``log``); their clean curve is drawn from it and the
robust panel says so, so regenerating old results still works.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .experiments.layout import curves_name, train_path  # noqa: F401  (curves_name: the figure's name)
from .figures import _title, plt, save, trained_on
from .tables import read_result


def _points(train: dict[str, Any]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(iteration, clean %) and (iteration, robust %) of one run's checks; clean from the
    end-of-pass log when the run has no robust checks."""
    checks = train.get("robust_checks") or []
    if checks:
        return ([(c["iteration"], c["heldout_clean_acc"]) for c in checks],
                [(c["iteration"], c["heldout_robust_acc"]) for c in checks])
    clean = [(e["iteration"], e["clean_acc_eval_n"]) for e in train.get("log") or []
             if e.get("clean_acc_eval_n") is not None]
    return clean, []


LEGEND_SHORT_LABEL = 30  # characters: labels up to this long share a legend row, three to a row


def _plot(ax, points: list[tuple[int, float]], label: str, color: str) -> None:
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, "o-", markersize=3, color=color, label=label)


def _checked_on(check: dict[str, Any]) -> str:
    """What a run's robust checks attack: PGD-K on held-out test images, or (Wong et al.'s
    recipe) on each pass's first training batch. Rows of one table can differ (the FGSM-RS table)."""
    images = ("held-out test images" if check["robust_eval_source"] == "heldout"
              else "images of each pass's first training batch")
    return f"PGD-{check.get('robust_eval_steps', 'K')}, {check['robust_eval_n']} {images}"


def training_curves(plan: dict[str, Any], table: str, results: Path) -> plt.Figure:
    entry = plan["targets"][table]
    rows = [r for r in entry["rows"] if r["model"]]
    fig, (clean_ax, robust_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    configs, any_robust, sources = [], False, []
    for index, row in enumerate(rows):
        train = read_result(results, train_path(row["model"]))
        configs.append(train["config"])
        clean, robust = _points(train)
        check = next(iter(train.get("robust_checks") or []), None)
        if check and _checked_on(check) not in sources:
            sources.append(_checked_on(check))
        color = f"C{index % 10}"
        _plot(clean_ax, clean, row["label"], color)
        _plot(robust_ax, robust, row["label"], color)
        any_robust |= bool(robust)
        collapse = train.get("catastrophic_overfitting")
        if collapse:
            robust_ax.axvline(collapse["iteration"], color=color, linestyle=":", alpha=0.8)
            robust_ax.annotate("catastrophic overfitting", (collapse["iteration"], collapse["robust_after"]),
                               fontsize=7, color=color)
    clean_ax.set_title("clean accuracy at each check" if sources else "clean accuracy at the end of each pass")
    robust_ax.set_title("PGD accuracy at each check" if sources
                        else "PGD accuracy during training (no checks recorded)")
    if not any_robust:
        robust_ax.text(0.5, 0.5, "no robust checks recorded:\nthese runs predate robust tracking",
                       ha="center", va="center", transform=robust_ax.transAxes, fontsize=9)
    for ax in (clean_ax, robust_ax):
        ax.set_xlabel("iteration (parameter updates)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    checks = ("\nchecks: " + "; ".join(sources)) if sources else ""
    _title(fig, f"Training curves: {entry['title']}", trained_on(plan, configs, entry["datasets"]) + checks)
    fig.tight_layout()
    if clean_ax.lines:
        # One legend for both panels, below them: inside, "best" still covered a curve (mini v2's
        # Table 1, where natural and Free m=2 cross the middle of the clean panel).
        handles, labels = clean_ax.get_legend_handles_labels()
        columns = 3 if max(len(label) for label in labels) <= LEGEND_SHORT_LABEL else 1
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=columns, fontsize=8)
    return fig


def write_curves(plan: dict[str, Any], table: str, results_dir: str | Path, out: str | Path) -> list[Path]:
    """Draw the training curves of ``table`` (png and pdf at ``out``'s stem)."""
    entry = plan["targets"].get(table)
    if entry is None or entry["kind"] != "table":
        raise ValueError(f"unknown table '{table}'; training curves are drawn per table")
    return save(training_curves(plan, table, Path(results_dir)), out)
