"""Model zoo for the "Adversarial Training for Free!" reproduction.

Every model takes pixels in [0, 1], shaped (B, 3, H, W), and returns logits. Input
normalisation is the model's first layer (``model.preprocess``), so attacks can perturb
and clip in pixel space and the input gradient is the pixel-space gradient.

Architectures are looked up by name in :data:`MODELS` through :func:`build_model`.

Modules: ``registry`` (MODELS, register, build_model), ``layers`` (input layers, shortcuts),
and one module per family, each registering its builders on import: ``preact`` (WRN-32-10,
WRN-34-10, PreAct ResNet-18), ``small_cnn``, ``torchvision_resnets`` (ResNet-50/101/152).
"""

from __future__ import annotations

# The normalisation constants live once, in the dataset catalog (CIFAR-10's std is 0.2470 there,
# the value every trained model used); they are re-exported here as the builders' defaults.
from ..data.catalog import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from .layers import SHORTCUTS, Normalize, PerImageStandardize, PixelClassifier, PoolPadShortcut
from .registry import MODELS, accepts_width, build_model, count_parameters, register

# Imported for their @register side effect, in this order (MODELS keeps insertion order).
from . import preact, small_cnn, torchvision_resnets  # noqa: E402,F401  isort: skip
from .preact import PreActBlock, PreActResNet  # noqa: E402  isort: skip
from .small_cnn import SmallCNN  # noqa: E402  isort: skip

__all__ = [
    "MODELS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Normalize",
    "PerImageStandardize",
    "PixelClassifier",
    "PoolPadShortcut",
    "PreActBlock",
    "PreActResNet",
    "SmallCNN",
    "SHORTCUTS",
    "register",
    "accepts_width",
    "build_model",
    "count_parameters",
]
