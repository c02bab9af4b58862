"""How an evaluation runs on its device, set by the evaluation itself rather than left to whatever
ran before it in the process.

- cuDNN's autotuner is off while an evaluation runs (and restored after). Training turns it on
  (freeadv.training.runtime), and it then autotunes every new input shape; an evaluation's shapes
  are ragged by design: each restart attacks only the images still robust, and AutoAttack's
  sub-attacks run on the survivors of the one before. A gpucheck on an H200 ran PGD-20 at 128
  images/s inside its training process against bench's 1,660 for the same step, the gap about the
  autotuning of its new shapes (inferred from the code; the eval-speed experiment measures both
  settings, cold and warm, so that the choice can be checked on each device).
- On CUDA the model is evaluated in the layout it trained in (channels_last unless the config
  turned it off), and put back in NCHW afterwards. On a CPU it stays NCHW: PGD-20 through this
  path ran at 211-227 images/s NCHW against 162-194 channels_last on a 2-core EPYC (the eval-speed
  experiment's quick run), and a CPU evaluation's numbers stay those of the reference layout.
  AutoAttack always runs NCHW, model and images: pyautoattack views gradients as contiguous
  (``grad.view(n, -1)``), and APGD-T raises on channels_last images (tested on a CPU). Whether
  cuDNN hands back a channels_last input gradient for NCHW images through a channels_last model
  is not known here, so the model stays NCHW too.
- The batch size (AutoAttack's chunk size) is ``auto`` unless given: CPU_BATCH on a CPU; on CUDA
  as many images as fit in CUDA_MEMORY_FRACTION of the free memory at the cost of one measured
  input-gradient step, up to CUDA_BATCH_CAP. A chunk of 500 fits WRN-32-10's attack on a 40 GB
  GPU but not on a 16 GB one, and leaves most of an H200 idle; the probe suits both.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..errors import UserError
from ..perturb import eval_mode, frozen_weights

AUTO = "auto"
CPU_BATCH = 500              # every CPU scale's attack batch: the batch the committed CPU results ran at
CUDA_BATCH_CAP = 2000        # beyond this an attack's kernels are long enough on any GPU; chunks stay resumable
CUDA_MEMORY_FRACTION = 0.5   # of the free memory: room for the attack's own copies and the allocator's slack
PROBE_BATCHES = (8, 16)      # two sizes: their peak difference is the per-image cost, without the workspace


def check_batch_size(value: int | str, what: str = "--batch-size") -> int | str:
    """``value`` as an int >= 1 or ``auto``; a one-line error otherwise."""
    if value == AUTO:
        return AUTO
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or str(value).strip() != str(number):
        raise UserError(f"{what} has bad value {value!r}: expected an integer >= 1 or 'auto'")
    return number


def eval_channels_last(trained_channels_last: bool | str, device: torch.device, whole_set: bool = False) -> bool:
    """Whether the evaluation runs channels_last: the training layout on CUDA, NCHW elsewhere and
    for AutoAttack (``whole_set``: its library's layout)."""
    return device.type == "cuda" and trained_channels_last in (True, AUTO) and not whole_set


@contextmanager
def evaluation_settings(model: nn.Module, device: torch.device, channels_last: bool) -> Iterator[None]:
    """cuDNN's autotuner off and the model in the evaluation's layout, both restored afterwards
    (a model that came in channels_last stays so)."""
    benchmark = torch.backends.cudnn.benchmark
    convert = channels_last and not _is_channels_last(model)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
    if convert:
        model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = benchmark
        if convert:
            model.to(memory_format=torch.contiguous_format)


def _is_channels_last(model: nn.Module) -> bool:
    first = next((p for p in model.parameters() if p.dim() == 4), None)
    return first is not None and first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous()


def chunk_for(free_bytes: float, bytes_per_image: float) -> int:
    """The batch that fits CUDA_MEMORY_FRACTION of ``free_bytes``: a multiple of 100 from 100 up, at
    most CUDA_BATCH_CAP, at least 1."""
    fits = int(CUDA_MEMORY_FRACTION * free_bytes // max(bytes_per_image, 1.0))
    if fits >= 100:
        fits -= fits % 100
    return max(1, min(fits, CUDA_BATCH_CAP))


def bytes_per_image(model: nn.Module, image: torch.Tensor, device: torch.device) -> float:
    """Peak CUDA memory per image of one fp32 input-gradient step (an attack's unit of work), from
    the difference of two probe batches, so the weights and cuDNN's workspace do not count."""
    peaks = []
    with eval_mode(model), frozen_weights(model), torch.autocast(device.type, enabled=False):
        for n in PROBE_BATCHES:
            x = image.expand(n, *image.shape[1:]).to(device).clone().requires_grad_(True)
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            torch.autograd.grad(model(x).logsumexp(1).sum(), x)
            peaks.append(torch.cuda.max_memory_allocated(device) - base)
            del x
    small, large = PROBE_BATCHES
    slope = (peaks[1] - peaks[0]) / (large - small)
    return slope if slope > 0 else peaks[1] / large


def resolve_batch_size(value: int | str, model: nn.Module, image: torch.Tensor, device: torch.device) -> int:
    """The evaluation's batch size: ``value``, or for ``auto`` the device's (see the module)."""
    value = check_batch_size(value)
    if value != AUTO:
        return int(value)
    if device.type != "cuda":
        return CPU_BATCH
    return chunk_for(torch.cuda.mem_get_info(device)[0], bytes_per_image(model, image[:1], device))
