"""The architecture registry: :data:`MODELS`, :func:`register` and :func:`build_model`."""
from __future__ import annotations

import inspect
from typing import Callable, Sequence

from torch import nn

from ..data.catalog import CIFAR10_MEAN, CIFAR10_STD
from ..errors import UserError
from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding ``builder(num_classes, *, mean, std[, width]) -> nn.Module`` to MODELS."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        return MODELS.add(name, builder)

    return decorator


def _accepts_width(builder: Callable[..., nn.Module]) -> bool:
    return "width" in inspect.signature(builder).parameters


def accepts_width(arch: str) -> bool:
    """Whether a registered architecture's builder takes a ``width`` (small_cnn, wrn32_k)."""
    return arch in MODELS and _accepts_width(MODELS[arch])


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
    architectures whose builder takes it (``small_cnn``'s channels, ``wrn32_k``'s factor k); ``None``
    means its default.
    """
    if arch not in MODELS:
        raise UserError(f"unknown arch {arch!r}; choose one of: {', '.join(sorted(MODELS))}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes must be a positive integer, got {num_classes!r}")
    builder = MODELS[arch]
    if width is None:
        return builder(num_classes, mean=mean, std=std)
    if not _accepts_width(builder):
        takes_width = ", ".join(sorted(name for name, b in MODELS.items() if _accepts_width(b)))
        raise UserError(
            f"arch {arch!r} does not take a width (got width={width!r}); only {takes_width} does"
        )
    return builder(num_classes, mean=mean, std=std, width=width)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (BN running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
