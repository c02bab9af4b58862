"""Robust accuracy: restarts that keep each example's worst case, and the evaluation job."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm import tqdm

from .. import stats
from ..checkpoints import weights_digest
from ..io import read_json, write_json
from ..provenance import stamp
from ..sanity import check_eval
from ..attacks.spec import EARLIER_SECONDS, AttackSpec, for_model
from ..perturb import eval_mode, predict
from .eval_device import AUTO, eval_channels_last, evaluation_settings, resolve_batch_size
from .opening import RUN_SPLIT, open_run

FLAGS_ENCODING = "base64 of numpy.packbits (big-endian bits)"


def worst_case(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec,
               generator: torch.Generator | None = None,
               correct: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``spec.restarts`` attacks, keeping for each example the first restart that fools the model.

    Returns (x_adv, robust) where robust[i] is True only if example i survived every restart.
    Restarts after the first attack only the still-robust examples, which keeps R restarts cheap.
    ``correct``: the clean pass's flags when the caller has them (else it runs here).
    Always fp32, even when called inside an autocast region (evaluations never run in bf16).
    """
    with eval_mode(model), torch.autocast(x.device.type, enabled=False):
        x_adv = x.clone()
        # a misclassified clean image is not robust
        robust = (predict(model, x) == y) if correct is None else correct.clone()
        for _ in range(spec.restarts if spec.attack.uses_restarts else 1):
            alive = robust.nonzero().squeeze(1)
            if alive.numel() == 0:
                break
            candidate = spec.attack.perturb(model, x[alive], y[alive], spec, generator)
            fooled = predict(model, candidate) != y[alive]
            x_adv[alive[fooled]] = candidate[fooled]
            robust[alive[fooled]] = False
            not_fooled = alive[~fooled]
            x_adv[not_fooled] = candidate[~fooled]
    return x_adv, robust


def evaluate(model: nn.Module, batches, spec: AttackSpec, *, seed: int = 0,
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Clean and robust accuracy of ``model`` over ``batches`` of (x, y), with the per-image
    flags behind them (:func:`per_image`)."""
    generator = None
    clean_flags, robust_flags = [], []
    for x, y in batches:
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(seed)
        with eval_mode(model), torch.autocast(x.device.type, enabled=False):
            correct = predict(model, x) == y
        clean_flags += correct.tolist()
        _, survived = worst_case(model, x, y, spec, generator, correct)
        robust_flags += survived.tolist()
        if progress is not None:
            progress(len(y))
    return counts(clean_flags, robust_flags)


def counts(clean_flags: list[bool], robust_flags: list[bool]) -> dict[str, Any]:
    """An eval's numbers from its per-image flags: counts, accuracies and the flags themselves."""
    n, clean, robust = len(clean_flags), sum(clean_flags), sum(robust_flags)
    return {"n": n, "clean_correct": clean, "robust_correct": robust,
            "clean_acc": 100.0 * clean / max(n, 1), "robust_acc": 100.0 * robust / max(n, 1),
            "per_image": per_image(clean_flags, robust_flags)}


def per_image(clean_flags: list[bool], robust_flags: list[bool]) -> dict[str, Any]:
    """Which images the model classifies correctly, clean and under the attack: bit i is image i
    of the test split's fixed order (an eval covers its first n). Every model is attacked on the
    same images, so two evals give a paired comparison (freeadv.stats)."""
    return {"first": 0, "n": len(clean_flags), "encoding": FLAGS_ENCODING,
            "clean": stats.pack_flags(clean_flags), "robust": stats.pack_flags(robust_flags)}


def evaluate_whole_set(model: nn.Module, data, spec: AttackSpec, *, batch_size: int, seed: int,
                       device: torch.device, state_path: Path | None,
                       progress: Callable[[int], None]) -> dict:
    """A ``whole_set`` kind (AutoAttack) on the test subset, gathered on the CPU (the kind moves
    chunks to the device); its final flags become the eval's per-image record, and each
    sub-attack's result keeps the flags after it."""
    batches = list(data.test_batches(batch_size, device="cpu"))
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    metrics = spec.attack.evaluate_set(model, x, y, spec, seed=seed, batch_size=batch_size, device=device,
                                       state_path=state_path, progress=progress)
    flags = metrics.pop("flags")
    return {**metrics, "per_image": per_image(flags["clean"], flags["robust"])}


def state_file(out: str | Path) -> Path:
    """Where a resumable (whole-set) evaluation keeps its progress: beside its eval JSON."""
    out = Path(out)
    return out.with_name(f"{out.stem}.state.json")


def write_eval(out: str | Path, result: dict, state_path: Path | None) -> None:
    """Write an eval JSON, then remove the whole-set state file it supersedes (it holds
    everything the state had)."""
    write_json(out, result)
    if state_path is not None:
        state_path.unlink(missing_ok=True)


def _batch_size(value: int | str, model: nn.Module, data, device: torch.device, state_path: Path | None) -> int:
    """The evaluation's batch size; ``auto`` resumes a whole-set state at the size it began with."""
    if value == AUTO and state_path is not None and state_path.exists():
        saved = read_json(state_path).get("batch_size")
        if isinstance(saved, int) and saved >= 1:
            return saved
    probe = value == AUTO and device.type == "cuda"   # only CUDA's auto measures on an image
    image = next(iter(data.test_batches(1, device="cpu")))[0] if probe else None
    return resolve_batch_size(value, model, image, device)


def _in_layout(batches, channels_last: bool):
    for x, y in batches:
        yield (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


def measure(model: nn.Module, data, spec: AttackSpec, *, batch_size: int | str, seed: int, device: torch.device,
            progress: bool, state_path: str | Path | None, trained_channels_last: bool | str = AUTO) -> dict:
    """The measured part of an eval JSON, whatever the model's origin (a run folder or any model):
    ``model`` on ``data``'s test subset under ``spec`` (eps and step bound), with the digest of
    the weights, the timing, the provenance stamp and the sanity warnings. A ``whole_set`` kind
    (AutoAttack) keeps its progress in ``state_path`` and resumes from it. The device settings
    (cuDNN, layout, ``auto`` batch size) are the evaluation's own: freeadv.runs.eval_device."""
    start = time.perf_counter()
    state_path = Path(state_path) if state_path else None
    requested, batch_size = batch_size, _batch_size(batch_size, model, data, device, state_path)
    channels_last = eval_channels_last(trained_channels_last, device, spec.attack.whole_set)
    with tqdm(total=data.n_test, disable=not progress, unit="img", desc=f"{spec.kind}-{spec.steps}") as bar, \
            evaluation_settings(model, device, channels_last):
        metrics = _attack_set(model, data, spec, batch_size=batch_size, seed=seed, device=device,
                              state_path=state_path, progress=bar.update, channels_last=channels_last)
    # a resumed whole-set evaluation took the time of every process it ran in, not only this one's
    seconds = time.perf_counter() - start + (metrics.get(EARLIER_SECONDS) or 0.0)
    result = {"kind": "eval", "weights_digest": weights_digest(model.state_dict()), "seed": seed,
              "attack": {**spec.record(), "n": metrics["n"], "batch_size": batch_size}, **metrics,
              "eval_device": {"batch_size_requested": requested, "channels_last": channels_last,
                              "cudnn_benchmark": False if device.type == "cuda" else None},
              "wall_seconds": seconds, "images_per_second": metrics["n"] / seconds if seconds else None,
              **stamp(device)}
    if getattr(data, "test_subset", None):   # which images "the first n" are (ImageNet: RobustBench's or not)
        result["test_subset"] = data.test_subset
    result["warnings"] = check_eval(result)
    return result


def _attack_set(model: nn.Module, data, spec: AttackSpec, *, batch_size: int, seed: int, device: torch.device,
                state_path: Path | None, progress: Callable[[int], None], channels_last: bool) -> dict:
    if spec.attack.whole_set:
        return evaluate_whole_set(model, data, spec, batch_size=batch_size, seed=seed, device=device,
                                  state_path=state_path, progress=progress)
    return evaluate(model, _in_layout(data.test_batches(batch_size, device=device), channels_last), spec,
                    seed=seed, progress=progress)


def run_attack(run_dir: str | Path, spec: AttackSpec, *, batch_size: int | str = AUTO, seed: int = 0,
               device: str = "auto", progress: bool = False, state_path: str | Path | None = None,
               weights: str = "final") -> dict:
    """Evaluate a finished run under ``spec`` on its first ``spec.n`` test images (None: the run's
    own test subset); eps and step default to the run's eps and the paper's step for its dataset.
    Returns the eval JSON as a dict (:func:`measure`), whose ``attack`` entry is the spec as
    evaluated; readers check its weights digest against the run's train.json."""
    run = open_run(run_dir, device, n_test=spec.n or RUN_SPLIT, weights=weights)
    spec = for_model(spec, run.config)
    measured = measure(run.model, run.data, spec, batch_size=batch_size, seed=seed, device=run.device,
                       progress=progress, state_path=state_path, trained_channels_last=run.config["channels_last"])
    return {**measured, "run": str(run_dir), "weights": weights, "train_config": run.config}
