"""TRADES (Zhang et al., ICML 2019): a robust method of the same era as Free, for comparison.

The update minimises ``CE(f(x), y) + beta * KL(f(x_adv) || f(x))``, where ``x_adv`` maximises the
KL term inside the eps-ball: start at ``x + 0.001 * N(0, 1)``, then K signed steps, each projected
to the ball and to [0, 1]. As in the authors' code, the inner steps run the model in eval mode
(BN running statistics) and the update in train mode, with two forward passes (clean and
adversarial), the KL summed over the batch and divided by the batch size. Defaults are the
authors' CIFAR-10 values: beta 6, 10 steps of 0.007 (1.785 pixel units, about 2/255).
"""
from __future__ import annotations

from ..keys import INT_POS, NUMBER_POS, PIXELS, Key
from ..lazy import lazy_import
from ..units import to_unit
from . import Method, StepCost, register_method

torch = lazy_import("torch")
perturb = lazy_import("freeadv.perturb")              # imports torch
distributed = lazy_import("freeadv.distributed")          # imports torch
precision = lazy_import("freeadv.precision")              # imports torch

START_NOISE = 0.001   # std of the Gaussian start around x, in [0, 1] units (the authors' value)
# Under amp: fp16 the inner steps' KL is multiplied by this before its input-only backward: next
# to the 0.001 start the KL's gradient is tiny (median 8e-7 an element on small_cnn) and fp16
# flushed 7% of its elements to zero (signless steps); x1024 leaves 0.01%, as the summed
# cross-entropy of K-PGD and FGSM-RS training has unscaled, and nothing overflowed (x65536
# neither). Only the sign of the gradient is used, which the factor does not change.
FP16_KL_SCALE = 1024.0


def kl_to_target(logits, target):
    """Summed KL(target || softmax(logits)), PyTorch's kl_div convention (the authors' loss)."""
    return torch.nn.functional.kl_div(torch.nn.functional.log_softmax(logits, dim=1), target, reduction="sum")


def scaled_kl_to_target(logits, target):
    """:func:`kl_to_target` x FP16_KL_SCALE: the inner steps' loss under fp16 autocast."""
    return FP16_KL_SCALE * kl_to_target(logits, target)


@register_method
class TRADES(Method):
    """Zhang et al. 2019: cross-entropy plus beta x the KL between clean and adversarial outputs."""

    name = "trades"
    keys = {"trades_beta": Key(6.0, NUMBER_POS, "trades: weight of the KL (robustness) term"),
            "trades_steps": Key(10, INT_POS, "trades: K, inner steps maximising the KL term"),
            "trades_step_size": Key(1.785, PIXELS, "trades: inner step, pixel units (0.007 in [0, 1])")}
    needs_randomness = True

    def __init__(self, *, eps: float, step_size: float, steps: int, beta: float, autocast=None) -> None:
        super().__init__(replay=1, autocast=autocast)
        self.eps, self.step_size, self.steps, self.beta = eps, step_size, steps, beta

    @classmethod
    def title(cls, params):
        return f"TRADES beta={params['trades_beta']:g}"

    @classmethod
    def id_fragment(cls, params):
        return f"trades{params['trades_steps']}-step{params['trades_step_size']:g}-beta{params['trades_beta']:g}"

    @classmethod
    def cost(cls, config):
        return StepCost(train=2, attack=config["trades_steps"])   # update: clean + adversarial pass

    @classmethod
    def from_config(cls, config, autocast=None):
        return cls(eps=to_unit(config["eps"]), step_size=to_unit(config["trades_step_size"]),
                   steps=config["trades_steps"], beta=config["trades_beta"], autocast=autocast)

    def adversarial_input(self, model, x, y, generator):
        """x_adv maximising KL(f(x_adv) || f(x)) in the eps-ball, with the model in eval mode."""
        ball = perturb.LinfStep(self.eps, self.step_size)
        with perturb.eval_mode(model), self.autocast():
            with torch.no_grad():
                target = torch.nn.functional.softmax(precision.at_least_fp32(model(x)), dim=1)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x_adv = (x + START_NOISE * noise).contiguous(memory_format=_format(x))
            loss = kl_to_target if self.scaler is None else scaled_kl_to_target   # a scaler: amp fp16
            for _ in range(self.steps):
                x_adv = ball.project(ball.step(x_adv, perturb.input_gradient(model, x_adv, target, loss)), x)
        return x_adv.detach()

    def step(self, model, optimizer, x, y, generator=None):
        x_adv = self.adversarial_input(distributed.unwrap(model), x, y, generator)
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits, logits_adv = model(x), model(x_adv)
        logits = precision.at_least_fp32(logits)
        natural = torch.nn.functional.cross_entropy(logits, y)
        robust = kl_to_target(precision.at_least_fp32(logits_adv), torch.nn.functional.softmax(logits, dim=1)) / len(x)
        loss = natural + self.beta * robust
        self.backward_step(loss, optimizer)
        return loss.detach()


def _format(x):
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
