"""torchvision's ResNets for ImageNet, randomly initialised, behind a Normalize layer."""
from __future__ import annotations

from typing import Sequence

import torchvision
from torch import nn

from ..data.catalog import CIFAR10_MEAN, CIFAR10_STD
from .layers import Normalize, PixelClassifier
from .registry import register


def _register_torchvision_resnet(name: str) -> None:
    constructor = getattr(torchvision.models, name)

    def build(
        num_classes: int,
        *,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> nn.Module:
        net = constructor(weights=None, num_classes=num_classes)
        return PixelClassifier(Normalize(mean, std), net)

    build.__name__ = f"build_{name}"
    build.__doc__ = f"torchvision's {name} (randomly initialised) behind a Normalize layer."
    register(name)(build)


for _resnet_name in ("resnet50", "resnet101", "resnet152"):
    _register_torchvision_resnet(_resnet_name)
del _resnet_name
