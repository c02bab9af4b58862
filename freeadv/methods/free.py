"""Free-m adversarial training: Algorithm 1 of the paper."""
from __future__ import annotations

from ..keys import PIXELS_OR_NULL, Key
from ..lazy import lazy_import
from ..units import to_unit
from . import Method, StepCost, register_method

torch = lazy_import("torch")
precision = lazy_import("freeadv.precision")   # imports torch


@register_method
class Free(Method):
    """A persistent perturbation ``delta``, warm-started from the previous minibatch and never
    reset; each of the m replays of a minibatch does ONE forward/backward that yields both the
    parameter gradient (for the SGD step) and the input gradient (for the delta step)."""

    name = "free"
    keys = {"free_step": Key(None, PIXELS_OR_NULL, "free: delta step size, pixel units; null = eps (Algorithm 1)")}
    replay_default = 8

    def __init__(self, *, eps: float, step_size: float, replay: int, autocast=None) -> None:
        super().__init__(replay=replay, autocast=autocast)
        self.eps = eps
        self.step_size = step_size
        self.delta = None

    @classmethod
    def title(cls, params):
        return f"Free m={params['replay']}"

    @classmethod
    def id_fragment(cls, params):
        return f"free-m{params['replay']}"

    @classmethod
    def cost(cls, config):
        return StepCost(train=1)   # the claim; `freeadv bench` measures it

    @classmethod
    def from_config(cls, config, autocast=None):
        step = config["free_step"] if config["free_step"] is not None else config["eps"]
        return cls(eps=to_unit(config["eps"]), step_size=to_unit(step), replay=config["replay"], autocast=autocast)

    def step(self, model, optimizer, x, y, generator=None):
        if self.delta is None or self.delta.shape[1:] != x.shape[1:]:
            self.delta = torch.zeros_like(precision.at_least_fp32(x))
        if len(x) > len(self.delta):
            raise ValueError(f"batch of {len(x)} is larger than the perturbation buffer ({len(self.delta)})")
        # A smaller last batch uses the first B rows of the buffer.
        # A leaf sharing the buffer's storage: no copy; nothing in the graph saves it, so the
        # in-place update after the backward is safe.
        delta = self.delta[: len(x)].detach().requires_grad_(True)
        x_adv = (precision.at_least_fp32(x) + delta).clamp(0, 1).to(x.dtype)
        if x.is_contiguous(memory_format=torch.channels_last):
            x_adv = x_adv.contiguous(memory_format=torch.channels_last)
        loss = self.update(model, optimizer, x_adv, y)   # one backward: theta grads and delta.grad
        with torch.no_grad():   # under fp16 delta.grad is loss-scaled: the sign is the same
            step = precision.signed_step(delta.grad, self.skipped)   # zeros on a skipped fp16 step
            self.delta[: len(x)].add_(step, alpha=self.step_size).clamp_(-self.eps, self.eps)
        return loss

    def state_dict(self):
        return {} if self.delta is None else {"delta": self.delta}

    def load_state_dict(self, state):
        self.delta = state.get("delta")
