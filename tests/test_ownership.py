"""No command writes over what is not its own, and a stopped command ends in one line.

Outputs are never a command's own inputs (a run's weights and summary, a scale's plan and evals),
a figure writes exactly the name it was given, written files get the mode the umask says, the
decoded-data cache touches only files of its own name pattern, SIGINT and SIGTERM end `freeadv
train` in one line with the shell's exit code and the same command resumes to the same weights,
restarts are refused where an attack has none, and a resumed AutoAttack counts every process's time."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from freeadv.attacks import AttackSpec, autoattack
from freeadv.attacks.spec import AttackError
from freeadv.cli import main
from freeadv.data import jpeg
from freeadv.experiments.plan import load_plan
from freeadv.experiments import scales
from freeadv.io import atomic_write, write_json
from freeadv.report.plotting import figure_paths, save

from test_hostile import TINY, _watch_tmp_path, refused, run, tree, write_archive  # noqa: F401 (fixtures)
from test_tables import SMALL_SCALE


# --- outputs that are the command's own inputs ---------------------------------------------------

@pytest.mark.parametrize("command", [["adv-examples", "--last", "2", "--steps", "1"],
                                     ["loss-surface", "--images", "1", "--grid", "3"]])
@pytest.mark.parametrize("target", ["model.pt", "train.json", "config.yaml", "."])
def test_analyses_never_write_over_the_run(run, capsys, command, target):
    before = tree(run)
    refused(capsys, [*command, "--run", run, "--device", "cpu", "--out", run / target], "--out")
    assert tree(run) == before


@pytest.fixture
def scale(tmp_path) -> Path:
    """results/small with its plan.json and one eval the plan names."""
    results = tmp_path / "results" / "small"
    plan = scales.build_plan("small", SMALL_SCALE)
    write_json(results / "plan.json", plan.to_json())
    evaluation = results / plan.target_files("table1")[0]
    write_json(evaluation, {"kind": "eval", "robust_acc": 41.0})
    return results


def test_claims_never_write_over_the_plan_or_an_eval(scale, capsys):
    plan = load_plan(scale / "plan.json")
    evaluation = scale / plan.target_files("table1")[0]
    common = ["claims", "--scale", "small", "--results", scale.parent]
    refused(capsys, [*common, "--out", scale / "plan.json"], "--out", "plan.json")
    refused(capsys, [*common, "--json", evaluation], "--json", evaluation.name)
    refused(capsys, [*common, "--out", scale / "c.txt", "--json", scale / "c.txt"], "--json", "--out")


def test_a_figure_with_another_suffix_is_refused_and_touches_nothing(scale, capsys, tmp_path):
    (tmp_path / "x.png").write_bytes(b"the user's own picture")
    refused(capsys, ["figure", "figure1", "--results", scale, "--out", tmp_path / "x.v2"], "--out", ".v2")
    assert (tmp_path / "x.png").read_bytes() == b"the user's own picture"
    assert not (tmp_path / "x.v2").exists() and not (tmp_path / "x.pdf").exists()


def test_a_figure_is_written_under_the_name_it_was_given(tmp_path):
    assert figure_paths(tmp_path / "f.png") == [tmp_path / "f.png", tmp_path / "f.pdf"]
    assert figure_paths(tmp_path / "f") == [tmp_path / "f.png", tmp_path / "f.pdf"]
    (tmp_path / "x.png").write_bytes(b"mine")
    written = save(plt.figure(figsize=(1, 1)), tmp_path / "x.v2")
    assert written == [tmp_path / "x.v2.png", tmp_path / "x.v2.pdf"] and all(p.exists() for p in written)
    assert (tmp_path / "x.png").read_bytes() == b"mine"


# --- file modes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        atomic_write(tmp_path / "b.bin", lambda handle: handle.write(b"b"))
    finally:
        os.umask(previous)
    for name in ("a.json", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


# --- the decoded-data cache ----------------------------------------------------------------------

def _cache_names(prefix: str) -> dict[str, str]:
    key = "sha256-" + "0" * 32
    return {"user": f"{prefix}-mine.bin", "user_npz": f"{prefix}2-mine.npz", "user_near": f"{prefix}2-{key}.npz.bak",
            "stale": f"{prefix}2-{key}.npz.{2 ** 40}.partial", "live": f"{prefix}2-{key}.npz.{os.getppid()}.partial"}


def test_the_cache_prunes_only_its_own_files_and_its_stale_partials(tmp_path, monkeypatch):
    from freeadv.data import load_data
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("FREEADV_CACHE", str(cache))
    names = _cache_names(jpeg._CACHE_PREFIX)
    for name in names.values():
        (cache / name).write_bytes(b"not freeadv's")
    for index in range(jpeg.KEEP_CACHES + 1):
        write_archive(tmp_path / f"d{index}", {f"cifar10-jpeg/NOTE{index}.txt": b"other bytes"})
        load_data("cifar10-jpeg", tmp_path / f"d{index}")
        time.sleep(0.01)   # distinct mtimes
    left = {p.name for p in cache.iterdir()}
    assert {names["user"], names["user_npz"], names["user_near"], names["live"]} <= left
    assert names["stale"] not in left, "a killed writer's partial file is removed"
    assert len([n for n in left if n.endswith(".npz") and "sha256-" in n]) == jpeg.KEEP_CACHES


def test_an_interrupted_cache_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def interrupted(handle, **arrays):
        handle.write(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        jpeg._write_cache(tmp_path / "c.npz", {"train_x": np.zeros(1)})
    assert list(tmp_path.iterdir()) == []


# --- restarts and AutoAttack's time ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["apgd", "bim"])
def test_restarts_are_refused_for_an_attack_without_them(run, capsys, kind):
    refused(capsys, ["attack", "--run", run, "--attack", kind, "--restarts", "3", "--out", run / "e.json"],
            "--restarts", kind)
    with pytest.raises(AttackError, match="restarts"):
        AttackSpec(kind, 20, 8.0, 2.0, 3)
    with pytest.raises(AttackError):
        AttackSpec.parse("bim20-eps8-step2-r3")
    assert AttackSpec.parse("pgd20-eps8-step2-r3").id == "pgd20-eps8-step2-r3"


def test_a_resumed_autoattack_counts_the_time_of_every_process(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "apgd.json"
    argv = ["attack", "--run", str(run), "--attack", "apgd", "--steps", "2", "--n", "16", "--batch-size", "8",
            "--device", "cpu", "--no-progress", "--out", str(out)]
    real, calls = autoattack.build_autoattack, {"n": 0}

    def stops_on_the_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(autoattack, "build_autoattack", stops_on_the_second_chunk)
    assert main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["freeadv attack: interrupted"]
    state_path = tmp_path / "apgd.state.json"
    state = json.loads(state_path.read_text())
    assert state["seconds"] > 0 and state["clean"] is not None
    write_json(state_path, dict(state, seconds=1000.0))   # as if the first process had run 1000 s
    monkeypatch.setattr(autoattack, "build_autoattack", real)
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result[autoattack.EARLIER_SECONDS] == 1000.0
    assert 1000.0 < result["wall_seconds"] < 1000.0 + 120
    assert result["images_per_second"] == pytest.approx(16 / result["wall_seconds"])
    assert not state_path.exists()


# --- SIGINT and SIGTERM during training ------------------------------------------------------------

SLOW_TINY = {**TINY, "iterations": 240, "checkpoint_every": 8, "log_every": 8}
TRAIN = [a for key, value in SLOW_TINY.items() for a in ("--set", f"{key}={json.dumps(value)}")] + ["--no-progress"]


def _train(out: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # SIGINT at its default: a job started in the background of a non-interactive shell (CI's) inherits
    # it ignored, and Python then leaves it ignored
    return subprocess.Popen([sys.executable, "-m", "freeadv", "train", *TRAIN, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _digest(run_dir: Path) -> str:
    return json.loads((run_dir / "train.json").read_text())["weights_digest"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> str:
    """The weights digest of an uninterrupted run."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    process = _train(run_dir)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return _digest(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_training_in_one_line_and_the_run_resumes(tmp_path, straight, signum, code):
    run_dir = tmp_path / "run"
    process = _train(run_dir)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) <= 2 and "interrupted at iteration" in err and "resumes" in err, err
    assert not (run_dir / "train.json").exists(), "the signal came too late to interrupt the run"
    resumed = _train(run_dir)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming" in out
    assert _digest(run_dir) == straight
    assert not list(run_dir.glob(".*.tmp"))
