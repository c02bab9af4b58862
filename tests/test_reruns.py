"""One run per folder, and reruns that really rerun: a folder of another config is refused (or,
for the workflow, replaced), a folder of another tool is never written to, and a finished run's
deleted outputs come back only when asked, for the same config, code and weights, and never over a
file that differs."""
import json
import os

import pytest
import torch

from freeadv import config as cfg
from freeadv.checkpoints import load_tensors, save_tensors
from freeadv.cli import main
from freeadv.training import Trainer, folder

TINY = {"dataset": "synthetic", "arch": "small_cnn", "width": 4, "n_train": 128, "n_test": 64, "batch_size": 64,
        "iterations": 4, "log_every": 2, "checkpoint_every": 2, "eval_n": 32, "device": "cpu",
        "method": "natural", "replay": 1, "robust_eval_n": 0, "lr_milestones": []}


def train(run_dir, **options):
    overrides = {k: v for k, v in options.items() if k in cfg.DEFAULTS}
    flags = {k: v for k, v in options.items() if k not in cfg.DEFAULTS}
    return Trainer(cfg.resolve({**TINY, **overrides}), run_dir, progress=False, **flags).run()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run, and its files' bytes."""
    run = tmp_path_factory.mktemp("reruns") / "run"
    summary = train(run)
    return run, summary


def copy_run(source, target):
    import shutil
    shutil.copytree(source, target, copy_function=shutil.copy2)
    for output, link in folder.FINISHED.items():   # copies are no hard links: link them again
        (target / link).unlink()
        os.link(target / output, target / link)
    return target


def test_a_finished_run_records_its_training_code_and_writes_its_marker(finished):
    run, summary = finished
    assert len(summary["code_digest"]) == 64
    assert json.loads((run / folder.MARKER).read_text()) == folder.MARKER_RECORD
    assert folder.is_run_folder(run)


def test_deleted_outputs_train_again_unless_a_restore_is_asked(finished, tmp_path, capsys):
    run = copy_run(finished[0], tmp_path / "run")
    for output in folder.FINISHED:
        (run / output).unlink()
    again = train(run)   # a forced rerun: the outputs were deleted, nobody asked for a restore
    assert "restored" not in capsys.readouterr().out and again["train_seconds"] != finished[1]["train_seconds"]
    for output in folder.FINISHED:
        (run / output).unlink()
    restored = train(run, restore=True)   # the workflow's retry of a job killed after it finished
    out = capsys.readouterr().out
    assert "restored model.pt" in out and "not retraining" in out
    assert restored["train_seconds"] == again["train_seconds"]


def test_no_restore_for_other_training_code(finished, tmp_path, capsys, monkeypatch):
    run = copy_run(finished[0], tmp_path / "run")
    for output in folder.FINISHED:
        (run / output).unlink()
    monkeypatch.setattr(folder, "code_digest", lambda module: "0" * 64)   # the training code was edited
    again = train(run, restore=True)
    assert "not restoring the finished run's outputs (other training code)" in capsys.readouterr().out
    assert again["code_digest"] == "0" * 64 and again["train_seconds"] != finished[1]["train_seconds"]


def test_no_restore_of_links_that_do_not_belong_together(finished, tmp_path, capsys):
    run = copy_run(finished[0], tmp_path / "run")
    for output in folder.FINISHED:
        (run / output).unlink()
    other = {k: v + 1 if v.is_floating_point() else v for k, v in load_tensors(run / ".finished-model.pt").items()}
    (run / ".finished-model.pt").unlink()
    save_tensors(run / ".finished-model.pt", other)   # another model's weights beside this run's summary
    train(run, restore=True)
    assert "its weights are not those its summary records" in capsys.readouterr().out
    trained = load_tensors(run / "model.pt")
    assert any(not torch.equal(trained[k], other[k]) for k in other)   # trained again, not the other weights


def test_a_restore_never_writes_over_a_model_that_differs(finished, tmp_path):
    run = copy_run(finished[0], tmp_path / "run")
    (run / "train.json").unlink()
    (run / "model.pt").unlink()
    mine = {k: torch.zeros_like(v) for k, v in load_tensors(run / ".finished-model.pt").items()}
    save_tensors(run / "model.pt", mine)   # a user's replacement, its summary deleted
    with pytest.raises(cfg.ConfigError, match="holds a model.pt that is not the finished run's"):
        train(run, restore=True)
    assert all(torch.equal(v, mine[k]) for k, v in load_tensors(run / "model.pt").items())


def test_a_folder_of_another_config_is_refused_and_the_workflow_replaces_it(finished, tmp_path, capsys):
    """As results/<scale>/runs are committed: train.json, config.yaml, log.jsonl and evals, no model.pt."""
    run = copy_run(finished[0], tmp_path / "run")
    for name in ("model.pt", *folder.FINISHED.values()):
        (run / name).unlink()
    (run / "evals").mkdir()
    (run / "evals" / "clean.json").write_text("{}")
    (run / "evals" / "autoattack100-eps8.state.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(cfg.ConfigError, match="holds a run of a different config"):
        train(run, iterations=6)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before   # nothing changed
    replaced = train(run, iterations=6, supersede=True)
    assert replaced["iterations"] == 6 and "replaced a run of another config" in capsys.readouterr().out
    assert (run / "evals" / "clean.json").exists() and not (run / "evals" / "autoattack100-eps8.state.json").exists()


@pytest.mark.parametrize("files", [
    {"train.json": '{"images": ["a.png"]}'},                                   # a dataset's index
    {"train.json": "{}", "config.yaml": "lr: 3\noptimizer: adam\n", "log.jsonl": "{}\n"},   # another tool's run
    {"checkpoint.pt": "not ours"},
])
def test_a_folder_of_another_tool_is_never_written_to(tmp_path, capsys, files):
    out = tmp_path / "theirs"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    code = main(["train", "--set", "dataset=synthetic", "--set", "iterations=2", "--out", str(out)])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a freeadv run folder" in err[0] and str(out) in err[0]
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    assert all((out / name).read_text() == text for name, text in files.items())


# --- through Snakemake ------------------------------------------------------------------------------

SMOKE_MODEL = "synthetic-small_cnn-w4-natural-s0"
# On the first attempt of a train job, end the process with an error after `freeadv train` wrote
# its outputs: a job killed in its epilogue. Snakemake deletes the outputs and retries the job.
EPILOGUE_KILL = '''
import atexit, os, sys
from pathlib import Path
if "train" in sys.argv[1:2] and "--restore-finished" not in sys.argv:
    marker = Path(os.environ["FREEADV_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("killed once")
        atexit.register(lambda: os._exit(1))
'''


def _workflow():
    from test_workflow import output, snakemake, snapshot
    return output, snakemake, snapshot


def _train_model(snakemake, repo, workdir, *args, env_first=None):
    target = f"results/smoke/runs/{SMOKE_MODEL}/model.pt"
    return snakemake(target, "--cores", "1", "--config", "scale=smoke", *args, workdir=workdir, repo=repo,
                     path_first=env_first)


def _summary(workdir):
    return json.loads((workdir / "results/smoke/runs" / SMOKE_MODEL / "train.json").read_text())


@pytest.mark.slow
def test_snakemake_retrains_after_a_code_edit_and_when_forced(tmp_path):
    output, snakemake, snapshot = _workflow()
    repo, workdir = snapshot(tmp_path / "repo"), tmp_path / "work"
    first = _train_model(snakemake, repo, workdir)
    assert first.returncode == 0, output(first)[-3000:]
    before = _summary(workdir)
    base = repo / "freeadv" / "methods" / "base.py"   # a number-changing edit of the training code
    text = base.read_text()
    assert "loss = torch.nn.functional.cross_entropy(" in text
    base.write_text(text.replace("loss = torch.nn.functional.cross_entropy(", "loss = 0.5 * torch.nn.functional.cross_entropy(", 1))
    edited = _train_model(snakemake, repo, workdir)
    assert edited.returncode == 0, output(edited)[-3000:]
    after = _summary(workdir)
    assert after["code_digest"] != before["code_digest"] and after["weights_digest"] != before["weights_digest"]
    log = workdir / "logs/smoke/train" / f"{SMOKE_MODEL}.log"
    assert "restored" not in log.read_text()
    forced = _train_model(snakemake, repo, workdir, "--forcerun", "train")
    assert forced.returncode == 0, output(forced)[-3000:]
    again = _summary(workdir)
    assert "restored" not in log.read_text() and "not retraining" not in log.read_text()
    assert again["wall_seconds_this_process"] != after["wall_seconds_this_process"]   # it trained again
    assert again["weights_digest"] == after["weights_digest"]   # the same code and config: the same weights


@pytest.mark.slow
def test_snakemake_retry_of_a_job_killed_after_training_restores_its_outputs(tmp_path):
    output, snakemake, snapshot = _workflow()
    repo, workdir = snapshot(tmp_path / "repo"), tmp_path / "work"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(EPILOGUE_KILL)
    os.environ["FREEADV_TEST_MARKER"] = str(tmp_path / "killed")
    try:
        run = _train_model(snakemake, repo, workdir, "--retries", "1", env_first=hooks)
    finally:
        del os.environ["FREEADV_TEST_MARKER"]
    assert run.returncode == 0, output(run)[-3000:]
    assert (tmp_path / "killed").exists()   # the first attempt was killed after it had trained
    log = (workdir / "logs/smoke/train" / f"{SMOKE_MODEL}.log").read_text()
    assert "restored model.pt" in log and "restored train.json" in log
    summary = _summary(workdir)
    assert summary["resumes"] == 0 and summary["iterations"] == 20   # the first attempt's run, not a new one
