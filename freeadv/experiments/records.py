"""The records a design is made of: cells (trained models), metrics (columns), rows, analyses and
targets (tables and figures), and the registry of the functions that build targets.

A :class:`Cell` is one trained model as the paper describes it: dataset and architecture in the
paper's names, a registered training method (freeadv.methods) and the settings of it that the
paper varies. A :class:`Metric` is one column: a number of an attack's result (an
:class:`~freeadv.attacks.AttackSpec` in pixel units) or of the training summary. The paper's own
targets are in :mod:`.design`; a user's module registers more with :func:`register_targets`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..attacks import AttackSpec
from ..attacks.spec import num
from ..data.catalog import DATASETS, dataset_facts
from ..errors import UserError
from ..methods import get_method, method_params
from ..registry import Registry


# The paper's datasets, in the order the catalog registers them: cifar10, cifar100, imagenet.
PAPER_DATASETS = tuple(dict.fromkeys(spec.paper_family for spec in DATASETS.values() if spec.paper_family))
# The architectures the design names (a scale maps each onto what it trains): the paper's, and
# PreAct ResNet-18 for Wong et al.'s FGSM-RS recipe in the comparison table.
PAPER_ARCHS = ("wrn32_10", "wrn34_10", "resnet50", "resnet101", "resnet152", "preact_resnet18")
# Each registered dataset's title ("CIFAR-10 (JPEG q75)"), read from its spec on each access.
DATASET_TITLES = dataset_facts(lambda spec: spec.title)
ARCH_TITLES = {"wrn32_10": "WRN-32-10", "wrn34_10": "WRN-34-10", "resnet50": "ResNet-50",
               "resnet101": "ResNet-101", "resnet152": "ResNet-152", "small_cnn": "small CNN",
               "preact_resnet18": "PreAct ResNet-18", "wrn32_k": "WRN-32"}   # wrn32_k: WRN-32 at any width


@dataclass(frozen=True)
class Cell:
    """One trained model as the paper describes it (dataset and architecture in the paper's names).

    ``params`` are the ``freeadv train`` keys the paper sets for this model's method, as sorted
    (key, value) pairs: ``eps`` (pixel units; absent for natural training) and the method's own
    keys (``replay``, ``pgd_steps``, ...). They are exactly what the cell adds to its training
    config; the method's defaults fill the rest (build cells with :func:`cell`).
    """
    dataset: str                       # cifar10 | cifar100 | imagenet
    arch: str                          # wrn32_10 | wrn34_10 | resnet50 | resnet101 | resnet152
    method: str                        # a name in freeadv.methods.METHODS
    params: tuple[tuple[str, Any], ...] = ()
    batch_size: int | None = None      # None: the dataset's default (CIFAR 128, ImageNet 256)
    seed: int = 0
    recipe: str | None = None          # another paper's whole training recipe (RECIPES), over the scale's

    @property
    def eps(self) -> float | None:
        """The training eps in pixel units; None for natural training."""
        return dict(self.params).get("eps")

    @property
    def method_params(self) -> dict[str, Any]:
        """The method's keys with its defaults filled: what its title and id fragment read."""
        return method_params(self.method, dict(self.params))

    @property
    def title(self) -> str:
        """The method as a row title: 'Free m=8', '7-PGD', 'Natural m=4', 'FGSM-RS'."""
        return get_method(self.method).title(self.method_params)

    @property
    def id_fragment(self) -> str:
        """The method part of a model id: 'free-m8', 'pgd7-step2', 'natural'."""
        return get_method(self.method).id_fragment(self.method_params)

    @property
    def paper_name(self) -> str:
        """The model in the paper's words, e.g. 'CIFAR-10 WRN-32-10 Free m=8 eps 8'."""
        eps = f" eps {num(self.eps)}" if self.eps is not None else ""
        seed = f" seed {self.seed}" if self.seed else ""
        recipe = f" ({RECIPES[self.recipe]['title']})" if self.recipe else ""
        return f"{DATASET_TITLES[self.dataset]} {ARCH_TITLES[self.arch]} {self.title}{eps}{seed}{recipe}"


# Whole training recipes of other papers, applied over a scale's training settings (schedule, batch,
# optimiser); the scale still picks the data subset and the architecture.
RECIPES: dict[str, dict[str, Any]] = {
    # Wong, Rice & Kolter 2020 ("Fast is better than free"), their CIFAR-10 FGSM-RS code: 15 epochs of
    # batch 128, triangular cyclic learning rate 0 -> 0.2 -> 0 over the run, FGSM step 10/255 from a
    # uniform start, SGD momentum 0.9 with weight decay 5e-4 on every parameter, and early stopping:
    # PGD-5 (step 2/255) on the first training batch of each epoch; a fall of more than 20 points
    # (catastrophic overfitting) stops training and keeps the weights of the check before it.
    "wong2020": {"title": "Wong et al. 2020 recipe", "train": {
        "epochs": 15, "iterations": None, "batch_size": 128, "lr": 0.2, "lr_schedule": "cyclic",
        "momentum": 0.9, "weight_decay": 5e-4, "weight_decay_all": True, "fgsm_alpha": 10.0,
        "early_stop": True, "robust_eval_source": "first_train_batch", "robust_eval_steps": 5,
        "robust_eval_every": None,     # their check runs at the start of each epoch, whatever a scale's cadence
        "keep_best": False}},          # their weights are those early stopping keeps, whatever a scale keeps
}


def cell(dataset: str, arch: str, method: str, *, batch_size: int | None = None, seed: int = 0,
         recipe: str | None = None, **params: Any) -> Cell:
    """A :class:`Cell` whose ``params`` are the given method settings (``eps`` or the method's keys)."""
    known = set(method_params(method, {})) | {"eps"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise UserError(f"cell of method '{method}': '{unknown[0]}' is not one of its settings "
                         f"({', '.join(sorted(known))})")
    if recipe is not None and recipe not in RECIPES:
        raise UserError(f"cell recipe '{recipe}' is not one of {', '.join(RECIPES)}")
    return Cell(dataset, arch, method, tuple(sorted(params.items())), batch_size, seed, recipe)


@dataclass(frozen=True)
class Metric:
    """One column: the number ``field`` of an attack's result (or of the training summary)."""
    key: str                           # column key, as in paper_values.csv
    label: str                         # column title, as in the paper
    field: str                         # clean_acc | robust_acc | train_minutes
    attack: AttackSpec | None = None   # None: read train.json
    robust_only: bool = False          # only rows of adversarially trained models (not natural ones)
    rows: tuple[str, ...] | None = None    # only these row keys (None: every row)

    def applies_to(self, row: "Row") -> bool:
        """Whether this column is evaluated for ``row`` (else its cell stays empty, with no job)."""
        if self.rows is not None and row.key not in self.rows:
            return False
        return not (self.robust_only and row.cell is not None and row.cell.eps is None)

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
        only = " (adversarially trained rows)" if self.robust_only else ""
        only += f" (rows {', '.join(self.rows)} only)" if self.rows is not None else ""
        return f"accuracy under {self.attack.describe()}{only}"


@dataclass(frozen=True)
class Row:
    key: str                           # row key, as in paper_values.csv
    label: str
    cell: Cell | None                  # None: a number the paper reports but nobody trains here
    eval_eps: float | None = None      # eps for attacks without their own (Figure 4: the training eps)
    paper_ref: tuple[str, str] | None = None   # (table, row) holding its paper values; default its own
    robustbench: str | None = None     # a RobustBench entry to show beside it (experiments.robustbench)
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
            return f"adv-examples-bim{o['steps']}-eps{num(o['eps'])}-step{num(o['step_size'])}-last{o['last']}"
        return f"loss-surface-{o['plane']}-img{o['images']}-grid{o['grid']}-span{num(o['span'])}"

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


# Functions sweeps -> targets, in registration order: the paper's below, then any a module of the
# user's registers (docs/extending.md). ``sweeps``: the figure sweeps of a scale (PAPER_SWEEPS merged
# with the scale's own), which a builder may ignore.
TARGET_BUILDERS: Registry[Callable[[dict[str, Any]], Iterable[Target]]] = Registry("target builder")


def register_targets(build: Callable[[dict[str, Any]], Iterable[Target]]) -> Callable:
    """Register ``build(sweeps) -> [Target, ...]``: its tables and figures join every scale's plan,
    the workflow's rules and the ``table``/``figure``/``estimate`` commands."""
    return TARGET_BUILDERS.add(f"{build.__module__}.{build.__qualname__}", build)
