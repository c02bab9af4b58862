"""Bad input fails fast with exit code 2 and one line naming the culprit, before any training."""
import subprocess
import sys

import pytest
import torch

from freeadv import config as config_module
from freeadv.cli import main


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


SYNTH = ["--set", "dataset=synthetic"]

CASES = [
    (["--set", "epz=8"], "unknown config key 'epz'"),
    (["--set", "eps=0"], "'eps' has bad value 0"),
    (["--set", "eps=300"], "'eps' has bad value 300"),
    (["--set", "eps=abc"], "'eps' has bad value 'abc'"),
    (["--set", "replay=0"], "'replay' has bad value 0"),
    (["--set", "replay=2.5"], "'replay' has bad value 2.5"),
    (["--set", "pgd_steps=0"], "'pgd_steps' has bad value 0"),
    (["--set", "method=freee"], "'method' has bad value 'freee'"),
    (["--set", "arch=resnet9000"], "'arch' has bad value 'resnet9000'"),
    (["--set", "dataset=mnist"], "dataset 'mnist' is unknown"),
    (["--set", "lr=-0.1"], "'lr' has bad value -0.1"),
    (["--set", "batch_size=0"], "'batch_size' has bad value 0"),
    (["--set", "n_train=100", "--set", "batch_size=128"], "'batch_size' has bad value 128: larger than n_train=100"),
    (["--set", "lr_milestones=[0.5, 1.5]"], "'lr_milestones' has bad value [0.5, 1.5]"),
    (["--set", "augment=maybe"], "'augment' has bad value 'maybe'"),
    (["--set", "width=8", "--set", "arch=preact_resnet18"], "'width' has bad value 8"),
    (["--set", "device=tpu"], "'device' has bad value 'tpu'"),
    (["--set", "iterations=null"], "needs 'iterations' or 'epochs'"),
    (["--set", "noequals"], "--set expects key=value, got 'noequals'"),
]


@pytest.mark.parametrize("extra,message", CASES, ids=[c[1][:40] for c in CASES])
def test_bad_train_config_is_one_clear_line(tmp_path, capsys, extra, message):
    code, err = run_cli(["train", *SYNTH, *extra, "--out", str(tmp_path / "run")], capsys)
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists(), "nothing may be written before validation passes"


def test_missing_config_file(tmp_path, capsys):
    code, err = run_cli(["train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "nope.yaml' does not exist" in err


def test_config_file_that_is_not_a_mapping(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    code, err = run_cli(["train", "--config", str(bad), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "must hold a mapping" in err


def test_missing_cifar_data_names_the_folder(tmp_path, capsys):
    code, err = run_cli(["train", "--set", "dataset=cifar10", "--set", f"data_root={tmp_path}",
                         "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "cifar-10-batches-py" in err


@pytest.mark.parametrize("args,message", [
    (["--steps", "-1"], "--steps has bad value -1"),
    (["--restarts", "0"], "--restarts has bad value 0"),
    (["--eps", "0"], "--eps has bad value 0.0"),
    (["--n", "0"], "--n has bad value 0"),
])
@pytest.mark.slow
def test_bad_attack_arguments(tmp_path, capsys, trained_run, args, message):
    code, err = run_cli(["attack", "--run", str(trained_run), *args, "--out", str(tmp_path / "e.json")], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "e.json").exists()


def test_attack_on_untrained_folder(tmp_path, capsys):
    code, err = run_cli(["attack", "--run", str(tmp_path), "--out", str(tmp_path / "e.json")], capsys)
    assert code == 2 and "has no model.pt" in err


class Exploit:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_checkpoint_that_runs_code_on_unpickling_is_refused(tmp_path, capsys, trained_run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text((trained_run / "config.yaml").read_text())
    with open(run / "model.pt", "wb") as handle:
        torch.save({"weight": Exploit()}, handle)
    code, err = run_cli(["attack", "--run", str(run), "--out", str(tmp_path / "e.json")], capsys)
    assert code == 2 and "weights_only" in err
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.slow
def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "freeadv", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--set KEY=VALUE" in out.stdout


def test_amp_off_written_bare_in_yaml_means_fp32(tmp_path):
    """YAML 1.1 reads `amp: off` as false: both spellings are the fp32 default."""
    path = tmp_path / "c.yaml"
    path.write_text("dataset: synthetic\namp: off\n")
    assert config_module.resolve(config_module.load_yaml(path))["amp"] == "off"
    assert config_module.resolve({"dataset": "synthetic"}, ["amp=off"])["amp"] == "off"
    with pytest.raises(config_module.ConfigError, match="amp"):
        config_module.resolve({"dataset": "synthetic", "amp": True})
