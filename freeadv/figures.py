"""Figures 1-4, drawn from the JSON result files of a scale only (never from a model).

Every figure carries a subtitle naming the scale and what was actually trained, so a smoke or
mini figure cannot be mistaken for the paper's. Each is written as PNG and PDF.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .experiments.design import ARCH_TITLES, DATASET_TITLES  # noqa: E402
from .experiments.layout import train_path  # noqa: E402
from .experiments.paper_values import paper_value  # noqa: E402
from .experiments.scales import unavailable_message  # noqa: E402
from .io import atomic_write  # noqa: E402
from .tables import metric_value, read_result  # noqa: E402

PAPER_GREY = "0.45"


def save(fig: plt.Figure, out: str | Path) -> list[Path]:
    """Save ``fig`` as <stem>.png (150 dpi) and <stem>.pdf, byte-identical when redrawn from the
    same results (no creation date in the PDF), so regenerated figures show no spurious diff.
    Each file is written next to its path and renamed into place: a killed job leaves no
    half-written figure."""
    out = Path(out)
    paths = []
    for ext, kwargs in ((".png", {"dpi": 150}), (".pdf", {"metadata": {"CreationDate": None}})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext[1:], bbox_inches="tight", **kwargs)
        path = out.with_suffix(ext)
        atomic_write(path, lambda handle: handle.write(buffer.getvalue()))
        paths.append(path)
    plt.close(fig)
    return paths


def trained_on(plan: dict[str, Any], configs: list[dict[str, Any]], paper_datasets: list[str]) -> str:
    """'scale smoke - trained on synthetic (stand-in for CIFAR-10), small_cnn width 4'."""
    mapping = plan["settings"].get("datasets", {})
    datasets = []
    for paper in paper_datasets:
        ours = mapping.get(paper, paper)
        title = DATASET_TITLES.get(ours, ours)
        datasets.append(title if ours == paper else f"{title} (stand-in for {DATASET_TITLES.get(paper, paper)})")
    arches = sorted({ARCH_TITLES.get(c["arch"], c["arch"]) + (f" width {c['width']}" if c.get("width") else "")
                     for c in configs})
    return f"scale: {plan['scale']}  |  trained on: {', '.join(dict.fromkeys(datasets))}  |  model: {', '.join(arches)}"


def _title(fig: plt.Figure, title: str, subtitle: str) -> None:
    fig.suptitle(f"{title}\n{subtitle}", fontsize=10)


def _row_value(results: Path, row: dict[str, Any], metric_key: str, field: str) -> float:
    return metric_value(read_result(results, row["metrics"][metric_key]["file"]), field)


def _train_config(results: Path, row: dict[str, Any]) -> dict[str, Any]:
    return read_result(results, train_path(row["model"]))["config"]


# --- Figure 1 ------------------------------------------------------------------------------------

def figure1(plan: dict[str, Any], results: Path) -> plt.Figure:
    entry = plan["targets"]["figure1"]
    groups = list(dict.fromkeys(r["group"] for r in entry["rows"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2), squeeze=False)
    configs = []
    for ax, group in zip(axes[0], groups):
        rows = [r for r in entry["rows"] if r["group"] == group]
        curve = sorted((r["x"], _row_value(results, r, "nat", "clean_acc")) for r in rows if r["x"] is not None)
        reference = next(r for r in rows if r["x"] is None)
        configs += [_train_config(results, r) for r in rows]
        xs, ys = zip(*curve)
        ax.plot(xs, ys, "o-", color="C0", label="ours: natural training with replay m")
        ours_ref = _row_value(results, reference, "nat", "clean_acc")
        ax.axhline(ours_ref, color="C3", linestyle=":", label=f"ours: 7-PGD natural acc. ({ours_ref:.2f}%)")
        paper_ref = paper_value("figure1", reference["key"], "nat")
        if paper_ref is not None:
            ax.axhline(paper_ref, color=PAPER_GREY, linestyle="--", label=f"paper: 7-PGD natural acc. ({paper_ref:.2f}%)")
        ax.set_xticks(list(xs))
        ax.set_xlabel("minibatch replay m (m = 1 is natural training)")
        ax.set_ylabel("natural validation accuracy (%)")
        ax.set_title(f"({'ab'[groups.index(group)]}) {DATASET_TITLES.get(group, group)} sensitivity to m")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    _title(fig, entry["title"], trained_on(plan, configs, groups))
    fig.tight_layout()
    return fig


# --- Figure 2 ------------------------------------------------------------------------------------

def _image(pixels: list) -> np.ndarray:
    return np.transpose(np.asarray(pixels, dtype=np.uint8), (1, 2, 0))


def figure2(plan: dict[str, Any], results: Path) -> plt.Figure:
    entry = plan["targets"]["figure2"]
    data = [(a["label"], read_result(results, a["file"])) for a in entry["analyses"]]
    first = data[0][1]
    if any(d["indices"] != first["indices"] for _, d in data):
        raise ValueError("figure2: the adv-examples files hold different test images; rebuild them")
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
            if c == 0:
                ax.set_ylabel(row_label, fontsize=8)
    attack = first["attack"]
    subtitle = trained_on(plan, [d["train_config"] for _, d in data], ["cifar10"])
    _title(fig, entry["title"],
           f"{subtitle}\nBIM eps {attack['eps']:g}/255, step {attack['step_size']:g}/255, {attack['steps']} iterations, "
           f"no random start; test images {first['indices'][0]}-{first['indices'][-1]} of {first['test_split_size']}; "
           "red: misclassified")
    fig.tight_layout()
    return fig


# --- Figure 3 ------------------------------------------------------------------------------------

def figure3(plan: dict[str, Any], results: Path) -> plt.Figure:
    entry = plan["targets"]["figure3"]
    panels = [(a, read_result(results, a["file"])) for a in entry["analyses"]]
    n_images = min(len(d["images"]) for _, d in panels)
    fig = plt.figure(figsize=(4.2 * len(panels), 4.2 * n_images + 1.0))
    direction_names = {"adv-rad": ("adversarial", "Rademacher"), "rad-rad": ("Rademacher 1", "Rademacher 2")}
    for i in range(n_images):
        for p, (analysis, d) in enumerate(panels):
            same_model = [np.asarray(o["images"][i]["losses"]) for a, o in panels if a["model"] == analysis["model"]]
            bottom, top = min(s.min() for s in same_model), max(s.max() for s in same_model)
            top = top if top > bottom else bottom + 1e-3
            ax = fig.add_subplot(n_images, len(panels), i * len(panels) + p + 1, projection="3d")
            axis = np.asarray(d["axis"])
            a, b = np.meshgrid(axis, axis, indexing="ij")
            losses = np.asarray(d["images"][i]["losses"])
            ax.plot_surface(a, b, losses, cmap="viridis", vmin=bottom, vmax=top, linewidth=0, antialiased=True)
            ax.set_zlim(bottom, top)
            ax.zaxis.get_major_formatter().set_useOffset(False)
            first, second = direction_names[d["plane"]]
            ax.set_xlabel(f"{first} (/255)", fontsize=7)
            ax.set_ylabel(f"{second} (/255)", fontsize=7)
            ax.set_zlabel("cross-entropy loss", fontsize=7)
            ax.tick_params(labelsize=6)
            letter = "abcdefgh"[p]
            ax.set_title(f"({letter}) {analysis['label']}, {'adv x rad' if d['plane'] == 'adv-rad' else 'both rad'}\n"
                         f"test image {d['images'][i]['index']}, clean loss {d['images'][i]['clean_loss']:.3f}", fontsize=8)
    subtitle = trained_on(plan, [d["train_config"] for _, d in panels], ["cifar10"])
    _title(fig, entry["title"], f"{subtitle}\nloss at clip(x + a*d1 + b*d2); the two planes of one model "
                                f"share a z range")
    fig.subplots_adjust(left=0.02, right=0.97, bottom=0.04, top=1 - 1.1 / fig.get_figheight(), wspace=0.12,
                        hspace=0.25)
    return fig


# --- Figure 4 ------------------------------------------------------------------------------------

def figure4(plan: dict[str, Any], results: Path) -> plt.Figure:
    entry = plan["targets"]["figure4"]
    groups = list(dict.fromkeys(r["group"] for r in entry["rows"]))
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    configs = []
    for g, group in enumerate(groups):
        rows = sorted((r for r in entry["rows"] if r["group"] == group), key=lambda r: r["x"])
        configs += [_train_config(results, r) for r in rows]
        xs = [r["x"] for r in rows]
        style = {"color": "k", "linestyle": "--", "marker": "s"} if group == "natural" else {"color": f"C{g}", "marker": "o"}
        for ax, (key, field) in zip(axes, (("nat", "clean_acc"), ("pgd100", "robust_acc"))):
            label = "Natural (one model, attacked at each eps)" if group == "natural" else rows[0]["label"]
            ax.plot(xs, [_row_value(results, r, key, field) for r in rows], label=label, **style)
    eps_values = sorted({r["x"] for r in entry["rows"]})
    for ax, name in zip(axes, ("(a) Clean", "(b) PGD-100")):
        ax.set_title(f"{name} validation accuracy")
        ax.set_xticks(eps_values)
        ax.set_xlabel("training eps (/255); attacks: eps = training eps, step 1")
        ax.set_ylabel(f"{name[4:]} accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    caps = plan["settings"].get("attacks") or {}
    capped = f"; PGD-100 capped at {caps['max_steps']} steps at this scale" if caps.get("max_steps") else ""
    _title(fig, entry["title"], trained_on(plan, configs, ["imagenet"]) + "\n(the paper's Figure 4 values are not "
                                                                          f"in its text; no paper curves{capped})")
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[dict[str, Any], Path], plt.Figure]] = {
    "figure1": figure1, "figure2": figure2, "figure3": figure3, "figure4": figure4}


def write_figure(plan: dict[str, Any], name: str, results_dir: str | Path, out: str | Path) -> list[Path]:
    """Draw figure ``name`` from the results of ``plan``'s scale; writes <out stem>.png and .pdf."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure '{name}'; choose one of {', '.join(FIGURES)}")
    if not plan["targets"][name]["available"]:
        raise ValueError(unavailable_message(plan, name))
    return save(FIGURES[name](plan, Path(results_dir)), out)
