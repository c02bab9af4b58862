"""Model zoo for the "Adversarial Training for Free!" reproduction.

Every model takes pixels in [0, 1], shaped (B, 3, H, W), and returns logits. Input
normalisation is the model's first layer (``model.preprocess``), so attacks can perturb
and clip in pixel space and the input gradient is the pixel-space gradient.

Architectures are looked up by name in :data:`MODELS` through :func:`build_model`.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

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
    "build_model",
    "count_parameters",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
# Builders default to CIFAR-10 statistics like build_model; ImageNet callers pass these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding ``builder(num_classes, *, mean, std[, width]) -> nn.Module`` to MODELS."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = builder
        return builder

    return decorator


def _accepts_width(builder: Callable[..., nn.Module]) -> bool:
    return "width" in inspect.signature(builder).parameters


def build_model(
    arch: str,
    num_classes: int,
    *,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    width: int | None = None,
) -> nn.Module:
    """Build a registered architecture that maps [0,1] pixels to ``num_classes`` logits.

    ``mean``/``std`` configure the input :class:`Normalize` (``wrn32_10`` ignores them: it
    standardises each image, as Madry et al.'s code does). ``width`` is only meaningful for
    architectures whose builder takes it (``small_cnn``); ``None`` means its default.
    """
    if arch not in MODELS:
        raise ValueError(f"unknown arch {arch!r}; choose one of: {', '.join(sorted(MODELS))}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    builder = MODELS[arch]
    if width is None:
        return builder(num_classes, mean=mean, std=std)
    if not _accepts_width(builder):
        takes_width = ", ".join(sorted(name for name, b in MODELS.items() if _accepts_width(b)))
        raise ValueError(
            f"arch {arch!r} does not take a width (got width={width!r}); only {takes_width} does"
        )
    return builder(num_classes, mean=mean, std=std, width=width)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (BN running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------
# Input layers
# --------------------------------------------------------------------------------------


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; kept inside the model so attacks work on pixels."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean_t.numel() != std_t.numel():
            raise ValueError(f"mean and std differ in length: {list(mean)} vs {list(std)}")
        if not bool((std_t > 0).all()):
            raise ValueError(f"std must be positive, got {list(std)}")
        # Buffers: they follow .to(device) and land in the state_dict, but are never trained.
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class PerImageStandardize(nn.Module):
    """TensorFlow's ``tf.image.per_image_standardization``, applied to each image separately.

    ``(x - mean(x)) / max(std(x), 1/sqrt(N))`` with ``N = C*H*W`` and the population std;
    the floor keeps constant images finite. Madry et al.'s CIFAR-10 WideResNet (the model
    the paper trains) standardises its input this way instead of using dataset statistics.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics in at least fp32, so bf16/fp16 inputs do not lose the small std values.
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        dims = tuple(range(1, wide.dim()))
        numel_per_image = math.prod(wide.shape[1:])
        mean = wide.mean(dim=dims, keepdim=True)
        std = wide.std(dim=dims, keepdim=True, unbiased=False)
        adjusted_std = std.clamp(min=1.0 / math.sqrt(numel_per_image))
        return ((wide - mean) / adjusted_std).to(x.dtype)


class PixelClassifier(nn.Module):
    """``net(preprocess(x))``: a classifier whose input is raw [0,1] pixels."""

    def __init__(self, preprocess: nn.Module, net: nn.Module):
        super().__init__()
        self.preprocess = preprocess
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))


# --------------------------------------------------------------------------------------
# Pre-activation residual networks (WRN-32-10 of Madry et al., WRN-34-10, PreAct ResNet-18)
# --------------------------------------------------------------------------------------


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class PoolPadShortcut(nn.Module):
    """Madry et al.'s parameter-free shortcut: avg-pool (kernel=stride, valid), then zero-pad
    the channel dimension by ``(out - in) // 2`` on each side."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if (out_channels - in_channels) % 2 or out_channels < in_channels:
            raise ValueError(f"cannot pad {in_channels} channels symmetrically to {out_channels}")
        self.stride = stride
        self.pad = (out_channels - in_channels) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, kernel_size=self.stride, stride=self.stride)
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, channel_pad={self.pad}"


def _projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


SHORTCUTS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "projection": _projection_shortcut,
    "pool_pad": PoolPadShortcut,
}


class PreActBlock(nn.Module):
    """Pre-activation basic block: ``BN-act-conv3x3(stride)-BN-act-conv3x3`` plus a shortcut.

    ``shortcut_from_activation`` says whether the shortcut branches off after the first
    BN-act (TF's ``activate_before_residual`` / the usual PyTorch WRN code when projecting)
    or from the raw block input. ``shortcut`` is ``None`` for the identity.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        make_activation: Callable[[], nn.Module],
        shortcut: nn.Module | None,
        shortcut_from_activation: bool,
    ):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.act1 = make_activation()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = make_activation()
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.shortcut = shortcut
        self.shortcut_from_activation = shortcut_from_activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.act1(self.bn1(x))
        skip = activated if self.shortcut_from_activation else x
        if self.shortcut is not None:
            skip = self.shortcut(skip)
        out = self.conv1(activated)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    """Stem conv3x3, stages of :class:`PreActBlock`, then BN-act-global-avg-pool-linear.

    ``shortcut_kind`` selects between the two code bases the paper's baselines come from:

    * ``"projection"`` (Zagoruyko & Komodakis / TRADES / PreAct ResNet code): a 1x1 conv
      whenever the shape changes, and then the shortcut branches off the activated input.
    * ``"pool_pad"`` (Madry et al.'s TF CIFAR-10 code): parameter-free avg-pool + channel
      zero-padding; only the network's very first unit activates before branching
      (``activate_before_residual = [True, False, False]`` applies to ``unit_1_0`` only).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        stem_width: int,
        stage_widths: Sequence[int],
        stage_strides: Sequence[int],
        blocks_per_stage: int,
        make_activation: Callable[[], nn.Module],
        shortcut_kind: str,
    ):
        super().__init__()
        if shortcut_kind not in SHORTCUTS:
            raise ValueError(
                f"unknown shortcut_kind {shortcut_kind!r}; choose one of {', '.join(SHORTCUTS)}"
            )
        if len(stage_widths) != len(stage_strides):
            raise ValueError("stage_widths and stage_strides must have the same length")
        make_shortcut = SHORTCUTS[shortcut_kind]

        self.stem = _conv3x3(3, stem_width)
        stages = []
        in_channels = stem_width
        for stage_index, (width, first_stride) in enumerate(zip(stage_widths, stage_strides)):
            blocks = []
            for block_index in range(blocks_per_stage):
                stride = first_stride if block_index == 0 else 1
                changes_shape = stride != 1 or in_channels != width
                shortcut = make_shortcut(in_channels, width, stride) if changes_shape else None
                if shortcut_kind == "pool_pad":
                    from_activation = stage_index == 0 and block_index == 0
                else:
                    from_activation = changes_shape
                blocks.append(
                    PreActBlock(
                        in_channels,
                        width,
                        stride,
                        make_activation,
                        shortcut=shortcut,
                        shortcut_from_activation=from_activation,
                    )
                )
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final_bn = nn.BatchNorm2d(in_channels)
        self.final_act = make_activation()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = self.pool(self.final_act(self.final_bn(x)))
        return self.fc(torch.flatten(x, 1))


def _init_like_wrn_reference(net: nn.Module) -> None:
    """He-normal (fan-out) convs, BN at (1, 0) and zero linear bias: what both Madry et al.'s
    TF code and the TRADES PyTorch WideResNet code do (PyTorch's default conv init differs)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


def _init_uniform_unit_scaling(linear: nn.Linear) -> None:
    """TF's ``uniform_unit_scaling_initializer(1.0)``, used for the logit layer in Madry's code."""
    bound = math.sqrt(3.0 / linear.in_features)
    nn.init.uniform_(linear.weight, -bound, bound)


@register("wrn32_10")
def build_wrn32_10(
    num_classes: int, *, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
) -> nn.Module:
    """WideResNet-32-10 as in Madry et al.'s CIFAR-10 challenge code (the paper's CIFAR
    model): per-image standardisation, leaky ReLU(0.1), avg-pool/zero-pad shortcuts.
    ``mean``/``std`` are unused because that code standardises each image instead.

    Known small deviations from the TF graph: stride-2 convs pad 1 pixel on every side (TF's
    SAME pads only bottom/right), and BN uses PyTorch's eps=1e-5 (TF's default is 1e-3).
    """
    del mean, std
    net = PreActResNet(
        num_classes,
        stem_width=16,
        stage_widths=(160, 320, 640),
        stage_strides=(1, 2, 2),
        blocks_per_stage=5,
        make_activation=lambda: nn.LeakyReLU(0.1, inplace=True),
        shortcut_kind="pool_pad",
    )
    _init_like_wrn_reference(net)
    _init_uniform_unit_scaling(net.fc)
    return PixelClassifier(PerImageStandardize(), net)


@register("wrn34_10")
def build_wrn34_10(
    num_classes: int, *, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
) -> nn.Module:
    """Standard WRN-34-10 (Zagoruyko & Komodakis) as used by TRADES and YOPO."""
    net = PreActResNet(
        num_classes,
        stem_width=16,
        stage_widths=(160, 320, 640),
        stage_strides=(1, 2, 2),
        blocks_per_stage=5,
        make_activation=lambda: nn.ReLU(inplace=True),
        shortcut_kind="projection",
    )
    _init_like_wrn_reference(net)
    return PixelClassifier(Normalize(mean, std), net)


@register("preact_resnet18")
def build_preact_resnet18(
    num_classes: int, *, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
) -> nn.Module:
    """PreAct ResNet-18 (He et al. 2016) for 32x32 inputs, with PyTorch's default init."""
    net = PreActResNet(
        num_classes,
        stem_width=64,
        stage_widths=(64, 128, 256, 512),
        stage_strides=(1, 2, 2, 2),
        blocks_per_stage=2,
        make_activation=lambda: nn.ReLU(inplace=True),
        shortcut_kind="projection",
    )
    return PixelClassifier(Normalize(mean, std), net)


# --------------------------------------------------------------------------------------
# Small CNN for smoke tests and CPU-sized reproductions
# --------------------------------------------------------------------------------------


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU layers (w, w, pool, 2w, 2w, pool), global average pool, linear.

    A global-pool head rather than a flattened dense one: measured on cifar10-jpeg, Free m=4 at
    eps 8 and lr 0.1 stays stuck at chance (loss ln 10) with a flatten head (with or without a
    hidden layer) but learns with this one; it also makes any input size work.
    """

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(3, width),
            _conv_bn_relu(width, width),
            nn.MaxPool2d(2),
            _conv_bn_relu(width, 2 * width),
            _conv_bn_relu(2 * width, 2 * width),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("small_cnn")
def build_small_cnn(
    num_classes: int,
    *,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    width: int = 32,
) -> nn.Module:
    """Small fast CNN; ``width`` is the channel count of the first two convs."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"small_cnn width must be a positive integer, got width={width!r}")
    return PixelClassifier(Normalize(mean, std), SmallCNN(num_classes, width=width))


# --------------------------------------------------------------------------------------
# torchvision ResNets for ImageNet
# --------------------------------------------------------------------------------------


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
