"""The attacks of the paper as registered kinds: PGD, CW, BIM, uniform noise, and none (clean)."""
from __future__ import annotations

import re

from ..lazy import lazy_import
from .spec import N_SUFFIX, AttackError, AttackKind, AttackSpec, n_suffix, num, parsed_n, register_attack

primitives = lazy_import("freeadv.perturb")   # imports torch


@register_attack
class PGD(AttackKind):
    """Cross-entropy PGD-K with a uniform random start (Madry et al.)."""
    name = "pgd"
    loss = "ce"
    random_start = True

    def perturb(self, model, x, y, spec, generator):
        return primitives.pgd(model, x, y, eps=spec.eps_unit, step_size=spec.step_unit, steps=spec.steps,
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
    form = "noise-eps<E>[-n<images>]"
    _ID = re.compile(r"^noise-eps(?P<eps>[0-9.]+)" + N_SUFFIX + "$")

    def id(self, spec):
        if spec.eps is None:
            return super().id(spec)
        return f"noise-eps{num(spec.eps)}{n_suffix(spec)}"

    def parse(self, attack_id):
        match = self._ID.match(attack_id)
        return AttackSpec("noise", 0, float(match["eps"]), n=parsed_n(match)) if match else None

    def describe(self, spec):
        return "uniform random noise" + ("" if spec.eps is None else f", eps {num(spec.eps)}")

    def cost(self, spec):
        return 0

    def perturb(self, model, x, y, spec, generator):
        return primitives.uniform_noise(x, spec.eps_unit, generator)


@register_attack
class NoAttack(AttackKind):
    """The clean test images (the clean pass every attack job also makes)."""
    name = "none"
    gradient = False
    uses_restarts = False
    sized = False
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


autoattack = lazy_import("freeadv.attacks.autoattack")   # imports torch and pyautoattack

AUTOATTACK_ITERATIONS = 100        # APGD and FAB iterations of AutoAttack's standard version
SQUARE_QUERIES_PER_ITERATION = 50  # its 5,000 Square queries at 100 iterations (kept in proportion)

# What AutoAttack's sub-attacks cost per point they attack, in PGD attack steps (one forward and one
# input backward of the point). The counts are pyautoattack 0.2's standard version for Linf
# (AutoAttack._set_version("standard")): APGD-CE 1 restart x 100 iterations; APGD-T 9 target
# classes x 1 restart x 100 iterations; FAB-T 9 target classes x 1 restart x 100 iterations;
# Square 1 restart x 5,000 queries. A targeted sub-attack drops a point once a target class breaks
# it, so charging every point all 9 targets is an upper bound, tight for the points it leaves robust
# (APGD-T spent 0.85 to 0.91 of it on results/mini1600's four adversarially trained models).
AUTOATTACK_TARGETS = 9
# Measured against one PGD step (freeadv.perturb.input_gradient) in one process, pyautoattack's
# classes timed at two iteration / query counts and differenced (so set-up cost drops out), on
# points too robust to break (eps 1e-5) so that each pays every iteration; 1 CPU thread, batch 32,
# CIFAR-sized inputs: "small_cnn" and "wrn32_k w1" below. "mini1600": pyautoattack's own runs of
# results/mini1600 (WRN-32 width 1, batch 500, 2 CPU cores), sub_attacks[].seconds over
# points x iterations, relative to an APGD-CE point-iteration.
# APGD iteration: one gradient of the loss w.r.t. the input, a PGD step by construction. Measured
# 1.07 (wrn32_k w1) and 1.25 (small_cnn, where APGD's bookkeeping is not small beside the model).
APGD_ITERATION_STEPS = 1.0
# FAB-T iteration: the gradient of a logit difference (pyautoattack leaves the weights'
# requires_grad on, so the backward computes weight gradients too), one forward to test the new
# point, and a Linf projection (a sort over the input's dimensions). Measured 2.38 steps (wrn32_k
# w1), 3.03 (small_cnn: the projection is large beside so small a model), 1.65 to 1.81 APGD-CE
# iterations (mini1600, four adversarially trained models). From the algorithm on a model that dwarfs the projection: a training step's forward
# and backward (1.74 attack steps for WRN-32-10 on the H200, results/gpu/2026-11-27-h200) plus a
# forward (~0.5), ~2.2.
FAB_ITERATION_STEPS = 2.0
# Square query: one forward of the points not yet broken. Measured 0.45 steps (wrn32_k w1), 0.51
# (small_cnn), 0.39 APGD-CE iterations (mini1600, all four).
SQUARE_QUERY_STEPS = 0.5
PER_ITERATION_STEPS = {"apgd-ce": APGD_ITERATION_STEPS, "apgd-t": AUTOATTACK_TARGETS * APGD_ITERATION_STEPS,
                       "fab-t": AUTOATTACK_TARGETS * FAB_ITERATION_STEPS,
                       "square": SQUARE_QUERIES_PER_ITERATION * SQUARE_QUERY_STEPS}
SUB_ATTACK_TITLES = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "fab-t": "FAB-T", "square": "Square"}


@register_attack
class AutoAttack(AttackKind):
    """AutoAttack, standard version (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020) through
    pyautoattack; steps = its APGD/FAB iterations (100 standard; fewer = a cheap smoke variant)."""
    name = "autoattack"
    sub_attacks = ("apgd-ce", "apgd-t", "fab-t", "square")
    label = "AutoAttack"
    uses_restarts = False
    uses_step = False
    whole_set = True
    default_steps = 100
    form = "<kind><iterations>-eps<E>[-n<images>]"
    _ID = re.compile(r"^(?P<steps>\d+)-eps(?P<eps>[0-9.]+)" + N_SUFFIX + "$")

    def id(self, spec):
        if spec.eps is None:
            raise AttackError(f"attack {spec.kind}-{spec.steps} has no eps yet; bind it to a row first")
        return f"{self.name}{spec.steps}-eps{num(spec.eps)}{n_suffix(spec)}"

    def parse(self, attack_id):
        match = self._ID.match(attack_id[len(self.name):]) if attack_id.startswith(self.name) else None
        if not match:
            return None
        return AttackSpec(self.name, int(match["steps"]), float(match["eps"]), n=parsed_n(match))

    def describe(self, spec):
        variant = "standard settings" if spec.steps == AUTOATTACK_ITERATIONS else (
            f"cheap variant: {spec.steps} iterations"
            + (f", {SQUARE_QUERIES_PER_ITERATION * spec.steps} Square queries" if "square" in self.sub_attacks else ""))
        eps = "eps = training eps" if spec.eps is None else f"eps {num(spec.eps)}"
        images = f", first {spec.n} test images" if spec.n else ""
        return f"{self.label} ({', '.join(SUB_ATTACK_TITLES[s] for s in self.sub_attacks)}; {variant}), {eps}{images}"

    def cost(self, spec):
        """Attack steps per image were every image to reach every sub-attack: the bound that
        :meth:`sub_attack_costs` and the share of images reaching each sub-attack improve on."""
        return round(sum(self.sub_attack_costs(spec).values()))

    def sub_attack_costs(self, spec):
        """Attack steps each sub-attack spends on one point that reaches it. AutoAttack attacks only
        the points still robust, so a sub-attack's share of the job is this times its points."""
        return {s: spec.steps * PER_ITERATION_STEPS[s] for s in self.sub_attacks}

    def perturb(self, model, x, y, spec, generator):
        return autoattack.perturb_batch(model, x, y, spec, self.sub_attacks, seed=0)

    def evaluate_set(self, model, x, y, spec, **options):
        result = autoattack.evaluate_autoattack(model, x, y, spec, self.sub_attacks, **options)
        return {**result, "library": {"pyautoattack": autoattack.library_version(),
                                      "sub_attacks": list(self.sub_attacks)}}


@register_attack
class APGD(AutoAttack):
    """AutoAttack's two APGD attacks only (APGD-CE, APGD-T with the standard version's settings):
    the cheaper screen."""
    name = "apgd"
    sub_attacks = ("apgd-ce", "apgd-t")
    label = "APGD screen"
