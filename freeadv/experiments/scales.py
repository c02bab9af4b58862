"""How one scale of the workflow realises the paper's design: the plan.

A scale (one entry of ``scales`` in config/config.yaml) maps every paper dataset and architecture
onto what is actually trained, adds its training settings, and may cap the attacks (smoke). Each
cell of :mod:`.design` so becomes a concrete training config and a *model id* named after it; two
cells that realise the same config share one model, trained once.

The plan (:func:`build_plan`, typed in :mod:`.plan`) is what both the Snakefile (to build the DAG)
and ``freeadv table`` / ``freeadv figure`` (to find the result files) read, so the two can never
disagree. Its file paths are relative to ``results/<scale>`` (see :mod:`.layout`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..attacks import AttackSpec
from ..attacks.spec import num
from ..config import check_combinations, check_values, defaults   # light: yaml and the method registry, no torch
from ..data.catalog import DATASETS
from ..keys import ConfigError
from ..plugins import ENV
from .design import (ARCH_TITLES, CLEAN, RECIPES, Analysis, Cell, Metric, Row, Target, make_targets,
                     sanity_attacks)
from .layout import analysis_path, cost_bench_path, eval_path, train_path
from .plan import BEST, Column, CostBench, Plan, PlanAnalysis, Planned, PlanModel, PlanRow, PlanTarget
from .titles import english_list, name_fields, realise, training_phrase
from ..errors import UserError


class PlanError(UserError):
    """A scale's settings cannot realise the paper's design; one line saying what to change."""


# The keys of a scale's settings that decide what is trained and evaluated (not its job resources).
PLAN_SETTINGS = ("datasets", "architectures", "train", "train_by_dataset", "attacks", "sweeps", "omit")


def model_id(config: dict[str, Any], cell: Cell) -> str:
    """A readable name of a realised training config, e.g. ``cifar10-wrn32_10-free-m8-eps8-s0``.

    It names what is actually trained (dataset and architecture after the scale's mapping) and every
    setting in which the paper's models differ (the method's part from its registered
    ``id_fragment``); settings shared by all models of a scale (schedule, subset sizes) are not in
    it, and :func:`build_plan` checks that no two different configs meet under one id.
    """
    arch = config["arch"] + (f"-w{config['width']}" if config.get("width") else "")
    parts = [config["dataset"], arch, cell.id_fragment]
    if cell.eps is not None:
        parts.append(f"eps{num(cell.eps)}")
    if cell.batch_size is not None:
        parts.append(f"bs{cell.batch_size}")
    if cell.recipe is not None:
        parts.append(cell.recipe)
    parts.append(f"s{cell.seed}")
    return "-".join(parts)


def training_config(cell: Cell, settings: dict[str, Any], data: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``freeadv train`` keys of a cell at a scale (only what differs from the library defaults).

    ``settings`` is one entry of ``scales`` in config/config.yaml; ``data`` maps a dataset name to
    training keys for every model on it (``data_root``, ``download``).
    """
    datasets = settings.get("datasets", {})
    architectures = settings.get("architectures", {})
    if cell.dataset not in datasets:
        raise PlanError(f"the scale maps no dataset for the paper's '{cell.dataset}' "
                        f"(its datasets: {', '.join(datasets) or 'none'})")
    if cell.arch not in architectures:
        raise PlanError(f"the scale maps no architecture for the paper's '{cell.arch}' "
                        f"(its architectures: {', '.join(architectures) or 'none'})")
    dataset = datasets[cell.dataset]
    if dataset not in DATASETS:
        raise PlanError(f"the scale trains the paper's '{cell.dataset}' on '{dataset}', which is not a registered "
                        f"dataset ({', '.join(DATASETS)}; a plugin's dataset loads from {ENV} or an entry point)")
    config: dict[str, Any] = {"dataset": dataset, **architectures[cell.arch]}
    config.update((data or {}).get(dataset, {}))
    config.update(settings.get("train", {}))
    config.update(settings.get("train_by_dataset", {}).get(dataset, {}))
    config.update(method=cell.method, seed=cell.seed)
    config.update(cell.params)          # the method's settings the paper gives this model
    if cell.batch_size is not None:
        config["batch_size"] = cell.batch_size
    config = {k: v for k, v in config.items() if v is not None}   # None: the library's default
    if cell.recipe is not None:   # another paper's whole recipe, over the scale's schedule (its None: unset)
        config.update(RECIPES[cell.recipe]["train"])
    unknown = sorted(set(config) - set(defaults()))
    if unknown:
        raise PlanError(f"training key '{unknown[0]}' (from the scale's settings) is not a freeadv config key; "
                        f"see freeadv/config.py KEYS and the methods' keys (freeadv train --help)")
    try:
        check_values(config)
        check_combinations(config)   # across keys too (e.g. keep_best needs checks on validation images)
    except ConfigError as err:
        raise PlanError(f"{err} (from the scale's settings)") from None
    return dict(sorted(config.items()))


def realise_attack(attack: AttackSpec, settings: dict[str, Any], config: dict[str, Any] | None = None) -> AttackSpec:
    """The attack a scale runs for one of the paper's: the scale may cap steps and restarts (smoke)
    and run every attack on a robust subset, the first ``attacks.n`` test images (mini: the claims
    compare attacks on the same images); an attack's own number of images gives way to a smaller
    subset, and the n of either to a model's smaller test subset."""
    caps = settings.get("attacks") or {}
    attack = attack.capped(caps.get("max_steps"), caps.get("max_restarts"))
    if caps.get("n") and attack.attack.sized:
        attack = replace(attack, n=min(attack.n or caps["n"], caps["n"]))
    n_test = (config or {}).get("n_test")
    return replace(attack, n=None) if attack.n and n_test and n_test <= attack.n else attack


def realise_metric_attack(metric: Metric, eval_eps: float | None, settings: dict[str, Any],
                          config: dict[str, Any] | None = None) -> AttackSpec:
    """The attack job a metric of a row reads. Natural accuracy is read from a gradient attack's
    clean pass, unless the scale attacks a robust subset: then from the clean pass over the whole
    test subset (forward passes only; 10,000 images put its standard error near 0.5 points)."""
    attack = metric.attack.bind(eval_eps)
    caps = settings.get("attacks") or {}
    if metric.field == "clean_acc" and caps.get("n"):
        attack = CLEAN
    if metric.key in caps.get("all_images", ()):   # this column on every test image, the others on the subset
        settings = {**settings, "attacks": {k: v for k, v in caps.items() if k != "n"}}
    return realise_attack(attack, settings, config)


def metric_source(metric: Metric, settings: dict[str, Any]) -> str:
    """Where a column's number comes from at this scale, in words: the design's own wording, or, on
    a robust subset, the realised attack (its first n images, the clean pass over every image)."""
    if metric.attack is None or not (settings.get("attacks") or {}).get("n"):
        return metric.source
    return replace(metric, attack=realise_metric_attack(metric, None, settings)).source


def check_omissions(settings: dict[str, Any], targets: dict[str, Target], scale: str | None = None) -> None:
    """``omit`` names targets, metrics and rows of the design: a typo must not silently omit nothing,
    and an omission must leave its target something to measure: at least one trained row and one
    cell of one column. ``scale``: the scale's name, for the message
    (``scales.<scale>.omit.<target>``)."""
    where = f"scales.{scale}.omit" if scale else "omit"
    for name, omitted in (settings.get("omit") or {}).items():
        if name not in targets:
            raise PlanError(f"{where} names the target '{name}', which the design does not have "
                            f"(targets: {', '.join(targets)})")
        target = targets[name]
        keys, metrics = {row.key for row in target.rows}, {m.key for m in target.metrics}
        for what, rows in (omitted or {}).items():
            if what != "rows" and what not in metrics:
                raise PlanError(f"{where}.{name} names '{what}': expected 'rows' or a metric of {name} "
                                f"({', '.join(sorted(metrics))})")
            for key in rows or ():
                if key not in keys:
                    raise PlanError(f"{where}.{name}.{what} names the row '{key}', which {name} does not have "
                                    f"({', '.join(sorted(keys))})")
        trained = [row for row in target.rows if row.cell is not None]
        kept = [row for row in trained if row.key not in _omitted(settings, name, "rows")]
        if trained and not kept:
            raise PlanError(f"{where}.{name}.rows leaves {name} none of its trained rows "
                            f"({', '.join(row.key for row in trained)}): keep at least one")
        if not [(row.key, metric.key) for row in kept for metric in target.metrics
                if metric.applies_to(row) and row.key not in _omitted(settings, name, metric.key)] \
                and [metric for metric in target.metrics if any(metric.applies_to(row) for row in trained)]:
            raise PlanError(f"{where}.{name} leaves every column of {name} "
                            f"({', '.join(metric.key for metric in target.metrics)}) without a cell: "
                            f"keep at least one measured cell")


def _omissions(settings: dict[str, Any], target: str) -> dict[str, list[str]]:
    """``omit`` of one target: 'rows' or a metric key -> row keys."""
    return (settings.get("omit") or {}).get(target) or {}


def _omitted(settings: dict[str, Any], target: str, what: str) -> set[str]:
    return set(_omissions(settings, target).get(what) or ())


def omission_notes(settings: dict[str, Any], target: Target) -> list[str]:
    """The target's notes on what this scale leaves out (``omit``), in words."""
    labels = {m.key: m.label for m in target.metrics}
    return ["Left out at this scale to fit its budget: "
            + (f"the rows {', '.join(rows)}" if what == "rows" else f"{labels[what]} on {', '.join(rows)}") + "."
            for what, rows in _omissions(settings, target.name).items() if rows]


def plan_inputs(workflow_config: dict[str, Any], scale: str) -> dict[str, Any]:
    """The arguments of :func:`build_plan` from the workflow config (config/config.yaml): the scale's
    settings that decide what is trained and evaluated (not its job resources), and the data keys."""
    scales = workflow_config.get("scales") or {}
    if scale not in scales:
        raise PlanError(f"unknown scale '{scale}': choose one of {', '.join(scales)}")
    settings = {key: value for key, value in scales[scale].items() if key in PLAN_SETTINGS}
    return {"scale": scale, "settings": settings, "data": workflow_config.get("data") or {}}


# --- building the plan -------------------------------------------------------------------------------

class _Models:
    """The models of a plan: model id -> its training config and the paper cells it stands for."""

    def __init__(self, settings: dict[str, Any], data: dict[str, dict[str, Any]] | None) -> None:
        self.settings, self.data = settings, data
        self.entries: dict[str, PlanModel] = {}

    def realise(self, cell: Cell) -> str:
        """The id of the model that trains ``cell`` at this scale, added to the plan once."""
        config = training_config(cell, self.settings, self.data)
        name = model_id(config, cell)
        known = self.entries.setdefault(name, PlanModel(config))
        if known.config != config:
            differ = sorted(k for k in set(config) | set(known.config) if config.get(k) != known.config.get(k))
            raise PlanError(f"two different training configs share the model id '{name}' (they differ in "
                            f"{', '.join(differ)}); give them different datasets/architectures in the scale settings")
        if cell.paper_name not in known.cells:
            known.cells.append(cell.paper_name)
        return name


# The metrics also measured on model_best.pt when a run keeps its best weights (keep_best): the clean
# accuracy and PGD-20, the pair that Rice et al. (2020) report for best and final weights. The
# stronger attacks stay on the final weights only, the paper's protocol: AutoAttack on a second set
# of weights would double the dominant cost of a mini run (~60 of its ~100 attack minutes per model).
BEST_METRICS = ("nat", "pgd20")


def _result(model: str, attack: AttackSpec, weights: str = "final") -> Planned:
    return Planned(eval_path(model, attack.id, weights), attack.id, weights)


def _plan_row(target: Target, row: Row, models: _Models, fields: dict[str, str]) -> PlanRow:
    """One row: its label as this scale trains it, its model and, per metric, the result file and
    attack that give its number."""
    planned = PlanRow(row.key, realise(row.label, fields), row.group, row.x,
                      tuple(row.paper_ref or (target.name, row.key)), row.robustbench)
    if row.cell is None:
        return planned
    name = planned.model = models.realise(row.cell)
    planned.paper_arch = ARCH_TITLES.get(row.cell.arch, row.cell.arch)
    config = models.entries[name].config
    for metric in target.metrics:
        if not metric.applies_to(row) or row.key in _omitted(models.settings, target.name, metric.key):
            continue
        if metric.attack is None:
            planned.metrics[metric.key] = Planned(train_path(name), None)
        else:
            attack = realise_metric_attack(metric, row.eval_eps, models.settings, config)
            planned.metrics[metric.key] = _result(name, attack)
            if config.get("keep_best") and metric.key in BEST_METRICS:
                planned.best[metric.key] = _result(name, attack, BEST)
    if target.kind == "table":
        planned.sanity = [_result(name, realise_attack(a, models.settings, config))
                          for a in sanity_attacks(target.metrics, row.eval_eps)]
    return planned


def _plan_analysis(analysis: Analysis, models: _Models, fields: dict[str, str]) -> PlanAnalysis:
    name = models.realise(analysis.cell)
    return PlanAnalysis(analysis.kind, realise(analysis.label, fields), name, analysis.id, dict(analysis.options),
                        analysis.cli_args(), analysis_path(name, analysis.id))


def _plan_target(target: Target, scale: str, models: _Models) -> PlanTarget:
    """One target: whether this scale can build it, and its rows and analyses if so."""
    datasets = set(models.settings.get("datasets", {}))
    missing = sorted(target.datasets - datasets)
    # A partial target (one panel per dataset) keeps the panels of the datasets this scale has.
    available = not missing or (target.partial and bool(target.datasets & datasets))
    notes = list(target.notes) + omission_notes(models.settings, target)
    if missing and available:
        notes.append(f"Only {', '.join(sorted(target.datasets & datasets))} at scale '{scale}': "
                     f"it does not provide {', '.join(missing)}.")
    omitted = _omitted(models.settings, target.name, "rows")
    rows = [row for row in target.rows
            if (row.cell is None or row.cell.dataset not in missing) and row.key not in omitted]
    fields = _title_fields(target, rows if available else list(target.rows), models, available)
    entry = PlanTarget(target.kind, realise(target.title, fields), available, sorted(target.datasets), missing,
                       target.summary, notes,
                       [Column(m.key, m.label, m.field, m.unit, metric_source(m, models.settings))
                        for m in target.metrics])
    if available:
        entry.rows = [_plan_row(target, row, models, fields) for row in rows]
        entry.analyses = [_plan_analysis(analysis, models, fields) for analysis in target.analyses]
    return entry


def _title_fields(target: Target, rows: list[Row], models: _Models, available: bool) -> dict[str, str]:
    """The fields of the target's title and labels at this scale (freeadv.experiments.titles): what
    it trains for each paper dataset and architecture, the subset and budget of the target's models
    (other papers' recipes left out: their labels name their own schedule), and the methods of the
    rows it keeps. A target the scale cannot build keeps the design's wording."""
    if not available:
        return {**name_fields({}), "training": "", "methods": english_list(row.cell.title for row in rows if row.cell)}
    cells = [row.cell for row in rows if row.cell] + [a.cell for a in target.analyses]
    configs = [training_config(c, models.settings, models.data) for c in cells if c.recipe is None]
    return {**name_fields(models.settings), "training": training_phrase(configs),
            "methods": english_list(row.cell.title for row in rows if row.cell)}


def build_plan(scale: str, settings: dict[str, Any], data: dict[str, dict[str, Any]] | None = None) -> Plan:
    """Realise every target at one scale (:class:`.plan.Plan`); paths are relative to ``results/<scale>``."""
    models = _Models(settings, data)
    try:
        design = make_targets(settings.get("sweeps"))
    except ValueError as err:
        raise PlanError(f"scales.{scale}.{err}") from None
    keys = {metric.key for target in design.values() for metric in target.metrics}
    unknown = sorted(set((settings.get("attacks") or {}).get("all_images", ())) - keys)
    if unknown:
        raise PlanError(f"scales.{scale}.attacks.all_images names '{unknown[0]}', not a metric of any target "
                        f"(e.g. {', '.join(sorted(keys)[:6])})")
    check_omissions(settings, design, scale=scale)
    targets = {name: _plan_target(target, scale, models) for name, target in design.items()}
    return Plan(scale, settings, data or {}, models.entries, targets, cost_bench(targets, models.entries))


# The interleaved cost measurement (claim C3): rounds of every timed step, medians. 30 rounds of
# natural, Free at four m and 7-PGD take ~1 min for WRN-32 at width 1 on 2 CPU cores.
COST_BENCH_REPS, COST_BENCH_WARMUP = 30, 3


def cost_bench(targets: dict[str, PlanTarget], models: dict[str, PlanModel]) -> CostBench | None:
    """The ``freeadv bench`` job that times Table 1's methods interleaved in one process, on Table 1's
    architecture, batch and precision: natural, Free at each of the table's m, and its K-PGD.

    Why: on a machine whose speed drifts by tens of percent within an hour (this project's CPUs),
    the ratio of two training runs' wall times carries the drift between them; steps timed
    round-robin in one process do not. None when the scale has no Table 1."""
    table1 = targets.get("table1")
    rows = {row.key: row for row in (table1.trained_rows() if table1 else [])}
    if "natural" not in rows or "pgd7" not in rows:
        return None
    config = models[rows["natural"].model].config
    replays = sorted(models[row.model].config["replay"] for key, row in rows.items() if key.startswith("free_m"))
    args = ["--arch", config["arch"], *(["--width", str(config["width"])] if config.get("width") else []),
            "--dataset", config["dataset"], "--batch-size", str(config.get("batch_size", defaults()["batch_size"])),
            "--amp", "bf16" if config.get("amp") == "bf16" else "off", "--methods", "natural,free,pgd7",
            "--replay", ",".join(map(str, replays)), "--no-eval",
            "--reps", str(COST_BENCH_REPS), "--warmup", str(COST_BENCH_WARMUP)]
    return CostBench(cost_bench_path(), args, rows["natural"].model)
