"""Datasets for the reproduction: CIFAR-10/100, CIFAR-10 (JPEG q75), ImageNet and a synthetic set.

Modules by concern:

* ``catalog``   -- one ``DatasetSpec`` per dataset in ``DATASETS`` (names, class counts, normalisation,
  split sizes, loader), ``register_dataset`` and ``DataError``; no torch
* ``bundle``    -- ``DataBundle``/``TensorBundle``, the seeding and determinism contract, augmentation
* ``subsets``   -- the seeded ``n_train`` subset, the validation images held out of training, and
  the ``n_test`` prefix
* ``cifar``, ``jpeg``, ``synthetic``, ``imagenet`` -- one source each
* ``custom``, ``generic`` -- a dataset of the user's own, described in the config (``dataset_spec``):
  the torch-free record, and its ImageFolder and tensor-file loaders
* ``loading``   -- ``load_data``, the entry point: calls the loader the dataset's spec names
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .catalog import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, DATASETS,
                      IMAGENET_MEAN, IMAGENET_STD, MEAN_STD, NUM_CLASSES, SPLIT_SIZES, SYNTHETIC_DEFAULT_SIZES,
                      DataError, DatasetSpec, LoadOptions, register_dataset)

# Everything below needs torch (and numpy, PIL or torchvision), so it is imported on first use
# (PEP 562 module __getattr__) rather than here: the experiment plan, the Snakefile and
# ``freeadv.config`` read the catalog facts above at parse time, where importing torch would cost
# seconds for nothing. ``from freeadv.data import load_data`` works as before.
_LAZY = {
    "DataBundle": "bundle", "TensorBundle": "bundle", "random_crop_flip": "bundle", "CIFAR_PAD": "bundle",
    "train_subset_indices": "subsets", "split_indices": "subsets",
    "cache_dir": "jpeg",
    "make_synthetic": "synthetic", "SYNTHETIC_SIGNAL": "synthetic", "SYNTHETIC_CLUTTER": "synthetic",
    "SYNTHETIC_PIXEL_NOISE": "synthetic", "SYNTHETIC_GRID": "synthetic",
    "ImageFolderBundle": "imagenet", "IMAGENET_SIZE": "imagenet",
    "load_data": "loading",
}

__all__ = ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "DATASETS",
           "IMAGENET_MEAN", "IMAGENET_STD", "MEAN_STD", "NUM_CLASSES", "SPLIT_SIZES", "SYNTHETIC_DEFAULT_SIZES",
           "DataError", "DatasetSpec", "LoadOptions", "register_dataset", *_LAZY]

if TYPE_CHECKING:  # let type checkers and IDEs see the lazy names
    from .bundle import CIFAR_PAD, DataBundle, TensorBundle, random_crop_flip
    from .imagenet import IMAGENET_SIZE, ImageFolderBundle
    from .jpeg import cache_dir
    from .loading import load_data
    from .subsets import split_indices, train_subset_indices
    from .synthetic import (SYNTHETIC_CLUTTER, SYNTHETIC_GRID, SYNTHETIC_PIXEL_NOISE, SYNTHETIC_SIGNAL,
                            make_synthetic)


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
