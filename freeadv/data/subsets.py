"""The seeded training subset (``n_train``), the validation images held out of training, and the
test prefix (``n_test``) of a dataset.

One permutation of the training split, drawn from ``data_seed`` alone, decides both: its first
``n_train`` images are the training subset and the next ``n_validation`` the validation images
(with ``n_train`` unset, every image but the validation ones trains). Training images and
validation images are therefore disjoint by construction, and a run's training subset is the same
whether or not it holds validation images out.
"""
from __future__ import annotations

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
