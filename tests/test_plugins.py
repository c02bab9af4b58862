"""A plugin package adds a dataset, a model, a training method and a table without editing freeadv:
installed on a path (its entry points in a dist-info folder, as pip writes them), it trains through
``freeadv train``, is attacked through ``freeadv attack`` and fills a table row through the
workflow. Everything runs in subprocesses, so this test process keeps only the library's entries."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from freeadv.plugins import ENV, plugin_modules
from test_datasets import TINY_DATASET
from test_registry_example import readme_example

REPO = Path(__file__).resolve().parents[1]

# The three-colour dataset of test_datasets, its loader named by the plugin's module path.
DATA = TINY_DATASET.replace('"tiny_dataset:load_tiny"', '"tinyplug.data:load_tiny"')

MODEL = '''
from torch import nn
from freeadv.models import Normalize, PixelClassifier, register


@register("tinynet")
def build(num_classes, *, mean, std):
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, num_classes))
    return PixelClassifier(Normalize(mean, std), body)
'''

TABLE = '''
from freeadv.attacks import AttackSpec
from freeadv.experiments.design import Metric, Row, Target, cell, natural, register_targets

PGD = AttackSpec("pgd", 20, 8.0, 2.0)


@register_targets
def colours(sweeps):
    return [Target("colours", "table", "Gaussian noise against natural training on {cifar10}",
                   rows=(Row("natural", "Natural", natural("cifar10", "wrn32_10")),
                         Row("gauss", "Gauss", cell("cifar10", "wrn32_10", "gauss"))),
                   metrics=(Metric("nat", "Natural images", "clean_acc", PGD),
                            Metric("pgd20", "PGD-20", "robust_acc", PGD)))]
'''

ENTRY_POINTS = '''
[freeadv.datasets]
tiny = tinyplug.data

[freeadv.models]
tinynet = tinyplug.model

[freeadv.methods]
gauss = tinyplug.method

[freeadv.targets]
colours = tinyplug.table
'''


def install_plugin(site: Path) -> dict[str, str]:
    """The plugin package and its dist-info (METADATA, entry_points.txt) on a folder of its own;
    the environment that puts it on the path."""
    package = site / "tinyplug"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""A plugin of freeadv: its entries register when imported."""\n')
    for name, text in {"data": DATA, "model": MODEL, "method": readme_example(), "table": TABLE}.items():
        (package / f"{name}.py").write_text(textwrap.dedent(text))
    info = site / "tinyplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    path = os.pathsep.join(filter(None, [str(site), str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def freeadv(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "freeadv", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_plugin_modules_are_read_from_the_environment_in_order_once():
    assert plugin_modules({ENV: " a.b, c ,,a.b "}) == ["a.b", "c"]
    assert plugin_modules({}) == []


def test_a_plugin_package_trains_attacks_and_fills_a_table_through_the_workflow(tmp_path):
    env = install_plugin(tmp_path / "site")
    train = freeadv("train", "--set", "dataset=tiny", "--set", "arch=tinynet", "--set", "method=gauss",
                    "--set", "iterations=6", "--set", "batch_size=32", "--set", "n_train=64", "--set", "eval_n=null",
                    "--set", "robust_eval_n=0", "--device", "cpu", "--out-dir", str(tmp_path / "run"),
                    env=env, cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    assert (summary["config"]["dataset"], summary["config"]["arch"], summary["config"]["method"]) == \
        ("tiny", "tinynet", "gauss")
    attack = freeadv("attack", "--run", str(tmp_path / "run"), "--attack", "pgd", "--steps", "2", "--n", "16",
                     "--device", "cpu", "--out", str(tmp_path / "pgd.json"), "--no-progress", env=env, cwd=tmp_path)
    assert attack.returncode == 0, attack.stderr[-2000:]
    assert json.loads((tmp_path / "pgd.json").read_text())["n"] == 16

    config = {"scale": "plug", "scales": {"plug": {
        "datasets": {"cifar10": "tiny"},
        "architectures": {a: {"arch": "tinynet"} for a in ("wrn32_10", "wrn34_10", "preact_resnet18")},
        "train": {"n_train": 256, "n_test": 32, "iterations": 6, "batch_size": 32, "eval_n": None,
                  "robust_eval_n": 16, "robust_eval_steps": 2, "checkpoint_every": 1000},
        "attacks": {"max_steps": 2, "max_restarts": 1},
        "resources": {kind: {"threads": 1, "gpu": 0, "mem_mb": 1000, "runtime": 10}
                      for kind in ("train", "attack", "analysis")}}}}
    (tmp_path / "plug.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run(["snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path / "wd"),
                          "colours", "--cores", "2", "--configfile", str(tmp_path / "plug.yaml")],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    table = (tmp_path / "wd" / "results" / "plug" / "tables" / "colours.md").read_text()
    assert table.startswith("# Gaussian noise against natural training on Tiny colours")
    assert "| Gauss | " in table and "| Natural | " in table and "tinynet" in table


def test_a_scale_that_maps_a_paper_dataset_onto_an_unregistered_one_is_refused_in_one_line(tmp_path):
    config = {"scale": "plug", "scales": {"plug": {
        "datasets": {"cifar10": "colours"}, "architectures": {"wrn32_10": {"arch": "small_cnn"}},
        "resources": {kind: {"threads": 1, "gpu": 0, "mem_mb": 1000, "runtime": 10}
                      for kind in ("train", "attack", "analysis")}}}}
    (tmp_path / "plug.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run(["snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path / "wd"),
                          "-n", "--configfile", str(tmp_path / "plug.yaml")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "scale 'plug': the scale trains the paper's 'cifar10' on 'colours', which is not a registered dataset" \
        in output and ENV in output


@pytest.mark.parametrize("where", ["environment", "entry point"])
def test_a_plugin_that_cannot_be_imported_stops_the_command_in_one_line(tmp_path, where):
    env = dict(os.environ)
    if where == "environment":
        env[ENV] = "no_such_plugin_module"
        expected = f"{ENV} names the plugin module 'no_such_plugin_module'"
    else:
        info = tmp_path / "broken-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("[freeadv.methods]\nghost = no_such_plugin_module\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
        expected = "entry point 'ghost' (freeadv.methods) of broken names the plugin module 'no_such_plugin_module'"
    run = freeadv("doctor", "--help", env=env, cwd=tmp_path)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], run.stderr
