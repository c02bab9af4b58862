"""The floating-point width of what runs outside autocast, and fp16's loss scaling.

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


# --- fp16: loss scaling -----------------------------------------------------------------------
# fp16 keeps 5 exponent bits: gradients below 6e-8 flush to zero and above 65504 overflow. The
# weight loss is a mean over the batch, so its per-image gradients start at 1/batch of the
# summed attack losses' and are the ones that underflow; torch.amp.GradScaler multiplies the loss
# by a power of two before the backward, divides the parameter gradients by it before the
# optimizer step, skips the step when any of them is inf or nan, and halves the scale then.


def make_scaler(amp: str, device: torch.device) -> "torch.amp.GradScaler | None":
    """The GradScaler of ``amp: fp16`` on ``device``; None for every other precision (bf16 has
    fp32's exponent range and needs none), so those steps run exactly as without one."""
    return torch.amp.GradScaler(device.type) if amp == "fp16" else None


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                      scaler: "torch.amp.GradScaler | None") -> torch.Tensor | None:
    """``loss.backward(); optimizer.step()``, through ``scaler`` when there is one. Returns None
    without a scaler, else the step's skip flag: a 0-d device tensor, nonzero when the scaler found
    an inf or nan among the parameter gradients and skipped the update (read before
    ``scaler.update()``, which forgets it; no host sync). Input gradients the backward also made
    (Free's perturbation) stay multiplied by the scale: their sign is the same."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return None
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    # GradScaler keeps the flag per optimizer and device until update(); it has no public getter
    found = scaler._found_inf_per_device(optimizer)
    skipped = sum(flag.to(loss.device) for flag in found.values())
    scaler.update()
    return skipped


def signed_step(grad: torch.Tensor, skipped: torch.Tensor | None) -> torch.Tensor:
    """``sign(grad)``, or zeros where the step is skipped: when ``skipped`` is nonzero (the scaler
    skipped the weights' update) or ``grad`` holds an inf or nan (whose sign would carry a nan into
    a perturbation that persists). In place on ``grad``; without ``skipped`` (no scaler) exactly
    ``grad.sign_()``."""
    if skipped is None:
        return grad.sign_()
    keep = torch.isfinite(grad).all() & (skipped == 0)
    return torch.where(keep, grad.sign_(), torch.zeros((), dtype=grad.dtype, device=grad.device))
