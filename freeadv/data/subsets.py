"""The seeded training subset (``n_train``), the validation images held out of training, and the
test prefix (``n_test``) of a dataset.

One permutation of the training split, drawn from ``data_seed`` alone, decides both: its first
``n_train`` images are the training subset and the next ``n_validation`` the validation images
(with ``n_train`` unset, every image but the validation ones trains). Training images and
validation images are therefore disjoint by construction, and a run's training subset is the same
whether or not it holds validation images out.

ImageNet's test split has its own fixed order (:func:`imagenet_test_order`), so that its first
5,000 images, which AutoAttack evaluates, are RobustBench's ImageNet subset.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from .bundle import TensorBundle, seeded_generator
from .catalog import DataError, LoadOptions


def check_subset_size(name: str, split: str, requested: int | None, available: float, minimum: int) -> None:
    """Raise ``DataError`` unless ``requested`` is None or an integer in [minimum, available]."""
    if requested is None:
        return
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < minimum:
        raise DataError(f"{name}: n_{split}={requested!r} must be an integer >= {minimum}")
    if requested > available:
        raise DataError(f"{name}: n_{split}={requested} is larger than the {split} split ({available} images); "
                        f"lower n_{split} or leave it unset to use the whole split")


def train_subset_indices(n_available: int, n_train: int | None, data_seed: int) -> Tensor:
    """Sorted indices of the ``n_train`` training images picked by ``data_seed`` (all if None).

    Seeded only by ``data_seed``, so every run with that data seed trains on the same subset
    whatever its training seed.
    """
    if n_train is None or n_train == n_available:
        return torch.arange(n_available)
    chosen = torch.randperm(n_available, generator=seeded_generator(data_seed))[:n_train]
    return chosen.sort().values


def split_indices(name: str, n_available: int, n_train: int | None, n_validation: int,
                  data_seed: int) -> tuple[Tensor, Tensor]:
    """Sorted indices of the training images and indices of the ``n_validation`` validation images
    (in the permutation's order, so any prefix of them is a seeded random sample), as the module
    docstring says. ``DataError`` when the split cannot hold both."""
    if not n_validation:
        return train_subset_indices(n_available, n_train, data_seed), torch.empty(0, dtype=torch.int64)
    kept = n_available - n_validation if n_train is None else n_train
    if n_train is None and kept < 1:
        raise DataError(f"{name}: validation_n={n_validation} leaves none of the {n_available} training images "
                        f"to train on; lower validation_n")
    if kept + n_validation > n_available:
        raise DataError(f"{name}: n_train={n_train} plus {n_validation} validation images (validation_n) is more "
                        f"than the {n_available} images of the training split; lower n_train or validation_n, or "
                        f"leave n_train unset (the whole split less the validation images)")
    order = torch.randperm(n_available, generator=seeded_generator(data_seed))
    return order[:kept].sort().values, order[kept:kept + n_validation]


def subset_bundle(name: str, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                  n_train: int | None, n_test: int | None, data_seed: int, augment: bool,
                  n_validation: int = 0) -> TensorBundle:
    """A ``TensorBundle`` of the seeded training subset, ``n_validation`` validation images from the
    training images it leaves out, and the first ``n_test`` test images."""
    check_subset_size(name, "train", n_train, len(train_x), minimum=1)
    check_subset_size(name, "test", n_test, len(test_x), minimum=0)
    keep, held_out = split_indices(name, len(train_x), n_train, n_validation, data_seed)
    n_test = len(test_x) if n_test is None else n_test
    bundle = TensorBundle(name, train_x[keep].contiguous(), train_y[keep].contiguous(),
                          test_x[:n_test].contiguous(), test_y[:n_test].contiguous(), augment=augment,
                          validation=(train_x[held_out].contiguous(), train_y[held_out].contiguous()))
    bundle.train_indices, bundle.validation_indices = keep, held_out
    return bundle


def bundle_of_splits(name: str, tensors: tuple[Tensor, Tensor, Tensor, Tensor], options: LoadOptions) -> TensorBundle:
    """:func:`subset_bundle` of fixed train and test splits (images, labels, images, labels) as a
    run's ``options`` ask: what the loader of any dataset held in memory returns."""
    return subset_bundle(name, *tensors, n_train=options.n_train, n_test=options.n_test, data_seed=options.data_seed,
                         augment=options.augment, n_validation=options.n_validation)


# --- the order of ImageNet's validation split ------------------------------------------------------

ROBUSTBENCH_IMAGENET_IDS = Path(__file__).with_name("robustbench_imagenet_ids.txt")
ROBUSTBENCH_SOURCE = "robustbench 1.1.1 helper_files/imagenet_test_image_ids.txt"
FALLBACK_PER_CLASS = 5   # 1,000 classes x 5 = RobustBench's 5,000 images, spread over every class


def robustbench_imagenet_ids() -> list[str]:
    """RobustBench's 5,000 ImageNet validation images as ``<wnid>/<file name>``, in the order its
    loader reads them; the file's ``#`` lines are its provenance header."""
    lines = ROBUSTBENCH_IMAGENET_IDS.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def per_class_prefix(labels: list[int], per_class: int = FALLBACK_PER_CLASS) -> list[int]:
    """Indices of the first ``per_class`` images of each class, class by class (ImageFolder order
    within a class is file-name order, so the choice does not depend on the file system)."""
    taken: dict[int, int] = {}
    chosen = []
    for index, label in enumerate(labels):
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            chosen.append(index)
    return sorted(chosen, key=lambda index: labels[index])


class SplitOrder(NamedTuple):
    """A test split's fixed order and what its first images are."""
    order: list[int]      # a permutation of the split's ImageFolder indices
    account: str          # one line: which images come first
    robustbench: bool     # whether the first 5,000 are RobustBench's subset


def imagenet_test_order(paths: list[str], labels: list[int]) -> SplitOrder:
    """The fixed order of an ImageNet validation ImageFolder (its samples' ``paths`` and ``labels``)
    and a one-line account of its first 5,000 images.

    RobustBench's listed images come first, in its order, when every one of them is in the folder
    (matched by file name), so an attack of the first 5,000 images attacks RobustBench's subset;
    otherwise the first ``FALLBACK_PER_CLASS`` images of each class come first. The other images
    follow in ImageFolder order, so the order is a permutation of the whole split.
    """
    by_name = {Path(path).name: index for index, path in enumerate(paths)}
    listed = [by_name.get(Path(image_id).name) for image_id in robustbench_imagenet_ids()]
    missing = listed.count(None)
    if not missing:
        first, account = listed, f"RobustBench's {len(listed):,} ImageNet images first ({ROBUSTBENCH_SOURCE})"
    else:
        first = per_class_prefix(labels)
        account = (f"the first {FALLBACK_PER_CLASS} images of each of its {len(set(labels)):,} classes first, not "
                   f"RobustBench's {len(listed):,} ({missing:,} of them are not in the folder)")
    chosen = set(first)
    return SplitOrder(first + [index for index in range(len(paths)) if index not in chosen], account, not missing)
