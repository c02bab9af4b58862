"""freeadv export: model.pt + RobustBench model_info.json of a finished run, and loading it back."""
import json
import shutil

import pytest
import torch

from freeadv.attacks import AttackSpec
from freeadv.runs import evaluate, run_attack
from freeadv.cli import main
from freeadv.models import MODELS
from freeadv.runs.export import (MODEL_INFO, ROBUSTBENCH_KEYS, accuracy_string, architecture, eps_string, export_run,
                                 load_exported, new_model_issue)
from freeadv.io import write_json
from freeadv.training import data_for, model_for


@pytest.fixture(scope="module")
def pgd20(trained_run, tmp_path_factory):
    """A PGD-20 eval JSON of the tiny run, as freeadv attack writes it."""
    path = tmp_path_factory.mktemp("evals") / "pgd20-eps8-step2.json"
    write_json(path, run_attack(trained_run, AttackSpec("pgd", 20), device="cpu"))
    return path


def _forged(pgd20, tmp_path, name, **changes):
    """A copy of the PGD-20 eval with some fields changed (attack fields under 'attack')."""
    ev = json.loads(pgd20.read_text())
    ev["attack"].update(changes.pop("attack", {}))
    ev.update(changes)
    path = tmp_path / name
    write_json(path, ev)
    return path


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_loads_back_and_reproduces_the_clean_accuracy(trained_run, pgd20, tmp_path):
    info = export_run(trained_run, tmp_path / "out", [pgd20])
    ev = json.loads(pgd20.read_text())
    on_disk = json.loads((tmp_path / "out" / MODEL_INFO).read_text())
    assert on_disk == json.loads(json.dumps(info))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.pt", "model_info.json", "tiny.json"]

    # a plain state_dict of tensors, equal to the run's weights, loadable with weights_only=True
    state = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    original = torch.load(trained_run / "model.pt", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    assert state.keys() == original.keys() and all(torch.equal(state[k], original[k]) for k in state)

    model = load_exported(tmp_path / "out")
    config = info["config"]
    assert type(model) is type(model_for(config)) and not model.training
    data = data_for(dict(config, augment=False, n_train=None))
    metrics = evaluate(model, data.test_batches(500, device="cpu"), AttackSpec("none"))
    assert metrics["n"] == config["n_test"] == info["evaluation_n"]["clean_acc"]
    assert metrics["clean_acc"] == ev["clean_acc"]                      # the run's own number, exactly
    assert info["clean_acc"] == f"{metrics['clean_acc']:.2f}" == accuracy_string(ev["clean_acc"])
    assert info["reported"] == f"{ev['robust_acc']:.2f}" and info["autoattack_acc"] is None

    assert info["name"] == "Standardly trained model" and info["model_id"] is None   # RobustBench's title
    assert info["robustbench_file"] == f"{trained_run.name}.json"
    assert info["architecture"] == "small_cnn-w8" and info["dataset"] == "synthetic"
    assert info["eps"] == "8/255" and info["threat_model"] == "Linf"
    assert info["additional_data"] is False and info["number_forward_passes"] == 1
    train = json.loads((trained_run / "train.json").read_text())
    assert info["commit"] == train["git"]["commit"] and info["config"] == train["config"]
    assert info["evaluation_n"] == {"clean_acc": 64, "reported": 64, "autoattack_acc": None}
    assert pgd20.name in info["footnote"]


# RobustBench's model_info keys (robustbench 1.1.1: utils.ModelInfo, leaderboard/template.py and the
# README's example), those its leaderboard code reads from every file
ROBUSTBENCH_REQUIRED = {"link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                        "architecture", "eps", "clean_acc", "reported", "autoattack_acc"}


def test_robustbench_file_has_its_keys_and_the_weights_load_weights_only(trained_run, pgd20, tmp_path):
    info = export_run(trained_run, tmp_path / "out", [pgd20])
    robustbench = json.loads((tmp_path / "out" / f"{trained_run.name}.json").read_text())
    assert list(robustbench) == list(ROBUSTBENCH_KEYS) and ROBUSTBENCH_REQUIRED <= set(robustbench)
    assert robustbench == {key: info[key] for key in ROBUSTBENCH_KEYS}
    assert ROBUSTBENCH_REQUIRED <= set(json.loads((tmp_path / "out" / MODEL_INFO).read_text()))
    assert robustbench["link"] and robustbench["venue"] == "N/A" and "not the authors' checkpoint" in robustbench["footnote"]
    fresh = model_for(info["config"])
    fresh.load_state_dict(torch.load(tmp_path / "out" / "model.pt", weights_only=True))
    exported = load_exported(tmp_path / "out")
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), exported.state_dict().values()))


def test_the_paper_of_the_method_names_the_model(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("method: natural", "method: free"))
    info = export_run(run, tmp_path / "out", device="cpu")
    assert info["name"] == "Adversarial Training for Free!" and info["venue"] == "NeurIPS 2019"
    assert info["link"] == "https://arxiv.org/abs/1904.12843" and info["authors"].startswith("Ali Shafahi")
    issue = new_model_issue(info)
    assert issue.startswith("[New Model] run\n") and "- **Paper Title**: Adversarial Training for Free!" in issue
    assert "- **eps**: 8/255" in issue and "- **Threat Model**: Linf" in issue and "- [ ] I want to add" in issue


@pytest.mark.parametrize("config, name", [
    ({"arch": "wrn34_10"}, "WideResNet-34-10"), ({"arch": "wrn32_10"}, "WideResNet-32-10"),
    ({"arch": "wrn32_k", "width": 4}, "WideResNet-32-4"), ({"arch": "preact_resnet18"}, "PreActResNet-18"),
    ({"arch": "resnet50"}, "ResNet-50"), ({"arch": "small_cnn", "width": 16}, "small_cnn-w16"),
])
def test_architecture_uses_robustbench_names(config, name):
    assert config["arch"] in MODELS and architecture(config) == name


def test_without_evals_the_clean_accuracy_is_measured(trained_run, pgd20, tmp_path):
    info = export_run(trained_run, tmp_path / "out", device="cpu")
    ev = json.loads(pgd20.read_text())
    assert info["clean_acc"] == f"{ev['clean_acc']:.2f}" and info["evaluation_n"]["clean_acc"] == 64
    assert info["reported"] is None and info["autoattack_acc"] is None and info["evals"] == []
    assert "measured at export on the first 64 test images" in info["footnote"]


def test_evals_pick_clean_reported_and_autoattack(trained_run, pgd20, tmp_path):
    bigger = _forged(pgd20, tmp_path, "pgd7.json", n=128, clean_acc=50.0, attack={"steps": 7})
    aa = _forged(pgd20, tmp_path, "aa.json", robust_acc=1.234, attack={"kind": "autoattack", "steps": 0})
    other_eps = _forged(pgd20, tmp_path, "pgd20-eps4.json", robust_acc=77.0, attack={"eps": 4.0})
    info = export_run(trained_run, tmp_path / "out", [pgd20, bigger, aa, other_eps])
    ev = json.loads(pgd20.read_text())
    assert info["clean_acc"] == "50.00"                          # the eval with the largest n
    assert info["reported"] == f"{ev['robust_acc']:.2f}"          # PGD-20 x1 at the training eps only
    assert info["autoattack_acc"] == "1.23"
    assert info["evaluation_n"] == {"clean_acc": 128, "reported": 64, "autoattack_acc": 64}
    assert {e["file"]: e["used_for"] for e in info["evals"]}[str(bigger)] == ["clean_acc"]


@pytest.mark.parametrize("eps, text", [(8.0, "8/255"), (8, "8/255"), (4.0, "4/255"), (2.5, "2.5/255"),
                                       (0.5, "0.5/255"), (16.0, "16/255")])
def test_eps_string(eps, text):
    assert eps_string(eps) == text


def test_accuracy_string():
    assert accuracy_string(86.1111) == "86.11" and accuracy_string(9.375) == "9.38"
    assert accuracy_string(100) == "100.00" and accuracy_string(None) is None


def test_non_integer_eps_in_model_info(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    text = (run / "config.yaml").read_text()
    assert "eps: 8.0" in text
    (run / "config.yaml").write_text(text.replace("eps: 8.0", "eps: 2.5"))
    assert export_run(run, tmp_path / "out", device="cpu")["eps"] == "2.5/255"


def test_model_id_from_the_scale_plan(trained_run, tmp_path):
    run = tmp_path / "results" / "mini" / "runs" / "synthetic-small_cnn-w8-natural-s0"
    shutil.copytree(trained_run, run)
    write_json(tmp_path / "results" / "mini" / "plan.json",
               {"models": {run.name: {"config": {"dataset": "synthetic", "arch": "small_cnn", "width": 8}}}, "targets": {}})
    info = export_run(run, tmp_path / "out", device="cpu")
    assert info["model_id"] == run.name and info["robustbench_file"] == f"{run.name}.json"
    assert (tmp_path / "out" / f"{run.name}.json").is_file()


def test_eval_of_another_run_is_refused(trained_run, pgd20, tmp_path, capsys):
    ev = json.loads(pgd20.read_text())
    other = _forged(pgd20, tmp_path, "other.json", run="runs/other",
                    train_config=dict(ev["train_config"], seed=1))
    code, _, err = run_cli(["export", "--run", str(trained_run), "--eval", str(other),
                            "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "is not an evaluation of run" in err and "seed" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_export_into_an_unrelated_folder_is_refused(trained_run, pgd20, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(["export", "--run", str(trained_run), "--eval", str(pgd20), "--out", str(out)], capsys)
    assert code == 2 and "is not empty" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"

    code, _, err = run_cli(["export", "--run", str(trained_run), "--out", str(trained_run)], capsys)
    assert code == 2 and "run folder itself" in err


def test_reexport_replaces_an_earlier_export(trained_run, pgd20, tmp_path):
    export_run(trained_run, tmp_path / "out", device="cpu")
    assert export_run(trained_run, tmp_path / "out", [pgd20])["reported"] is not None
    assert json.loads((tmp_path / "out" / MODEL_INFO).read_text())["reported"] is not None
    renamed = tmp_path / "renamed"
    shutil.copytree(trained_run, renamed)
    export_run(renamed, tmp_path / "out", device="cpu")   # the earlier RobustBench file goes with it
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.pt", "model_info.json", "renamed.json"]


@pytest.mark.parametrize("case, message", [
    ("missing run", "does not exist"),
    ("no model", "has no model.pt"),
    ("bad eval", "is not readable JSON"),
    ("missing eval", "eval file"),
    ("not an eval", "is not an eval JSON"),
])
def test_bad_input_is_one_line(trained_run, tmp_path, capsys, case, message):
    run, evals = trained_run, []
    if case == "missing run":
        run = tmp_path / "nope"
    elif case == "no model":
        run = tmp_path / "run"
        run.mkdir()
        (run / "config.yaml").write_text((trained_run / "config.yaml").read_text())
    elif case == "bad eval":
        (tmp_path / "bad.json").write_text("{not json")
        evals = ["--eval", str(tmp_path / "bad.json")]
    elif case == "missing eval":
        evals = ["--eval", str(tmp_path / "missing.json")]
    else:
        write_json(tmp_path / "train.json", {"kind": "train"})
        evals = ["--eval", str(tmp_path / "train.json")]
    code, _, err = run_cli(["export", "--run", str(run), *evals, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and message in err and err.startswith("freeadv export: error:")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_export(trained_run, pgd20, tmp_path, capsys):
    code, out, err = run_cli(["export", "--run", str(trained_run), "--eval", str(pgd20),
                              "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "exported" in out and "eps 8/255" in out
    assert "[New Model] tiny" in out and "- **Paper Title**: Standardly trained model" in out
    info = json.loads((tmp_path / "out" / MODEL_INFO).read_text())
    assert info["reported"] is not None and info["clean_acc"] is not None
    assert isinstance(load_exported(tmp_path / "out"), torch.nn.Module)
    assert "export" in main.__globals__["build_parser"]().format_help()
