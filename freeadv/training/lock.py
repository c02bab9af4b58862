"""Exclusive use of a run folder: one ``freeadv train`` at a time.

Two processes training into one folder would corrupt it silently: the second would "resume" the
first's checkpoint and the final model would match neither seed. So rank 0 holds an exclusive
``fcntl.flock`` on ``<run>/.freeadv.lock`` from before the folder is read until the run is written;
the kernel releases it when the process dies, however it dies (SIGKILL, OOM, a node lost), so a
killed run leaves no stale lock to clear and the next start resumes as before. The file holds the
holder's PID, which the refusal names.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from .. import config as cfg

LOCK = ".freeadv.lock"


class RunFolderBusy(cfg.ConfigError):
    """Another process is training into this run folder (one line, names its PID)."""


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode(errors="replace").strip()
    return text or "unknown"


@contextlib.contextmanager
def hold(run_dir: Path, *, main: bool = True) -> Iterator[None]:
    """Hold the folder's lock for the block (only the main rank locks: under torchrun the ranks of
    one run share the folder, and a second run's rank 0 is refused, which stops its other ranks)."""
    if not main:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(f"run folder '{run_dir}' is in use by PID {_holder(fd)} (another freeadv train "
                                "writing into it); wait for it to finish or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)   # releases the lock; the file stays (an unlocked file means nobody holds it)
