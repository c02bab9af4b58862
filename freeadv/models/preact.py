"""Pre-activation residual networks: WRN-32-10 of Madry et al. (the paper's CIFAR model) and its
width-k family WRN-32-k, WRN-34-10 (TRADES, YOPO) and PreAct ResNet-18."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..data.catalog import CIFAR10_MEAN, CIFAR10_STD
from .layers import SHORTCUTS, Normalize, PerImageStandardize, PixelClassifier
from .registry import register
from ..errors import UserError


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


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


# Stage layouts (PreActResNet keyword arguments). Madry et al.'s WRN-32-10 and the WRN-34-10 of
# Zagoruyko & Komodakis are the same 3 x 5 blocks of widths 160/320/640, counted differently;
# they differ in activation, shortcuts and initialisation.
_WRN_10_LAYOUT: dict[str, Any] = dict(
    stem_width=16, stage_widths=(160, 320, 640), stage_strides=(1, 2, 2), blocks_per_stage=5
)
_PREACT18_LAYOUT: dict[str, Any] = dict(
    stem_width=64, stage_widths=(64, 128, 256, 512), stage_strides=(1, 2, 2, 2), blocks_per_stage=2
)


def _relu_projection_classifier(
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    layout: dict[str, Any],
    init: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """The PyTorch code bases' variant (ReLU, 1x1 projection shortcuts) behind a Normalize layer;
    ``init`` re-initialises the network after PyTorch's default init (``None`` keeps that)."""
    net = PreActResNet(
        num_classes,
        **layout,
        make_activation=lambda: nn.ReLU(inplace=True),
        shortcut_kind="projection",
    )
    if init is not None:
        init(net)
    return PixelClassifier(Normalize(mean, std), net)


# Madry et al.'s WRN-32 stage widths at width factor k are (16k, 32k, 64k); the stem stays 16.
WRN_STAGE_BASE = (16, 32, 64)
WRN32_PAPER_WIDTH = 10


@register("wrn32_k")
def build_wrn32_k(
    num_classes: int,
    *,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    width: int = WRN32_PAPER_WIDTH,
) -> nn.Module:
    """WideResNet-32 at width factor ``width`` (k) as in Madry et al.'s CIFAR-10 challenge code
    (the paper's CIFAR model at k=10): per-image standardisation, leaky ReLU(0.1), avg-pool/zero-pad
    shortcuts, stage widths 16k/32k/64k. ``mean``/``std`` are unused because that code
    standardises each image instead.

    k=1 (0.46M parameters) is the ``mini`` scale's model: the paper's architecture family at a size
    a 2-core CPU trains in hours (measured ~360 img/s fp32 for a training step at batch 128, and
    Free m=8 / natural 1.01 interleaved, where the 17k-parameter small_cnn gave 1.07-1.15).

    Known small deviations from the TF graph: stride-2 convs pad 1 pixel on every side (TF's
    SAME pads only bottom/right), and BN uses PyTorch's eps=1e-5 (TF's default is 1e-3).
    """
    del mean, std
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise UserError(f"wrn32_k width (the factor k) must be a positive integer, got {width!r}")
    layout = dict(_WRN_10_LAYOUT, stage_widths=tuple(base * width for base in WRN_STAGE_BASE))
    net = PreActResNet(
        num_classes,
        **layout,
        make_activation=lambda: nn.LeakyReLU(0.1, inplace=True),
        shortcut_kind="pool_pad",
    )
    _init_like_wrn_reference(net)
    _init_uniform_unit_scaling(net.fc)
    return PixelClassifier(PerImageStandardize(), net)


@register("wrn32_10")
def build_wrn32_10(
    num_classes: int, *, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
) -> nn.Module:
    """WideResNet-32-10 of Madry et al. (the paper's CIFAR model): :func:`build_wrn32_k` at k=10."""
    return build_wrn32_k(num_classes, mean=mean, std=std, width=WRN32_PAPER_WIDTH)


@register("wrn34_10")
def build_wrn34_10(
    num_classes: int, *, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
) -> nn.Module:
    """Standard WRN-34-10 (Zagoruyko & Komodakis) as used by TRADES and YOPO."""
    return _relu_projection_classifier(num_classes, mean, std, _WRN_10_LAYOUT, init=_init_like_wrn_reference)


@register("preact_resnet18")
def build_preact_resnet18(
    num_classes: int, *, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
) -> nn.Module:
    """PreAct ResNet-18 (He et al. 2016) for 32x32 inputs, with PyTorch's default init."""
    return _relu_projection_classifier(num_classes, mean, std, _PREACT18_LAYOUT)
