"""Figure 3 (the loss along the adversarial and a Rademacher direction) and its supplement (the
3-D loss surfaces), drawn from ``freeadv loss-surface`` JSON files only.

Figure 3 is drawn as 1-D slices because a 3-D surface hides what the paper's claim is about:
how fast the loss rises within the eps-ball along each direction, model beside model. A slice
is the line of the surface grid through the image (the grid's centre row or column), so it needs
no new computation: along the adversarial direction d1 it is ``losses[:, centre]``, along the
Rademacher direction d2 ``losses[centre, :]`` (``losses[i][j]`` is the loss at
x + axis[i] d1 + axis[j] d2, freeadv.runs.analysis.loss_surface). All panels share one y-scale, so a
steeper rise reads as a steeper line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..experiments.plan import Plan, PlanAnalysis
from .plotting import caption, commits, plt, register_figure, stand_ins, title
from .results import read_result
from ..errors import UserError

DIRECTIONS = {"adv-rad": ("adversarial", "Rademacher"), "rad-rad": ("Rademacher 1", "Rademacher 2")}
COLUMN_IN = 7.0          # a journal column: Figure 3 stays readable at this width (fonts >= 8 pt)


def _surfaces(plan: Plan, results: Path, name: str, plane: str | None = None) -> list[tuple[PlanAnalysis, dict]]:
    """(planned analysis, its JSON) of the target's computed loss surfaces (of ``plane`` only, if
    given); the figure's caption names the planned ones not computed (:func:`not_computed`)."""
    analyses = [a for a in plan.targets[name].analyses if plane is None or a.options.get("plane") == plane]
    present = [a for a in analyses if (Path(results) / a.file).exists()]
    if not present:
        raise UserError(f"{name}: no loss surface{f' on the {plane} plane' if plane else ''} has been computed "
                         f"in '{results}'")
    return [(a, read_result(results, a.file, "loss-surface")) for a in present]


def not_computed(plan: Plan, results: Path, name: str) -> str:
    """A caption line naming the planned surfaces whose JSON is missing (empty when none is)."""
    labels = sorted({a.label for a in plan.targets[name].analyses if not (Path(results) / a.file).exists()})
    return f"Planned but not computed at this scale: {', '.join(labels)}." if labels else ""


def _centre(axis: list[float]) -> int:
    """The index of 0 on the grid's axis: the line through the image (the grid must hold it)."""
    centre = int(np.argmin(np.abs(axis)))
    if abs(axis[centre]) > 1e-9:
        raise UserError(f"the loss-surface grid has no point at 0 (axis {axis[:3]}...): use an odd --grid")
    return centre


def slices(data: dict[str, Any], image: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(axis, loss along d1, loss along d2) through image ``image`` of a loss-surface JSON."""
    axis = np.asarray(data["axis"], dtype=float)
    losses = np.asarray(data["images"][image]["losses"], dtype=float)
    centre = _centre(list(axis))
    return axis, losses[:, centre], losses[centre, :]


def _clip_words(data: list[dict[str, Any]]) -> str:
    """How the surface points were formed, as the JSON files record it."""
    clips = {d.get("clip") for d in data}
    if clips == {False}:
        return "not clipped to [0, 1], as in the authors' surface script"
    if clips == {True}:
        return "clipped to [0, 1]"
    return "clipping not recorded in every file" if None in clips else "clipped in some files and not in others"


def _eps(data: list[dict[str, Any]]) -> float | None:
    """The training eps of the adversarially trained models (the ball the figure marks)."""
    values = {d["train_config"].get("eps") for d in data if d["train_config"].get("method") != "natural"}
    values.discard(None)
    return values.pop() if len(values) == 1 else None


def _same_images(panels: list[tuple[dict, dict]]) -> int:
    """How many images every file holds, checked to be the same test images in the same order."""
    n = min(len(d["images"]) for _, d in panels)
    indices = [[image["index"] for image in d["images"][:n]] for _, d in panels]
    if any(i != indices[0] for i in indices):
        raise UserError("figure3: the loss-surface files hold different test images; rebuild them")
    return n


@register_figure("figure3")
def figure3(plan: Plan, results: Path) -> plt.Figure:
    """Loss against distance along the adversarial and the Rademacher direction: one panel per
    (image, direction), every model of the plan's figure3 in each, one y-scale for all."""
    panels = _surfaces(plan, results, "figure3", "adv-rad")
    n_images = _same_images(panels)
    fig, axes = plt.subplots(n_images, 2, figsize=(COLUMN_IN, 2.5 * n_images + 1.3), sharex=True, sharey=True,
                             squeeze=False)
    eps = _eps([d for _, d in panels])
    for i in range(n_images):
        for k, (analysis, data) in enumerate(panels):
            axis, along_adv, along_rad = slices(data, i)
            for ax, loss in zip(axes[i], (along_adv, along_rad)):
                ax.plot(axis, loss, "o-", markersize=2.5, linewidth=1.4, color=f"C{k}", label=analysis.label)
        index = panels[0][1]["images"][i]["index"]
        for j, (ax, direction) in enumerate(zip(axes[i], ("adversarial", "Rademacher"))):
            ax.set_title(f"({'abcdefgh'[2 * i + j]}) test image {index}, {direction} direction", fontsize=9)
            if eps is not None:
                for edge in (-eps, eps):
                    ax.axvline(edge, color="0.4", linestyle=":", linewidth=1.0, gid="eps-ball",
                               label=f"eps-ball edge (±{eps:g}/255)" if edge > 0 else None)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
        axes[i][0].set_ylabel("cross-entropy loss", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("signed distance from the image (/255 per pixel)", fontsize=9)
    title(fig, plan.targets["figure3"].title)
    fig.tight_layout()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 4), fontsize=8)
    data = [d for _, d in panels]
    caption(fig, [f"Adversarial direction: the sign of the loss gradient at the image; Rademacher: random ±1 "
                  f"per pixel. Each line is the slice through the image of a {len(data[0]['axis'])}-point "
                  f"loss-surface grid (span ±{data[0]['span']:g}/255); points {_clip_words(data)}. "
                  "All panels share one y-scale.",
                  not_computed(plan, results, "figure3"), stand_ins(plan, "figure3"),
                  commits(data, "Surfaces computed")])
    return fig


@register_figure("figure3_surfaces")
def figure3_surfaces(plan: Plan, results: Path) -> plt.Figure:
    """Supplement: the 3-D loss surfaces of each model on each plane; the planes of one model
    share a z range, so the adversarial rise and the flat Rademacher plane compare directly."""
    panels = _surfaces(plan, results, "figure3_surfaces")
    n_images = _same_images(panels)
    fig = plt.figure(figsize=(3.6 * len(panels), 3.8 * n_images + 1.4))
    for i in range(n_images):
        for p, (analysis, d) in enumerate(panels):
            ax = fig.add_subplot(n_images, len(panels), i * len(panels) + p + 1, projection="3d")
            _surface_panel(ax, panels, i, p)
    data = [d for _, d in panels]
    title(fig, plan.targets["figure3_surfaces"].title,
          f"loss at x + a·d1 + b·d2, {_clip_words(data)}; the planes of one model share a z range")
    fig.subplots_adjust(left=0.02, right=0.97, bottom=0.04, top=1 - 1.2 / fig.get_figheight(), wspace=0.15,
                        hspace=0.28)
    caption(fig, [not_computed(plan, results, "figure3_surfaces"), stand_ins(plan, "figure3_surfaces"),
                  commits(data, "Surfaces computed")])
    return fig


def _surface_panel(ax, panels: list[tuple[PlanAnalysis, dict]], image: int, p: int) -> None:
    """One 3-D surface: model ``p``'s plane through image ``image``."""
    analysis, d = panels[p]
    same_model = [np.asarray(o["images"][image]["losses"]) for a, o in panels if a.model == analysis.model]
    bottom, top = min(s.min() for s in same_model), max(s.max() for s in same_model)
    top = top if top > bottom else bottom + 1e-3
    axis = np.asarray(d["axis"])
    a, b = np.meshgrid(axis, axis, indexing="ij")
    ax.plot_surface(a, b, np.asarray(d["images"][image]["losses"]), cmap="viridis", vmin=bottom, vmax=top,
                    linewidth=0, antialiased=True)
    ax.set_zlim(bottom, top)
    ax.zaxis.get_major_formatter().set_useOffset(False)
    first, second = DIRECTIONS[d["plane"]]
    ax.set_xlabel(f"{first} (/255)", fontsize=8)
    ax.set_ylabel(f"{second} (/255)", fontsize=8)
    ax.set_zlabel("cross-entropy loss", fontsize=8)
    ax.tick_params(labelsize=7)
    letter = "abcdefghijklmnopqrstuvwxyz"[(image * len(panels) + p) % 26]
    info = d["images"][image]
    ax.set_title(f"({letter}) {analysis.label}, {first} x {second}\n"
                 f"test image {info['index']}, clean loss {info['clean_loss']:.3f}", fontsize=9)
