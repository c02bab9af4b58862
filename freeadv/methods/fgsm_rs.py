"""FGSM with a random start (Wong et al. 2020, 'fast is better than free'); beyond the paper."""
from __future__ import annotations

from ..keys import PIXELS_OR_NULL, Key
from ..units import to_unit
from ..lazy import lazy_import
from . import ATTACK_BN, Method, StepCost, attack_bn_statistics, register_method

perturb = lazy_import("freeadv.perturb")   # imports torch


@register_method
class FGSMRandomStart(Method):
    """Uniform random start, one FGSM step of alpha = 1.25 eps, projected back to the eps-ball."""

    name = "fgsm_rs"
    keys = {"fgsm_alpha": Key(None, PIXELS_OR_NULL, "fgsm_rs: step, pixel units; null = 1.25 * eps (Wong et al. 2020)"),
            "attack_bn": ATTACK_BN}
    needs_randomness = True

    def __init__(self, *, eps: float, step_size: float, attack_bn: str = "update", autocast=None) -> None:
        super().__init__(replay=1, autocast=autocast)
        self.eps, self.step_size, self.attack_bn = eps, step_size, attack_bn

    @classmethod
    def title(cls, params):
        return "FGSM-RS"

    @classmethod
    def id_fragment(cls, params):
        return "fgsm_rs"

    @classmethod
    def cost(cls, config):
        return StepCost(train=1, attack=1)

    @classmethod
    def from_config(cls, config, autocast=None):
        alpha = config["fgsm_alpha"] if config["fgsm_alpha"] is not None else 1.25 * config["eps"]
        return cls(eps=to_unit(config["eps"]), step_size=to_unit(alpha), attack_bn=config["attack_bn"],
                   autocast=autocast)

    def adversarial_input(self, model, x, y, generator):
        ball = perturb.LinfStep(self.eps, self.step_size)
        with attack_bn_statistics(model, self.attack_bn), self.autocast():
            start = ball.random_start(x, generator)
            return ball.project(ball.step(start, perturb.input_gradient(model, start, y)), x).detach()
