"""What every figure of a scale shares: saving, the title on top and the caption underneath.

A title says what a figure shows and what was trained for it (the plan's realised title,
freeadv.experiments.titles); where the numbers come from (the scale, the stand-ins for the
paper's datasets and architectures, the commit that trained the models) is a caption under the
figure, so a title never carries provenance and a caption never hides a stand-in.
"""
from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..experiments.design import make_targets  # noqa: E402
from ..experiments.plan import Plan  # noqa: E402
from ..experiments.titles import arch_title, dataset_title, english_list  # noqa: E402
from ..io import atomic_write  # noqa: E402
from ..registry import Registry  # noqa: E402

TITLE_PT, CAPTION_PT = 10, 8
CHARS_PER_INCH = {TITLE_PT: 13.0, CAPTION_PT: 16.0}   # DejaVu Sans, average text: where lines wrap


FORMATS = (".png", ".pdf")


def figure_paths(out: str | Path) -> list[Path]:
    """The files of figure ``out``: <stem>.png and <stem>.pdf when ``out`` ends in one of them,
    else ``out`` with both appended (x.v2 -> x.v2.png), never a file named otherwise."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in FORMATS else out
    return [stem.with_name(stem.name + ext) for ext in FORMATS]


def save(fig: plt.Figure, out: str | Path) -> list[Path]:
    """Save ``fig`` as <stem>.png (150 dpi) and <stem>.pdf, byte-identical when redrawn from the
    same results (no creation date in the PDF), so regenerated figures show no spurious diff.
    Each file is written next to its path and renamed into place: a killed job leaves no
    half-written figure."""
    paths = figure_paths(out)
    for path, kwargs in zip(paths, ({"dpi": 150}, {"metadata": {"CreationDate": None}})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=path.suffix[1:], bbox_inches="tight", **kwargs)
        atomic_write(path, lambda handle: handle.write(buffer.getvalue()))
    plt.close(fig)
    return paths


def wrap(text: str, width_in: float, points: int) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``points`` pt (its own line breaks kept)."""
    width = max(20, int(width_in * CHARS_PER_INCH[points]))
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def title(fig: plt.Figure, text: str, subtitle: str = "") -> None:
    """The figure's title (the plan's realised title), wrapped to the figure's width, and an
    optional subtitle saying what its numbers are (never where they come from: see caption)."""
    body = wrap(text, fig.get_figwidth(), TITLE_PT)
    fig.suptitle(body + (f"\n{wrap(subtitle, fig.get_figwidth(), TITLE_PT)}" if subtitle else ""),
                 fontsize=TITLE_PT)


def caption(fig: plt.Figure, lines: Iterable[str]) -> None:
    """Caption lines under everything the figure holds (axes, legends): drawn once to measure
    where its lowest artist ends, so the caption never overlaps a legend placed below the axes."""
    renderer = fig.canvas.get_renderer()
    bottom = fig.get_tightbbox(renderer).y0           # inches from the figure's bottom edge
    text = "\n".join(wrap(line, fig.get_figwidth(), CAPTION_PT) for line in lines if line)
    fig.text(0.01, (bottom - 0.08) / fig.get_figheight(), text, ha="left", va="top", fontsize=CAPTION_PT,
             color="0.25")


# How each figure target is drawn: name -> draw(plan, results folder) -> a matplotlib Figure.
FIGURES: Registry[Callable[[Plan, Path], plt.Figure]] = Registry("figure")


def register_figure(name: str) -> Callable:
    """Register the drawing function of the figure target ``name`` (a ``Target`` of kind figure)."""
    def add(draw: Callable[[Plan, Path], plt.Figure]) -> Callable[[Plan, Path], plt.Figure]:
        return FIGURES.add(name, draw)
    return add


def stand_ins(plan: Plan, name: str) -> str:
    """'Scale mini: CIFAR-10 (JPEG q75) stands in for the paper's CIFAR-10, WRN-32 width 1 for its
    WRN-32-10 (compare trends, not values).' The paper datasets and architectures are those of
    the target's cells in the design; only the ones a scale replaces are named."""
    settings = plan.settings
    target = make_targets(settings.get("sweeps"))[name]
    cells = [r.cell for r in target.rows if r.cell] + [a.cell for a in target.analyses]
    swaps = []
    for paper in sorted({c.dataset for c in cells} & set(settings.get("datasets", {}))):
        ours = settings["datasets"][paper]
        if ours != paper:
            swaps.append((dataset_title(ours), dataset_title(paper)))
    for paper in sorted({c.arch for c in cells} & set(settings.get("architectures", {}))):
        ours = arch_title(settings["architectures"][paper])
        if ours != arch_title({"arch": paper}):
            swaps.append((ours, arch_title({"arch": paper})))
    if not swaps:
        return f"Scale {plan.scale}: the paper's datasets and architectures."
    merged: dict[str, list[str]] = {}
    for ours, paper in swaps:
        merged.setdefault(ours, []).append(paper)
    words = [f"{ours} for {english_list(papers)}" for ours, papers in merged.items()]
    return (f"Scale {plan.scale}: {'; '.join(words)} of the paper "
            "(stand-ins: compare trends, not values).")


def commits(records: Iterable[dict[str, Any]], what: str) -> str:
    """'Models trained at commit 5826cc3.': the commits the result files record (dirty trees marked)."""
    seen = []
    for record in records:
        git = record.get("git") or {}
        if git.get("commit"):
            seen.append(git["commit"][:7] + (" (uncommitted changes)" if git.get("dirty") else ""))
    if not seen:
        return ""
    seen = list(dict.fromkeys(seen))
    return f"{what} at commit{'s' if len(seen) > 1 else ''} {english_list(seen)}."
