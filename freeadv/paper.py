"""The paper's experiments and numbers, and how one scale of the workflow realises them.

Three layers, each a pure function of the one before (no torch import here, so the Snakefile can
load this module at parse time):

1. *The paper's design* (:func:`make_targets`): every table and figure as rows of abstract cells
   (dataset, architecture, method, m, eps, ...) and columns of metrics (an attack and the field of
   its result that gives the number). Dataset and architecture names here are the paper's.
2. *The paper's numbers* (:func:`paper_values`): ``paper_values.csv``, transcribed once.
3. *A scale* (:func:`build_plan`): the workflow config of one scale (paper / mini / smoke) maps
   every paper dataset and architecture onto what is actually trained (e.g. CIFAR-10 WRN-32-10 ->
   CIFAR-10 (JPEG) small_cnn at mini), caps attacks if asked, and so turns each cell into a
   concrete training config and a *model id* named after that config. Two cells that realise
   the same config share one model, trained once.

The plan (a JSON-able dict) is what both the Snakefile (to build the DAG) and ``freeadv table`` /
``freeadv figure`` (to find the result files) read, so the two can never disagree.

Result layout of a scale, under ``results/<scale>/``::

    runs/<model_id>/train.json, model.pt        (freeadv train)
    runs/<model_id>/evals/<attack_id>.json      (freeadv attack)
    runs/<model_id>/analysis/<analysis_id>.json (freeadv adv-examples / loss-surface)
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

PAPER_VALUES_CSV = Path(__file__).with_name("paper_values.csv")

PAPER_DATASETS = ("cifar10", "cifar100", "imagenet")
PAPER_ARCHS = ("wrn32_10", "wrn34_10", "resnet50", "resnet101", "resnet152")
DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet",
                  "cifar10-jpeg": "CIFAR-10 (JPEG q75)", "synthetic": "synthetic"}
ARCH_TITLES = {"wrn32_10": "WRN-32-10", "wrn34_10": "WRN-34-10", "resnet50": "ResNet-50",
               "resnet101": "ResNet-101", "resnet152": "ResNet-152", "small_cnn": "small CNN",
               "preact_resnet18": "PreAct ResNet-18"}


class PlanError(ValueError):
    """A scale's settings cannot realise the paper's design; one line saying what to change."""


def _num(value: float) -> str:
    """8.0 -> '8', 2.5 -> '2.5': numbers as they appear in ids and labels."""
    return f"{value:g}"


# --- 1. The paper's design ----------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One trained model as the paper describes it (dataset and architecture in the paper's names)."""
    dataset: str                       # cifar10 | cifar100 | imagenet
    arch: str                          # wrn32_10 | wrn34_10 | resnet50 | resnet101 | resnet152
    method: str                        # natural | free | pgd | fgsm_rs
    replay: int = 1                    # m (free; natural with replay for Figure 1)
    eps: float | None = None           # training eps in pixel units; None for natural training
    pgd_steps: int | None = None       # K of K-PGD training
    pgd_step_size: float | None = None
    batch_size: int | None = None      # None: the dataset's default (CIFAR 128, ImageNet 256)
    seed: int = 0

    @property
    def title(self) -> str:
        if self.method == "natural":
            name = "Natural" if self.replay == 1 else f"Natural m={self.replay}"
        elif self.method == "free":
            name = f"Free m={self.replay}"
        elif self.method == "pgd":
            name = f"{self.pgd_steps}-PGD"
        else:
            name = "FGSM-RS"
        return name


@dataclass(frozen=True)
class Attack:
    """An evaluation attack in the paper's units (pixel /255). ``eps=None``: the row's eval eps."""
    kind: str                          # pgd | cw | bim | noise | none
    steps: int = 0
    eps: float | None = None
    step_size: float | None = None
    restarts: int = 1

    _ID = re.compile(r"^(?P<kind>pgd|cw|bim)(?P<steps>\d+)-eps(?P<eps>[0-9.]+)-step(?P<step>[0-9.]+)"
                     r"(?:-r(?P<restarts>\d+))?$")
    _NOISE_ID = re.compile(r"^noise-eps(?P<eps>[0-9.]+)$")

    @property
    def id(self) -> str:
        if self.kind == "none":
            return "clean"
        if self.kind == "noise" and self.eps is not None:
            return f"noise-eps{_num(self.eps)}"
        if self.eps is None or self.step_size is None:
            raise PlanError(f"attack {self.kind}-{self.steps} has no eps/step size yet; bind it to a row first")
        restarts = f"-r{self.restarts}" if self.restarts > 1 else ""
        return f"{self.kind}{self.steps}-eps{_num(self.eps)}-step{_num(self.step_size)}{restarts}"

    @classmethod
    def parse(cls, attack_id: str) -> "Attack":
        """Inverse of :attr:`id`: ``pgd20-eps8-step2-r10`` -> Attack('pgd', 20, 8, 2, 10)."""
        if attack_id == "clean":
            return cls("none")
        noise = cls._NOISE_ID.match(attack_id)
        if noise:
            return cls("noise", 0, float(noise["eps"]))
        match = cls._ID.match(attack_id)
        if not match:
            raise PlanError(f"attack id '{attack_id}' is not of the form clean or "
                            f"<pgd|cw|bim><steps>-eps<E>-step<S>[-r<restarts>] or noise-eps<E>, e.g. pgd20-eps8-step2-r10")
        return cls(match["kind"], int(match["steps"]), float(match["eps"]), float(match["step"]),
                   int(match["restarts"] or 1))

    def cli_args(self) -> list[str]:
        """Arguments of ``freeadv attack`` that run this attack."""
        if self.kind == "none":
            return ["--attack", "none", "--steps", "0", "--restarts", "1"]
        if self.kind == "noise":
            return ["--attack", "noise", "--steps", "0", "--restarts", "1", "--eps", _num(self.eps)]
        return ["--attack", self.kind, "--steps", str(self.steps), "--restarts", str(self.restarts),
                "--eps", _num(self.eps), "--step-size", _num(self.step_size)]

    def describe(self) -> str:
        """The paper's wording, e.g. 'PGD-20, 10 restarts, eps 8, step 2'."""
        if self.kind == "none":
            return "no attack (clean test images)"
        if self.kind == "noise":
            return "uniform random noise" + ("" if self.eps is None else f", eps {_num(self.eps)}")
        text = f"{self.kind.upper()}-{self.steps}"
        if self.restarts > 1:
            text += f", {self.restarts} restarts"
        eps = "eps = training eps" if self.eps is None else f"eps {_num(self.eps)}"
        return f"{text}, {eps}, step {_num(self.step_size)}"

    def bind(self, eps: float | None) -> "Attack":
        return self if self.eps is not None or self.kind == "none" else replace(self, eps=eps)


@dataclass(frozen=True)
class Metric:
    """One column: the number ``field`` of an attack's result (or of the training summary)."""
    key: str                           # column key, as in paper_values.csv
    label: str                         # column title, as in the paper
    field: str                         # clean_acc | robust_acc | train_minutes
    attack: Attack | None = None       # None: read train.json

    @property
    def unit(self) -> str:
        return "minutes" if self.field == "train_minutes" else "percent"

    @property
    def source(self) -> str:
        """Where the number comes from, in words (for table notes)."""
        if self.attack is None:
            return "training time (train.json)"
        if self.field == "clean_acc":
            job = "" if self.attack.kind == "none" else f" (the clean pass of the {self.attack.describe()} job)"
            return f"accuracy on the clean test images{job}"
        return f"accuracy under {self.attack.describe()}"


@dataclass(frozen=True)
class Row:
    key: str                           # row key, as in paper_values.csv
    label: str
    cell: Cell | None                  # None: a number the paper reports but nobody trains here
    eval_eps: float | None = None      # eps for attacks without their own (Figure 4: the training eps)
    paper_ref: tuple[str, str] | None = None   # (table, row) holding its paper values; default its own
    group: str = ""                    # curve / panel of a figure row
    x: float | None = None             # its x value in a figure (m in Figure 1, eps in Figure 4)


@dataclass(frozen=True)
class Analysis:
    """A figure-data job on one model: ``freeadv adv-examples`` or ``freeadv loss-surface``."""
    kind: str                          # adv-examples | loss-surface
    cell: Cell
    label: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def id(self) -> str:
        o = dict(self.options)
        if self.kind == "adv-examples":
            return f"adv-examples-bim{o['steps']}-eps{_num(o['eps'])}-step{_num(o['step_size'])}-last{o['last']}"
        return f"loss-surface-{o['plane']}-img{o['images']}-grid{o['grid']}-span{_num(o['span'])}"

    def cli_args(self) -> list[str]:
        args = [self.kind]
        for key, value in self.options:
            args += [f"--{key.replace('_', '-')}", str(value)]
        return args


@dataclass(frozen=True)
class Target:
    name: str
    kind: str                          # table | figure
    title: str
    rows: tuple[Row, ...] = ()
    metrics: tuple[Metric, ...] = ()
    analyses: tuple[Analysis, ...] = ()
    summary: str | None = None         # 'mean_std': add mean and std rows over the rows (trials)
    notes: tuple[str, ...] = ()
    partial: bool = False              # may be drawn from the datasets a scale has (Figure 1's panels)

    @property
    def datasets(self) -> set[str]:
        cells = [r.cell for r in self.rows if r.cell] + [a.cell for a in self.analyses]
        return {c.dataset for c in cells}


# Attacks of the paper. CIFAR: eps 8, step 2 (Madry et al.); ImageNet: step 1, eps = training eps.
def _cifar(kind: str, steps: int, restarts: int = 1) -> Attack:
    return Attack(kind, steps, 8.0, 2.0, restarts)


def _imagenet(steps: int, eps: float | None) -> Attack:
    return Attack("pgd", steps, eps, 1.0)


CLEAN = Attack("none")

# Sanity evaluations run on every table model (freeadv.sanity reads them): uniform noise of the
# row's eps, whose accuracy a working gradient attack must not exceed, and a PGD-20 of a very large
# budget, which must reach ~0% unless gradients are masked.
LARGE_EPS_PGD = Attack("pgd", 20, 64.0, 8.0)


def sanity_attacks(metrics: tuple[Metric, ...], eval_eps: float | None) -> list[Attack]:
    eps = next((m.attack.bind(eval_eps).eps for m in metrics
                if m.attack is not None and m.attack.kind in ("pgd", "cw")), None)
    return ([Attack("noise", 0, eps)] if eps is not None else []) + [LARGE_EPS_PGD]


def _nat(attack: Attack) -> Metric:
    """Natural accuracy, read from the clean pass of an attack job the table runs anyway."""
    return Metric("nat", "Natural images", "clean_acc", attack)


def _robust(key: str, label: str, attack: Attack) -> Metric:
    return Metric(key, label, "robust_acc", attack)


TRAIN_MIN = Metric("train_min", "Train time (min)", "train_minutes", None)

PAPER_SWEEPS: dict[str, list] = {
    "figure1_replays": [1, 2, 4, 6, 8, 10, 12, 16],   # m = 1 is natural training
    "figure4_eps": [2, 3, 4, 5, 6, 7],
    "figure4_replays": [2, 4, 6, 8],
    "trial_seeds": [0, 1, 2, 3, 4],
}


def natural(dataset: str, arch: str, replay: int = 1) -> Cell:
    return Cell(dataset, arch, "natural", replay=replay)


def free(dataset: str, arch: str, m: int, eps: float, **kw: Any) -> Cell:
    return Cell(dataset, arch, "free", replay=m, eps=float(eps), **kw)


def kpgd(dataset: str, arch: str, steps: int, step_size: float, eps: float) -> Cell:
    return Cell(dataset, arch, "pgd", eps=float(eps), pgd_steps=steps, pgd_step_size=float(step_size))


def make_targets(sweeps: dict[str, list] | None = None) -> dict[str, Target]:
    """Every table and figure of the paper. ``sweeps`` may shorten the figure sweeps (smoke scale)."""
    s = {**PAPER_SWEEPS, **(sweeps or {})}
    wrn, c10, c100, inet = "wrn32_10", "cifar10", "cifar100", "imagenet"
    pgd20, pgd100, cw100 = _cifar("pgd", 20), _cifar("pgd", 100), _cifar("cw", 100)
    pgd20_r10, pgd20_r20 = _cifar("pgd", 20, 10), _cifar("pgd", 20, 20)

    def imagenet_metrics(eps: float, train_minutes: bool = False) -> tuple[Metric, ...]:
        metrics = (_nat(_imagenet(10, eps)), _robust("pgd10", "PGD-10", _imagenet(10, eps)),
                   _robust("pgd50", "PGD-50", _imagenet(50, eps)), _robust("pgd100", "PGD-100", _imagenet(100, eps)))
        return metrics + ((TRAIN_MIN,) if train_minutes else ())

    targets = [
        Target("table1", "table", "Table 1: CIFAR-10, WRN-32-10, eps 8: accuracy and robustness",
               rows=(Row("natural", "Natural", natural(c10, wrn)),
                     *(Row(f"free_m{m}", f"Free m={m}", free(c10, wrn, m, 8)) for m in (2, 4, 8, 10)),
                     Row("pgd7", "7-PGD trained", kpgd(c10, wrn, 7, 2, 8))),
               metrics=(_nat(pgd20), _robust("pgd20", "PGD-20", pgd20), _robust("pgd100", "PGD-100", pgd100),
                        _robust("cw100", "CW-100", cw100), _robust("pgd20_r10", "10 restart PGD-20", pgd20_r10),
                        TRAIN_MIN)),
        Target("table2", "table", "Table 2: CIFAR-100, WRN-32-10, eps 8: accuracy and robustness",
               rows=(Row("natural", "Natural", natural(c100, wrn)),
                     *(Row(f"free_m{m}", f"Free m={m}", free(c100, wrn, m, 8)) for m in (2, 4, 6, 8, 10)),
                     Row("pgd2", "2-PGD trained (step 4)", kpgd(c100, wrn, 2, 4, 8)),
                     Row("pgd7", "7-PGD trained", kpgd(c100, wrn, 7, 2, 8))),
               metrics=(_nat(pgd20), _robust("pgd20", "PGD-20", pgd20), _robust("pgd100", "PGD-100", pgd100),
                        TRAIN_MIN),
               notes=("The paper does not give the 2-PGD step size; we use 4/255 so that K x step = eps, "
                      "as its ImageNet 2-PGD does (step 2, eps 4).",)),
        Target("table3", "table", "Table 3: ImageNet, ResNet-50, eps 2: accuracy and robustness",
               rows=(Row("natural", "Natural", natural(inet, "resnet50")),
                     *(Row(f"free_m{m}", f"Free m={m}", free(inet, "resnet50", m, 2)) for m in (2, 4, 6, 8))),
               metrics=imagenet_metrics(2)),
        Target("table4", "table", "Table 4: ImageNet, ResNet-50, eps 4: Free m=4 vs 2-PGD",
               rows=(Row("free_m4", "RN50 - Free m=4", free(inet, "resnet50", 4, 4)),
                     Row("pgd2", "RN50 - 2-PGD trained", kpgd(inet, "resnet50", 2, 2, 4))),
               metrics=imagenet_metrics(4, train_minutes=True)),
        Target("table5", "table", "Table 5: ImageNet, Free m=4, eps 4: ResNets of growing capacity",
               rows=tuple(Row(a, ARCH_TITLES[a], free(inet, a, 4, 4)) for a in ("resnet50", "resnet101", "resnet152")),
               metrics=imagenet_metrics(4)),
        Target("yopo", "table", "Comparison with YOPO: CIFAR-10, WRN-34-10, Free m=10, batch 256",
               rows=(Row("free_m10_bs256", "WRN-34-10 Free m=10, batch 256", free(c10, "wrn34_10", 10, 8, batch_size=256)),
                     Row("yopo_5_3", "YOPO 5-3 (reported by Zhang et al. 2019; not trained here)", None)),
               metrics=(_nat(pgd20), _robust("pgd20", "PGD-20", pgd20))),
        Target("trials", "table", "Trials of Free m=8 on CIFAR-10 over training seeds (the paper: five, 0-4)",
               rows=tuple(Row(f"seed{seed}", f"Free m=8, seed {seed}", free(c10, wrn, 8, 8, seed=seed))
                          for seed in s["trial_seeds"]),
               metrics=(_nat(pgd20_r20), _robust("pgd20_r20", "20 restart PGD-20", pgd20_r20)),
               summary="mean_std",
               notes=("mean and sample standard deviation (ddof=1) over the seeds",)),
        Target("fast", "table", "FGSM-RS vs Free m=8 vs 7-PGD on CIFAR-10, WRN-32-10, eps 8",
               rows=(Row("fgsm_rs", "FGSM-RS (Wong et al. 2020; not in the paper)", Cell(c10, wrn, "fgsm_rs", eps=8.0)),
                     Row("free_m8", "Free m=8", free(c10, wrn, 8, 8), paper_ref=("table1", "free_m8")),
                     Row("pgd7", "7-PGD trained", kpgd(c10, wrn, 7, 2, 8), paper_ref=("table1", "pgd7"))),
               metrics=(_nat(pgd20), _robust("pgd20", "PGD-20", pgd20), TRAIN_MIN),
               notes=("Paper values of Free m=8 and 7-PGD are Table 1's.",)),
        Target("figure1", "figure", "Figure 1: natural training with minibatch replay: validation accuracy vs m",
               rows=tuple(Row(f"{d}_m{m}", f"m={m}", natural(d, wrn, m), group=d, x=m)
                          for d in (c10, c100) for m in s["figure1_replays"])
               + tuple(Row(f"{d}_pgd7", "7-PGD trained", kpgd(d, wrn, 7, 2, 8), group=d) for d in (c10, c100)),
               metrics=(Metric("nat", "Natural images", "clean_acc", CLEAN),), partial=True),
        Target("figure2", "figure", "Figure 2: BIM adversarial examples (eps 30, step 2, 50 iterations) "
                                    "of the last 9 CIFAR-10 test images",
               analyses=tuple(Analysis("adv-examples", cell, label, (("eps", 30), ("step_size", 2), ("steps", 50),
                                                                     ("last", 9)))
                              for cell, label in ((kpgd(c10, wrn, 7, 2, 8), "7-PGD trained"),
                                                  (free(c10, wrn, 8, 8), "Free m=8")))),
        Target("figure3", "figure", "Figure 3: cross-entropy loss surfaces of the first 2 CIFAR-10 test images",
               analyses=tuple(Analysis("loss-surface", cell, label, (("plane", plane), ("images", 2), ("grid", 21),
                                                                     ("span", 16)))
                              for plane in ("adv-rad", "rad-rad")
                              for cell, label in ((free(c10, wrn, 8, 8), "Free m=8"),
                                                  (kpgd(c10, wrn, 7, 2, 8), "7-PGD trained")))),
        Target("figure4", "figure", "Figure 4: ImageNet ResNet-50: clean and PGD-100 accuracy vs training eps",
               rows=tuple(Row(f"natural_eps{_num(e)}", "Natural", natural(inet, "resnet50"), eval_eps=float(e),
                              group="natural", x=e) for e in s["figure4_eps"])
               + tuple(Row(f"free_m{m}_eps{_num(e)}", f"Free m={m}", free(inet, "resnet50", m, e), eval_eps=float(e),
                           group=f"free_m{m}", x=e) for m in s["figure4_replays"] for e in s["figure4_eps"]),
               metrics=(_nat(_imagenet(100, None)), _robust("pgd100", "PGD-100", _imagenet(100, None))),
               notes=("Attacks use eps = the training eps (the natural model: each eps of the sweep) and step 1.",)),
    ]
    return {t.name: t for t in targets}


TARGETS: dict[str, Target] = make_targets()
TABLES = tuple(name for name, t in TARGETS.items() if t.kind == "table")
FIGURES = tuple(name for name, t in TARGETS.items() if t.kind == "figure")


# --- 2. The paper's numbers ---------------------------------------------------------------------

@lru_cache(maxsize=1)
def _paper_rows() -> tuple[tuple[str, str, str, float, str, str], ...]:
    with PAPER_VALUES_CSV.open(newline="") as handle:
        return tuple((r["table"], r["row"], r["metric"], float(r["value"]), r["unit"], r["source"])
                     for r in csv.DictReader(handle))


def paper_values():
    """All transcribed numbers as a DataFrame (table, row, metric, value, unit, source)."""
    import pandas as pd
    return pd.DataFrame(list(_paper_rows()), columns=["table", "row", "metric", "value", "unit", "source"])


def paper_value(table: str, row: str, metric: str) -> float | None:
    """The paper's number for one cell, or None where the paper has none."""
    for t, r, m, value, _, _ in _paper_rows():
        if (t, r, m) == (table, row, metric):
            return value
    return None


# --- 3. A scale: realised models, attacks and result paths --------------------------------------

def model_id(config: dict[str, Any], cell: Cell) -> str:
    """A readable name of a realised training config, e.g. ``cifar10-wrn32_10-free-m8-eps8-s0``.

    It names what is actually trained (dataset and architecture after the scale's mapping) and every
    setting in which the paper's models differ; settings shared by all models of a scale (schedule,
    subset sizes) are not in it, and :func:`build_plan` checks that no two different configs meet
    under one id.
    """
    arch = config["arch"] + (f"-w{config['width']}" if config.get("width") else "")
    if cell.method == "natural":
        method = "natural" + (f"-m{cell.replay}" if cell.replay > 1 else "")
    elif cell.method == "free":
        method = f"free-m{cell.replay}"
    elif cell.method == "pgd":
        method = f"pgd{cell.pgd_steps}-step{_num(cell.pgd_step_size)}"
    else:
        method = cell.method
    parts = [config["dataset"], arch, method]
    if cell.eps is not None:
        parts.append(f"eps{_num(cell.eps)}")
    if cell.batch_size is not None:
        parts.append(f"bs{cell.batch_size}")
    parts.append(f"s{cell.seed}")
    return "-".join(parts)


def _known_train_keys() -> set[str]:
    from .config import DEFAULTS   # light: yaml only
    return set(DEFAULTS)


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
    config: dict[str, Any] = {"dataset": dataset, **architectures[cell.arch]}
    config.update((data or {}).get(dataset, {}))
    config.update(settings.get("train", {}))
    config.update(settings.get("train_by_dataset", {}).get(dataset, {}))
    config["method"] = cell.method
    config["seed"] = cell.seed
    if cell.method in ("free", "natural"):
        config["replay"] = cell.replay
    if cell.eps is not None:
        config["eps"] = cell.eps
    if cell.method == "pgd":
        config["pgd_steps"], config["pgd_step_size"] = cell.pgd_steps, cell.pgd_step_size
    if cell.batch_size is not None:
        config["batch_size"] = cell.batch_size
    config = {k: v for k, v in config.items() if v is not None}   # None: the library's default
    unknown = sorted(set(config) - _known_train_keys())
    if unknown:
        raise PlanError(f"training key '{unknown[0]}' (from the scale's settings) is not a freeadv config key; "
                        f"see freeadv/config.py DEFAULTS")
    return dict(sorted(config.items()))


def realise_attack(attack: Attack, settings: dict[str, Any]) -> Attack:
    """The attack a scale runs for one of the paper's: the scale may cap steps and restarts (smoke)."""
    caps = settings.get("attacks") or {}
    steps, restarts = attack.steps, attack.restarts
    if caps.get("max_steps") and attack.kind != "none":
        steps = min(steps, caps["max_steps"])
    if caps.get("max_restarts"):
        restarts = min(restarts, caps["max_restarts"])
    return replace(attack, steps=steps, restarts=restarts)


def eval_path(model: str, attack_id: str) -> str:
    return f"runs/{model}/evals/{attack_id}.json"


def train_path(model: str) -> str:
    return f"runs/{model}/train.json"


def analysis_path(model: str, analysis_id: str) -> str:
    return f"runs/{model}/analysis/{analysis_id}.json"


PLAN_SETTINGS = ("datasets", "architectures", "train", "train_by_dataset", "attacks", "sweeps")


def plan_inputs(workflow_config: dict[str, Any], scale: str) -> dict[str, Any]:
    """The arguments of :func:`build_plan` from the workflow config (config/config.yaml): the scale's
    settings that decide what is trained and evaluated (not its job resources), and the data keys."""
    scales = workflow_config.get("scales") or {}
    if scale not in scales:
        raise PlanError(f"unknown scale '{scale}': choose one of {', '.join(scales)}")
    settings = {key: value for key, value in scales[scale].items() if key in PLAN_SETTINGS}
    return {"scale": scale, "settings": settings, "data": workflow_config.get("data") or {}}


def build_plan(scale: str, settings: dict[str, Any], data: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Realise every target at one scale. Returns a JSON-able dict:

    ``models``: model id -> {config, cells (paper titles)}; ``targets``: name -> {available,
    missing_datasets, rows[{key, label, model, group, paper_ref, metrics{key: {file, attack}}}],
    metrics[...], analyses[...]}. Paths are relative to ``results/<scale>``.
    """
    targets = make_targets(settings.get("sweeps"))
    datasets = settings.get("datasets", {})
    models: dict[str, dict[str, Any]] = {}

    def realise(cell: Cell) -> str:
        config = training_config(cell, settings, data)
        name = model_id(config, cell)
        known = models.get(name)
        if known is None:
            models[name] = known = {"config": config, "cells": []}
        elif known["config"] != config:
            differ = sorted(k for k in set(config) | set(known["config"]) if config.get(k) != known["config"].get(k))
            raise PlanError(f"two different training configs share the model id '{name}' (they differ in "
                            f"{', '.join(differ)}); give them different datasets/architectures in the scale settings")
        paper_name = f"{DATASET_TITLES[cell.dataset]} {ARCH_TITLES[cell.arch]} {cell.title}" + (
            f" eps {_num(cell.eps)}" if cell.eps is not None else "") + (f" seed {cell.seed}" if cell.seed else "")
        if paper_name not in known["cells"]:
            known["cells"].append(paper_name)
        return name

    planned: dict[str, Any] = {}
    for target in targets.values():
        missing = sorted(target.datasets - set(datasets))
        # A partial target (one panel per dataset) keeps the panels of the datasets this scale has.
        available = not missing or (target.partial and bool(target.datasets & set(datasets)))
        notes = list(target.notes) + ([f"Only {', '.join(sorted(target.datasets & set(datasets)))} at scale "
                                       f"'{scale}': it does not provide {', '.join(missing)}."]
                                      if missing and available else [])
        entry: dict[str, Any] = {
            "kind": target.kind, "title": target.title, "available": available,
            "datasets": sorted(target.datasets), "missing_datasets": missing, "summary": target.summary,
            "notes": notes,
            "metrics": [{"key": m.key, "label": m.label, "field": m.field, "unit": m.unit, "source": m.source}
                        for m in target.metrics],
            "rows": [], "analyses": [],
        }
        if available:
            for row in target.rows:
                if row.cell is not None and row.cell.dataset in missing:
                    continue
                planned_row: dict[str, Any] = {"key": row.key, "label": row.label, "group": row.group, "x": row.x,
                                               "paper_ref": list(row.paper_ref or (target.name, row.key)),
                                               "model": None, "metrics": {}}
                if row.cell is not None:
                    name = realise(row.cell)
                    planned_row["model"] = name
                    for metric in target.metrics:
                        if metric.attack is None:
                            planned_row["metrics"][metric.key] = {"file": train_path(name), "attack": None}
                        else:
                            attack = realise_attack(metric.attack.bind(row.eval_eps), settings)
                            planned_row["metrics"][metric.key] = {"file": eval_path(name, attack.id),
                                                                  "attack": attack.id}
                    if target.kind == "table":
                        planned_row["sanity"] = [
                            {"file": eval_path(name, a.id), "attack": a.id}
                            for a in (realise_attack(a, settings) for a in sanity_attacks(target.metrics, row.eval_eps))]
                entry["rows"].append(planned_row)
            for analysis in target.analyses:
                name = realise(analysis.cell)
                entry["analyses"].append({"kind": analysis.kind, "label": analysis.label, "model": name,
                                          "id": analysis.id, "options": dict(analysis.options),
                                          "args": analysis.cli_args(),
                                          "file": analysis_path(name, analysis.id)})
        planned[target.name] = entry
    return {"scale": scale, "settings": settings, "data": data or {}, "models": models, "targets": planned}


def target_files(plan: dict[str, Any], target: str) -> list[str]:
    """Every result file (relative to results/<scale>) one target reads."""
    entry = plan["targets"][target]
    files = [m["file"] for row in entry["rows"] for m in row["metrics"].values()]
    files += [s["file"] for row in entry["rows"] for s in row.get("sanity", [])]
    files += [train_path(row["model"]) for row in entry["rows"] if row["model"]]
    files += [a["file"] for a in entry["analyses"]]
    return sorted(set(files))


def available_targets(plan: dict[str, Any]) -> list[str]:
    return [name for name, entry in plan["targets"].items() if entry["available"]]


def unavailable_message(plan: dict[str, Any], target: str) -> str:
    entry = plan["targets"][target]
    datasets = plan["settings"].get("datasets", {})
    return (f"target '{target}' needs the {', '.join(entry['missing_datasets'])} dataset(s), which scale "
            f"'{plan['scale']}' does not provide (scales.{plan['scale']}.datasets maps: "
            f"{', '.join(datasets) or 'nothing'}); run it at a scale that does, e.g. --config scale=paper or smoke")


def load_plan(path: str | Path) -> dict[str, Any]:
    from .io import read_json
    return read_json(path)
