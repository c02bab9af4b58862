"""logger: tensorboard writes log.jsonl's records as TensorBoard scalars, once each across a resume;
a missing package or an unknown logger is one line before training; peak device memory is null
on a CPU, in train.json and in bench rows, and files without it still validate."""
import json
import sys

import pytest
import torch

from freeadv import config as cfg
from freeadv import schemas
from freeadv.cli import main
from freeadv.checkpoints import load_tensors
from freeadv.methods import Natural
from freeadv.tools.bench import run_bench
from freeadv.training import Trainer
from freeadv.training.folder import read_log
from freeadv.training.tracking import FOLDER, scalars

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

# 4 iterations a pass, 4 passes; a robust check merged into every pass end; a checkpoint at 8
TINY = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 256, "n_test": 64,
        "batch_size": 64, "iterations": 16, "method": "natural", "replay": 1, "eval_n": 64,
        "log_every": 4, "checkpoint_every": 8, "device": "cpu", "robust_eval_n": 16,
        "robust_eval_steps": 2, "logger": "tensorboard"}


def train(run_dir, **overrides):
    return Trainer(cfg.resolve({**TINY, **overrides}), run_dir, progress=False).run()


def events(run_dir):
    """Every scalar of the run's TensorBoard folder as TensorBoard reads it: tag -> [(step, value)]."""
    accumulator = EventAccumulator(str(run_dir / FOLDER))
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def from_log(run_dir):
    """The same, from log.jsonl: tag -> [(iteration, value)] in the log's order."""
    wanted = {}
    for entry in read_log(run_dir):
        for tag, value in scalars(entry).items():
            wanted.setdefault(tag, []).append((entry["iteration"], value))
    return wanted


def assert_same(run_dir):
    got, wanted = events(run_dir), from_log(run_dir)
    assert set(got) == set(wanted)
    for tag, points in wanted.items():
        assert [step for step, _ in got[tag]] == [step for step, _ in points], tag
        assert [value for _, value in got[tag]] == pytest.approx([value for _, value in points], rel=1e-6), tag


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tracking") / "straight"
    return run_dir, train(run_dir)


@pytest.mark.slow
def test_scalars_are_the_log_records(straight):
    run_dir, _ = straight
    assert_same(run_dir)
    got = events(run_dir)
    assert {"loss", "lr", "clean_acc_eval_n", "heldout_robust_acc", "train_seconds"} <= set(got)
    assert [step for step, _ in got["loss"]] == [4, 8, 12, 16]


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_a_resumed_run_appends_each_record_once(tmp_path, monkeypatch, straight):
    original, calls = Natural.step, {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 14:   # past pass 3's record (iteration 12), which the checkpoint at 8 lacks
            raise Interrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Natural, "step", dying_step)
    with pytest.raises(Interrupt):
        train(tmp_path / "run")
    assert [step for step, _ in events(tmp_path / "run")["loss"]] == [4, 8, 12]
    monkeypatch.setattr(Natural, "step", original)
    result = train(tmp_path / "run")
    assert result["resumes"] == 1
    assert len(list((tmp_path / "run" / FOLDER).iterdir())) == 2   # appended: one file a process
    assert_same(tmp_path / "run")
    a, b = load_tensors(straight[0] / "model.pt"), load_tensors(tmp_path / "run" / "model.pt")
    assert all(torch.equal(a[key], b[key]) for key in a)   # exact resume holds with a tracker


def test_logger_none_writes_no_events(trained_run):
    assert not (trained_run / FOLDER).exists()
    assert json.loads((trained_run / "train.json").read_text())["config"]["logger"] == "none"


def test_missing_package_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # import fails as if not installed
    code = main(["train", "--set", "dataset=synthetic", "--set", "logger=tensorboard", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "tensorboard package is not installed" in err and "freeadv[tracking]" in err
    assert not (tmp_path / "r").exists()


def test_unknown_logger_is_one_line(tmp_path, capsys):
    code = main(["train", "--set", "dataset=synthetic", "--set", "logger=wandb", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "'logger' has bad value 'wandb': expected none or tensorboard" in err


def test_peak_memory_is_null_on_cpu_and_optional(trained_run):
    on_disk = schemas.read_checked(trained_run / "train.json", "train")
    assert "peak_memory_mb" in on_disk and on_disk["peak_memory_mb"] is None
    older = {key: value for key, value in on_disk.items() if key != "peak_memory_mb"}
    schemas.check(older, "train", "older train.json")   # files from before the key still validate
    schemas.check({**on_disk, "peak_memory_mb": 812.5}, "train", "cuda train.json")
    with pytest.raises(schemas.BadFile, match="peak_memory_mb"):
        schemas.check({**on_disk, "peak_memory_mb": -1}, "train", "bad train.json")


def test_bench_rows_have_a_null_peak_on_cpu():
    result = run_bench("small_cnn", 8, width=4, device="cpu", warmup=1, reps=1, methods=("natural",),
                       eval_rows=False)
    assert result["rows"] and all(row["peak_memory_mb"] is None for row in result["rows"])
    schemas.check(result, "bench", "bench.json")
    row = result["rows"][0]
    schemas.check({**result, "rows": [{k: v for k, v in row.items() if k != "peak_memory_mb"}]}, "bench", "old")
    with pytest.raises(schemas.BadFile, match="peak_memory_mb"):
        schemas.check({**result, "rows": [{**row, "peak_memory_mb": -3.0}]}, "bench", "bad bench.json")
