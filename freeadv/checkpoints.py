"""Tensor files: weights-only loads, atomic saves, and a run folder's rotating checkpoints.

A run folder keeps its newest checkpoint and the one before it: a checkpoint that turns out
corrupt (a disk error, a write cut short outside our atomic rename) falls back to the previous
one, never to a restart from zero.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from .io import atomic_write
from .errors import UserError

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"


class CheckpointError(RuntimeError, UserError):
    """A checkpoint that cannot be read safely (corrupt, truncated, or holding non-tensor objects).

    Also a ValueError: the CLI reports every bad input (a ValueError) as one line with exit code 2,
    without importing this module (torch) to name it."""


def save_tensors(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save a dict of tensors / numbers / strings atomically. torch reports a full disk as a
    RuntimeError ("unexpected pos ..."); it is re-raised as the OSError it is (ENOSPC), naming the
    file, when the folder has no room left."""
    try:
        atomic_write(path, lambda h: torch.save(state, h))
    except RuntimeError as err:
        free = shutil.disk_usage(Path(path).parent).free
        if free < (1 << 20):
            raise OSError(errno.ENOSPC, f"No space left on device ({free:,} bytes free)", str(path)) from None
        raise err


def load_tensors(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``: tensors and plain containers only, never arbitrary pickled code."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # pickle refusals, truncation, zip errors all land here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot load '{path}' safely (weights_only=True): {first}") from None


def weights_digest(state: dict[str, Any]) -> str:
    """SHA-256 of a state dict's tensors: names sorted, each one's name, dtype, shape and the raw
    bytes of ``.cpu().contiguous()``. It depends on the numbers only, not on the file container
    (torch.save's zip layout, pickle protocol, storage sharing), so a result can name the weights it
    describes and a reader can check that two files describe the same ones."""
    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        if not torch.is_tensor(value):
            raise ValueError(f"weights_digest: '{name}' is a {type(value).__name__}, not a tensor")
        tensor = value.detach().cpu().contiguous()
        header = f"{name}\0{str(tensor.dtype).removeprefix('torch.')}\0{list(tensor.shape)}\0{tensor.nbytes}\n"
        digest.update(header.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``checkpoint.pt``, keeping the one it replaces as ``checkpoint.prev.pt``."""
    current = run_dir / CHECKPOINT
    if current.exists():
        os.replace(current, run_dir / PREVIOUS_CHECKPOINT)
    save_tensors(current, state)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint; a corrupt one falls back to the previous, never to zero."""
    errors = []
    for path in (run_dir / CHECKPOINT, run_dir / PREVIOUS_CHECKPOINT):
        if not path.exists():
            continue
        try:
            state = load_tensors(path)
            if not isinstance(state, dict) or "iteration" not in state:
                raise CheckpointError(f"'{path}' is not a freeadv checkpoint")
            if errors:
                warnings.warn(f"{errors[0]}; resuming from the previous checkpoint '{path.name}'")
            return state
        except CheckpointError as err:
            errors.append(str(err))
    if errors:
        raise CheckpointError(f"{errors[0]} (and no older good checkpoint); delete the run folder to restart")
    return None


def remove_checkpoints(run_dir: Path) -> None:
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        (run_dir / name).unlink(missing_ok=True)
