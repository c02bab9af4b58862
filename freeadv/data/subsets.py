"""The seeded training subset (``n_train``) and the test prefix (``n_test``) of a dataset."""
from __future__ import annotations

import torch
from torch import Tensor

from .bundle import TensorBundle, seeded_generator
from .catalog import DataError


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


def subset_bundle(name: str, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                  n_train: int | None, n_test: int | None, data_seed: int, augment: bool) -> TensorBundle:
    """A ``TensorBundle`` of the seeded training subset and the first ``n_test`` test images."""
    check_subset_size(name, "train", n_train, len(train_x), minimum=1)
    check_subset_size(name, "test", n_test, len(test_x), minimum=0)
    keep = train_subset_indices(len(train_x), n_train, data_seed)
    n_test = len(test_x) if n_test is None else n_test
    return TensorBundle(name, train_x[keep].contiguous(), train_y[keep].contiguous(),
                        test_x[:n_test].contiguous(), test_y[:n_test].contiguous(), augment=augment)
