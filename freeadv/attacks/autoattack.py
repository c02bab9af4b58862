"""AutoAttack (Croce & Hein, ICML 2020) through its authors' library, ``pyautoattack``, made resumable.

The attacks themselves are pyautoattack's, with its own settings: every call builds
``AutoAttack(version="standard")`` (APGD-CE, APGD-T with 9 targets, FAB-T with 9 targets, Square
with 5,000 queries) and only narrows ``attacks_to_run`` or, for the cheap smoke variant, the
iteration counts. What is written here is the loop AutoAttack's ``run_standard_evaluation`` runs
(sub-attacks in order, each on the points still robust, in chunks of ``batch_size``), so that a
killed evaluation loses at most one chunk:

- pyautoattack 0.2's ``state_path`` records a finished sub-attack only every 60 s and, after a kill
  inside a sub-attack, attacks again the points of the chunks it had already finished, in new
  chunks (hence with other random draws). Its rerun does not equal an uninterrupted run.
- Here the state file (JSON, atomic writes) holds the robust flags after every chunk, and the
  points and chunks of the running sub-attack; a rerun continues at the next chunk. Each chunk is
  one ``run_standard_evaluation`` call with the library's seed, so an interrupted and resumed run
  gives the same flags as an uninterrupted one (tested).
- The state file also holds the wall time spent so far, so a resumed evaluation's time counts
  every process it took (its eval's ``wall_seconds``; ``wall_seconds_earlier_processes`` is the
  part before the last resume).

Sizes are in [0, 1] units here; the spec's eps is pixel units.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..checkpoints import weights_digest
from ..io import read_json, write_json
from ..stats import pack_flags
from .kinds import AUTOATTACK_ITERATIONS, SQUARE_QUERIES_PER_ITERATION
from .spec import EARLIER_SECONDS, AttackSpec
from ..perturb import eval_mode, frozen_weights
from ..errors import UserError

STATE_VERSION = 1   # of the resumable state file


def library_version() -> str:
    import pyautoattack
    return pyautoattack.__version__


def build_autoattack(model: nn.Module, spec: AttackSpec, attacks: tuple[str, ...], *, seed: int,
                     device: torch.device):
    """pyautoattack's standard AutoAttack, narrowed to ``attacks`` and, below 100 iterations, to
    fewer APGD/FAB iterations and proportionally fewer Square queries (the smoke variant)."""
    from pyautoattack import AutoAttack
    adversary = AutoAttack(model, norm="Linf", eps=spec.eps_unit, version="standard", seed=seed,
                           device=device)
    adversary.attacks_to_run = list(attacks)
    if spec.steps != AUTOATTACK_ITERATIONS:
        for attack in (adversary.apgd, adversary.apgd_targeted, adversary.fab):
            attack.n_iter = spec.steps
        adversary.square.n_queries = SQUARE_QUERIES_PER_ITERATION * spec.steps
    return adversary


@contextmanager
def captured_warnings(messages: list[str]) -> Iterator[None]:
    """AutoAttack's checks (its checks module) warn through the 'auto-attack' logger; keep them."""
    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() not in messages:
                messages.append(record.getMessage())
    logger, handler = logging.getLogger("auto-attack"), Keep(level=logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _fresh_state(spec: AttackSpec, attacks: tuple[str, ...], n: int, batch_size: int, seed: int,
                 digest: str) -> dict:
    return {"version": STATE_VERSION, "attack": spec.id, "sub_attacks": list(attacks), "n": n,
            "batch_size": batch_size, "seed": seed, "weights_digest": digest,
            "clean": None, "robust": None, "done": [],
            "current": None, "results": [], "warnings": [], "seconds": 0.0}


def _load_state(path: Path | None, fresh: dict) -> dict:
    """The saved state when it belongs to this very evaluation of these very weights; else the
    fresh one. A state of other weights (a model retrained into the same folder) or one that
    records no weights digest is refused: resuming it would report the other model's flags."""
    if path is None or not path.exists():
        return fresh
    saved = read_json(path)
    same = all(saved.get(k) == fresh[k] for k in ("version", "attack", "sub_attacks", "n", "batch_size", "seed"))
    if not same:
        raise UserError(f"AutoAttack state file '{path}' belongs to another evaluation "
                         f"({saved.get('attack')}, n={saved.get('n')}); delete it or choose another --out")
    if saved.get("weights_digest") != fresh["weights_digest"]:
        which = ("records no weights digest, so it may belong to other weights" if not saved.get("weights_digest")
                 else f"belongs to other weights (digest {str(saved['weights_digest'])[:12]}, "
                      f"not {fresh['weights_digest'][:12]})")
        raise UserError(f"AutoAttack state file '{path}' {which}; delete it or choose another --out")
    return saved


def _clean_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                device: torch.device) -> list[bool]:
    correct = []
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            logits = model(x[start:start + batch_size].to(device))
            correct += (logits.argmax(1).cpu() == y[start:start + batch_size]).tolist()
    return correct


def _run_sub_attack(adversary_for: Callable[[str], Any], name: str, x: torch.Tensor, y: torch.Tensor,
                    state: dict, save: Callable[[], None], tick: Callable[[int], None]) -> None:
    """One sub-attack over the still-robust points, chunk by chunk, saving after each chunk."""
    if state["current"] is None or state["current"]["attack"] != name:
        alive = [i for i, r in enumerate(state["robust"]) if r]
        state["current"] = {"attack": name, "points": alive, "chunks_done": 0, "seconds": 0.0}
    current, size = state["current"], state["batch_size"]
    chunks = [current["points"][s:s + size] for s in range(0, len(current["points"]), size)]
    for index in range(current["chunks_done"], len(chunks)):
        start = time.perf_counter()
        points = torch.tensor(chunks[index])
        _, y_adv = adversary_for(name).run_standard_evaluation(x[points], y[points], batch_size=size)
        for point, fooled in zip(chunks[index], (y_adv.cpu() != y[points]).tolist()):
            state["robust"][point] = state["robust"][point] and not fooled
        current["chunks_done"] = index + 1
        current["seconds"] += time.perf_counter() - start
        save()
        tick(len(chunks[index]))


def evaluate_autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec,
                        attacks: tuple[str, ...], *, seed: int = 0, batch_size: int = 500,
                        device: torch.device | str = "cpu", state_path: Path | None = None,
                        progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Clean and AutoAttack accuracy of ``model`` on (x, y) (CPU tensors, [0, 1] images), the
    robust accuracy after each sub-attack and AutoAttack's warnings. Resumes from ``state_path``
    when it holds this evaluation of these weights (their digest is part of the state)."""
    device = torch.device(device)
    n = len(y)
    fresh = _fresh_state(spec, attacks, n, batch_size, seed, weights_digest(model.state_dict()))
    state = _load_state(state_path, fresh)
    save = _StateSaver(state_path, state)
    tick = progress or (lambda count: None)
    adversary_for = lambda name: build_autoattack(model, spec, (name,), seed=seed, device=device)  # noqa: E731
    with eval_mode(model), frozen_weights(model), captured_warnings(state["warnings"]):
        if state["clean"] is None:
            state["clean"] = _clean_pass(model, x, y, batch_size, device)
            state["robust"] = list(state["clean"])
            save()
        for name in attacks:
            if name in state["done"]:
                continue
            _run_sub_attack(adversary_for, name, x, y, state, save, tick)
            state["results"].append({"attack": name, "robust_correct": sum(state["robust"]),
                                     "robust_acc": 100.0 * sum(state["robust"]) / n,
                                     "seconds": state["current"]["seconds"],
                                     "robust": pack_flags(state["robust"])})
            state["done"].append(name)
            state["current"] = None
            save()
        _square_check(state)
    clean, robust = sum(state["clean"]), sum(state["robust"])
    return {"n": n, "clean_correct": clean, "robust_correct": robust, "clean_acc": 100.0 * clean / n,
            EARLIER_SECONDS: save.earlier,
            "robust_acc": 100.0 * robust / n, "sub_attacks": state["results"],
            "autoattack_warnings": list(state["warnings"]),
            "flags": {"clean": list(state["clean"]), "robust": list(state["robust"])}}


class _StateSaver:
    """Writes the state file (when there is one) with ``seconds``: the wall time of the whole
    evaluation so far, that of the processes before this one (``earlier``) plus this one's."""

    def __init__(self, path: Path | None, state: dict) -> None:
        self.path, self.state = path, state
        self.earlier, self.start = float(state.get("seconds") or 0.0), time.perf_counter()

    def __call__(self) -> None:
        if self.path is not None:
            self.state["seconds"] = self.earlier + time.perf_counter() - self.start
            write_json(self.path, self.state)


def _square_check(state: dict) -> None:
    """AutoAttack's own check that Square (black-box) did not beat the gradient attacks, which it
    runs once on the whole evaluation; here the sub-attacks run in separate calls, so call it once."""
    from pyautoattack import checks
    accuracies = {"clean": sum(state["clean"]) / state["n"],
                  **{r["attack"]: r["robust_correct"] / state["n"] for r in state["results"]}}
    checks.check_square_sr(accuracies, logger=logging.getLogger("auto-attack"))


def perturb_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec,
                  attacks: tuple[str, ...], seed: int) -> torch.Tensor:
    """The AutoAttack adversarial batch (the registered kinds' per-batch ``perturb``)."""
    adversary = build_autoattack(model, spec, attacks, seed=seed, device=x.device)
    adversary.verbose = False
    with frozen_weights(model):
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=len(y))
    return x_adv
