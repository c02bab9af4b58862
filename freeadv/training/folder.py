"""A run folder: its files, the checks before training, and what a finished run leaves there.

    .freeadv.lock      held while a process trains into the folder (freeadv.training.lock)
    config.yaml        the resolved config (written first; a checkpoint must match it)
    checkpoint.pt      the newest resumable state (and checkpoint.prev.pt, the one before)
    log.jsonl          one line per pass and per robust check (format: freeadv.training.engine)
    model_best.pt      keep_best: the weights of the best robust check (train.json's ``best``), written
                       just before model.pt
    model.pt           the final weights (early_stop: those kept)  } written last, then the
    train.json         the summary (timing, log, robust checks,    } checkpoints go: both present
                       digests of weights and config)              } means finished
    .finished-model.pt, .finished-train.json
                       hard links to those two (no extra disk): a scheduler that deletes a job's
                       outputs after the job finished (Snakemake does, for a job killed in its
                       epilogue at a time limit) leaves them, and a retry with ``restore`` restores
                       the outputs instead of training again from zero
    .freeadv-run.json  the folder's marker (format and version): only a folder with it, an empty or
                       a new one is trained into (one from before the marker: a config.yaml that
                       resolves as a freeadv config)

A folder holds one run: training a config other than the folder's is refused, or with ``supersede``
(the workflow, which owns its run folders) replaces the other run's files first. A restore happens
only when asked (``restore``: the workflow's retry of a job) and only when the finished run's
config, training code (``code_digest`` of the files freeadv.commands.train imports) and weights
(``weights_digest`` of .finished-model.pt) all match, never over an output that differs: a
rerun the workflow asks for because the code or the config changed, or because it was forced,
trains again.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .. import config as cfg
from .. import distributed
from ..checkpoints import (CHECKPOINT, PREVIOUS_CHECKPOINT, CheckpointError, load_tensors, remove_checkpoints,
                           save_tensors, weights_digest)
from ..experiments.deps import code_digest
from ..io import atomic_write_text, read_json, write_json
from ..plugins import load_plugins
from ..provenance import stamp
from . import robust
from .runtime import autocast_dtype, model_for
from .state import LoopState, Setup
from .tracking import NoTracker, TensorBoardTracker
from ..errors import UserError

MODEL = "model.pt"
MODEL_BEST = "model_best.pt"
WEIGHTS = {"final": MODEL, "best": MODEL_BEST}   # what load_trained_model's ``weights`` names
TRAIN_JSON = "train.json"
CONFIG = "config.yaml"
LOG = "log.jsonl"
# What training writes into a run folder (later commands add evals/ and analysis/ folders).
FINISHED = {MODEL: ".finished-model.pt", TRAIN_JSON: ".finished-train.json"}   # output -> its hard link
RUN_FILES = (CONFIG, CHECKPOINT, PREVIOUS_CHECKPOINT, LOG, MODEL_BEST, MODEL, TRAIN_JSON, *FINISHED.values())
MARKER = ".freeadv-run.json"
MARKER_RECORD = {"format": "freeadv run folder", "version": 1}
TRAINING_CODE = "freeadv.commands.train"   # the module whose files' digest a finished run records


def check_out_folder(run_dir: Path) -> None:
    """--out must be new, empty, or a freeadv run folder: never a folder of other files (a run
    folder's files would be written over them, e.g. --out config replaced config/config.yaml, and
    another tool's train.json or checkpoint.pt is not a run of ours)."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise cfg.ConfigError(f"--out '{run_dir}' is a file, not a folder; name a new folder for the run")
    entries = sorted(p.name for p in run_dir.iterdir())
    if entries and not is_run_folder(run_dir):
        raise cfg.ConfigError(f"--out '{run_dir}' is a non-empty folder that is not a freeadv run folder (no "
                              f"{MARKER}; it holds '{entries[0]}'{' and more' if len(entries) > 1 else ''}); "
                              "use a new or empty folder")


def is_run_folder(run_dir: Path) -> bool:
    """A folder with freeadv's marker, or one from before the marker whose config.yaml resolves as a
    freeadv config (every key known, every value valid: another tool's config.yaml does not)."""
    marker = run_dir / MARKER
    if marker.exists():
        try:
            return read_json(marker).get("format") == MARKER_RECORD["format"]
        except (ValueError, AttributeError):
            return False
    saved = _read_yaml(run_dir / CONFIG)
    try:
        return isinstance(saved, dict) and bool(cfg.resolve(saved))
    except (cfg.ConfigError, TypeError, ValueError):
        return False


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return None


def prepare(run_dir: Path, config: dict[str, Any], *, main: bool, supersede: bool = False,
            restore: bool = False) -> dict[str, Any] | None:
    """Check the folder before training: returns the summary of a run already finished with this
    config (nothing to do); refuses a folder that holds a run of another config, or (``supersede``)
    removes that run's files; restores deleted outputs only with ``restore`` (see the module's
    docstring); and (rank 0) saves the config and the marker and removes the half-written files a
    killed run left (its own files' temporaries only: ``.<name>.*.tmp`` of RUN_FILES)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    other = _other_config(run_dir, config)
    if other:
        if not supersede:
            raise cfg.ConfigError(f"run folder '{run_dir}' holds a run of a different config ({other}); use a new "
                                  "--out folder (the workflow, which owns its folders, replaces it)")
        if main:
            _supersede(run_dir, other)
    if main and restore:
        _restore_finished(run_dir, config)
    elif main:
        _drop_finished_links(run_dir)
    if (run_dir / TRAIN_JSON).exists() and (run_dir / MODEL).exists():
        done = read_json(run_dir / TRAIN_JSON)
        if same_config(done.get("config"), config):
            print(f"[freeadv] {run_dir} is already trained; not retraining")
            return done
        raise cfg.ConfigError(f"run folder '{run_dir}' holds a finished run with a different config; "
                              "use a new --out folder")
    if main:
        cfg.save_yaml(config, run_dir / CONFIG)
        if not (run_dir / MARKER).exists():
            write_json(run_dir / MARKER, MARKER_RECORD)
        for name in RUN_FILES:   # half-written files of a killed process (freeadv.io.atomic_write's names)
            for stale in run_dir.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
    return None


def _other_config(run_dir: Path, config: dict[str, Any]) -> str:
    """What in the folder belongs to a run of another config ('' when nothing does): its config.yaml,
    or the summary of a finished run, when the folder holds any file of that run."""
    held = [name for name in RUN_FILES if name != CONFIG and (run_dir / name).exists()]
    held += [name for name in ("evals", "analysis") if (run_dir / name).is_dir() and any((run_dir / name).iterdir())]
    if not held:
        return ""
    for name, saved in ((CONFIG, _read_yaml(run_dir / CONFIG)), (TRAIN_JSON, _summary_config(run_dir / TRAIN_JSON))):
        if saved is not None and not same_config(saved, config):
            return f"its {name} differs, and it holds {', '.join(held[:3])}{' and more' if len(held) > 3 else ''}"
    return ""


def _summary_config(path: Path) -> Any:
    try:
        return read_json(path).get("config") if path.is_file() else None
    except (ValueError, AttributeError):
        return {"unreadable": str(path)}


def _supersede(run_dir: Path, other: str) -> None:
    """Remove the run files of the folder's other run and the resumable state of its evaluations
    (the state of other weights, which no evaluation of the new run may resume). Its finished evals
    and analyses stay: each records the digest of the weights it ran on, and every report refuses
    one whose digest is not its run's."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for state in (run_dir / "evals").rglob("*.state.json") if (run_dir / "evals").is_dir() else ():
        state.unlink()
    print(f"[freeadv] {run_dir}: replaced a run of another config ({other})")


def _drop_finished_links(run_dir: Path) -> None:
    """Training starts or resumes: links of an earlier finish are not this run's outputs."""
    if not all((run_dir / output).exists() for output in FINISHED):
        for link in FINISHED.values():
            (run_dir / link).unlink(missing_ok=True)


def same_config(saved: Any, config: dict[str, Any]) -> bool:
    """Whether a folder's saved config is ``config``; one saved before a key existed counts as
    that key at its default (resolving it fills those in), so new keys do not orphan old runs."""
    if saved == config:
        return True
    try:
        return isinstance(saved, dict) and cfg.resolve(saved) == config
    except cfg.ConfigError:
        return False


def write_log(run_dir: Path, log: list[dict[str, Any]],
              tracker: NoTracker | TensorBoardTracker | None = None) -> None:
    """log.jsonl, rewritten whole; then ``tracker`` (freeadv.training.tracking) gets the same records,
    so what a tracker shows is never other numbers than the log's."""
    atomic_write_text(run_dir / LOG, "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in log))
    if tracker is not None:
        tracker.record(log)


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """log.jsonl of a run folder, finished or still training ([] before its first entry)."""
    path = Path(run_dir) / LOG
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def read_robust_checks(run_dir: str | Path) -> list[dict[str, Any]]:
    """The robust check records of a run folder (robust.CHECK_KEYS each, in order), finished or not:
    what a figure of robust accuracy during training reads."""
    return robust.checks(read_log(run_dir))


def summary(config: dict[str, Any], setup: Setup, state: LoopState) -> dict[str, Any]:
    """train.json: the config, provenance, schedule, timing and the logs of a finished run."""
    total, train_seconds, history, log = setup.total, state.train_seconds, state.history, state.log
    images = state.iteration * config["batch_size"]   # the global batch: all ranks together
    checks = robust.checks(log)
    clean = [entry["clean_acc_eval_n"] for entry in log if "clean_acc_eval_n" in entry]
    return {
        "kind": "train", "config": config, "config_digest": cfg.config_digest(config), "seed": config["seed"],
        "code_digest": code_digest(TRAINING_CODE),
        **stamp(setup.device, autocast=autocast_dtype(config, setup.device)),
        "distributed": setup.context.describe(),
        "iterations": total, "passes": total / setup.iters_per_pass, "replay": setup.method.replay,
        "batches_per_pass": setup.batches_per_pass, "lr_milestones": setup.milestones,
        "n_train": setup.data.n_train, "dataset": setup.data.name,
        "train_seconds": train_seconds, "train_minutes": train_seconds / 60,
        "train_cpu_seconds": state.train_cpu_seconds,   # this process, all threads (rank 0 under DDP)
        "train_cpu_per_wall": state.train_cpu_seconds / train_seconds if train_seconds > 0 else None,
        "wall_seconds_this_process": time.perf_counter() - state.wall_start, "resumes": state.resumes,
        "images_per_second": images / train_seconds if train_seconds > 0 else None,
        "seconds_per_iteration": train_seconds / max(state.iteration, 1),
        "final_loss": history[-1]["loss"] if history else None,
        "final_clean_acc_eval_n": clean[-1] if clean else None,
        "eval_n": config["eval_n"], "log": log, "loss_history": history,
        "robust_checks": checks, "catastrophic_overfitting": robust.collapse(checks),
        "iterations_trained": state.iteration, "stopped_early": state.stopped,
        "kept_weights_iteration": state.kept_iteration if state.stopped else state.iteration,
        "n_validation": setup.data.n_validation,
        "clean_acc_eval_source": "validation" if cfg.uses_validation(config) else "test",
        "best": state.best,   # keep_best: the check model_best.pt holds (robust.best_record), else null
    }


def finish(run_dir: Path, setup: Setup, result: dict[str, Any], weights: dict[str, torch.Tensor],
           best: dict[str, torch.Tensor] | None = None) -> None:
    """After every rank is done, rank 0 writes ``best`` as model_best.pt (keep_best), ``weights`` as
    model.pt, then train.json, then drops the checkpoints (killed in between, the next start resumes
    from the last checkpoint and writes them again). train.json records the digest of each file's
    weights (freeadv.checkpoints.weights_digest), so every later result can be checked against them."""
    distributed.barrier(setup.context)
    if setup.context.is_main:
        result["weights_digest"] = weights_digest(weights)
        if best is not None:
            result["best_weights_digest"] = weights_digest(best)
        if best is not None:
            save_tensors(run_dir / MODEL_BEST, best)
        elif result["config"]["keep_best"]:
            print(f"[freeadv] {run_dir}: keep_best, but no robust check ran; no {MODEL_BEST} written")
        save_tensors(run_dir / MODEL, weights)
        write_json(run_dir / TRAIN_JSON, result)
        for output, link in FINISHED.items():
            _hard_link(run_dir / output, run_dir / link)
        remove_checkpoints(run_dir)


def _hard_link(source: Path, target: Path) -> bool:
    """``target`` becomes another name of ``source`` (atomically replaced); False where the file
    system has no hard links (then a deleted output is trained again, as before)."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.unlink(missing_ok=True)
        os.link(source, temporary)
        os.replace(temporary, target)
        return True
    except OSError:
        temporary.unlink(missing_ok=True)
        return False


def _restore_finished(run_dir: Path, config: dict[str, Any]) -> None:
    """Outputs of a finished run that something deleted come back from their hard links, when the
    finished run is this config's, of this training code, and its model link holds the weights its
    summary records; an output still present must be that link's file. Anything else trains again."""
    links = {output: run_dir / link for output, link in FINISHED.items()}
    if all((run_dir / output).exists() for output in links) or not all(p.exists() for p in links.values()):
        return
    why = _why_not_restorable(links, config)
    if why:
        print(f"[freeadv] {run_dir}: not restoring the finished run's outputs ({why}); training again")
        _drop_finished_links(run_dir)
        return
    for output, link in links.items():
        present = run_dir / output
        if present.exists() and not os.path.samefile(present, link):
            raise cfg.ConfigError(f"run folder '{run_dir}' holds a {output} that is not the finished run's "
                                  f"(whose {link.name} it would restore); move it away or use a new --out folder")
    for output, link in links.items():
        if not (run_dir / output).exists() and _hard_link(link, run_dir / output):
            print(f"[freeadv] {run_dir}: restored {output} of the finished run")


def _why_not_restorable(links: dict[str, Path], config: dict[str, Any]) -> str:
    try:
        finished = read_json(links[TRAIN_JSON])
        if not same_config(finished.get("config"), config):
            return "another config"
        if finished.get("code_digest") != code_digest(TRAINING_CODE):
            return "other training code"
        if finished.get("weights_digest") != weights_digest(load_tensors(links[MODEL])):
            return "its weights are not those its summary records"
    except (ValueError, AttributeError, CheckpointError, OSError):
        return "its files are unreadable"
    return ""


def load_trained_model(run_dir: str | Path, device: torch.device | str = "cpu",
                       weights: str = "final") -> tuple[nn.Module, dict[str, Any]]:
    """A finished run's model (weights_only load) and its resolved config: its final weights
    (model.pt, the paper's protocol) or, ``weights="best"``, those of its best robust check
    (model_best.pt, written by keep_best)."""
    run_dir = Path(run_dir)
    path = _weights_file(run_dir, weights)
    load_plugins()   # a run of a plugin's method, model or dataset, opened from Python
    config = cfg.resolve(yaml.safe_load((run_dir / CONFIG).read_text()))
    model = model_for(config)
    state = load_tensors(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}' is not a state dict of weights")
    diverged = [name for name, value in state.items()
                if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()]
    if diverged:   # its accuracy would read as chance level, as if it were a result
        raise CheckpointError(f"'{path}' has non-finite weights (NaN or inf in '{diverged[0]}'"
                              f"{f' and {len(diverged) - 1} more' if len(diverged) > 1 else ''}): the run diverged")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:   # missing/unexpected keys or shapes: hundreds of keys from torch
        lines = str(err).splitlines()
        detail = (lines[1] if len(lines) > 1 else lines[0]).strip()
        raise CheckpointError(f"'{path}' does not fit the {config['arch']} of its config.yaml: "
                              f"{detail[:160]}{'...' if len(detail) > 160 else ''}") from None
    return model.to(device).eval(), config


def _weights_file(run_dir: Path, weights: str) -> Path:
    """The file of the weights ``weights`` names, checked to exist (a one-line error otherwise)."""
    if weights not in WEIGHTS:
        raise UserError(f"weights has bad value {weights!r}: expected {' or '.join(WEIGHTS)}")
    path = run_dir / WEIGHTS[weights]
    if path.exists():
        return path
    if weights == "best" and (run_dir / MODEL).exists():
        raise FileNotFoundError(f"run folder '{run_dir}' has no {MODEL_BEST}: only a run trained with keep_best: "
                                "true (that ran at least one robust check) keeps its best weights")
    raise FileNotFoundError(f"run folder '{run_dir}' has no {path.name}; train it first "
                            f"(freeadv train --out {run_dir})")
