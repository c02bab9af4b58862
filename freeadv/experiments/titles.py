"""Titles and row labels that say what a scale trains.

The design writes every title and row label as a template whose fields name the paper's datasets
and architectures; a scale fills them with what it actually trains. So a mini title reads
"WRN-32 width 1" where the paper's reads "WRN-32-10", and the paper's own wording appears only at
the scale that trains it. The fields of a template:

- ``{cifar10}``, ``{cifar100}``, ``{imagenet}``: the dataset trained for it, by the title of its
  DatasetSpec ("CIFAR-10 (JPEG q75)");
- ``{wrn32_10}``, ..., ``{preact_resnet18}``: the architecture trained for it ("WRN-32 width 1");
- ``{training}``: the training subset and budget a scale sets for the target's models, as
  " (8,000 training images, 1,600 iterations)", or "" where they keep the paper's data and schedule;
- ``{methods}``: the methods of the rows the scale keeps ("FGSM-RS, Free m=8 and 7-PGD"), so a
  row a scale omits is not named in its title.

Torch-free, like the rest of the plan.
"""
from __future__ import annotations

from typing import Any, Iterable

from .design import ARCH_TITLES, PAPER_ARCHS, PAPER_DATASETS
from ..data.catalog import DATASETS
from ..errors import UserError

# The keys of a training config that a scale may set to shrink the paper's data and budget, as words.
BUDGET_KEYS = (("n_train", "training images"), ("iterations", "iterations"), ("epochs", "epochs"))


def arch_title(config: dict[str, Any]) -> str:
    """The architecture a training config builds: 'WRN-32-10', 'WRN-32 width 1', 'small CNN width 4'."""
    width = f" width {config['width']}" if config.get("width") else ""
    return ARCH_TITLES.get(config["arch"], config["arch"]) + width


def dataset_title(name: str) -> str:
    """The title of a registered dataset ('CIFAR-10 (JPEG q75)'); a name the catalog does not hold
    (a scale's typo, which the plan reports elsewhere) stands for itself."""
    return DATASETS[name].title if name in DATASETS else name


def name_fields(settings: dict[str, Any]) -> dict[str, str]:
    """Each paper dataset and architecture -> what the scale trains for it (the paper's name
    where the scale maps none: a target it cannot build keeps the design's wording)."""
    datasets = settings.get("datasets") or {}
    architectures = settings.get("architectures") or {}
    fields = {d: dataset_title(datasets.get(d, d)) for d in PAPER_DATASETS}
    fields.update({a: arch_title(architectures.get(a, {"arch": a})) for a in PAPER_ARCHS})
    return fields


def training_phrase(configs: Iterable[dict[str, Any]]) -> str:
    """' (8,000 training images, 1,600 iterations)': the subset and budget the configs set, ''
    when they set none (the library's defaults are the paper's data and schedules)."""
    configs = list(configs)
    parts = []
    for key, words in BUDGET_KEYS:
        values = sorted({c[key] for c in configs if c.get(key) is not None})
        if values:
            span = f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,}-{values[-1]:,}"
            parts.append(f"{span} {words}")
    return f" ({', '.join(parts)})" if parts else ""


def english_list(items: Iterable[str]) -> str:
    """'a', 'a and b', 'a, b and c' (each item once, in order)."""
    items = list(dict.fromkeys(items))
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]


def realise(text: str, fields: dict[str, str]) -> str:
    """``text`` with its fields filled; a field the design misspells is an error naming it."""
    try:
        return text.format_map(fields)
    except (KeyError, IndexError, ValueError) as err:
        raise UserError(f"design text {text!r}: field {err} is not one of {', '.join(sorted(fields))}") from None
