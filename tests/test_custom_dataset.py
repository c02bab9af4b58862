"""A dataset of the user's own, described in the config (freeadv.data.custom): an ImageFolder root or
a .npz / .pt file of tensors trains, is attacked from its run folder in a fresh process, plans in
the workflow, and every bad description or file is refused in one line that names it."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from freeadv.data.catalog import DataError, LoadOptions
from freeadv.data.catalog import DATASETS
from freeadv.data.custom import custom_spec, register_custom
from freeadv.data.generic import load_imagefolder, load_tensors

REPO = Path(__file__).resolve().parents[1]
SPEC = {"format": "imagefolder", "num_classes": 3, "input_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.uint8)


@pytest.fixture
def register():
    """Registers descriptions under 'mine' for one test and removes them after it, so the rest of the
    test process sees only the library's datasets."""
    def add(info):
        DATASETS.pop("mine", None)
        return register_custom("mine", info)
    yield add
    DATASETS.pop("mine", None)


def write_folder(root: Path, per_class: int = 12, size: int = 16) -> Path:
    """train/ and test/ of three colour classes, as PNG files."""
    generator = np.random.default_rng(0)
    for split in ("train", "test"):
        for index, name in enumerate(("blue_ish", "green_ish", "red_ish")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(per_class):
                noise = generator.integers(-30, 30, (size, size, 3))
                pixels = np.clip(COLOURS[2 - index].astype(int) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{k:03d}.png")
    return root


def arrays(n: int = 24, size: int = 16) -> dict[str, np.ndarray]:
    labels = np.arange(n) % 3
    images = np.repeat(COLOURS[labels][:, :, None, None], size, axis=2).repeat(size, axis=3)
    return {"train_x": images, "train_y": labels, "test_x": images[:12], "test_y": labels[:12]}


def test_an_imagefolder_loads_in_a_fixed_order_with_sorted_class_folders(tmp_path, register):
    spec = register(SPEC)
    bundle = load_imagefolder(spec, write_folder(tmp_path), LoadOptions(n_test=None, augment=False))
    test_x, test_y = bundle.test_tensors()
    assert tuple(test_x.shape) == (36, 3, 16, 16) and test_y.tolist() == [0] * 12 + [1] * 12 + [2] * 12
    assert test_x[0, 2].mean() > 0.6 > test_x[0, 0].mean()   # "blue_ish" sorts first: class 0 is blue


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_a_tensor_file_loads_channels_last_or_first(tmp_path, suffix, register):
    data = arrays()
    data["train_x"] = data["train_x"].transpose(0, 2, 3, 1)   # (N, H, W, 3) is accepted too
    path = tmp_path / f"data{suffix}"
    if suffix == ".npz":
        np.savez(path, **data)
    else:
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()}, path)
    bundle = load_tensors(register({**SPEC, "format": "tensors"}), path, LoadOptions(augment=False))
    assert tuple(bundle.test_tensors()[0].shape) == (12, 3, 16, 16) and bundle.n_train == 24


@pytest.mark.parametrize("change,message", [
    ({"format": "lmdb"}, "'format' has bad value 'lmdb': expected imagefolder or tensors"),
    ({"num_classes": 1}, "'num_classes' has bad value 1: expected an integer >= 2"),
    ({"mean": [0.5, 0.5]}, "'mean' has bad value [0.5, 0.5]: expected three numbers"),
    ({"colour": "red"}, "has no field 'colour'"),
])
def test_a_bad_description_is_refused_in_one_line(change, message):
    with pytest.raises(DataError, match="dataset_spec of 'mine'") as err:
        custom_spec("mine", {**SPEC, **change})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_files_are_refused_in_one_line_naming_them(tmp_path, register):
    spec = register({**SPEC, "format": "tensors"})
    bad_labels = {**arrays(), "test_y": np.arange(12) % 5}
    np.savez(tmp_path / "labels.npz", **bad_labels)
    with pytest.raises(DataError, match=r"labels from 0 to 4: expected 0 to 2"):
        load_tensors(spec, tmp_path / "labels.npz", LoadOptions())
    np.savez(tmp_path / "size.npz", **arrays(size=8))
    with pytest.raises(DataError, match=r"shape \(24, 3, 8, 8\): expected \(N, 3, 16, 16\)"):
        load_tensors(spec, tmp_path / "size.npz", LoadOptions())
    np.savez(tmp_path / "missing.npz", train_x=arrays()["train_x"])
    with pytest.raises(DataError, match="has no 'train_y'"):
        load_tensors(spec, tmp_path / "missing.npz", LoadOptions())
    write_folder(tmp_path / "folder", size=20)
    with pytest.raises(DataError, match=r"is 20x20: expected 16x16"):
        load_imagefolder(register(SPEC), tmp_path / "folder", LoadOptions())


def test_a_described_dataset_trains_and_its_run_is_attacked_in_a_fresh_process(tmp_path):
    """Each process registers the description from the config it resolves: the run folder's."""
    root = write_folder(tmp_path / "data")
    sets = ["dataset=mine", f"dataset_spec={json.dumps(SPEC)}", f"data_root={root}", "arch=small_cnn", "width=4",
            "iterations=4", "batch_size=12", "eval_n=null", "robust_eval_n=0", "method=free", "replay=2"]
    freeadv = [sys.executable, "-m", "freeadv"]
    train = subprocess.run([*freeadv, "train", *[a for s in sets for a in ("--set", s)], "--device", "cpu",
                            "--out-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["dataset"] == "mine" and saved["dataset_spec"] == SPEC
    attack = subprocess.run([*freeadv, "attack", "--run", str(tmp_path / "run"), "--attack", "pgd", "--steps", "2",
                             "--n", "12", "--device", "cpu", "--out", str(tmp_path / "pgd.json"), "--no-progress"],
                            capture_output=True, text=True, timeout=300)
    assert attack.returncode == 0, attack.stderr[-2000:]
    assert json.loads((tmp_path / "pgd.json").read_text())["n"] == 12


def _scale_config(spec: dict) -> dict:
    return {"scale": "own", "data": {"mine": {"data_root": "/nowhere", "dataset_spec": spec}},
            "scales": {"own": {"datasets": {"cifar10": "mine"},
                               "architectures": {a: {"arch": "small_cnn", "width": 4}
                                                 for a in ("wrn32_10", "wrn34_10", "preact_resnet18")},
                               "train": {"n_train": 256, "n_test": 36, "iterations": 8},
                               "resources": {kind: {"threads": 1, "gpu": 0, "mem_mb": 1000, "runtime": 10}
                                             for kind in ("train", "attack", "analysis")}}}}


@pytest.mark.parametrize("spec,expected", [(SPEC, None), ({**SPEC, "num_classes": 0}, "data.mine.dataset_spec")])
def test_the_workflow_plans_a_described_dataset_and_refuses_a_bad_description(tmp_path, spec, expected):
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(_scale_config(spec)))
    run = subprocess.run(["snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path / "wd"),
                          "table1", "-n", "--configfile", str(tmp_path / "own.yaml")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    output = run.stdout + run.stderr
    if expected is None:
        assert run.returncode == 0, output[-3000:]
        assert "mine-small_cnn-w4-free-m8-eps8-s0" in output
    else:
        assert run.returncode != 0 and f"config key '{expected}': dataset_spec of 'mine': 'num_classes'" in output
