"""The prologue every job on a finished run shares: the device, the CPU settings, the trained
model in eval mode with its config, and the test split in its fixed order."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import cpu
from ..training import data_for, load_trained_model, resolve_device

RUN_SPLIT = "run"   # open_run's n_test default: the test images the run itself was checked on


@dataclass
class OpenRun:
    """A trained run opened for a job. ``data`` is read on first use, so a job can check its own
    arguments against the config (eps, image counts) before the images are decoded."""
    run_dir: Path
    device: torch.device
    model: nn.Module
    config: dict[str, Any]
    n_test: int | str | None = RUN_SPLIT

    @cached_property
    def data(self):
        split = {} if self.n_test == RUN_SPLIT else {"n_test": self.n_test}
        return data_for(dict(self.config, augment=False, n_train=None, **split))


def open_device(device: str | torch.device = "auto") -> torch.device:
    """``device`` resolved ("auto": CUDA if present) with the CPU settings every job runs under."""
    dev = resolve_device(str(device))
    cpu.tune(dev, flush_denormal=False)
    return dev


def open_run(run_dir: str | Path, device: str | torch.device = "auto", *, n_test: int | str | None = RUN_SPLIT,
             weights: str = "final") -> OpenRun:
    """``run_dir``'s model (``weights``: final or best) on ``device`` ("auto": CUDA if present);
    ``n_test``: RUN_SPLIT (the run's own ``n_test``), None (the whole test split) or the first n."""
    dev = open_device(device)
    model, config = load_trained_model(run_dir, dev, weights=weights)
    return OpenRun(Path(run_dir), dev, model, config, n_test)
