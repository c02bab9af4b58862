"""CIFAR-10 and CIFAR-100 in torchvision's python-pickle format."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .catalog import DataError


def load_torchvision_cifar(name: str, root: Path, download: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Train images, train labels, test images, test labels of ``name`` (cifar10 or cifar100) under
    ``root``: uint8 ``(N, 3, 32, 32)`` and int64 in torchvision's order."""
    from torchvision import datasets

    dataset_class, folder = {"cifar10": (datasets.CIFAR10, "cifar-10-batches-py"),
                             "cifar100": (datasets.CIFAR100, "cifar-100-python")}[name]
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
