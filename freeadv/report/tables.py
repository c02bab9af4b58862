"""Tables 1-5, YOPO, trials and FGSM-RS comparison: ours next to the paper's numbers.

A table is built from a plan (:class:`freeadv.experiments.plan.Plan`) and the JSON result files under
``results/<scale>`` only, so it regenerates without any model. Columns of the CSV, per metric M:
``M_ours``, ``M_paper``, ``M_diff`` (ours - paper), then where the number came from: train
minutes, images/s, device, the dataset and architecture actually trained, the model id, the
number of evaluation images, the scale and the git commit; RobustBench's entry for a related
published model where the design names one (``robustbench*``: clean, reported and AutoAttack
accuracy, its architecture); then the row's sanity evaluations (uniform noise, a large-eps PGD)
and every warning of :mod:`freeadv.sanity` over its evaluations.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError
from ..experiments.design import DATASET_TITLES
from ..experiments.layout import TABLE_FORMATS, table_file, train_path
from ..experiments.paper_values import paper_value
from ..experiments.plan import Column, Plan, PlanRow
from ..experiments.robustbench import DEFAULT_EPS, ENTRIES
from ..io import atomic_write_text
from ..sanity import check_model, check_training
from .results import accuracy_interval, check_weights, metric_value, read_result, with_kind_flags

INFO_COLUMNS = ["train_minutes", "images_per_second", "device", "dataset", "arch", "n_eval", "model", "scale",
                "commit", "noise_acc", "large_eps_pgd_acc", "large_eps_attack", "sanity_warnings"]


def _arch_name(config: dict[str, Any]) -> str:
    return config["arch"] + (f" (width {config['width']})" if config.get("width") else "")


def _diff(ours: float, paper: float | None) -> float:
    return ours - paper if paper is not None and not math.isnan(ours) else float("nan")


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def build_table(plan: Plan, target: str, results_dir: str | Path, *,
                allow_missing: bool = False) -> pd.DataFrame:
    """One row per row of the paper's table (plus mean/std rows for the trials). With
    ``allow_missing`` (regenerating results made before a column existed) a metric whose result
    file is missing stays empty and is listed in ``frame.attrs["missing"]``; the workflow never
    allows it (its table rule needs every file)."""
    entry = plan.target(target, "table")
    if not entry.available:
        raise UserError(plan.unavailable_message(target))
    records, missing = [], []
    for row in entry.rows:
        paper_table, paper_row = row.paper_ref
        record: dict[str, Any] = {"row": row.key, "label": row.label}
        train = read_result(results_dir, train_path(row.model), require=("train_minutes",)) if row.model else None
        n_eval = None
        evals: dict[str, dict[str, Any]] = {}
        for metric in entry.metrics:
            ours = float("nan")
            planned = row.metrics.get(metric.key)
            if planned is not None and allow_missing and not (Path(results_dir) / planned.file).exists():
                missing.append(f"{row.key}: {metric.label} ({planned.file})")
            elif planned is not None:
                result = read_result(results_dir, planned.file)
                check_weights(result, train, Path(results_dir) / planned.file)
                ours = metric_value(result, metric.field)
                if planned.attack is not None:
                    n_eval = result.get("n", n_eval)
                    evals[planned.attack] = result
                    record[f"{metric.key}_n"] = result.get("n", float("nan"))
                    record[f"{metric.key}_lo"], record[f"{metric.key}_hi"] = accuracy_interval(result, metric.field)
            paper = paper_value(paper_table, paper_row, metric.key)
            record[f"{metric.key}_ours"] = ours
            record[f"{metric.key}_paper"] = _nan_if_none(paper)
            record[f"{metric.key}_diff"] = _diff(ours, paper)
        config = train["config"] if train else {}
        record.update({
            "train_minutes": train["train_minutes"] if train else float("nan"),
            "images_per_second": _nan_if_none(train.get("images_per_second")) if train else float("nan"),
            "device": (train.get("device") or {}).get("name", "") if train else "",
            "dataset": config.get("dataset", ""), "arch": _arch_name(config) if config else "",
            "n_eval": n_eval if n_eval is not None else float("nan"), "model": row.model or "",
            "scale": plan.scale, "commit": ((train.get("git") or {}).get("commit") or "")[:12] if train else "",
        })
        if any(metric.key == "train_min" for metric in entry.metrics):
            record.pop("train_minutes")
        record.update(_best_columns(row, entry.metrics, train, results_dir))
        record.update(_robustbench_columns(row))
        sanity = {p.attack: read_result(results_dir, p.file) for p in row.sanity or ()}
        for planned in row.sanity or ():
            check_weights(sanity[planned.attack], train, Path(results_dir) / planned.file)
        record.update(_sanity_columns(list(evals.values()) + list(sanity.values()), sanity, train))
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if entry.summary == "mean_std":
        frame = pd.concat([frame, _mean_std_rows(frame, target, entry.metrics, plan.scale)], ignore_index=True)
    frame.attrs["missing"] = missing
    return frame


def _best_columns(row: PlanRow, metrics: list[Column], train: dict[str, Any] | None,
                  results_dir: str | Path) -> dict[str, Any]:
    """The metrics measured on model_best.pt (runs with keep_best), beside the final ones: the
    accuracy, its Wilson interval and the check whose weights they are (train.json's ``best``)."""
    columns: dict[str, Any] = {}
    fields = {m.key: m.field for m in metrics}
    for key, planned in row.best.items():
        result = read_result(results_dir, planned.file)
        check_weights(result, train, Path(results_dir) / planned.file)
        columns[f"{key}_best"] = metric_value(result, fields[key])
        columns[f"{key}_best_lo"], columns[f"{key}_best_hi"] = accuracy_interval(result, fields[key])
    if columns and train and train.get("best"):
        columns["best_iteration"] = train["best"]["iteration"]
    return columns


def _robustbench_columns(row: PlanRow) -> dict[str, Any]:
    """RobustBench's entry shown beside the row, if the design gives it one (reference numbers),
    with the eps it was evaluated at where that is not the table's 8/255 (TRADES: 0.031)."""
    entry = ENTRIES.get(row.robustbench or "")
    if entry is None:
        return {}
    columns = {"robustbench": entry.name, "robustbench_arch": entry.architecture, "robustbench_clean": entry.clean,
               "robustbench_reported": entry.reported, "robustbench_aa": entry.autoattack,
               "robustbench_same_arch": entry.architecture == row.paper_arch}
    return columns if entry.eps == DEFAULT_EPS else {**columns, "robustbench_eps": entry.eps}


def _sanity_columns(evals: list[dict[str, Any]], sanity: dict[str, dict[str, Any]],
                    train: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row's sanity evaluations (noise, large-eps PGD) and every warning of freeadv.sanity
    over all of its evaluations and its training run, so a weak attack, gradient masking or
    catastrophic overfitting shows in the table itself."""
    noise_id = next((a for a in sanity if a.startswith("noise")), None)
    large_id = next((a for a in sanity if not a.startswith("noise")), None)
    warnings = check_training(train) + list(dict.fromkeys(check_model([with_kind_flags(e) for e in evals
                                                                       if "attack" in e])))
    return {"noise_acc": metric_value(sanity[noise_id], "robust_acc") if noise_id else float("nan"),
            "large_eps_pgd_acc": metric_value(sanity[large_id], "robust_acc") if large_id else float("nan"),
            "large_eps_attack": large_id or "", "sanity_warnings": " | ".join(warnings)}


def _mean_std_rows(frame: pd.DataFrame, target: str, metrics: list[Column], scale: str) -> pd.DataFrame:
    """Mean and sample std (ddof=1) of each metric over the rows, as two more rows."""
    rows = []
    for stat, label in (("mean", "mean over seeds"), ("std", "std over seeds (ddof=1)")):
        record: dict[str, Any] = {"row": stat, "label": label}
        for metric in metrics:
            values = frame[f"{metric.key}_ours"]
            ours = float(values.mean() if stat == "mean" else values.std(ddof=1))
            paper = paper_value(target, stat, metric.key)
            record[f"{metric.key}_ours"] = ours
            record[f"{metric.key}_paper"] = _nan_if_none(paper)
            record[f"{metric.key}_diff"] = _diff(ours, paper)
        record.update({c: frame[c].iloc[0] for c in ("dataset", "arch", "device", "n_eval") if c in frame})
        record.update({"model": "", "scale": scale, "commit": frame["commit"].iloc[0]})
        rows.append(record)
    return pd.DataFrame.from_records(rows)


# --- rendering ------------------------------------------------------------------------------------

def _fmt(value: Any, unit: str = "percent") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    if unit == "count":
        return f"{value:.0f}"
    if unit == "minutes":
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return f"{value:.3f}" if 0 < abs(value) < 1 else f"{value:.2f}"


def _signed(value: float, unit: str) -> str:
    text = _fmt(value, unit)
    return text if text == "-" or text.startswith("-") else f"+{text}"


def provenance_lines(plan: Plan, target: str, frame: pd.DataFrame) -> list[str]:
    """What was actually trained at this scale, in words, so no one mistakes a stand-in for the paper."""
    settings = plan.settings
    entry = plan.targets[target]
    datasets = sorted({d for d in frame["dataset"] if d})
    arches = sorted({a for a in frame["arch"] if a})
    mapped = [f"{DATASET_TITLES.get(paper, paper)} -> {DATASET_TITLES.get(ours, ours)}"
              for paper, ours in settings.get("datasets", {}).items() if paper in entry.datasets]
    lines = [f"Scale: {plan.scale}. Trained here on: {', '.join(DATASET_TITLES.get(d, d) for d in datasets)}"
             f" ({'; '.join(mapped)}); architectures: {', '.join(arches)}."]
    if plan.scale != "paper":
        lines.append(f"These are {plan.scale}-scale stand-ins, not the paper's setting: compare trends, not values.")
    caps = settings.get("attacks") or {}
    if caps.get("max_steps") or caps.get("max_restarts"):
        lines.append(f"Attacks capped at this scale: at most {caps.get('max_steps') or 'all'} steps and "
                     f"{caps.get('max_restarts') or 'all'} restarts (column titles keep the paper's names).")
    lines.append("Columns: " + "; ".join(f"{m.label}: {m.source}" for m in entry.metrics) + ".")
    lines += entry.notes
    return lines


def _interval(r: pd.Series, prefix: str) -> str:
    low, high = r.get(f"{prefix}_lo", float("nan")), r.get(f"{prefix}_hi", float("nan"))
    return "" if not isinstance(low, float) or math.isnan(low) else f" [{low:.1f}, {high:.1f}]"


def _best_metrics(frame: pd.DataFrame, metrics: list[Column]) -> list[Column]:
    return [m for m in metrics if f"{m.key}_best" in frame and frame[f"{m.key}_best"].notna().any()]


def _best_cell(r: pd.Series, key: str) -> str:
    value = r.get(f"{key}_best", float("nan"))
    if isinstance(value, float) and math.isnan(value):
        return "-"
    iteration = r.get("best_iteration", float("nan"))
    at = "" if isinstance(iteration, float) and math.isnan(iteration) else f" (it. {int(iteration):,})"
    return f"{_fmt(value)}{_interval(r, f'{key}_best')}{at}"


def _cells(frame: pd.DataFrame, metrics: list[Column]) -> tuple[list[str], list[list[str]]]:
    header = ["Training"] + [m.label + (" (%)" if m.unit == "percent" else "") for m in metrics]
    best = _best_metrics(frame, metrics)
    header += [f"{m.label}, best weights (%)" for m in best]
    has_minutes_metric = any(m.key == "train_min" for m in metrics)
    if not has_minutes_metric:
        header.append("Train time (min)")
    references = "robustbench" in frame and frame["robustbench"].notna().any()
    if references:
        header.append("RobustBench clean / reported / AutoAttack (%)")
    header += ["images/s", "device", "trained on", "model id"]
    body = []
    for _, r in frame.iterrows():
        cells = [str(r["label"])]
        for m in metrics:
            ours, paper, diff = r[f"{m.key}_ours"], r[f"{m.key}_paper"], r[f"{m.key}_diff"]
            text = f"{_fmt(ours, m.unit)}{_interval(r, m.key)} / {_fmt(paper, m.unit)}"
            if not (isinstance(diff, float) and math.isnan(diff)):
                text += f" ({_signed(diff, m.unit)})"
            cells.append(text)
        cells += [_best_cell(r, m.key) for m in best]
        if not has_minutes_metric:
            cells.append(_fmt(r.get("train_minutes"), "minutes"))
        if references:
            cells.append(_robustbench_cell(r))
        cells += [_fmt(r.get("images_per_second"), "count"), str(r.get("device") or "-"),
                  f"{r.get('dataset') or '-'}, {r.get('arch') or '-'}" if r.get("dataset") else "-",
                  str(r.get("model") or "-")]
        body.append(cells)
    return header, body


def _robustbench_cell(r: pd.Series) -> str:
    if not isinstance(r.get("robustbench"), str):
        return "-"
    arch = "" if r.get("robustbench_same_arch") is True else f", {r['robustbench_arch']}"
    eps = f", eps {r['robustbench_eps']}" if isinstance(r.get("robustbench_eps"), str) else ""
    return (f"{_fmt(r['robustbench_clean'])} / {_fmt(r['robustbench_reported'])} / {_fmt(r['robustbench_aa'])} "
            f"({r['robustbench']}{arch}{eps})")


def to_markdown(frame: pd.DataFrame, plan: Plan, target: str) -> str:
    entry = plan.targets[target]
    header, body = _cells(frame, entry.metrics)
    lines = [f"# {entry.title}", "", *provenance_lines(plan, target, frame), "",
             CELL_KEY + " n per column: " + _n_per_column(frame, entry.metrics) + ".",
             *_best_lines(frame, entry.metrics), *_missing_lines(frame), "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in body]
    return "\n".join(lines + sanity_lines(frame)) + "\n"


CELL_KEY = ("Each metric cell: ours [its 95% Wilson interval] / paper (ours - paper); the interval is that of "
            "an accuracy on n test images, and it stays inside [0, 100] at 0 and 100.")


def _best_lines(frame: pd.DataFrame, metrics: list[Column]) -> list[str]:
    if not _best_metrics(frame, metrics):
        return []
    return ["Best weights: model_best.pt, the weights of the training check with the highest robust accuracy "
            "on validation images (keep_best, as Rice et al. 2020 report beside the final weights), at the "
            "iteration given; the other columns are the final weights, the paper's protocol."]


def _n_per_column(frame: pd.DataFrame, metrics: list[Column]) -> str:
    parts = []
    for m in metrics:
        column = f"{m.key}_n"
        if column in frame:
            counts = sorted({int(n) for n in frame[column] if isinstance(n, (int, float)) and not math.isnan(n)})
            parts.append(f"{m.label} {'/'.join(f'{n:,}' for n in counts) or '-'}")
    return "; ".join(parts) or "-"


def _missing_lines(frame: pd.DataFrame) -> list[str]:
    missing = frame.attrs.get("missing") or []
    if not missing:
        return []
    return ["", f"Not evaluated in this scale's last run (result file missing, cell shown as -): "
                f"{'; '.join(missing)}."]


def sanity_lines(frame: pd.DataFrame) -> list[str]:
    """The sanity evaluations of each row and any warning (freeadv.sanity), under the table."""
    if "sanity_warnings" not in frame or frame["noise_acc"].isna().all():
        return []
    attack = next((a for a in frame["large_eps_attack"] if isinstance(a, str) and a), "large-eps PGD")
    lines = ["", "## Sanity checks (freeadv.sanity)", "",
             f"Accuracy under uniform noise of the table's eps must not be below a gradient attack's; "
             f"{attack} must reach ~0% (else gradient masking); more steps, CW or restarts must not raise "
             "accuracy; robust must not exceed clean; AutoAttack must not exceed PGD-20 by more than one "
             "standard error; the robust checks during training must not fall by more than 20 points "
             "(catastrophic overfitting).", "",
             "| Training | noise (%) | " + attack + " (%) | warnings |", "|---|---|---|---|"]
    for _, r in frame.iterrows():
        if not isinstance(r.get("sanity_warnings"), str):
            continue
        lines.append(f"| {r['label']} | {_fmt(r['noise_acc'])} | {_fmt(r['large_eps_pgd_acc'])} | "
                     f"{(r['sanity_warnings'] or 'none').replace('|', '/')} |")
    count = sum(1 for w in frame["sanity_warnings"] if isinstance(w, str) and w)
    lines += ["", f"**{count} row(s) with warnings.**" if count else "No sanity check fired."]
    return lines


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(frame: pd.DataFrame, plan: Plan, target: str) -> str:
    """A standalone-ready tabular (booktabs) with a caption; written by hand to need no jinja2."""
    entry = plan.targets[target]
    header, body = _cells(frame, entry.metrics)
    caption = " ".join([entry.title + ".", *provenance_lines(plan, target, frame),
                        CELL_KEY, *_best_lines(frame, entry.metrics)])
    lines = [r"\begin{table}[t]", r"\centering", r"\scriptsize",
             rf"\caption{{{tex_escape(caption)}}}", rf"\label{{tab:{target}}}",
             r"\begin{tabular}{" + "l" * len(header) + "}", r"\toprule",
             " & ".join(tex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(tex_escape(c) for c in cells) + r" \\" for cells in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(plan: Plan, target: str, results_dir: str | Path, out_dir: str | Path, *,
                allow_missing: bool = False) -> list[Path]:
    """Build one table and write ``<out_dir>/<target>.{csv,md,tex}`` atomically."""
    frame = build_table(plan, target, results_dir, allow_missing=allow_missing)
    out_dir = Path(out_dir)
    paths = [out_dir / table_file(target, ext) for ext in TABLE_FORMATS]
    atomic_write_text(paths[0], frame.to_csv(index=False))
    atomic_write_text(paths[1], to_markdown(frame, plan, target))
    atomic_write_text(paths[2], to_latex(frame, plan, target))
    return paths
