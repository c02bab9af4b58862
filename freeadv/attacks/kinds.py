"""The attacks of the paper as registered kinds: PGD, CW, BIM, uniform noise, and none (clean)."""
from __future__ import annotations

import re

from ..lazy import lazy_import
from .spec import AttackKind, AttackSpec, num, register_attack

steps = lazy_import("freeadv.attacks.steps")   # imports torch


@register_attack
class PGD(AttackKind):
    """Cross-entropy PGD-K with a uniform random start (Madry et al.)."""
    name = "pgd"
    loss = "ce"
    random_start = True

    def perturb(self, model, x, y, spec, generator):
        return steps.pgd(model, x, y, eps=spec.eps_unit, step_size=spec.step_unit, steps=spec.steps,
                         loss=self.loss, random_start=self.random_start, generator=generator)


@register_attack
class CW(PGD):
    """PGD-K on Madry et al.'s Carlini-Wagner margin loss."""
    name = "cw"
    loss = "cw"


@register_attack
class BIM(PGD):
    """PGD without a random start (Kurakin et al.'s basic iterative method); deterministic, so one run."""
    name = "bim"
    random_start = False
    uses_restarts = False


@register_attack
class Noise(AttackKind):
    """Uniform noise of the same eps: a gradient attack that does worse signals a broken evaluation."""
    name = "noise"
    gradient = False
    form = "noise-eps<E>"
    _ID = re.compile(r"^noise-eps(?P<eps>[0-9.]+)$")

    def id(self, spec):
        if spec.eps is None:
            return super().id(spec)
        return f"noise-eps{num(spec.eps)}"

    def parse(self, attack_id):
        match = self._ID.match(attack_id)
        return AttackSpec("noise", 0, float(match["eps"])) if match else None

    def describe(self, spec):
        return "uniform random noise" + ("" if spec.eps is None else f", eps {num(spec.eps)}")

    def cost(self, spec):
        return 0

    def perturb(self, model, x, y, spec, generator):
        return steps.uniform_noise(x, spec.eps_unit, generator)


@register_attack
class NoAttack(AttackKind):
    """The clean test images (the clean pass every attack job also makes)."""
    name = "none"
    gradient = False
    uses_restarts = False
    form = "clean"

    def id(self, spec):
        return "clean"

    def parse(self, attack_id):
        return AttackSpec("none") if attack_id == "clean" else None

    def describe(self, spec):
        return "no attack (clean test images)"

    def cost(self, spec):
        return 0

    def perturb(self, model, x, y, spec, generator):
        return x
