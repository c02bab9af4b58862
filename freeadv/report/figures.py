"""Figures 1-4 and Figure 3's supplement, drawn from the JSON result files of a scale only (never
from a model).

Every title is the plan's, which names what the scale trained (freeadv.experiments.titles); a
caption under each figure says where its numbers come from: the scale, the stand-ins for the
paper's datasets and architectures, the commit that trained the models (freeadv.report.plotting). Each
is written as PNG and PDF. Figure 3 and its supplement live in freeadv.report.loss_figures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..experiments.layout import train_path
from ..experiments.paper_values import paper_value
from ..experiments.plan import Plan, PlanRow
from ..experiments.titles import dataset_title
from . import loss_figures  # noqa: F401  (registers figure3 and figure3_surfaces)
from .plotting import FIGURES, caption, commits, plt, register_figure, save, stand_ins, title
from .results import metric_value, read_result
from ..errors import UserError

PAPER_GREY = "0.45"


def _row_value(results: Path, row: PlanRow, metric_key: str, field: str) -> float:
    return metric_value(read_result(results, row.metrics[metric_key].file), field)


def trains(results: Path, items: list[Any]) -> list[dict[str, Any]]:
    """The train.json of each model of a target's rows (once each): the commits that trained them."""
    return [read_result(results, train_path(model)) for model in dict.fromkeys(i.model for i in items if i.model)]


def _panel_dataset(plan: Plan, paper: str) -> str:
    """The dataset a panel of a paper dataset shows at this scale."""
    return dataset_title(plan.settings.get("datasets", {}).get(paper, paper))


# --- Figure 1 ------------------------------------------------------------------------------------

@register_figure("figure1")
def figure1(plan: Plan, results: Path) -> plt.Figure:
    entry = plan.targets["figure1"]
    groups = list(dict.fromkeys(r.group for r in entry.rows))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2), squeeze=False)
    for ax, group in zip(axes[0], groups):
        rows = [r for r in entry.rows if r.group == group]
        curve = sorted((r.x, _row_value(results, r, "nat", "clean_acc")) for r in rows if r.x is not None)
        reference = next(r for r in rows if r.x is None)
        xs, ys = zip(*curve)
        ax.plot(xs, ys, "o-", color="C0", label="ours: natural training with replay m")
        ours_ref = _row_value(results, reference, "nat", "clean_acc")
        ax.axhline(ours_ref, color="C3", linestyle=":", label=f"ours: 7-PGD natural acc. ({ours_ref:.2f}%)")
        paper_ref = paper_value("figure1", reference.key, "nat")
        if paper_ref is not None:
            ax.axhline(paper_ref, color=PAPER_GREY, linestyle="--", label=f"paper: 7-PGD natural acc. ({paper_ref:.2f}%)")
        ax.set_xticks(list(xs))
        ax.set_xlabel("minibatch replay m (m = 1 is natural training)")
        ax.set_ylabel("natural validation accuracy (%)")
        ax.set_title(f"({'ab'[groups.index(group)]}) {_panel_dataset(plan, group)}: sensitivity to m", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    title(fig, entry.title)
    fig.tight_layout()
    caption(fig, [stand_ins(plan, "figure1"), commits(trains(results, entry.rows), "Models trained")])
    return fig


# --- Figure 2 ------------------------------------------------------------------------------------

def _image(pixels: list) -> np.ndarray:
    return np.transpose(np.asarray(pixels, dtype=np.uint8), (1, 2, 0))


@register_figure("figure2")
def figure2(plan: Plan, results: Path) -> plt.Figure:
    """Each column one test image, named by its index in the test split's fixed order."""
    entry = plan.targets["figure2"]
    data = [(a.label, read_result(results, a.file, "adv-examples")) for a in entry.analyses]
    first = data[0][1]
    if any(d["indices"] != first["indices"] for _, d in data):
        raise UserError("figure2: the adv-examples files hold different test images; rebuild them")
    names, labels, n = first["class_names"], first["labels"], len(first["labels"])
    rows = [("clean (true class)", first["clean_images"], labels)] + [
        (f"{label}\nadversarial (predicted)", d["adversarial_images"], d["adversarial_predictions"]) for label, d in data]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.25 * n + 1.2, 1.55 * len(rows) + 0.9), squeeze=False)
    for r, (row_label, images, classes) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(_image(images[c]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            wrong = r > 0 and classes[c] != labels[c]
            ax.set_xlabel(names[classes[c]], fontsize=8, color="C3" if wrong else "black")
            if r == 0:
                ax.set_title(f"image {first['indices'][c]}", fontsize=8)
            if c == 0:
                ax.set_ylabel(row_label, fontsize=8)
    attack = first["attack"]
    title(fig, entry.title)
    fig.tight_layout()
    caption(fig, [
        f"Columns: {_panel_dataset(plan, 'cifar10')} test images {first['indices'][0]}-{first['indices'][-1]} "
        f"(indices in the fixed order of its {first['test_split_size']:,}-image test split). BIM eps "
        f"{attack['eps']:g}/255, step {attack['step_size']:g}/255, {attack['steps']} iterations, no random "
        "start; red: misclassified.",
        stand_ins(plan, "figure2"), commits([d for _, d in data], "Examples computed")])
    return fig


# --- Figure 4 ------------------------------------------------------------------------------------

@register_figure("figure4")
def figure4(plan: Plan, results: Path) -> plt.Figure:
    entry = plan.targets["figure4"]
    groups = list(dict.fromkeys(r.group for r in entry.rows))
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for g, group in enumerate(groups):
        rows = sorted((r for r in entry.rows if r.group == group), key=lambda r: r.x)
        xs = [r.x for r in rows]
        style = {"color": "k", "linestyle": "--", "marker": "s"} if group == "natural" else {"color": f"C{g}", "marker": "o"}
        for ax, (key, field) in zip(axes, (("nat", "clean_acc"), ("pgd100", "robust_acc"))):
            label = "Natural (one model, attacked at each eps)" if group == "natural" else rows[0].label
            ax.plot(xs, [_row_value(results, r, key, field) for r in rows], label=label, **style)
    eps_values = sorted({r.x for r in entry.rows})
    for ax, name in zip(axes, ("(a) Clean", "(b) PGD-100")):
        ax.set_title(f"{name} validation accuracy", fontsize=10)
        ax.set_xticks(eps_values)
        ax.set_xlabel("training eps (/255); attacks: eps = training eps, step 1")
        ax.set_ylabel(f"{name[4:]} accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    caps = plan.settings.get("attacks") or {}
    capped = f" PGD-100 capped at {caps['max_steps']} steps at this scale." if caps.get("max_steps") else ""
    title(fig, entry.title)
    fig.tight_layout()
    caption(fig, ["The paper's Figure 4 values are not in its text: no paper curves." + capped,
                  stand_ins(plan, "figure4"), commits(trains(results, entry.rows), "Models trained")])
    return fig


def write_figure(plan: Plan, name: str, results_dir: str | Path, out: str | Path) -> list[Path]:
    """Draw figure ``name`` from the results of ``plan``'s scale; writes <out stem>.png and .pdf."""
    if not plan.target(name, "figure").available:
        raise UserError(plan.unavailable_message(name))
    draw = FIGURES.pick(name, f"figure '{name}' of the plan: its drawing function")
    return save(draw(plan, Path(results_dir)), out)
