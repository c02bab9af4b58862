"""CIFAR-10 and CIFAR-100 in torchvision's python-pickle format."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .bundle import DataBundle
from .catalog import DATASETS, DatasetSpec, DataError, LoadOptions
from .subsets import bundle_of_splits


def load_cifar(spec: DatasetSpec, root: Path, options: LoadOptions) -> DataBundle:
    """The loader of cifar10 and cifar100 (their DatasetSpec): the fixed splits, subset as asked."""
    return bundle_of_splits(spec.name, load_torchvision_cifar(spec.name, root, options.download), options)


def load_torchvision_cifar(name: str, root: Path, download: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Train images, train labels, test images, test labels of ``name`` (cifar10 or cifar100) under
    ``root``: uint8 ``(N, 3, 32, 32)`` and int64 in torchvision's order."""
    from torchvision import datasets

    dataset_class = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    folder = DATASETS[name].files[0]   # the folder torchvision extracts, which doctor looks for too
    expected = root / folder
    try:
        train = dataset_class(str(root), train=True, download=download)
        test = dataset_class(str(root), train=False, download=False)
    except Exception as err:  # missing/corrupt files, or a download that failed (e.g. no network)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{name}: could not load the dataset from '{expected}' ({reason}); place the extracted "
                        f"python-pickle archive there (folder '{folder}') or use --set download=true") from err

    def as_tensors(split) -> tuple[Tensor, Tensor]:
        images = torch.from_numpy(np.ascontiguousarray(split.data.transpose(0, 3, 1, 2)))  # NHWC -> NCHW
        return images, torch.as_tensor(split.targets, dtype=torch.int64)

    return (*as_tensors(train), *as_tensors(test))
