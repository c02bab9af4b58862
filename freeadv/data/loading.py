"""``load_data``: the one entry point from a dataset name and a data root to a ``DataBundle``."""
from __future__ import annotations

import math
import os
from pathlib import Path

from .bundle import DataBundle, TensorBundle
from .catalog import DATASETS, SYNTHETIC_DEFAULT_SIZES, DataError
from .cifar import load_torchvision_cifar
from .imagenet import load_imagenet
from .jpeg import load_cifar10_jpeg
from .subsets import check_subset_size, subset_bundle
from .synthetic import make_synthetic, synthetic_validation


def load_data(name: str, root: str | os.PathLike, *, n_train: int | None = None, n_test: int | None = None,
              data_seed: int = 0, augment: bool = True, download: bool = False, num_workers: int = 2,
              n_validation: int = 0) -> DataBundle:
    """Load dataset ``name`` (one of ``DATASETS``) from ``root``.

    ``n_train`` picks a random training subset seeded by ``data_seed`` alone (so it is the same for
    every training seed); ``n_test`` keeps the first images of the test split in its fixed order.
    ``n_validation`` holds that many training images out as validation images (``validation_batches``):
    drawn by ``data_seed`` from the images the subset leaves out, or, with ``n_train`` None, out of
    the whole split, which then trains on the rest (freeadv.data.subsets).
    ``synthetic`` ignores ``root`` and generates ``n_train`` / ``n_test`` images (default 2000 / 500),
    and ``n_validation`` more from a stream of their own.
    ``download`` lets torchvision fetch CIFAR-10/100; ``num_workers`` is used by ImageNet only.
    Every user-facing problem raises ``DataError``.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    if name == "synthetic":
        default_train, default_test = SYNTHETIC_DEFAULT_SIZES
        check_subset_size(name, "train", n_train, math.inf, minimum=1)
        check_subset_size(name, "test", n_test, math.inf, minimum=0)
        tensors = make_synthetic(n_train or default_train, default_test if n_test is None else n_test, data_seed)
        return TensorBundle(name, *tensors, augment=augment,
                            validation=synthetic_validation(n_validation, data_seed) if n_validation else None)
    root = Path(root).expanduser()
    if name == "imagenet":
        return load_imagenet(root, n_train, n_test, data_seed, augment, num_workers, n_validation)
    tensors = load_cifar10_jpeg(root) if name == "cifar10-jpeg" else load_torchvision_cifar(name, root, download)
    return subset_bundle(name, *tensors, n_train=n_train, n_test=n_test, data_seed=data_seed, augment=augment,
                         n_validation=n_validation)
