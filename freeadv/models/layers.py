"""Input layers (normalisation inside the model) and the residual shortcuts the networks share."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import at_least_fp32
from ..units import PIXEL_LEVELS


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

    Their code feeds 0-255 pixel values, so the floor 1/sqrt(N) is in 0-255 units; our inputs are
    [0, 1] pixels, so the same floor is 1/(255 sqrt(N)) here. (Standardisation is otherwise scale
    free: only images with a std below the floor, near-constant ones, see the difference.)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics in at least fp32, so bf16/fp16 inputs do not lose the small std values.
        wide = at_least_fp32(x)
        dims = tuple(range(1, wide.dim()))
        numel_per_image = math.prod(wide.shape[1:])
        mean = wide.mean(dim=dims, keepdim=True)
        std = wide.std(dim=dims, keepdim=True, unbiased=False)
        adjusted_std = std.clamp(min=1.0 / (PIXEL_LEVELS * math.sqrt(numel_per_image)))
        return ((wide - mean) / adjusted_std).to(x.dtype)


class PixelClassifier(nn.Module):
    """``net(preprocess(x))``: a classifier whose input is raw [0,1] pixels."""

    def __init__(self, preprocess: nn.Module, net: nn.Module):
        super().__init__()
        self.preprocess = preprocess
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))


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
