"""Experiment tracking beside log.jsonl, and the peak device memory train.json and bench report.

``logger: tensorboard`` writes TensorBoard event files under ``<run>/tensorboard/``, fed from the
records of log.jsonl as they are written (freeadv.training.folder.write_log): one scalar per
numeric field of a record, tagged with the field's name, at the record's ``iteration`` as the step.
So the curves TensorBoard draws are log.jsonl's numbers, whatever TensorBoard is pointed at; a
field without a number (a null accuracy, ``robust_eval_source``) has no scalar. ``logger: none``
writes nothing. Only the main rank writes, as it writes log.jsonl.

Resuming keeps the event files and appends a new one, as TensorBoard expects of a restarted
process: the new file opens with a restart marker at the checkpoint's iteration (SummaryWriter's
``purge_step``), which hides the events the stopped process wrote from that iteration on, and the
new process writes the checkpoint's records from that iteration again. A reader (TensorBoard,
EventAccumulator) then sees each record once, as in log.jsonl. Each write is flushed, so a killed
process leaves every record its checkpoints hold.

wandb is not offered: its package is not a dependency here, and a writer that cannot be tested
beside the others would be a promise nothing checks; a new writer is one class with ``record`` and
``close``, chosen in :func:`open_tracker`.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from ..keys import ConfigError

FOLDER = "tensorboard"
EVENTS = "events.out.tfevents."   # the prefix of TensorBoard's event file names


def require(config: dict[str, Any]) -> None:
    """Refuse, in one line and before any training, a logger whose package is not installed, so a
    run never trains for hours and then fails (or silently tracks nothing)."""
    if config["logger"] != "tensorboard":
        return
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401 (what the writer needs)
    except ImportError:
        raise ConfigError("config key 'logger' is tensorboard, but the tensorboard package is not installed: "
                          "pip install 'freeadv[tracking]' (or --set logger=none)") from None


class NoTracker:
    """``logger: none``, and every rank but the main one: log.jsonl alone."""

    def record(self, log: list[dict[str, Any]]) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker:
    """Writes the records of log.jsonl not yet written as scalars (see the module's docstring)."""

    def __init__(self, run_dir: Path, log: list[dict[str, Any]], iteration: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        folder = run_dir / FOLDER
        earlier = _event_files(folder)
        restart = iteration if earlier else None   # a process wrote here before: hide its events from here
        if earlier:
            _wait_past(earlier)
        self.writer = SummaryWriter(str(folder), purge_step=restart)
        # restored records before the restart stay in the earlier files; those at or after it are hidden there
        self.written = 0 if restart is None else sum(1 for entry in log if entry["iteration"] < restart)
        self.record(log)

    def record(self, log: list[dict[str, Any]]) -> None:
        """Write the records past those already written; ``log`` is the whole log, as log.jsonl holds it."""
        for entry in log[self.written:]:
            for tag, value in scalars(entry).items():
                self.writer.add_scalar(tag, value, global_step=entry["iteration"])
        self.written = len(log)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tracker(config: dict[str, Any], run_dir: Path, log: list[dict[str, Any]], iteration: int, *,
                 main: bool) -> NoTracker | TensorBoardTracker:
    """The writer of ``config["logger"]`` for a process that starts (or resumes) at ``iteration``
    with the restored ``log``; nothing on ranks other than the main one."""
    if config["logger"] == "tensorboard" and main:
        return TensorBoardTracker(run_dir, log, iteration)
    return NoTracker()


def scalars(entry: dict[str, Any]) -> dict[str, float]:
    """The fields of one log record that become scalars: finite numbers, not booleans, and not
    ``iteration`` (the step)."""
    return {key: float(value) for key, value in entry.items()
            if key != "iteration" and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


def _event_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{EVENTS}*")) if folder.is_dir() else []


def _wait_past(earlier: list[Path]) -> None:
    """TensorBoard reads a folder's event files in the order of their names, which start with the
    second they were opened in; a file opened in the same second as an earlier one could sort
    before it and lose its restart marker. Waits (under a second) until a new name sorts last."""
    stamps = [int(part) for path in earlier
              if (part := path.name[len(EVENTS):].split(".", 1)[0]).isdigit()]
    while stamps and int(time.time()) <= max(stamps):
        time.sleep(0.05)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak of allocated device memory (CUDA only; elsewhere nothing is measured)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """The peak memory tensors held on ``device`` since the last :func:`reset_peak_memory`, in MiB
    (torch.cuda.max_memory_allocated: the caching allocator's reserve beyond it is not counted);
    None off CUDA, where torch measures no peak."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
