"""Child processes of the GPU checks: bounded in time, and importing the same freeadv as the parent.

The checks run some of their work in a child process (the device tests under pytest, a compiled
bench configuration) so that a crash, a hang or a long torch.compile there is recorded instead of
ending the check. Two things make that safe wherever the package is: the whole process group is
killed at the time limit (torch.compile's workers too), and the child finds this very package by
its location, not by the working directory, which may be any folder.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import freeadv

PACKAGE_ROOT = Path(freeadv.__file__).resolve().parents[1]   # the folder that holds freeadv/
SITE_FOLDERS = ("site-packages", "dist-packages")


def package_env(**extra: str) -> dict[str, str]:
    """This process's environment with ``extra`` set, and the folder holding this freeadv first on
    PYTHONPATH when it is a source folder, so that the child imports the same code from any
    working directory. An installed package (in site-packages) is found by the same interpreter
    anyway, and putting site-packages ahead of the standard library could shadow it."""
    env = {**os.environ, **extra}
    if PACKAGE_ROOT.name not in SITE_FOLDERS:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    return env


def run_bounded(command: list[str], timeout: float, cwd: Path,
                env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Run ``command`` in its own process group; past ``timeout`` kill the whole group (torch.compile's
    worker processes too). Returns (exit code or None when killed, the output's tail)."""
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True) as process:
        try:
            output, _ = process.communicate(timeout=max(timeout, 0.1))
            return process.returncode, output[-4000:]
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            return None, (output or "")[-4000:]
