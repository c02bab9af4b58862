"""The plan: what one scale trains, attacks and reads, as typed records.

:func:`freeadv.experiments.scales.build_plan` makes a :class:`Plan`; ``plan.json`` is its
:meth:`Plan.to_json`, and every reader (the Snakefile, tables, figures, curves, claims, cost,
estimate) gets it back through :meth:`Plan.from_json` and reads attributes. A renamed field so
fails where it is read, at import or in a test, not as a silently missing dict key in a table.

File paths are relative to ``results/<scale>`` (:mod:`.layout`). The JSON form is the one the
workflow has always written (sorted keys; a row's ``paper_arch``, ``sanity`` and ``best`` only
where they apply), so committed plans read back and regenerate byte-identically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .layout import train_path

FINAL, BEST = "final", "best"   # the weights a result describes: model.pt, or model_best.pt (keep_best)


@dataclass(frozen=True)
class Planned:
    """One result file a cell reads: an attack's eval record, or (``attack`` None) the training record."""
    file: str
    attack: str | None
    weights: str = FINAL

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "attack": self.attack}
        return out if self.weights == FINAL else {**out, "weights": self.weights}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Planned:
        return cls(data["file"], data.get("attack"), data.get("weights", FINAL))


@dataclass(frozen=True)
class Column:
    """A metric column of a target as this scale measures it; ``source`` says where its number comes from."""
    key: str
    label: str
    field: str
    unit: str
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "field": self.field, "unit": self.unit, "source": self.source}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Column:
        return cls(data["key"], data["label"], data["field"], data["unit"], data["source"])


@dataclass
class PlanRow:
    """One row of a target: its label at this scale, its model (None: a paper-only row) and, per
    metric key, the result that gives its number. ``sanity`` (tables only) lists the eval records
    of its sanity checks; ``best`` the metrics also measured on the best weights (keep_best)."""
    key: str
    label: str
    group: str
    x: Any
    paper_ref: tuple[str, str]
    robustbench: str | None
    model: str | None = None
    metrics: dict[str, Planned] = field(default_factory=dict)
    paper_arch: str | None = None
    sanity: list[Planned] | None = None
    best: dict[str, Planned] = field(default_factory=dict)

    def evaluations(self) -> list[Planned]:
        """Every attack result the row reads: metric cells, sanity checks and best-weights metrics."""
        planned = [*self.metrics.values(), *(self.sanity or ()), *self.best.values()]
        return [p for p in planned if p.attack is not None]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "label": self.label, "group": self.group, "x": self.x,
                               "paper_ref": list(self.paper_ref), "robustbench": self.robustbench,
                               "model": self.model, "metrics": {k: p.to_json() for k, p in self.metrics.items()}}
        if self.paper_arch is not None:
            out["paper_arch"] = self.paper_arch
        if self.sanity is not None:
            out["sanity"] = [p.to_json() for p in self.sanity]
        if self.best:
            out["best"] = {k: p.to_json() for k, p in self.best.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanRow:
        sanity = data.get("sanity")
        return cls(data["key"], data["label"], data.get("group", ""), data.get("x"), tuple(data["paper_ref"]),
                   data.get("robustbench"), data.get("model"),
                   {k: Planned.from_json(p) for k, p in data.get("metrics", {}).items()}, data.get("paper_arch"),
                   None if sanity is None else [Planned.from_json(p) for p in sanity],
                   {k: Planned.from_json(p) for k, p in (data.get("best") or {}).items()})


@dataclass(frozen=True)
class PlanAnalysis:
    """A ``freeadv analysis`` job on one model (loss surfaces, adversarial examples)."""
    kind: str
    label: str
    model: str
    id: str
    options: dict[str, Any]
    args: list[str]
    file: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "model": self.model, "id": self.id,
                "options": dict(self.options), "args": list(self.args), "file": self.file}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanAnalysis:
        return cls(data["kind"], data["label"], data["model"], data["id"], dict(data.get("options", {})),
                   list(data.get("args", [])), data["file"])


@dataclass
class PlanTarget:
    """A table or figure at this scale: whether the scale can build it, and what it reads."""
    kind: str
    title: str
    available: bool
    datasets: list[str]
    missing_datasets: list[str]
    summary: str
    notes: list[str]
    metrics: list[Column]
    rows: list[PlanRow] = field(default_factory=list)
    analyses: list[PlanAnalysis] = field(default_factory=list)

    def files(self) -> list[str]:
        """Every result file (relative to results/<scale>) the target reads."""
        files = [p.file for row in self.rows for p in row.metrics.values()]
        files += [p.file for row in self.rows for p in row.evaluations()]
        files += [train_path(row.model) for row in self.rows if row.model]
        files += [a.file for a in self.analyses]
        return sorted(set(files))

    def trained_rows(self) -> list[PlanRow]:
        return [row for row in self.rows if row.model]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "available": self.available, "datasets": list(self.datasets),
                "missing_datasets": list(self.missing_datasets), "summary": self.summary, "notes": list(self.notes),
                "metrics": [c.to_json() for c in self.metrics], "rows": [r.to_json() for r in self.rows],
                "analyses": [a.to_json() for a in self.analyses]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanTarget:
        return cls(data.get("kind", "table"), data.get("title", ""), bool(data.get("available", False)),
                   list(data.get("datasets", [])), list(data.get("missing_datasets", [])), data.get("summary", ""),
                   list(data.get("notes", [])), [Column.from_json(c) for c in data.get("metrics", [])],
                   [PlanRow.from_json(r) for r in data.get("rows", [])],
                   [PlanAnalysis.from_json(a) for a in data.get("analyses", [])])


@dataclass
class PlanModel:
    """A model the scale trains: its resolved-by-the-plan training keys and the paper cells it stands for."""
    config: dict[str, Any]
    cells: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"config": dict(self.config), "cells": list(self.cells)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanModel:
        return cls(dict(data["config"]), list(data.get("cells", [])))


@dataclass(frozen=True)
class CostBench:
    """The ``freeadv bench`` job that times Table 1's methods interleaved in one process."""
    file: str
    args: list[str]
    model: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "args": list(self.args), "model": self.model}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CostBench:
        return cls(data["file"], list(data.get("args", [])), data.get("model", ""))


@dataclass
class Plan:
    """Every target of the paper's design realised at one scale, and the models they need."""
    scale: str
    settings: dict[str, Any]
    data: dict[str, Any]
    models: dict[str, PlanModel]
    targets: dict[str, PlanTarget]
    cost_bench: CostBench | None = None

    def target(self, name: str, kind: str) -> PlanTarget:
        """The plan's table or figure ``name``; a UserError naming the plan's targets of that kind otherwise."""
        found = self.targets.get(name)
        if found is None or found.kind != kind:
            names = [n for n, t in self.targets.items() if t.kind == kind]
            raise UserError(f"the plan of scale '{self.scale}' has no {kind} '{name}': choose one of {', '.join(names)}")
        return found

    def available_targets(self) -> list[str]:
        return [name for name, target in self.targets.items() if target.available]

    def target_files(self, name: str) -> list[str]:
        return self.targets[name].files()

    def config(self, model: str) -> dict[str, Any]:
        """The training keys of one of the plan's models."""
        return self.models[model].config

    def unavailable_message(self, name: str) -> str:
        datasets = self.settings.get("datasets", {})
        return (f"target '{name}' needs the {', '.join(self.targets[name].missing_datasets)} dataset(s), which "
                f"scale '{self.scale}' does not provide (scales.{self.scale}.datasets maps: "
                f"{', '.join(datasets) or 'nothing'}); run it at a scale that does, e.g. --config scale=paper or smoke")

    def to_json(self) -> dict[str, Any]:
        out = {"scale": self.scale, "settings": self.settings, "data": self.data,
               "models": {name: m.to_json() for name, m in self.models.items()},
               "targets": {name: t.to_json() for name, t in self.targets.items()}}
        return out if self.cost_bench is None else {**out, "cost_bench": self.cost_bench.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        cost = data.get("cost_bench")
        return cls(data.get("scale", ""), dict(data.get("settings") or {}), dict(data.get("data") or {}),
                   {name: PlanModel.from_json(m) for name, m in data["models"].items()},
                   {name: PlanTarget.from_json(t) for name, t in data["targets"].items()},
                   None if cost is None else CostBench.from_json(cost))

    @classmethod
    def coerce(cls, plan: Plan | dict[str, Any]) -> Plan:
        """A Plan from a Plan or from its JSON form (a dict read from plan.json)."""
        return plan if isinstance(plan, Plan) else cls.from_json(plan)


def load_plan(path: str | Path) -> Plan:
    """A plan.json, validated (freeadv.schemas) and read: one line naming the file and the key otherwise."""
    from ..schemas import read_checked   # jsonschema: only for reading a plan, not at the workflow's parse
    return Plan.from_json(read_checked(path, "plan", label="plan file"))
