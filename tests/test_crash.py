"""Crash safety: `freeadv train` SIGKILLed at chosen moments (mid-step, half-way through a
checkpoint write, between rotating the old checkpoint and writing the new one, while writing
train.json) and restarted each time ends with exactly the weights of an uninterrupted run; a
corrupt checkpoint falls back to the previous one or fails clearly, never restarts from zero."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from freeadv import config as cfg
from freeadv.checkpoints import CheckpointError, load_tensors
from freeadv.training import Trainer

ARGS = ["--set", "dataset=synthetic", "--set", "arch=small_cnn", "--set", "width=8", "--set", "n_train=512",
        "--set", "n_test=100", "--set", "batch_size=64", "--set", "iterations=48", "--set", "checkpoint_every=8",
        "--set", "log_every=4", "--set", "eval_n=50", "--set", "device=cpu", "--set", "method=free",
        "--set", "replay=4", "--no-progress"]

# Runs `freeadv train` in this process after arranging a SIGKILL at the N-th occurrence of POINT.
KILLER = textwrap.dedent("""
    import io, os, signal, sys
    import torch
    from freeadv import checkpoints, methods
    from freeadv.training import folder
    from freeadv.cli import main

    point, n, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    seen = {"n": 0}

    def due():
        seen["n"] += 1
        return seen["n"] == n

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "step":                      # in the middle of training, between checkpoints
        step = methods.Free.step
        def dying_step(self, *a, **k):
            if due():
                die()
            return step(self, *a, **k)
        methods.Free.step = dying_step
    elif point == "checkpoint-write":        # half of the checkpoint's bytes are on disk
        save = torch.save
        def dying_save(obj, f, *a, **k):
            if due() and not isinstance(f, (str, os.PathLike)):
                buffer = io.BytesIO()
                save(obj, buffer, *a, **k)
                data = buffer.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                die()
            return save(obj, f, *a, **k)
        torch.save = dying_save
    elif point == "checkpoint-rotate":       # checkpoint.pt renamed to checkpoint.prev.pt, new one not begun
        save_tensors = checkpoints.save_tensors
        def dying_save_tensors(path, state):
            if due():
                die()
            return save_tensors(path, state)
        checkpoints.save_tensors = dying_save_tensors
    elif point == "train-json":              # model.pt written, train.json not yet
        write_json = folder.write_json
        def dying_write_json(path, data):
            if due():
                die()
            return write_json(path, data)
        folder.write_json = dying_write_json
    sys.exit(main(args))
""")


def train_cli(out, kill_point=None, n=0):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if kill_point is None:
        command = [sys.executable, "-m", "freeadv", "train", *ARGS, "--out", str(out)]
    else:
        command = [sys.executable, "-c", KILLER, kill_point, str(n), "train", *ARGS, "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_gives_identical_weights(tmp_path):
    straight = train_cli(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr

    run = tmp_path / "killed"
    kills = [("step", 13), ("checkpoint-write", 2), ("checkpoint-rotate", 2), ("train-json", 1)]
    for point, n in kills:
        killed = train_cli(run, point, n)
        assert killed.returncode == -signal.SIGKILL, (point, killed.returncode, killed.stderr[-2000:])
        assert not (run / "train.json").exists()
        assert (run / "checkpoint.pt").exists() or (run / "checkpoint.prev.pt").exists(), point
    resumed = train_cli(run)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout

    a, b = load_tensors(tmp_path / "straight" / "model.pt"), load_tensors(run / "model.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    summary = __import__("json").loads((run / "train.json").read_text())
    assert summary["resumes"] == len(kills)
    assert not list(run.glob(".*.tmp")), "stale temporary files of killed writes must be cleaned up"
    assert not (run / "checkpoint.pt").exists()


TINY = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 256, "n_test": 64, "batch_size": 64,
        "iterations": 24, "checkpoint_every": 8, "log_every": 4, "eval_n": None, "device": "cpu", "method": "free",
        "replay": 2}


class Stop(Exception):
    pass


def interrupted_run(tmp_path, monkeypatch, at_step):
    """A run stopped after two checkpoints (8 and 16) exist: checkpoint.pt and checkpoint.prev.pt."""
    from freeadv import methods
    original, calls = methods.Free.step, {"n": 0}

    def stopping(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == at_step:
            raise Stop
        return original(self, *a, **k)

    monkeypatch.setattr(methods.Free, "step", stopping)
    with pytest.raises(Stop):
        Trainer(cfg.resolve(TINY), tmp_path / "run", progress=False).run()
    monkeypatch.setattr(methods.Free, "step", original)
    return tmp_path / "run"


@pytest.mark.slow
def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, monkeypatch, capsys):
    run = interrupted_run(tmp_path, monkeypatch, at_step=20)
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    with pytest.warns(UserWarning, match="resuming from the previous checkpoint 'checkpoint.prev.pt'"):
        result = Trainer(cfg.resolve(TINY), run, progress=False).run()
    out = capsys.readouterr().out
    assert "resuming" in out and "at iteration 8/24" in out
    assert result["iterations"] == 24 and result["resumes"] == 1


@pytest.mark.slow
def test_all_checkpoints_corrupt_is_a_clear_error_not_a_restart(tmp_path, monkeypatch):
    run = interrupted_run(tmp_path, monkeypatch, at_step=20)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run / name).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load .*checkpoint.pt.* no older good checkpoint"):
        Trainer(cfg.resolve(TINY), run, progress=False).run()
    assert not (run / "model.pt").exists()


def test_io_imports_no_torch():
    """freeadv.io runs at Snakemake parse time (through freeadv.report.claims): importing it must not
    import torch; the tensor files are freeadv.checkpoints'."""
    code = "import sys, freeadv.io; assert 'torch' not in sys.modules, 'io imported torch'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

