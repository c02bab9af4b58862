"""The paper's design: every table and figure as rows of cells and columns of metrics.

The records (:class:`Cell`, :class:`Metric`, :class:`Row`, :class:`Target`) are in :mod:`.records`
and are imported from here as the design's vocabulary. Nothing here
knows how a scale realises a cell (see :mod:`.scales`), and no method is special-cased: titles and
model-id fragments come from the method registry. Target titles and row labels are templates whose
fields (``{cifar10}``, ``{wrn32_10}``, ``{training}``, ``{methods}``) each scale fills with what it
trains (:mod:`.titles`): the paper's names appear only where they are true.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..attacks import AttackSpec
from ..attacks.kinds import AUTOATTACK_ITERATIONS
from ..attacks.spec import PAPER_STEP, num
from ..errors import UserError
from .records import (ARCH_TITLES, DATASET_TITLES, PAPER_ARCHS, PAPER_DATASETS, RECIPES,  # noqa: F401 (the design's vocabulary)
                      TARGET_BUILDERS, Analysis, Cell, Metric, Row, Target, cell, register_targets)

# --- attacks and metrics ---------------------------------------------------------------------------

# Attacks of the paper. CIFAR: eps 8, step 2 (Madry et al.); ImageNet: step 1, eps = training eps.
def _cifar(kind: str, steps: int, restarts: int = 1) -> AttackSpec:
    return AttackSpec(kind, steps, 8.0, PAPER_STEP["cifar"], restarts)


def _imagenet(steps: int, eps: float | None) -> AttackSpec:
    return AttackSpec("pgd", steps, eps, PAPER_STEP["imagenet"])


# AutoAttack (standard version) beside every robust number: the field's standard since 2020. ImageNet
# models are evaluated on the first 5,000 validation images, RobustBench's ImageNet protocol.
IMAGENET_AUTOATTACK_N = 5000


def _autoattack(eps: float | None, *, n: int | None = None, rows: tuple[str, ...] | None = None,
                natural: bool = False) -> Metric:
    """AutoAttack on the robust rows; ``natural``: on naturally trained rows too (Table 1: the
    reference that AutoAttack, like PGD-20, finds the natural model at ~0%)."""
    return Metric("aa", "AutoAttack", "robust_acc", AttackSpec("autoattack", AUTOATTACK_ITERATIONS, eps, n=n),
                  robust_only=not natural, rows=rows)


CLEAN = AttackSpec("none")

# Sanity evaluations run on every table model (freeadv.sanity reads them): uniform noise of the
# row's eps, whose accuracy a working gradient attack must not exceed, and a PGD-20 of a very large
# budget, which must reach ~0% unless gradients are masked.
LARGE_EPS_PGD = AttackSpec("pgd", 20, 64.0, 8.0)


def sanity_attacks(metrics: tuple[Metric, ...], eval_eps: float | None) -> list[AttackSpec]:
    """The noise attack at the eps of the row's first gradient attack, and the large-eps PGD."""
    eps = next((m.attack.bind(eval_eps).eps for m in metrics
                if m.attack is not None and m.attack.attack.gradient), None)
    return ([AttackSpec("noise", 0, eps)] if eps is not None else []) + [LARGE_EPS_PGD]


def _nat(attack: AttackSpec) -> Metric:
    """Natural accuracy, read from the clean pass of an attack job the table runs anyway."""
    return Metric("nat", "Natural images", "clean_acc", attack)


def _robust(key: str, label: str, attack: AttackSpec) -> Metric:
    return Metric(key, label, "robust_acc", attack)


TRAIN_MIN = Metric("train_min", "Train time (min)", "train_minutes", None)


def _imagenet_metrics(eps: float, train_minutes: bool = False) -> tuple[Metric, ...]:
    metrics = (_nat(_imagenet(10, eps)), _robust("pgd10", "PGD-10", _imagenet(10, eps)),
               _robust("pgd50", "PGD-50", _imagenet(50, eps)), _robust("pgd100", "PGD-100", _imagenet(100, eps)),
               _autoattack(eps, n=IMAGENET_AUTOATTACK_N))
    return metrics + ((TRAIN_MIN,) if train_minutes else ())


# --- the paper's models ------------------------------------------------------------------------------

def natural(dataset: str, arch: str, replay: int = 1) -> Cell:
    return cell(dataset, arch, "natural", replay=replay)


def free(dataset: str, arch: str, m: int, eps: float, **kw: Any) -> Cell:
    return cell(dataset, arch, "free", replay=m, eps=float(eps), **kw)


def kpgd(dataset: str, arch: str, steps: int, step_size: float, eps: float) -> Cell:
    return cell(dataset, arch, "pgd", eps=float(eps), pgd_steps=steps, pgd_step_size=float(step_size))


WRN, C10, C100, INET = "wrn32_10", "cifar10", "cifar100", "imagenet"

PAPER_SWEEPS: dict[str, list] = {
    "figure1_replays": [1, 2, 4, 6, 8, 10, 12, 16],   # m = 1 is natural training
    "figure4_eps": [2, 3, 4, 5, 6, 7],
    "figure4_replays": [2, 4, 6, 8],
    "trial_seeds": [0, 1, 2, 3, 4],
    # More training seeds of Table 1's rows, as rows of their own (<row>_s<seed>): row key -> seeds.
    # The paper trains one model per row; a scale adds seeds where a claim needs them (seeded intervals).
    "table1_seeds": {},
}


# --- the targets -----------------------------------------------------------------------------------

# APGD-CE then APGD-T (AutoAttack's standard settings) on the adversarially trained rows: the screen
# a claim reads where full AutoAttack is too dear for every model (a scale that runs AutoAttack on
# every row has its APGD-T flags already, and omits this column).
APGD = Metric("apgd", "APGD-CE + APGD-T", "robust_acc", AttackSpec("apgd", AUTOATTACK_ITERATIONS, 8.0),
              robust_only=True)


def _table1_rows(seeds: dict[str, list[int]]) -> tuple[Row, ...]:
    """Table 1's rows, then each extra training seed a scale asks for (``table1_seeds``) as a row of
    its own, ``<row>_s<seed>``, with the paper values of its row."""
    rows = (Row("natural", "Natural", natural(C10, WRN)),
            *(Row(f"free_m{m}", f"Free m={m}", free(C10, WRN, m, 8),
                  robustbench="Shafahi2019Adversarial" if m == 8 else None) for m in (2, 4, 8, 10)),
            Row("pgd7", "7-PGD trained", kpgd(C10, WRN, 7, 2, 8)))
    by_key = {row.key: row for row in rows}
    unknown = sorted(set(seeds) - set(by_key))
    if unknown:
        raise UserError(f"sweeps.table1_seeds names '{unknown[0]}', not a row of Table 1 ({', '.join(by_key)})")
    extra = tuple(Row(f"{key}_s{seed}", f"{by_key[key].label}, seed {seed}",
                      replace(by_key[key].cell, seed=seed), paper_ref=("table1", key))
                  for key, row_seeds in seeds.items() for seed in row_seeds if seed != 0)
    return rows + extra


@register_targets
def _cifar_tables(sweeps: dict[str, Any]) -> list[Target]:
    """Tables 1 and 2: CIFAR-10 and CIFAR-100, WRN-32-10, eps 8."""
    pgd20, pgd100, cw100, pgd20_r10 = _cifar("pgd", 20), _cifar("pgd", 100), _cifar("cw", 100), _cifar("pgd", 20, 10)
    return [
        Target("table1", "table", "Table 1: {cifar10}, {wrn32_10}, eps 8{training}: accuracy and robustness",
               rows=_table1_rows(sweeps["table1_seeds"]),
               metrics=(_nat(pgd20), _robust("pgd20", "PGD-20", pgd20), _robust("pgd100", "PGD-100", pgd100),
                        _robust("cw100", "CW-100", cw100), _robust("pgd20_r10", "10 restart PGD-20", pgd20_r10),
                        _autoattack(8.0, natural=True), APGD, TRAIN_MIN)),
        Target("table2", "table", "Table 2: {cifar100}, {wrn32_10}, eps 8{training}: accuracy and robustness",
               rows=(Row("natural", "Natural", natural(C100, WRN)),
                     *(Row(f"free_m{m}", f"Free m={m}", free(C100, WRN, m, 8)) for m in (2, 4, 6, 8, 10)),
                     Row("pgd2", "2-PGD trained (step 2)", kpgd(C100, WRN, 2, 2, 8)),
                     Row("pgd7", "7-PGD trained", kpgd(C100, WRN, 7, 2, 8))),
               metrics=(_nat(pgd20), _robust("pgd20", "PGD-20", pgd20), _robust("pgd100", "PGD-100", pgd100),
                        _autoattack(8.0), TRAIN_MIN),
               notes=("The paper does not give the 2-PGD step size. It says it adopts Madry et al.'s "
                      "adversarial-training code, whose step is 2/255, and its 2-PGD numbers are those of a "
                      "weak adversary (67.94% clean, 17.08% PGD-20: between its Free m=2 and m=4 rows, far "
                      "from 7-PGD's 59.87% / 22.76%), as 2 steps of 2/255 from a random start are; so 2/255.",)),
    ]


@register_targets
def _imagenet_tables(sweeps: dict[str, Any]) -> list[Target]:
    """Tables 3-5: ImageNet ResNets."""
    return [
        Target("table3", "table", "Table 3: {imagenet}, {resnet50}, eps 2{training}: accuracy and robustness",
               rows=(Row("natural", "Natural", natural(INET, "resnet50")),
                     *(Row(f"free_m{m}", f"Free m={m}", free(INET, "resnet50", m, 2)) for m in (2, 4, 6, 8))),
               metrics=_imagenet_metrics(2)),
        Target("table4", "table", "Table 4: {imagenet}, {resnet50}, eps 4{training}: Free m=4 vs 2-PGD",
               rows=(Row("free_m4", "{resnet50} - Free m=4", free(INET, "resnet50", 4, 4)),
                     Row("pgd2", "{resnet50} - 2-PGD trained", kpgd(INET, "resnet50", 2, 2, 4))),
               metrics=_imagenet_metrics(4, train_minutes=True)),
        Target("table5", "table", "Table 5: {imagenet}, Free m=4, eps 4{training}: growing capacity, "
                                  "{resnet50} / {resnet101} / {resnet152}",
               rows=tuple(Row(a, "{" + a + "}", free(INET, a, 4, 4)) for a in ("resnet50", "resnet101", "resnet152")),
               metrics=_imagenet_metrics(4)),
    ]


@register_targets
def _comparison_tables(sweeps: dict[str, list]) -> list[Target]:
    """YOPO, the trials over seeds, and FGSM-RS and TRADES beside Free: comparisons on CIFAR-10."""
    pgd20, pgd20_r20 = _cifar("pgd", 20), _cifar("pgd", 20, 20)
    return [
        Target("yopo", "table", "Comparison with YOPO: {cifar10}, {wrn34_10}{training}, Free m=10, batch 256",
               rows=(Row("free_m10_bs256", "{wrn34_10} Free m=10, batch 256",
                         free(C10, "wrn34_10", 10, 8, batch_size=256)),
                     Row("yopo_5_3", "YOPO 5-3 (reported by Zhang et al. 2019 for WRN-34-10 on CIFAR-10; "
                                     "not trained here)", None)),
               metrics=(_nat(pgd20), _robust("pgd20", "PGD-20", pgd20), _autoattack(8.0))),
        Target("trials", "table", "Trials of Free m=8 on {cifar10}, {wrn32_10}{training}, over training seeds "
                                  "(the paper: five, 0-4)",
               rows=tuple(Row(f"seed{seed}", f"Free m=8, seed {seed}", free(C10, WRN, 8, 8, seed=seed))
                          for seed in sweeps["trial_seeds"]),
               metrics=(_nat(pgd20_r20), _robust("pgd20_r20", "20 restart PGD-20", pgd20_r20),
                        _autoattack(8.0, rows=("seed0",))),
               summary="mean_std",
               notes=("mean and sample standard deviation (ddof=1) over the seeds",)),
        Target("fast", "table", "Comparison on {cifar10}, {wrn32_10}, eps 8{training}: {methods}",
               rows=(Row("fgsm_rs", "FGSM-RS under the schedule of Free and 7-PGD (not in the paper)",
                         cell(C10, WRN, "fgsm_rs", eps=8.0)),
                     Row("fgsm_rs_wong", "FGSM-RS, Wong et al.'s recipe: {preact_resnet18}, 15 epochs, cyclic lr, "
                                         "early stopping (not in the paper)",
                         cell(C10, "preact_resnet18", "fgsm_rs", eps=8.0, fgsm_alpha=10.0, recipe="wong2020"),
                         robustbench="Wong2020Fast"),
                     Row("trades", "TRADES beta=6 (Zhang et al. 2019; not in the paper)",
                         cell(C10, WRN, "trades", eps=8.0, trades_beta=6.0), robustbench="Zhang2019Theoretically"),
                     Row("free_m8", "Free m=8", free(C10, WRN, 8, 8), paper_ref=("table1", "free_m8"),
                         robustbench="Shafahi2019Adversarial"),
                     Row("pgd7", "7-PGD trained", kpgd(C10, WRN, 7, 2, 8), paper_ref=("table1", "pgd7"))),
               metrics=(_nat(pgd20), _robust("pgd20", "PGD-20", pgd20), _autoattack(8.0), TRAIN_MIN),
               notes=("Paper values of Free m=8 and 7-PGD are Table 1's.",
                      "RobustBench columns: its entry for a related published model, with RobustBench's "
                      "architecture when it differs from the row's (TRADES: the authors' WRN-34-10, beta 6, "
                      "eps 0.031; Wong et al.: their released PreAct ResNet-18, reported with PGD-50 and 10 "
                      "restarts).",
                      "FGSM-RS twice: under the paper's schedule (the regime where FGSM-RS is known to collapse) "
                      "and with Wong et al.'s own recipe (freeadv.experiments.design.RECIPES['wong2020']).")),
    ]


# Supplementary figures: figure -> the name of its supplement, a target of its own (own output files)
# drawn from analyses of the same models.
SUPPLEMENTS = {"figure3": "figure3_surfaces"}


def _loss_surfaces(planes: tuple[str, ...]) -> tuple[Analysis, ...]:
    """Figure 3's loss-surface jobs on each plane: the slices read the adversarial plane, the
    supplement's 3-D surfaces both planes."""
    models = ((natural(C10, WRN), "Natural"), (free(C10, WRN, 8, 8), "Free m=8"),   # natural: the control
              (kpgd(C10, WRN, 7, 2, 8), "7-PGD trained"))                          # (robust training flattens it)
    return tuple(Analysis("loss-surface", c, label, (("plane", plane), ("images", 2), ("grid", 21), ("span", 16)))
                 for plane in planes for c, label in models)


@register_targets
def _figures(sweeps: dict[str, list]) -> list[Target]:
    """Figures 1-4 (replay sweep, adversarial examples, loss slices, ImageNet eps sweep) and Figure 3's
    supplement (the 3-D loss surfaces)."""
    free8, pgd7 = free(C10, WRN, 8, 8), kpgd(C10, WRN, 7, 2, 8)
    return [
        Target("figure1", "figure", "Figure 1: natural training of {wrn32_10} with minibatch replay{training}: "
                                    "validation accuracy vs m",
               rows=tuple(Row(f"{d}_m{m}", f"m={m}", natural(d, WRN, m), group=d, x=m)
                          for d in (C10, C100) for m in sweeps["figure1_replays"])
               + tuple(Row(f"{d}_pgd7", "7-PGD trained", kpgd(d, WRN, 7, 2, 8), group=d) for d in (C10, C100)),
               metrics=(Metric("nat", "Natural images", "clean_acc", CLEAN),), partial=True),
        Target("figure2", "figure", "Figure 2: BIM adversarial examples (eps 30, step 2, 50 iterations) "
                                    "against {wrn32_10} models{training}",
               analyses=tuple(Analysis("adv-examples", c, label, (("eps", 30), ("step_size", 2), ("steps", 50),
                                                                  ("last", 9)))
                              for c, label in ((pgd7, "7-PGD trained"), (free8, "Free m=8")))),
        Target("figure3", "figure", "Figure 3: cross-entropy loss along the adversarial and a Rademacher direction "
                                    "through {cifar10} test images, {wrn32_10} models{training}",
               analyses=_loss_surfaces(("adv-rad",))),
        Target(SUPPLEMENTS["figure3"], "figure", "Figure 3, supplement: cross-entropy loss surfaces of {cifar10} test "
                                                 "images, {wrn32_10} models{training}",
               analyses=_loss_surfaces(("adv-rad", "rad-rad"))),
        Target("figure4", "figure", "Figure 4: {imagenet} {resnet50}{training}: clean and PGD-100 accuracy vs "
                                    "training eps",
               rows=tuple(Row(f"natural_eps{num(e)}", "Natural", natural(INET, "resnet50"), eval_eps=float(e),
                              group="natural", x=e) for e in sweeps["figure4_eps"])
               + tuple(Row(f"free_m{m}_eps{num(e)}", f"Free m={m}", free(INET, "resnet50", m, e), eval_eps=float(e),
                           group=f"free_m{m}", x=e) for m in sweeps["figure4_replays"] for e in sweeps["figure4_eps"]),
               metrics=(_nat(_imagenet(100, None)), _robust("pgd100", "PGD-100", _imagenet(100, None))),
               notes=("Attacks use eps = the training eps (the natural model: each eps of the sweep) and step 1.",)),
    ]


def make_targets(sweeps: dict[str, list] | None = None) -> dict[str, Target]:
    """Every registered table and figure: the paper's, then the user's. ``sweeps`` may shorten the
    figure sweeps (smoke scale). Two targets of one name would share result files and rules: refused."""
    s = {**PAPER_SWEEPS, **(sweeps or {})}
    targets: dict[str, Target] = {}
    for name, build in TARGET_BUILDERS.items():
        for target in build(s):
            if target.kind not in ("table", "figure"):
                raise TypeError(f"target '{target.name}' of {name} has kind {target.kind!r}: expected table or figure")
            if target.name in targets:
                raise TypeError(f"target '{target.name}' of {name} is already registered")
            targets[target.name] = target
    return targets


# The paper's own targets, as this module registers them (a module of the user's registers more:
# code that must see those calls make_targets or reads the plan).
TARGETS: dict[str, Target] = make_targets()
TABLES = tuple(name for name, t in TARGETS.items() if t.kind == "table")
FIGURES = tuple(name for name, t in TARGETS.items() if t.kind == "figure")
