"""Facts about the datasets, and the error every data problem raises.

Deliberately free of torch, torchvision, numpy and PIL: the experiment plan and the Snakefile read
these names at parse time, where importing torch would cost seconds (and may not be installed).
``freeadv.models`` takes its default normalisation from here too, so each number exists once.
"""
from __future__ import annotations

from ..errors import UserError

DATASETS = ("cifar10", "cifar100", "cifar10-jpeg", "imagenet", "synthetic")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "cifar10-jpeg": 10, "imagenet": 1000, "synthetic": 10}

# (train, test) images of each real dataset's full splits; synthetic has no fixed size.
SPLIT_SIZES = {
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
    "cifar10-jpeg": (50_000, 10_000),
    "imagenet": (1_281_167, 50_000),
}

# Per-channel statistics of the training images, applied by the model's input layer.
# CIFAR-10's red std is 0.2470: every committed run was trained with it (``freeadv train`` builds
# the model from ``MEAN_STD`` of its dataset), and the model zoo's builders default to it too.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MEAN_STD = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
    "cifar10-jpeg": (CIFAR10_MEAN, CIFAR10_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "synthetic": (CIFAR10_MEAN, CIFAR10_STD),
}

# torchvision's order, which is also the sorted class-folder names of the cifar10-jpeg archive.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# The published cifar10-jpeg archive (../shared/data/README.md): its digest and size. A file of this
# size with another digest is a damaged copy; any other archive is checked by its gzip CRC and layout.
CIFAR10_JPEG_SHA256 = "a20f75dab73b9c5c6f54e35c84da477e385f34a4615399fdbaef48b0e1e1c437"
CIFAR10_JPEG_BYTES = 19_437_034

SYNTHETIC_DEFAULT_SIZES = (2000, 500)  # (train, test) when n_train / n_test are None


class DataError(UserError):
    """One-line, user-facing message: names the dataset, the path looked at, what to do."""
