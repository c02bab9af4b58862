"""torchvision's ResNets for ImageNet, randomly initialised, behind a Normalize layer.

torchvision is imported when one of them is built, not when the registry is: ``import torchvision``
pulls in ``torch._dynamo`` (1.2 s of the 2.9 s that ``import freeadv.commands.attack`` took here),
and every Snakemake job pays its imports (the smoke DAG runs 162 jobs).
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ..data.catalog import CIFAR10_MEAN, CIFAR10_STD
from .layers import Normalize, PixelClassifier
from .registry import register


def _register_torchvision_resnet(name: str) -> None:
    def build(
        num_classes: int,
        *,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> nn.Module:
        import torchvision.models

        net = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        return PixelClassifier(Normalize(mean, std), net)

    build.__name__ = f"build_{name}"
    build.__doc__ = f"torchvision's {name} (randomly initialised) behind a Normalize layer."
    register(name)(build)


for _resnet_name in ("resnet50", "resnet101", "resnet152"):
    _register_torchvision_resnet(_resnet_name)
del _resnet_name
