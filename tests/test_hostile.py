"""A hostile but honest user: bad values, damaged files, shared folders, paths that are not what
they seem. Every case must end cleanly (exit 2, or doctor's 1, with ONE line naming the culprit and
no traceback) or correctly (the right result), and nothing the command did not create may change.

Organised by the classes of the issue that collected them: 1 corrupt data, 2 two processes on one
run folder, 3 --out over what is not ours, 4 values that pass validation and then do harm,
5 tracebacks for user errors, 6 work lost at the end, 7 messages that do not name the culprit,
8 plain usability, 9 resource bombs."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import PIL.Image
import pytest
import torch

from freeadv import config as cfg
from freeadv.checkpoints import load_tensors, save_tensors
from freeadv.cli import main
from freeadv.data import jpeg
from freeadv.data.catalog import CIFAR10_CLASSES, CIFAR10_JPEG_BYTES
from freeadv.io import read_json
from freeadv.training import Trainer

REPO = Path(__file__).resolve().parents[1]
TINY = {"dataset": "synthetic", "arch": "small_cnn", "width": 4, "n_train": 128, "n_test": 32, "batch_size": 32,
        "iterations": 12, "method": "free", "replay": 2, "eval_n": 32, "robust_eval_n": None, "log_every": 2,
        "checkpoint_every": 4, "device": "cpu"}
SETS = [a for key, value in TINY.items() for a in ("--set", f"{key}={json.dumps(value)}")]


# --- helpers ---------------------------------------------------------------------------------------

def tree(root: Path) -> dict[str, str]:
    """Every file under root and its content digest: what 'nothing else changed' compares."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


WATCHED: dict[str, Path] = {}   # the running test's tmp_path: refused() checks nothing there changed


@pytest.fixture(autouse=True)
def _watch_tmp_path(tmp_path):
    WATCHED["tmp"] = tmp_path
    yield
    WATCHED.clear()


def _everything(skip: Path | None) -> dict[str, str]:
    """The test's folder and the repository's config, results and workflow, file by file, except
    under ``skip`` (the command's own run folder)."""
    roots = [WATCHED["tmp"], REPO / "config", REPO / "results", REPO / "workflow"] if WATCHED else []
    state = {}
    for root in roots:
        for name, digest in tree(root).items():
            path = root / name
            if skip is None or not path.resolve().is_relative_to(skip):
                state[str(path)] = digest
    return state


def refused(capsys, argv: list[str], *culprits: str, code: int = 2) -> str:
    """Run one command in-process: it must exit ``code`` with one error line naming every culprit,
    and change no file outside its own --out folder (the test's folder and the repository's)."""
    argv = [str(a) for a in argv]
    own = Path(argv[argv.index("--out") + 1]).resolve() if "--out" in argv[:-1] and "train" in argv[:1] else None
    before = _everything(own)
    returned = main(argv)
    after = _everything(own)
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"a refused command changed files: {changed[:5]}"
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("freeadv ")]   # \r: progress bars
    assert returned == code, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and ": error: " in lines[0], err
    for culprit in culprits:
        assert str(culprit) in lines[0], (culprit, lines[0])
    return lines[0]


@pytest.fixture
def run(tmp_path, trained_run) -> Path:
    """A private copy of the finished tiny run (attacks may not touch the shared one)."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def jpeg_bytes(size=(32, 32), level=128) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", size, (level, level, level)).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def write_archive(root: Path, members: dict[str, bytes] | None = None, *, classes=CIFAR10_CLASSES,
                  per_class: int = 2) -> Path:
    """A small cifar10-jpeg.tar.gz in the real layout (all classes, both splits) plus ``members``."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar10-jpeg.tar.gz"
    files = {f"cifar10-jpeg/{split}/{c}/{n:04d}.jpg": jpeg_bytes(level=10 * i + n)
             for split in ("train", "test") for i, c in enumerate(classes) for n in range(per_class)}
    files.update(members or {})
    with tarfile.open(archive, "w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return archive


def jpeg_train(root: Path, out: Path) -> list[str]:
    return ["train", "--set", "dataset=cifar10-jpeg", "--set", f"data_root={root}", "--set", "arch=small_cnn",
            "--set", "width=4", "--set", "iterations=2", "--set", "batch_size=4", "--set", "eval_n=null",
            "--set", "robust_eval_n=null", "--set", "device=cpu", "--out", out, "--no-progress"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FREEADV_CACHE", str(folder))
    return folder


# --- 1. corrupt data is never used silently ----------------------------------------------------------

def test_flipped_byte_in_the_archive_is_refused_and_nothing_is_cached(tmp_path, capsys, cache):
    archive = write_archive(tmp_path / "data")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    refused(capsys, jpeg_train(tmp_path / "data", tmp_path / "out"), "cifar10-jpeg.tar.gz")
    assert not list(cache.glob("*.npz"))


def test_an_archive_of_the_published_size_but_another_digest_is_damaged(tmp_path, capsys, cache):
    archive = tmp_path / "data" / "cifar10-jpeg.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(bytes(CIFAR10_JPEG_BYTES))
    line = refused(capsys, jpeg_train(tmp_path / "data", tmp_path / "out"), str(archive))
    assert "damaged" in line and "sha256" in line


@pytest.mark.parametrize("damage, culprit", [
    ("missing_class", "truck"),
    ("duplicate", "duplicates"),
    ("not_a_jpeg", "0099.jpg"),
    ("wrong_size", "64x64"),
    ("bomb", "9999.jpg"),
])
def test_a_damaged_archive_layout_names_what_is_wrong(tmp_path, capsys, cache, damage, culprit):
    classes, members = CIFAR10_CLASSES, {}
    if damage == "missing_class":
        classes = CIFAR10_CLASSES[:-1]
    elif damage == "duplicate":
        members = {"extra/cifar10-jpeg/train/cat/0000.jpg": jpeg_bytes()}
    elif damage == "not_a_jpeg":
        members = {"cifar10-jpeg/train/cat/0099.jpg": b"GIF89a not a jpeg"}
    elif damage == "wrong_size":
        members = {"cifar10-jpeg/test/dog/0042.jpg": jpeg_bytes(size=(64, 64))}
    elif damage == "bomb":
        members = {"cifar10-jpeg/train/cat/9999.jpg": bytes(jpeg.MAX_MEMBER_BYTES + 1)}
    write_archive(tmp_path / "data", members, classes=classes)
    refused(capsys, jpeg_train(tmp_path / "data", tmp_path / "out"), culprit)
    assert not (tmp_path / "out" / "train.json").exists()


@pytest.mark.slow
def test_doctor_fails_a_damaged_archive_and_passes_a_good_one(tmp_path, capsys):
    good = write_archive(tmp_path / "good")
    assert "gzip CRC ok" in jpeg.check_archive(good) and "NOT the published archive" in jpeg.check_archive(good)
    data = bytearray(good.read_bytes())
    data[-12] ^= 0x01     # inside the gzip trailer's CRC
    bad = tmp_path / "bad" / "cifar10-jpeg.tar.gz"
    bad.parent.mkdir()
    bad.write_bytes(bytes(data))
    assert main(["doctor", "--data-root", str(bad.parent)]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("FAIL") and "damaged" in line for line in out.splitlines()), out


def test_the_cache_is_keyed_by_digest_and_pruned(tmp_path, cache):
    from freeadv.data import load_data
    for index in range(jpeg.KEEP_CACHES + 2):
        write_archive(tmp_path / f"d{index}", {f"cifar10-jpeg/NOTE{index}.txt": b"other bytes"})
        load_data("cifar10-jpeg", tmp_path / f"d{index}")
        time.sleep(0.01)   # distinct mtimes
    names = sorted(p.name for p in cache.glob("*.npz"))
    assert len(names) == jpeg.KEEP_CACHES and all("sha256-" in n for n in names), names


def test_a_damaged_cache_is_decoded_again(tmp_path, cache):
    from freeadv.data import load_data
    write_archive(tmp_path / "data")
    first = load_data("cifar10-jpeg", tmp_path / "data")
    cached, = cache.glob("*.npz")
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = load_data("cifar10-jpeg", tmp_path / "data")
    assert torch.equal(again.train_x, first.train_x)


# --- 2. one process at a time in a run folder ------------------------------------------------------------

@pytest.mark.slow
def test_a_second_train_on_a_busy_folder_fails_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    slow = {**TINY, "iterations": 400, "checkpoint_every": 1000, "log_every": 100}
    args = [a for key, value in slow.items() for a in ("--set", f"{key}={json.dumps(value)}")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    first = subprocess.Popen([sys.executable, "-m", "freeadv", "train", *args, "--out", str(out), "--no-progress"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):   # until the first holds the lock (it writes config.yaml under it)
        if (out / "config.yaml").exists() or first.poll() is not None:
            break
        time.sleep(0.05)
    line = refused(capsys, ["train", *args, "--set", "seed=1", "--out", out], str(out), f"PID {first.pid}")
    assert "in use" in line
    assert first.wait(timeout=600) == 0
    alone = tmp_path / "alone"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as the first process ran: then equal to the bit
    try:
        Trainer(cfg.resolve(slow), alone, progress=False).run()
    finally:
        torch.set_num_threads(threads)
    expected, actual = load_tensors(alone / "model.pt"), load_tensors(out / "model.pt")
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert read_json(out / "train.json")["config"]["seed"] == 0


def test_a_checkpoint_of_another_config_is_refused(tmp_path, capsys, monkeypatch):
    from freeadv.training import folder
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setattr(folder, "finish", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg.resolve(TINY), a, progress=False).run()
    monkeypatch.undo()
    b.mkdir()
    cfg.save_yaml(cfg.resolve({**TINY, "seed": 1}), b / "config.yaml")
    shutil.copy2(a / "checkpoint.pt", b / "checkpoint.pt")
    refused(capsys, ["train", *SETS, "--set", "seed=1", "--out", b], str(b), "different config")


# --- 3. --out never overwrites what is not ours ---------------------------------------------------------

def test_train_into_a_folder_of_other_files_is_refused(tmp_path, capsys):
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "config.yaml").write_text("scales: {}\n")
    (folder / "README.md").write_text("mine\n")
    before = tree(tmp_path)
    refused(capsys, ["train", *SETS, "--out", folder], str(folder), "not a freeadv run")
    assert tree(tmp_path) == before


def test_train_into_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine\n")
    before = tree(tmp_path)
    refused(capsys, ["train", *SETS, "--out", tmp_path / "notes.txt"], "notes.txt", "is a file")
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_resume_removes_only_its_own_temporaries(tmp_path, monkeypatch):
    from freeadv.training import folder
    run_dir = tmp_path / "run"
    monkeypatch.setattr(folder, "finish", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg.resolve(TINY), run_dir, progress=False).run()
    monkeypatch.undo()
    (run_dir / ".checkpoint.pt.x1.tmp").write_text("half written by us")
    (run_dir / ".my-notes.tmp").write_text("the user's")
    Trainer(cfg.resolve(TINY), run_dir, progress=False).run()
    assert not (run_dir / ".checkpoint.pt.x1.tmp").exists()
    assert (run_dir / ".my-notes.tmp").read_text() == "the user's"


@pytest.mark.parametrize("target, culprit", [
    ("model.pt", "is an input"), ("train.json", "is an input"), ("config.yaml", "is an input"),
    (".", "is a folder"), ("model.pt/x.json", "is a file"),
])
def test_attack_never_writes_over_its_own_inputs(run, capsys, target, culprit):
    before = tree(run)
    refused(capsys, ["attack", "--run", run, "--steps", "1", "--out", run / target, "--no-progress"], culprit)
    assert tree(run) == before


# --- 4. values that pass validation and then do harm ---------------------------------------------------

@pytest.mark.parametrize("setting, culprit", [
    ("momentum=5", "'momentum'"),
    ("data_root=5", "'data_root'"),
    ("seed=100000000000000000000000", "'seed'"),
    ("data_seed=-1", "'data_seed'"),
    ("lr_gamma=0", "'lr_gamma'"),
    ("lr=-0.1", "'lr'"),
    ("weight_decay=-1", "'weight_decay'"),
    ("batch_size=0", "'batch_size'"),
    ("batch_size=256", "larger than n_train"),
    ("eps=300", "'eps'"),
    ("iterations=1.5", "'iterations'"),
    ("replay=0", "replay"),
    ("device=tpu", "'device'"),
    ("amp=fp8", "'amp'"),
    ("lr_milestones=[0.5, 2]", "'lr_milestones'"),
    ("n_test=1000000000", "n_test"),
])
def test_train_refuses_a_harmful_value_before_any_work(tmp_path, capsys, setting, culprit):
    refused(capsys, ["train", *SETS, "--set", setting, "--out", tmp_path / "out"], culprit)
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_an_alias_bomb_config_is_refused(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]"
                                                      for i in range(1, 9)] + ["data_root: *a8"]
    bomb.write_text("\n".join(lines) + "\n")
    refused(capsys, ["train", "--config", bomb, "--out", tmp_path / "out"], str(bomb), "aliases")


def test_a_config_of_megabytes_is_refused(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * cfg.MAX_CONFIG_BYTES + "\n")
    refused(capsys, ["train", "--config", big, "--out", tmp_path / "out"], str(big), "bytes")


@pytest.mark.parametrize("option, value", [("--batch-size", "-5"), ("--batch-size", "0"), ("--n", "0"),
                                           ("--restarts", "0"), ("--steps", "-1")])
def test_attack_refuses_bad_sizes(run, capsys, option, value):
    refused(capsys, ["attack", "--run", run, option, value, "--out", run / "evals" / "x.json"], option, value)
    assert not (run / "evals" / "x.json").exists()


def test_a_nan_weight_model_is_not_evaluated(run, capsys):
    weights = load_tensors(run / "model.pt")
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_tensors(run / "model.pt", weights)
    refused(capsys, ["attack", "--run", run, "--out", run / "evals" / "x.json", "--no-progress"], "non-finite", name)


def test_a_table_refuses_an_impossible_accuracy(tmp_path):
    from freeadv.report.results import BadResult, read_result
    (tmp_path / "eval.json").write_text(json.dumps({"clean_acc": 50.0, "robust_acc": 250}))
    with pytest.raises(BadResult, match="robust_acc = 250"):
        read_result(tmp_path, "eval.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(BadResult, match="list"):
        read_result(tmp_path, "list.json")


# --- 5. user errors end in one line, never a traceback ----------------------------------------------

def test_attack_on_a_malformed_model_file(run, capsys):
    (run / "model.pt").write_bytes(b"this is not a zip file")
    refused(capsys, ["attack", "--run", run, "--out", run / "evals" / "x.json"], "model.pt")


def test_attack_on_a_model_of_another_architecture(run, capsys, tmp_path):
    other = tmp_path / "other"
    Trainer(cfg.resolve({**TINY, "width": 16, "iterations": 1}), other, progress=False).run()   # the run is width 8
    shutil.copy2(other / "model.pt", run / "model.pt")
    line = refused(capsys, ["attack", "--run", run, "--out", run / "evals" / "x.json"], "model.pt", "does not fit")
    assert len(line) < 400


def test_attack_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    refused(capsys, ["attack", "--run", tmp_path / "nowhere", "--out", tmp_path / "x.json"], "nowhere")


def test_attack_with_an_unknown_device(run, capsys):
    refused(capsys, ["attack", "--run", run, "--device", "tpu", "--out", run / "evals" / "x.json"], "tpu")


@pytest.mark.parametrize("text, culprit", [("a: [1, 2\n", "not valid YAML"), ("- 1\n- 2\n", "mapping")])
def test_train_with_a_malformed_config(tmp_path, capsys, text, culprit):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    refused(capsys, ["train", "--config", bad, "--out", tmp_path / "out"], str(bad), culprit)


def test_train_with_a_config_that_is_a_folder(tmp_path, capsys):
    refused(capsys, ["train", "--config", tmp_path, "--out", tmp_path / "out"], str(tmp_path), "is a folder")


def test_train_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    refused(capsys, ["train", *SETS, "--out", tmp_path / "file" / "run"], "file")


def test_plan_with_empty_inputs(capsys):
    refused(capsys, ["plan", "--inputs", "{}"], "plan")


# --- 8. plain usability ------------------------------------------------------------------------------

def test_numbers_as_people_write_them(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("lr: 1e-1\nweight_decay: 5e-4\n")
    resolved = cfg.resolve(cfg.load_yaml(config), ["momentum=9e-1"])
    assert (resolved["lr"], resolved["weight_decay"], resolved["momentum"]) == (0.1, 0.0005, 0.9)


@pytest.mark.slow
def test_resume_between_loss_reads_gives_the_same_loss_history(tmp_path, monkeypatch):
    from freeadv.training import folder
    odd = {**TINY, "checkpoint_every": 3, "log_every": 2}
    Trainer(cfg.resolve(odd), tmp_path / "alone", progress=False).run()
    monkeypatch.setattr(folder, "finish", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg.resolve(odd), tmp_path / "killed", progress=False).run()
    monkeypatch.undo()
    saved = load_tensors(tmp_path / "killed" / "checkpoint.pt")
    assert saved["since_log"] == 1          # the last checkpoint (iteration 9) fell between two reads
    # resume from the iteration-9 checkpoint, not from the end
    Trainer(cfg.resolve(odd), tmp_path / "killed", progress=False).run()
    alone, resumed = read_json(tmp_path / "alone" / "train.json"), read_json(tmp_path / "killed" / "train.json")
    assert resumed["resumes"] == 1
    assert resumed["loss_history"] == alone["loss_history"]


# --- every other command: a bad value or path is one line naming it ------------------------------------

@pytest.mark.parametrize("argv, culprit", [
    (["bench", "--arch", "nonesuch"], "nonesuch"),
    (["bench", "--batch-size", "0"], "--batch-size"),
    (["bench", "--replay", "-1"], "--replay"),
    (["estimate", "table1", "--scale", "nonesuch"], "nonesuch"),
    (["estimate", "nonesuch", "--scale", "smoke"], "nonesuch"),
    (["table", "table1", "--results", "{tmp}/missing"], "missing"),
    (["figure", "figure1", "--results", "{tmp}/missing", "--out", "{tmp}/fig"], "missing"),
    (["claims", "--results", "{tmp}/missing", "--scale", "mini"], "missing"),
    (["regenerate", "--results", "{tmp}/missing", "--scale", "mini"], "missing"),
    (["plan", "--config", "{tmp}", "--scale", "smoke"], "is a folder"),
    (["plan", "--config", "config/config.yaml", "--scale", "nonesuch"], "nonesuch"),
    (["export", "--run", "{tmp}/missing", "--out", "{tmp}/export"], "missing"),
    (["cost-table", "--results", "{tmp}/missing"], "missing"),
])
def test_other_commands_refuse_bad_input_in_one_line(tmp_path, capsys, monkeypatch, argv, culprit):
    monkeypatch.chdir(REPO)
    before = tree(tmp_path)
    refused(capsys, [a.format(tmp=tmp_path) for a in argv], culprit.format(tmp=tmp_path))
    assert tree(tmp_path) == before


def test_export_with_a_malformed_eval_file(run, capsys, tmp_path):
    bad = tmp_path / "eval.json"
    bad.write_text("{ not json")
    refused(capsys, ["export", "--run", run, "--eval", bad, "--out", tmp_path / "export"], str(bad))
    assert not (tmp_path / "export" / "model.pt").exists()


def test_the_workflow_config_refuses_a_bad_scale_value_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scales:\n  smoke:\n    train: {iterations: -3}\n")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(tmp_path),
                          "--configfile", str(bad), "--config", "scale=smoke"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode != 0
    assert "iterations" in run.stdout + run.stderr and "Traceback" not in run.stdout + run.stderr


def test_a_full_disk_is_named_as_such(tmp_path, capsys, monkeypatch):
    """torch reports a full disk as RuntimeError('... unexpected pos ...'); the user sees ENOSPC and the file."""
    from collections import namedtuple

    from freeadv import checkpoints

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1234 vs 1122")

    monkeypatch.setattr(checkpoints.torch, "save", full)
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: namedtuple("U", "total used free")(1, 1, 0))
    line = refused(capsys, ["train", *SETS, "--out", tmp_path / "run"], "No space left on device", "checkpoint.pt")
    assert "unexpected pos" not in line
