"""The floating-point width of what runs outside autocast.

Losses, Free's perturbation and the input standardisation are computed in at least float32: under
bf16 autocast the logits arrive in bf16, whose 8-bit mantissa would round away the loss's small
differences and the perturbation's steps. Wider inputs keep their width, so with torch's default
dtype set to float64 (``torch.set_default_dtype``) every image, weight, loss and perturbation is
float64 end to end; the reference-weights test trains that way, because float64 results do not
depend on which SIMD kernels the CPU's ATen and oneDNN builds pick.
"""
from __future__ import annotations

import torch


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or in its own dtype where that is wider (float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def unit_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as [0, 1] images in torch's default float dtype (float32 unless a caller set
    another)."""
    return x_uint8.to(torch.get_default_dtype()).div_(255.0)
