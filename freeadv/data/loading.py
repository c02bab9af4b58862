"""``load_data``: the one entry point from a dataset name and a data root to a ``DataBundle``."""
from __future__ import annotations

import os
from pathlib import Path

from .bundle import DataBundle
from .catalog import DATASETS, DataError, LoadOptions, import_function


def load_data(name: str, root: str | os.PathLike | None, *, n_train: int | None = None, n_test: int | None = None,
              data_seed: int = 0, augment: bool = True, download: bool = False, num_workers: int = 2,
              n_validation: int = 0) -> DataBundle:
    """Load dataset ``name`` (one of ``DATASETS``) from ``root`` with the loader its DatasetSpec names.

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
    spec = DATASETS[name]
    options = LoadOptions(n_train=n_train, n_test=n_test, data_seed=data_seed, augment=augment, download=download,
                          num_workers=num_workers, n_validation=n_validation)
    folder = None if root is None else Path(root).expanduser()   # None: generated data reads no files
    return import_function(spec.loader)(spec, folder, options)
