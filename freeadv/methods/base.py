"""The base class every training method subclasses, and what it must declare.

A method turns one minibatch into exactly one parameter update; the engine decides how many times
a minibatch is replayed (``replay``), so Free-m and natural training with replay share the same
loop, iteration count and learning-rate schedule as everything else.

Everything the rest of the suite needs to know about a method is declared on its class (see
:class:`Method`); ``register_method`` (freeadv.methods) refuses a class that leaves any of it out.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping

from ..keys import Key, choice
from ..lazy import lazy_import

torch = lazy_import("torch")
distributed = lazy_import("freeadv.distributed")   # imports torch
precision = lazy_import("freeadv.precision")       # imports torch


@dataclass(frozen=True)
class StepCost:
    """Work of one iteration, in units ``freeadv estimate`` times: full training steps (forward,
    backward to the parameters, SGD step) and attack steps (forward, input-only backward)."""
    train: float = 1.0
    attack: float = 0.0


# The config key of the training attacks' BN handling, shared by K-PGD and FGSM-RS training.
ATTACK_BN = Key("update", choice("update", "frozen"),
                "pgd, fgsm_rs: the attack's forward passes update the BN running averages (update: "
                "Madry et al.'s TF and Wong et al.'s code) or leave them alone (frozen)")


@contextmanager
def frozen_bn_statistics(model) -> Iterator[None]:
    """Run extra forward passes (attack steps during training) in training mode, using batch
    statistics, without letting them move the BN running averages: with momentum 0 PyTorch's
    update ``(1 - m) * running + m * batch`` leaves them unchanged."""
    norms = [mod for mod in model.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [mod.momentum for mod in norms]
    for mod in norms:
        mod.momentum = 0.0
    try:
        yield
    finally:
        for mod, momentum in zip(norms, saved):
            mod.momentum = momentum


def attack_bn_statistics(model, mode: str):
    """The context a training attack runs in. Both ways use batch statistics (training mode).
    ``update`` (the default) is what the official code does: Madry et al.'s TF batch norm runs
    with ``updates_collections=None`` in the training graph, so every attack forward also moves
    the moving averages (decay 0.9, PyTorch's momentum 0.1), and Wong et al.'s PyTorch code keeps
    ``model.train()`` through its attack. ``frozen`` keeps the averages to the clean batches."""
    return frozen_bn_statistics(model) if mode == "frozen" else nullcontext()


class Method:
    """One minibatch in, one SGD update out.

    Declarations (class attributes and classmethods; all but the defaults are required):

    - ``name``: the config value ``method: NAME`` and the registry key.
    - ``keys``: the config keys only this method reads, as :class:`freeadv.keys.Key` (default,
      kind, meaning). The shared keys (``eps``, ``replay``, schedule, ...) are declared in config.KEYS.
    - ``replay_default``: m when the config does not set ``replay``; ``None`` means the method sees
      each minibatch once and ``replay`` must stay 1.
    - ``needs_randomness``: the engine passes a generator seeded from (seed, iteration, rank) to
      ``step`` (random starts); without it a method gets ``None`` and must not draw random numbers.
    - ``title(params)``, ``id_fragment(params)``: the row title in tables ("Free m=8") and the
      method part of a model id ("free-m8"), from the method's config values.
    - ``cost(config)``: a :class:`StepCost` per iteration, for ``freeadv estimate``.
    - ``from_config(config, autocast)``: the instance that trains with this config.

    Implementation: override ``adversarial_input`` (the batch the update trains on), or ``step``
    when the update itself differs (Free, TRADES).
    """

    name: ClassVar[str] = ""
    keys: ClassVar[dict[str, Key]] = {}
    replay_default: ClassVar[int | None] = None
    needs_randomness: ClassVar[bool] = False
    # ``amp: fp16``'s torch.amp.GradScaler, which the engine sets (None: no loss scaling), and
    # the skip flag of the latest update (freeadv.precision.backward_and_step)
    scaler = None
    skipped = None

    def __init__(self, *, replay: int = 1, autocast=None) -> None:
        self.replay = replay
        self.autocast = autocast or nullcontext

    # --- declarations ------------------------------------------------------------------------
    @classmethod
    def title(cls, params: Mapping[str, Any]) -> str:
        raise NotImplementedError

    @classmethod
    def id_fragment(cls, params: Mapping[str, Any]) -> str:
        raise NotImplementedError

    @classmethod
    def cost(cls, config: Mapping[str, Any]) -> StepCost:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping[str, Any], autocast=None) -> "Method":
        raise NotImplementedError

    # --- training ------------------------------------------------------------------------------
    def adversarial_input(self, model, x, y, generator):
        return x

    def update(self, model, optimizer, x, y):
        """One SGD step on cross-entropy at ``x``; returns the detached, on-device loss."""
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(precision.at_least_fp32(logits), y)
        self.backward_step(loss, optimizer)
        return loss.detach()

    def backward_step(self, loss, optimizer) -> None:
        """``loss.backward(); optimizer.step()``, loss-scaled under ``amp: fp16``; a step the
        scaler skips (an inf or nan gradient) leaves the weights alone and sets ``skipped``."""
        self.skipped = precision.backward_and_step(loss, optimizer, self.scaler)

    def step(self, model, optimizer, x, y, generator=None):
        """Returns the (detached, on-device) training loss; never synchronises with the host.
        The attack runs on the bare module (no DDP wrapper): its backward is input-only."""
        return self.update(model, optimizer, self.adversarial_input(distributed.unwrap(model), x, y, generator), y)

    def state_dict(self) -> dict[str, Any]:
        """Tensors to checkpoint (Free's perturbation buffer); a resumed run gets them back."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
