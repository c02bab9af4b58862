"""What an evaluation attack is, in one class, and the registry of attack kinds.

:class:`AttackSpec` is an attack in the paper's units (pixels /255): kind, steps, eps, step size,
restarts. It is serialised to and from the id used in result file names and Snakemake wildcards
(``pgd20-eps8-step2-r10``), to ``freeadv attack`` arguments and to the paper's wording. Each kind
is one registered :class:`AttackKind` (its id form, cost, sanity role and torch implementation);
the CLI, the experiment plan, the sanity checks and ``estimate`` read :data:`ATTACKS`.

No torch here (the plan is built at Snakemake parse time); implementations bind it lazily.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ..data.catalog import DATASETS
from ..units import to_unit
from ..errors import UserError
from ..registry import Registry


class AttackError(UserError):
    """A bad attack id or spec; one line saying what form is expected. A bad field of a spec
    carries ``field``, ``value`` and ``expected``, so a command line can name its own option."""
    field: str | None = None

    @classmethod
    def bad(cls, kind: str, field: str, value: Any, expected: str) -> "AttackError":
        err = cls(f"attack {kind} has bad {field} {value}: {expected}")
        err.field, err.value, err.expected = field, value, expected
        return err


def num(value: float) -> str:
    """8.0 -> '8', 2.5 -> '2.5': numbers as they appear in ids and labels."""
    return f"{value:g}"


EARLIER_SECONDS = "wall_seconds_earlier_processes"   # a resumed whole-set eval's time before its last resume
N_SUFFIX = r"(?:-n(?P<n>\d+))?"   # the optional '-n<images>' that ends every sized kind's id


def n_suffix(spec: "AttackSpec") -> str:
    return f"-n{spec.n}" if spec.n else ""


def parsed_n(match: re.Match) -> int | None:
    return int(match["n"]) if match["n"] else None


class AttackKind:
    """One kind of attack. Subclasses set ``name`` and the flags, and implement ``perturb``.

    - ``gradient``: a gradient attack (the sanity checks expect it to beat noise and to reach ~0%
      at an unbounded eps).
    - ``uses_restarts``: R restarts keep each example's worst case (else the spec's R must be 1).
    - ``form``: the id pattern after the kind's name, and ``id`` / ``parse`` / ``describe``.
    - ``cost(spec)``: input-gradient steps per test image (``freeadv estimate``).
    - ``default_steps``: K when none is given (``freeadv attack --steps``); ``uses_step``: whether
      the kind has a step size (AutoAttack's are its own, step-size free).
    - ``whole_set``: the kind evaluates the whole test subset at once (``evaluate_set``), resumably,
      instead of batch by batch through ``perturb``.
    """

    name: ClassVar[str] = ""
    gradient: ClassVar[bool] = True
    uses_restarts: ClassVar[bool] = True
    uses_step: ClassVar[bool] = True
    whole_set: ClassVar[bool] = False
    # its id may fix the number of images, the first n of the test subset (ImageNet's AutoAttack: 5,000;
    # a scale's robust subset, ``attacks: {n: ...}``); the clean pass never does: it is always the whole subset
    sized: ClassVar[bool] = True
    default_steps: ClassVar[int] = 20
    form: ClassVar[str] = "<kind><steps>-eps<E>-step<S>[-r<restarts>][-n<images>]"
    _ID: ClassVar[re.Pattern] = re.compile(r"^(?P<steps>\d+)-eps(?P<eps>[0-9.]+)-step(?P<step>[0-9.]+)"
                                           r"(?:-r(?P<restarts>\d+))?" + N_SUFFIX + "$")

    def id(self, spec: "AttackSpec") -> str:
        if spec.eps is None or spec.step_size is None:
            raise AttackError(f"attack {spec.kind}-{spec.steps} has no eps/step size yet; bind it to a row first")
        restarts = f"-r{spec.restarts}" if spec.restarts > 1 and self.uses_restarts else ""
        return f"{self.name}{spec.steps}-eps{num(spec.eps)}-step{num(spec.step_size)}{restarts}{n_suffix(spec)}"

    def parse(self, attack_id: str) -> "AttackSpec | None":
        """The spec an id of this kind stands for; None when the id is not of this kind."""
        match = self._ID.match(attack_id[len(self.name):]) if attack_id.startswith(self.name) else None
        if not match:
            return None
        return AttackSpec(self.name, int(match["steps"]), float(match["eps"]), float(match["step"]),
                          int(match["restarts"] or 1), n=parsed_n(match))

    def describe(self, spec: "AttackSpec") -> str:
        text = f"{self.name.upper()}-{spec.steps}" + (f", {spec.restarts} restarts" if spec.restarts > 1 else "")
        eps = "eps = training eps" if spec.eps is None else f"eps {num(spec.eps)}"
        return f"{text}, {eps}, step {num(spec.step_size)}" + (f", first {spec.n} test images" if spec.n else "")

    def cost(self, spec: "AttackSpec") -> int:
        return max(spec.steps, 1) * spec.restarts

    def perturb(self, model, x, y, spec: "AttackSpec", generator):
        """One run of the attack on a batch (sizes via ``spec.eps_unit`` / ``spec.step_unit``)."""
        raise NotImplementedError

    def evaluate_set(self, model, x, y, spec: "AttackSpec", **options) -> dict[str, Any]:
        """Whole-set evaluation of a ``whole_set`` kind: x, y on the CPU; options seed, batch_size,
        device, state_path, progress. Returns the metrics of an eval JSON plus the kind's extras."""
        raise NotImplementedError(f"attack kind {self.name} evaluates batch by batch (perturb)")


ATTACKS: Registry[AttackKind] = Registry("attack kind")


def register_attack(cls: type[AttackKind]) -> type[AttackKind]:
    """Class decorator: add one instance of an attack kind to ATTACKS under ``cls.name``."""
    if not cls.name or cls.name in ATTACKS:
        raise TypeError(f"attack kind {cls.__name__}: name {cls.name!r} is empty or already registered")
    if cls.perturb is AttackKind.perturb:
        raise TypeError(f"attack kind {cls.__name__} does not implement perturb")
    ATTACKS.add(cls.name, cls())
    return cls


@dataclass(frozen=True)
class AttackSpec:
    """An evaluation attack in pixel units. ``eps=None``: the eps of the row (or the trained model)."""
    kind: str = "pgd"
    steps: int = 0
    eps: float | None = None
    step_size: float | None = None
    restarts: int = 1
    n: int | None = None               # first n test images; None = the model's test subset

    def __post_init__(self) -> None:
        """Every check of a spec, in one place: the command line, the plan and the Python API
        build a spec, so each bad value is refused here, once, with the field it belongs to."""
        if self.kind not in ATTACKS:
            raise AttackError(f"unknown attack '{self.kind}'; choose one of: {', '.join(ATTACKS)}")
        if self.steps < 0:
            raise AttackError.bad(self.kind, "steps", self.steps, "expected an integer >= 0")
        if self.restarts < 1:
            raise AttackError.bad(self.kind, "restarts", self.restarts, "expected an integer >= 1")
        if self.restarts > 1 and not self.attack.uses_restarts:
            raise AttackError.bad(self.kind, "restarts", self.restarts, f"{self.kind} runs once (it has no restarts)")
        if self.step_size is not None and not self.attack.uses_step:
            raise AttackError.bad(self.kind, "step_size", num(self.step_size), f"{self.kind} chooses its own steps")
        for field, value in (("eps", self.eps), ("step_size", self.step_size)):
            if value is not None and not 0 < value <= 255:
                raise AttackError.bad(self.kind, field, value, "expected a number in (0, 255] (pixel units)")
        if self.n is not None and self.n < 1:
            raise AttackError.bad(self.kind, "n", self.n, "expected an integer >= 1 (or none: all test images)")

    @property
    def attack(self) -> AttackKind:
        return ATTACKS[self.kind]

    @property
    def id(self) -> str:
        return self.attack.id(self)

    @classmethod
    def parse(cls, attack_id: str) -> "AttackSpec":
        """Inverse of :attr:`id`: ``pgd20-eps8-step2-r10`` -> AttackSpec('pgd', 20, 8, 2, 10)."""
        for kind in ATTACKS.values():
            spec = kind.parse(attack_id)
            if spec is not None:
                return spec
        forms = "; ".join(f"{k.form.replace('<kind>', name)}" for name, k in ATTACKS.items())
        raise AttackError(f"attack id '{attack_id}' is not of a known form ({forms}), e.g. pgd20-eps8-step2-r10")

    def cli_args(self) -> list[str]:
        """Arguments of ``freeadv attack`` that run this attack."""
        args = ["--attack", self.kind, "--steps", str(self.steps), "--restarts", str(self.restarts)]
        args += ["--eps", num(self.eps)] if self.eps is not None else []
        args += ["--n", str(self.n)] if self.n is not None else []
        return args + (["--step-size", num(self.step_size)] if self.step_size is not None else [])

    def describe(self) -> str:
        """The paper's wording, e.g. 'PGD-20, 10 restarts, eps 8, step 2'."""
        return self.attack.describe(self)

    def bind(self, eps: float | None) -> "AttackSpec":
        """This attack with the row's eps where it has none of its own."""
        return self if self.eps is not None or self.kind == "none" else replace(self, eps=eps)

    def capped(self, max_steps: int | None, max_restarts: int | None) -> "AttackSpec":
        steps = min(self.steps, max_steps) if max_steps and self.kind != "none" else self.steps
        restarts = min(self.restarts, max_restarts) if max_restarts else self.restarts
        return replace(self, steps=steps, restarts=restarts)

    @property
    def eps_unit(self) -> float:
        """eps in the [0, 1] units the attack implementations work in."""
        return to_unit(self._size("eps"))

    @property
    def step_unit(self) -> float:
        return to_unit(self._size("step_size"))

    def _size(self, field: str) -> float:
        value = getattr(self, field)
        if value is None:
            raise AttackError(f"attack {self.kind}-{self.steps} has no {field} yet; bind it to a model first "
                              f"(freeadv.attacks.spec.for_model)")
        return value

    def record(self) -> dict[str, Any]:
        """The ``attack`` entry of an eval JSON (pixel units), with the kind's two flags that the
        sanity checks read (freeadv.sanity): a gradient attack, a whole-set attack (AutoAttack)."""
        return {"kind": self.kind, "eps": self.eps, "step_size": self.step_size, "steps": self.steps,
                "restarts": self.restarts, **kind_flags(self.kind)}


def kind_flags(kind: str) -> dict[str, bool]:
    """``gradient`` and ``whole_set`` of a registered kind, as an eval record carries them."""
    registered = ATTACKS[kind]
    return {"gradient": registered.gradient, "whole_set": registered.whole_set}


# The paper's attack step in pixel units, by the paper's two kinds of data (each its datasets'
# paper_step, freeadv.data.catalog): 2/255 on CIFAR (Madry et al.), 1/255 on ImageNet.
PAPER_STEP = {"cifar": DATASETS["cifar10"].paper_step, "imagenet": DATASETS["imagenet"].paper_step}


def default_step(dataset: str) -> float:
    """The step of an attack that names none: the paper's step on ``dataset`` (its spec's
    paper_step), so a model is attacked as the paper attacks models of its data."""
    return DATASETS.pick(dataset, "dataset").paper_step


def for_model(spec: AttackSpec, train_config: dict[str, Any]) -> AttackSpec:
    """``spec`` with the trained model's eps and its dataset's paper step where it has none."""
    eps = spec.eps if spec.eps is not None else train_config["eps"]
    step = spec.step_size if spec.step_size is not None else default_step(train_config["dataset"])
    step = step if spec.attack.uses_step else None
    return replace(spec, eps=eps, step_size=step)
