"""GPU slots of one machine: a job that needs K GPUs takes K free GPU ids out of 0..N-1 and runs
with CUDA_VISIBLE_DEVICES set to them.

Snakemake's ``--resources gpu=N`` bounds how many GPU jobs run at once but gives them no device,
so without slots every job of an N-GPU machine trains on cuda:0. A slot is a lock file per GPU id
(``gpu<id>.lock`` in :func:`slot_dir`) held with ``flock``: the lock belongs to the open file,
which the job's command inherits across ``exec``, so the operating system releases it when the
job ends, however it ends (a kill included), and no stale lock is ever left to clean up.

Where the scheduler already chose the devices (SLURM sets CUDA_VISIBLE_DEVICES for each job), the
environment's choice stands and no slot is taken.
"""
from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping, NoReturn, Sequence

from .errors import UserError

VISIBLE = "CUDA_VISIBLE_DEVICES"
POLL_S = 1.0


class SlotError(UserError):
    """A request the machine's slots can never meet (more GPUs than slots, an unusable folder)."""


def slot_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The lock folder: ``$FREEADV_GPU_SLOTS`` or ``<tmp>/freeadv-gpu-slots-<uid>``. Per machine and
    user, not per working directory, so that two workflows on one machine share its GPUs."""
    if environ.get("FREEADV_GPU_SLOTS"):
        return Path(environ["FREEADV_GPU_SLOTS"])
    return Path(tempfile.gettempdir()) / f"freeadv-gpu-slots-{os.getuid()}"


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding ``path``'s exclusive lock, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def try_acquire(gpus: int, slots: int, folder: Path) -> dict[int, int] | None:
    """GPU id -> locked descriptor for ``gpus`` free ids (lowest first), or None, holding nothing,
    when fewer are free: all or nothing, so that two multi-GPU jobs never each hold half."""
    held: dict[int, int] = {}
    for gpu in range(slots):
        fd = _try_lock(folder / f"gpu{gpu}.lock")
        if fd is not None:
            held[gpu] = fd
            if len(held) == gpus:
                return held
    release(held)
    return None


def release(held: Mapping[int, int]) -> None:
    for fd in held.values():
        os.close(fd)


def acquire(gpus: int, slots: int, folder: Path | None = None, poll_s: float = POLL_S,
            on_wait: Callable[[str], None] | None = None) -> dict[int, int]:
    """Wait for ``gpus`` free slots of ``slots`` and hold them; ``on_wait`` hears once that the job waits."""
    if not 1 <= gpus <= slots:
        raise SlotError(f"a job asks for {gpus} GPU(s) but the machine has {slots} GPU slot(s) "
                        f"(gpus_per_machine); set gpus_per_machine to the machine's GPU count")
    folder = folder or slot_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SlotError(f"cannot create the GPU slot folder '{folder}' ({err.strerror}); "
                        f"set FREEADV_GPU_SLOTS to a writable folder") from None
    waited = False
    while (held := try_acquire(gpus, slots, folder)) is None:
        if not waited and on_wait is not None:
            on_wait(f"all {slots} GPU slots in '{folder}' are taken; waiting for {gpus} to come free")
        waited = True
        time.sleep(poll_s)
    return held


def _note(held: Mapping[int, int], command: Sequence[str]) -> None:
    """Write the holder into each lock file: who holds a GPU, for a person reading the folder."""
    line = f"pid {os.getpid()}: {' '.join(command)}\n".encode()
    for fd in held.values():
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)


def slot_environment(gpus: int, slots: int, environ: Mapping[str, str], folder: Path | None = None,
                     poll_s: float = POLL_S) -> tuple[dict[str, str], dict[int, int]]:
    """The job's environment and the slots it holds (none when the environment already names its
    devices: a scheduler's choice, e.g. SLURM's, stands)."""
    env = dict(environ)
    if VISIBLE in env:
        return env, {}
    held = acquire(gpus, slots, folder, poll_s,
                   on_wait=lambda message: print(f"gpu-slot: {message}", file=sys.stderr, flush=True))
    env[VISIBLE] = ",".join(str(gpu) for gpu in held)
    return env, held


def exec_in_slot(command: Sequence[str], gpus: int, slots: int, folder: Path | None = None,
                 poll_s: float = POLL_S) -> NoReturn:
    """Replace this process by ``command`` on its own ``gpus`` GPUs; the locks pass to it (and to
    the children that inherit them) and end with it."""
    if not command:
        raise SlotError("no command to run in the GPU slot (give it after --)")
    env, held = slot_environment(gpus, slots, os.environ, folder, poll_s)
    for fd in held.values():
        os.set_inheritable(fd, True)
    _note(held, command)
    print(f"gpu-slot: {VISIBLE}={env[VISIBLE]}" + ("" if held else " (set by the environment)"),
          file=sys.stderr, flush=True)
    try:
        os.execvpe(command[0], list(command), env)
    except OSError as err:
        release(held)
        raise SlotError(f"cannot run '{command[0]}' ({err.strerror})") from None
