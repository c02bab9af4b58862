"""Training methods as small strategies over one shared engine (freeadv.training).

Each method turns one minibatch into exactly one parameter update; the engine decides how many
times a minibatch is replayed (``replay``), so Free-m and natural training with replay share the
same loop, iteration count and learning-rate schedule as everything else.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import LinfStep, input_gradient, pgd
from .distributed import unwrap


@contextmanager
def frozen_bn_statistics(model: nn.Module) -> Iterator[None]:
    """Run extra forward passes (attack steps during training) in training mode, using batch
    statistics like Madry et al.'s code, without letting them move the BN running averages:
    with momentum 0 PyTorch's update ``(1 - m) * running + m * batch`` leaves them unchanged."""
    norms = [mod for mod in model.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    saved = [mod.momentum for mod in norms]
    for mod in norms:
        mod.momentum = 0.0
    try:
        yield
    finally:
        for mod, momentum in zip(norms, saved):
            mod.momentum = momentum


class Method:
    """One minibatch in, one SGD update out. Subclasses override ``adversarial_input``."""

    name = "natural"

    def __init__(self, *, replay: int = 1, autocast=None) -> None:
        self.replay = replay
        self.autocast = autocast or nullcontext

    def adversarial_input(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          generator: torch.Generator | None) -> torch.Tensor:
        return x

    def update(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Returns the (detached, on-device) training loss; never synchronises with the host.
        The attack runs on the bare module (no DDP wrapper): its backward is input-only."""
        return self.update(model, optimizer, self.adversarial_input(unwrap(model), x, y, generator), y)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Natural(Method):
    """Natural training; with ``replay`` m > 1 it is Figure 1's natural training with minibatch replay."""


class Free(Method):
    """Algorithm 1 (Free-m). A persistent perturbation ``delta``, warm-started from the previous
    minibatch and never reset; each replay does ONE forward/backward that yields both the
    parameter gradient (for the SGD step) and the input gradient (for the delta step)."""

    name = "free"

    def __init__(self, *, eps: float, step_size: float, replay: int, autocast=None) -> None:
        super().__init__(replay=replay, autocast=autocast)
        self.eps = eps
        self.step_size = step_size
        self.delta: torch.Tensor | None = None

    def step(self, model, optimizer, x, y, generator=None):
        if self.delta is None or self.delta.shape[1:] != x.shape[1:]:
            self.delta = torch.zeros_like(x, dtype=torch.float32)
        if len(x) > len(self.delta):
            raise ValueError(f"batch of {len(x)} is larger than the perturbation buffer ({len(self.delta)})")
        # A smaller last batch uses the first B rows of the buffer.
        # A leaf sharing the buffer's storage: no copy; nothing in the graph saves it, so the
        # in-place update after the backward is safe.
        delta = self.delta[: len(x)].detach().requires_grad_(True)
        x_adv = (x.float() + delta).clamp(0, 1).to(x.dtype)
        if x.is_contiguous(memory_format=torch.channels_last):
            x_adv = x_adv.contiguous(memory_format=torch.channels_last)
        loss = self.update(model, optimizer, x_adv, y)   # one backward: theta grads and delta.grad
        with torch.no_grad():
            self.delta[: len(x)].add_(delta.grad.sign_(), alpha=self.step_size).clamp_(-self.eps, self.eps)
        return loss

    def state_dict(self):
        return {} if self.delta is None else {"delta": self.delta}

    def load_state_dict(self, state):
        self.delta = state.get("delta")


class PGDTraining(Method):
    """Madry et al.'s K-PGD training: random start, K ascent steps of size alpha (input gradients
    only), then one parameter step on the adversarial batch."""

    name = "pgd"

    def __init__(self, *, eps: float, step_size: float, steps: int, autocast=None) -> None:
        super().__init__(replay=1, autocast=autocast)
        self.eps, self.step_size, self.steps = eps, step_size, steps

    def adversarial_input(self, model, x, y, generator):
        with frozen_bn_statistics(model), self.autocast():
            return pgd(model, x, y, eps=self.eps, step_size=self.step_size, steps=self.steps,
                       generator=generator)


class FGSMRandomStart(Method):
    """Wong et al. (2020) 'fast is better than free': uniform random start, one FGSM step of
    alpha = 1.25 eps, projected back to the eps-ball. Beyond the paper, for comparison."""

    name = "fgsm_rs"

    def __init__(self, *, eps: float, step_size: float, autocast=None) -> None:
        super().__init__(replay=1, autocast=autocast)
        self.eps, self.step_size = eps, step_size

    def adversarial_input(self, model, x, y, generator):
        ball = LinfStep(self.eps, self.step_size)
        with frozen_bn_statistics(model), self.autocast():
            start = ball.random_start(x, generator)
            return ball.project(ball.step(start, input_gradient(model, start, y)), x).detach()


def build_method(config: dict[str, Any], autocast=None) -> Method:
    """The strategy object for ``config['method']``, with sizes converted to [0, 1] units."""
    from .config import perturbation

    sizes = perturbation(config)
    method = config["method"]
    if method == "natural":
        return Natural(replay=config["replay"], autocast=autocast)
    if method == "free":
        return Free(eps=sizes["eps"], step_size=sizes["free_step"], replay=config["replay"], autocast=autocast)
    if method == "pgd":
        return PGDTraining(eps=sizes["eps"], step_size=sizes["pgd_step_size"], steps=config["pgd_steps"],
                           autocast=autocast)
    if method == "fgsm_rs":
        return FGSMRandomStart(eps=sizes["eps"], step_size=sizes["fgsm_alpha"], autocast=autocast)
    raise ValueError(f"unknown method '{method}'")
