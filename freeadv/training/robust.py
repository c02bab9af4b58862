"""Robust accuracy tracked during training, and catastrophic overfitting caught (Wong et al. 2020).

A *check* is PGD-K (``robust_eval_steps``, the run's eps, the paper's step for the dataset, one
random start) on the images ``robust_eval_source`` names: the first ``robust_eval_n`` validation
images (``validation``, the default: training images the run does not train on, so whatever the
checks choose is chosen without the test split), the first ``robust_eval_n`` test images
(``test``, by explicit request; a monitoring curve only, since early_stop and keep_best refuse it),
or, as in Wong et al.'s fast_adversarial code, the first training batch of each pass at its start
(``first_train_batch``). It runs in eval mode (BN running statistics untouched), in fp32, with its
own generator seeded from (seed, iteration): it never draws from the training RNG, so a run trains
the same weights with checks on or off, and a resumed run repeats them exactly.

Each check is a record in log.jsonl (:data:`CHECK_KEYS`; the format is freeadv.training.engine's).
The accuracy keys keep their first names, ``heldout_clean_acc`` and ``heldout_robust_acc``, whatever
the source (``robust_eval_source`` says which), so every log reads the same way. :func:`checks`
reads them back from a log, :func:`collapse` finds the first fall of more than
:data:`CO_DROP_POINTS` (Wong et al.'s criterion for catastrophic overfitting) and :func:`better`
says whether a check beats the best so far (keep_best). A run folder's records:
freeadv.training.read_robust_checks (log.jsonl) or train.json's ``robust_checks``.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from ..attacks.spec import default_step
from ..perturb import eval_mode, pgd, predict
from ..data.bundle import mix_seed
from ..units import to_unit
from .runtime import place_batch
from .state import Setup

CO_DROP_POINTS = 20.0   # a check this many points of robust accuracy below the previous one: catastrophic overfitting
CHECK_KEYS = ("iteration", "pass", "epochs_natural", "heldout_clean_acc", "heldout_robust_acc", "robust_eval_n",
              "robust_eval_source", "robust_eval_steps", "check_seconds")
_STREAM = 0x524F42   # keeps the checks' random starts apart from every other seeded stream


# --- when -----------------------------------------------------------------------------------------
def enabled(config: dict[str, Any]) -> bool:
    return bool(config["robust_eval_n"])


def at_pass_start(config: dict[str, Any]) -> bool:
    """Wong et al.'s check: on the pass's first batch, before training on it."""
    return enabled(config) and config["robust_eval_source"] == "first_train_batch"


def due_after(config: dict[str, Any], iteration: int, pass_end: bool) -> bool:
    """A check of fixed images (validation or test) after update ``iteration``: every
    ``robust_eval_every`` iterations, or at every pass end when that is null."""
    if not enabled(config) or config["robust_eval_source"] == "first_train_batch":
        return False
    every = config["robust_eval_every"]
    return pass_end if every is None else iteration % every == 0


# --- the check ------------------------------------------------------------------------------------
def check(config: dict[str, Any], setup: Setup, iteration: int, pass_number: int,
          batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
    """One check of the bare model after ``iteration`` updates: on ``batch`` (first_train_batch)
    or the validation or test images. Returns its record (CHECK_KEYS)."""
    start = time.perf_counter()
    n = config["robust_eval_n"]
    if batch is None:
        per_rank = max(config["batch_size"] // setup.context.world_size, 1)
        images = setup.data.test_batches if config["robust_eval_source"] == "test" else setup.data.validation_batches
        batches = images(min(per_rank, n), device=setup.device)
    else:
        batches = [batch]
    generator = torch.Generator(device=setup.device).manual_seed(mix_seed(config["seed"], _STREAM, iteration))
    clean, robust, seen = measure(setup.model, _first(batches, n, setup.channels_last), eps=to_unit(config["eps"]),
                                  step_size=to_unit(default_step(config["dataset"])),
                                  steps=config["robust_eval_steps"], generator=generator)
    return {"iteration": iteration, "pass": pass_number,
            "epochs_natural": iteration / setup.iters_per_pass * setup.method.replay,
            "heldout_clean_acc": clean, "heldout_robust_acc": robust,
            "robust_eval_n": seen, "robust_eval_source": config["robust_eval_source"],
            "robust_eval_steps": config["robust_eval_steps"], "check_seconds": time.perf_counter() - start}


def _first(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], n: int,
           channels_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` images of ``batches`` (fewer if they hold fewer), in the model's memory format."""
    seen = 0
    for x, y in batches:
        if seen >= n:
            return
        x, y = x[: n - seen], y[: n - seen]
        seen += len(y)
        yield place_batch(x, channels_last), y


def measure(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, eps: float,
            step_size: float, steps: int, generator: torch.Generator) -> tuple[float, float, int]:
    """Clean and PGD accuracy (percent) and the images seen. An image counts as robust only if it is
    also classified correctly clean (so robust <= clean). Eval mode, fp32 even inside an autocast."""
    clean = robust = seen = 0
    with eval_mode(model), torch.autocast(next(model.parameters()).device.type, enabled=False):
        for x, y in batches:
            correct = predict(model, x) == y
            x_adv = pgd(model, x, y, eps=eps, step_size=step_size, steps=steps, generator=generator)
            clean += int(correct.sum())
            robust += int((correct & (predict(model, x_adv) == y)).sum())
            seen += len(y)
    return 100.0 * clean / max(seen, 1), 100.0 * robust / max(seen, 1), seen


# --- reading them back ----------------------------------------------------------------------------
def checks(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The check records of a log (log.jsonl's entries), in order, with CHECK_KEYS only (those an
    older log has)."""
    return [{key: entry[key] for key in CHECK_KEYS if key in entry} for entry in log if "heldout_robust_acc" in entry]


def collapse(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first check whose robust accuracy is more than CO_DROP_POINTS below the previous
    check's (Wong et al.: catastrophic overfitting), or None."""
    for before, after in zip(records, records[1:]):
        if before["heldout_robust_acc"] - after["heldout_robust_acc"] > CO_DROP_POINTS:
            return {"iteration": after["iteration"], "previous_iteration": before["iteration"],
                    "robust_before": before["heldout_robust_acc"], "robust_after": after["heldout_robust_acc"]}
    return None


def better(record: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Whether a check beats the best so far: by robust accuracy, then by clean accuracy (a natural
    model's robust checks are all 0%, so its best weights are those of its best clean check);
    strictly, so a full tie keeps the earlier check (the fewer updates, and what an uninterrupted
    and a resumed run agree on)."""
    return best is None or (record["heldout_robust_acc"], record["heldout_clean_acc"]) > (
        best["robust_acc"], best["clean_acc"])


def best_record(record: dict[str, Any]) -> dict[str, Any]:
    """train.json's ``best``: which check model_best.pt holds the weights of, and its accuracies."""
    return {"iteration": record["iteration"], "pass": record["pass"], "epochs_natural": record["epochs_natural"],
            "robust_acc": record["heldout_robust_acc"], "clean_acc": record["heldout_clean_acc"]}


def cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A plain dict of CPU tensors that shares no memory with the model (weights_only loadable)."""
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}
