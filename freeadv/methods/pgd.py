"""Madry et al.'s K-PGD adversarial training, the paper's baseline."""
from __future__ import annotations

from ..keys import INT_POS, PIXELS, Key
from ..lazy import lazy_import
from ..units import to_unit
from . import ATTACK_BN, Method, StepCost, attack_bn_statistics, register_method

perturb = lazy_import("freeadv.perturb")   # imports torch


@register_method
class PGDTraining(Method):
    """Random start, K ascent steps of size alpha (input gradients only), then one parameter step
    on the adversarial batch."""

    name = "pgd"
    keys = {"pgd_steps": Key(7, INT_POS, "pgd: K of K-PGD training"),
            "pgd_step_size": Key(2.0, PIXELS, "pgd: alpha of K-PGD training, pixel units"),
            "attack_bn": ATTACK_BN}
    needs_randomness = True

    def __init__(self, *, eps: float, step_size: float, steps: int, attack_bn: str = "update", autocast=None) -> None:
        super().__init__(replay=1, autocast=autocast)
        self.eps, self.step_size, self.steps, self.attack_bn = eps, step_size, steps, attack_bn

    @classmethod
    def title(cls, params):
        return f"{params['pgd_steps']}-PGD"

    @classmethod
    def id_fragment(cls, params):
        return f"pgd{params['pgd_steps']}-step{params['pgd_step_size']:g}"

    @classmethod
    def cost(cls, config):
        return StepCost(train=1, attack=config["pgd_steps"])

    @classmethod
    def from_config(cls, config, autocast=None):
        return cls(eps=to_unit(config["eps"]), step_size=to_unit(config["pgd_step_size"]),
                   steps=config["pgd_steps"], attack_bn=config["attack_bn"], autocast=autocast)

    def adversarial_input(self, model, x, y, generator):
        with attack_bn_statistics(model, self.attack_bn), self.autocast():
            return perturb.pgd(model, x, y, eps=self.eps, step_size=self.step_size, steps=self.steps,
                             generator=generator)
