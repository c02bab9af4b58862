"""Training curves of a table's models: clean and robust accuracy at each check during training.

One figure per table (``figures/<scale>/curves_<table>.png``), one line per model, drawn from the
``robust_checks`` of each row's train.json (freeadv.training.robust). Checks on different images
never share a panel: most runs check held-out images (test or validation), while Wong et al.'s
recipe checks PGD-5 on each pass's first training batch, which the model has just fit, so its
curve reads several points more robust than held-out PGD-10 would; each kind of check gets its
own row of panels (clean | robust). Around every point is its Wilson 95% interval for the n images
checked (freeadv.stats.wilson), so a wiggle smaller than the band reads as noise. Grey dashed lines
mark the learning-rate drops; the top axis counts passes over the training data, and each legend
entry says how many passes its model made (Free m makes 1/m of natural training's). Catastrophic
overfitting (Wong et al.: a fall of more than 20 points between two checks) is marked where a run
recorded it. Runs trained before robust tracking have only the end-of-pass clean accuracy
(``log``): their clean curve is drawn from it, in a row of its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..experiments.layout import curves_name, train_path  # noqa: F401  (curves_name: the figure's name)
from ..experiments.plan import Plan, PlanRow
from .plotting import caption, commits, plt, save, stand_ins, title
from ..stats import wilson
from .results import read_result

CONFIDENCE = 0.95
LEGEND_SHORT_LABEL = 40  # characters: labels up to this long share a legend row, three to a row
LOG_SOURCE = "end_of_pass_log"
# What each kind of check attacks, in the order its panels are drawn.
SOURCES = {"test": "held-out test images", "validation": "validation images (held out of training)",
           "first_train_batch": "images of each pass's first training batch",
           LOG_SOURCE: "test images at the end of each pass"}
SOURCE_ALIASES = {"heldout": "test"}   # the test-image check's older name, in the records of earlier runs


@dataclass
class Curve:
    """One model's checks as the figure draws them."""
    label: str
    color: str
    source: str                                  # a key of SOURCES (or the run's own word)
    steps: int | None                            # PGD steps of the robust check
    points: list[tuple[int, float, float | None, int | None]] = field(default_factory=list)
    drops: list[int] = field(default_factory=list)          # iterations where the learning rate drops
    batches_per_pass: int | None = None
    replay: int = 1
    passes: float | None = None
    n_train: int | None = None
    collapse: dict[str, Any] | None = None

    @property
    def kind(self) -> tuple[str, int | None]:
        """Which row of panels: checks of one source and one attack strength only."""
        return self.source, self.steps


def _points(train: dict[str, Any]) -> list[tuple[int, float, float | None, int | None]]:
    """(iteration, clean %, robust % or None, n images) of one run's checks; from the end-of-pass
    log (clean only) when the run has no robust checks."""
    checks = train.get("robust_checks") or []
    if checks:
        return [(c["iteration"], c["heldout_clean_acc"], c["heldout_robust_acc"], c.get("robust_eval_n"))
                for c in checks]
    n = train.get("eval_n") or (train.get("config") or {}).get("eval_n")
    return [(e["iteration"], e["clean_acc_eval_n"], None, n) for e in train.get("log") or []
            if e.get("clean_acc_eval_n") is not None]


def _lr_drops(train: dict[str, Any]) -> list[int]:
    """The iterations where the learning rate drops: the run's milestones, or where its logged
    lr falls (runs that predate the record); none for a cyclic schedule, which falls smoothly."""
    if train.get("lr_milestones") is not None:
        return [int(m) for m in train["lr_milestones"]]
    if (train.get("config") or {}).get("lr_schedule") == "cyclic":
        return []
    logged = [(e["iteration"], e["lr"]) for e in train.get("log") or [] if e.get("lr") is not None]
    return [it for (_, before), (it, lr) in zip(logged, logged[1:]) if lr < before]


def _curve(row: PlanRow, train: dict[str, Any], color: str) -> Curve:
    checks = train.get("robust_checks") or []
    config = train.get("config") or {}
    source = checks[0].get("robust_eval_source", "test") if checks else LOG_SOURCE
    source = SOURCE_ALIASES.get(source, source)
    return Curve(row.label, color, source, checks[0].get("robust_eval_steps") if checks else None,
                 _points(train), _lr_drops(train), train.get("batches_per_pass"),
                 int(train.get("replay") or config.get("replay") or 1), train.get("passes"),
                 train.get("n_train") or config.get("n_train"), train.get("catastrophic_overfitting"))


def _band(ax, xs: list[int], percents: list[float], ns: list[int | None], color: str, alpha: float) -> None:
    """The Wilson interval of each point (percent of n images), as a shaded band."""
    if any(n is None for n in ns):
        return
    bounds = [wilson(round(p * n / 100), n, CONFIDENCE) for p, n in zip(percents, ns)]
    ax.fill_between(xs, [b[0] for b in bounds], [b[1] for b in bounds], color=color, alpha=alpha, linewidth=0,
                    gid="wilson-band")


def _draw(clean_ax, robust_ax, curve: Curve, alpha: float) -> None:
    """One model's clean and robust points, each with its band; its collapse, if it recorded one."""
    xs = [p[0] for p in curve.points]
    label = curve.label + (f" ({curve.passes:.1f} passes)" if curve.passes is not None else "")
    for ax, index in ((clean_ax, 1), (robust_ax, 2)):
        values = [p[index] for p in curve.points]
        if not xs or values[0] is None:
            continue
        ax.plot(xs, values, "o-", markersize=3, color=curve.color, label=label)
        _band(ax, xs, values, [p[3] for p in curve.points], curve.color, alpha)
    if curve.collapse:
        robust_ax.axvline(curve.collapse["iteration"], color=curve.color, linestyle=":", alpha=0.8)
        robust_ax.annotate("catastrophic overfitting", (curve.collapse["iteration"], curve.collapse["robust_after"]),
                           fontsize=8, color=curve.color)


def _passes_axis(ax, curves: list[Curve]) -> None:
    """A top axis in passes over the training data, where the panel's runs share one pass length;
    with different replays it counts passes at m = 1 (natural training's), which a replay m divides."""
    lengths = {c.batches_per_pass for c in curves}
    if len(lengths) != 1 or None in lengths:
        return
    replays, images = sorted({c.replay for c in curves}), {c.n_train for c in curves}
    per_pass = lengths.pop() * (replays[0] if len(replays) == 1 else 1)
    data = f"the {images.pop():,} training images" if len(images) == 1 and None not in images else "the data"
    top = ax.secondary_xaxis("top", functions=(lambda it: it / per_pass, lambda p: p * per_pass))
    words = f"passes over {data}" + ("" if len(replays) == 1 else " at m = 1 (replay m: divide by m)")
    top.set_xlabel(words, fontsize=8)
    top.tick_params(labelsize=8)


def _panel_row(axes, curves: list[Curve], letters: str) -> None:
    """One row of panels: the clean and robust accuracy of the runs that check the same images."""
    clean_ax, robust_ax = axes
    for curve in curves:   # bands fainter where many overlap, so every line stays readable
        _draw(clean_ax, robust_ax, curve, 0.2 if len(curves) <= 2 else 0.1)
    source, steps = curves[0].kind
    sizes = sorted({p[3] for c in curves for p in c.points if p[3] is not None})
    counted = "/".join(f"{n:,}" for n in sizes) + " " if sizes else ""
    clean_ax.set_title(f"({letters[0]}) clean accuracy on {counted}{SOURCES.get(source, source)}", fontsize=9)
    if source == LOG_SOURCE:
        robust_ax.set_title(f"({letters[1]}) robust accuracy: no checks recorded", fontsize=9)
        robust_ax.text(0.5, 0.5, "no robust checks recorded:\nthese runs predate robust tracking",
                       ha="center", va="center", transform=robust_ax.transAxes, fontsize=9)
    else:
        robust_ax.set_title(f"({letters[1]}) PGD-{steps or 'K'} accuracy on the same images", fontsize=9)
    for ax in axes:
        for drop in sorted({d for c in curves for d in c.drops}):
            ax.axvline(drop, color="0.5", linestyle="--", linewidth=0.9, zorder=0, gid="lr-drop")
        ax.set_xlabel("iteration (parameter updates)", fontsize=9)
        ax.set_ylabel("accuracy (%)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        _passes_axis(ax, curves)


def training_curves(plan: Plan, table: str, results: Path) -> plt.Figure:
    entry = plan.targets[table]
    rows = entry.trained_rows()
    trains = [read_result(results, train_path(row.model)) for row in rows]
    curves = [_curve(row, train, f"C{i % 10}") for i, (row, train) in enumerate(zip(rows, trains))]
    order = list(SOURCES)
    kinds = sorted(dict.fromkeys(c.kind for c in curves),
                   key=lambda k: (order.index(k[0]) if k[0] in order else len(order), k[1] or 0))
    fig, axes = plt.subplots(len(kinds), 2, figsize=(11, 3.9 * len(kinds) + 0.6), squeeze=False)
    for r, kind in enumerate(kinds):
        _panel_row(axes[r], [c for c in curves if c.kind == kind], "abcdefghijklmnop"[2 * r:2 * r + 2])
    title(fig, f"Training curves: {entry.title}")
    fig.tight_layout()
    _legend(fig, axes)
    caption(fig, [f"Shaded: the Wilson {CONFIDENCE:.0%} interval of each check (n images). Grey dashed lines: "
                  "learning-rate drops. Legend: the passes over the training data each model made. "
                  "Checks are not training time.", stand_ins(plan, table), commits(trains, "Models trained")])
    return fig


def _legend(fig: plt.Figure, axes) -> None:
    """One legend for every panel, below them: inside, 'best' covers a curve (in mini1600's
    Table 1 natural and Free m=2 cross the middle of the clean panel)."""
    entries = {}
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        columns = 3 if max(len(label) for label in entries) <= LEGEND_SHORT_LABEL else 1
        fig.legend(list(entries.values()), list(entries), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=columns, fontsize=8)


def write_curves(plan: Plan, table: str, results_dir: str | Path, out: str | Path) -> list[Path]:
    """Draw the training curves of ``table`` (png and pdf at ``out``'s stem)."""
    plan.target(table, "table")   # training curves are drawn per table
    return save(training_curves(plan, table, Path(results_dir)), out)
