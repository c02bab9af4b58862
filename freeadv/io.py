"""Crash-safe file output: every checkpoint, JSON and text result is written to a temporary file
in the same folder and renamed into place, so a killed process never leaves a half-written file.

Torch-free: Snakemake imports this module (through freeadv.report.claims) while it parses the workflow.
Tensor files are written by freeadv.checkpoints, on top of ``atomic_write`` below.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from .errors import UserError


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process's umask (a temporary file
    from ``tempfile`` is 0o600 whatever the umask)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(handle)`` on a temporary file next to ``path``, fsync it, rename it into place.
    The file gets the mode ``open()`` would give it (the umask applies)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), new_file_mode())
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda h: h.write(text.encode()))


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


class OutputError(UserError):
    """An output path that cannot or must not be written (one line, names the path)."""


class JsonFileError(UserError):
    """A JSON file that does not parse (one line: the file, the line and what is wrong)."""


def read_json(path: str | Path) -> Any:
    """A JSON file; a malformed one raises JsonFileError naming the file, not only the position."""
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise JsonFileError(f"'{path}' is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None


def check_output_file(out: str | Path, *, inputs: tuple[str | Path, ...] = (), flag: str = "--out") -> Path:
    """Check an output file before the work that produces it starts, so no result is lost at the
    end: not a folder, not under a file, not one of the command's ``inputs``, and its folder
    writable (created if missing). Returns the path."""
    out = Path(out)
    if out.is_dir():
        raise OutputError(f"{flag} '{out}' is a folder; name a file (e.g. {out / 'result.json'})")
    resolved = out.resolve()
    for source in inputs:
        if Path(source).resolve() == resolved:
            raise OutputError(f"{flag} '{out}' is an input of this command ('{source}'); write the result elsewhere")
    parent = out.parent
    for folder in (parent, *parent.parents):
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"{flag} '{out}': '{folder}' is a file, not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"{flag} '{out}' cannot be written: {err.strerror or err} ('{parent}')") from None
    return out


def check_distinct_outputs(outputs: dict[str, str | Path | None]) -> None:
    """Two output options of one command that name the same file: one would replace the other."""
    seen: dict[Path, str] = {}
    for flag, out in outputs.items():
        if out is None:
            continue
        resolved = Path(out).resolve()
        if resolved in seen:
            raise OutputError(f"{flag} '{out}' is also {seen[resolved]}; give each output its own file")
        seen[resolved] = flag
