"""A dataset of the user's own, described in the config: an ImageFolder root or a file of tensors.

A run names it like any other (``dataset: flowers``) and describes it in ``dataset_spec``::

    dataset: flowers
    data_root: /data/flowers            # train/<class>/*.png and test/<class>/*.png (or val/)
    dataset_spec: {format: imagefolder, num_classes: 5, input_size: 32,
                   mean: [0.45, 0.42, 0.38], std: [0.27, 0.26, 0.28]}

``format: tensors`` reads ``data_root`` as a ``.npz`` or ``.pt`` file holding ``train_x``,
``train_y``, ``test_x`` and ``test_y`` (images uint8, (N, 3, H, W) or (N, H, W, 3); labels
integers). :func:`register_custom` turns the description into a :class:`DatasetSpec` in the one
registry every dataset lives in, so models, attacks, tables and the plan treat it as they treat
CIFAR-10. Every process that resolves the config registers it again (the run folder's config.yaml
holds the description), which is how attack jobs and ``load_trained_model`` find it.

Torch-free, like the catalog: the plan and the Snakefile register descriptions while they parse.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from .catalog import DATASETS, DataError, DatasetSpec, register_dataset

FORMATS = {"imagefolder": "freeadv.data.generic:load_imagefolder", "tensors": "freeadv.data.generic:load_tensors"}
FIELDS = ("format", "num_classes", "input_size", "mean", "std", "title", "paper_step")
REQUIRED = ("format", "num_classes", "input_size", "mean", "std")


def _numbers(name: str, what: str, value: Any, low: float, high: float) -> tuple[float, ...]:
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and low < v <= high for v in value)
    if not ok:
        raise DataError(f"dataset_spec of '{name}': '{what}' has bad value {value!r}: expected three numbers "
                        f"in ({low:g}, {high:g}], one per RGB channel")
    return tuple(float(v) for v in value)


def _positive_int(name: str, what: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"dataset_spec of '{name}': '{what}' has bad value {value!r}: expected an integer >= {minimum}")
    return value


def custom_spec(name: str, info: Mapping[str, Any]) -> DatasetSpec:
    """The DatasetSpec a description makes; one line naming the field otherwise."""
    if not isinstance(info, Mapping):
        raise DataError(f"dataset_spec of '{name}' has bad value {info!r}: expected a mapping of {', '.join(REQUIRED)}")
    unknown = sorted(set(info) - set(FIELDS))
    missing = [field for field in REQUIRED if field not in info]
    if unknown or missing:
        what = f"has no field '{unknown[0]}'" if unknown else f"needs '{missing[0]}'"
        raise DataError(f"dataset_spec of '{name}' {what} (fields: {', '.join(FIELDS)})")
    if info["format"] not in FORMATS:
        raise DataError(f"dataset_spec of '{name}': 'format' has bad value {info['format']!r}: expected "
                        f"{' or '.join(FORMATS)}")
    step = info.get("paper_step", 2.0)
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step <= 255:
        raise DataError(f"dataset_spec of '{name}': 'paper_step' has bad value {step!r}: expected pixels in (0, 255]")
    return DatasetSpec(name, str(info.get("title", name)), _positive_int(name, "num_classes", info["num_classes"], 2),
                       _numbers(name, "mean", info["mean"], 0.0, 1.0), _numbers(name, "std", info["std"], 0.0, 1.0),
                       FORMATS[info["format"]], input_size=_positive_int(name, "input_size", info["input_size"], 8),
                       paper_step=float(step), sized_by_files=True)


def register_custom(name: str, info: Mapping[str, Any]) -> DatasetSpec:
    """Register the described dataset once; the same description again is a no-op, another one
    under a taken name (a library dataset's, or a different description) is refused."""
    spec = custom_spec(name, info)
    known = DATASETS.get(name)
    if known is None:
        return register_dataset(spec)
    if known != spec:
        raise DataError(f"dataset '{name}' is already registered with other facts ({known.title}, "
                        f"{known.num_classes} classes): give the description another name")
    return known
