"""Any model, not only a run folder: the example script, ``freeadv attack --model`` with its
one-line errors, AutoAttack resumed from its state file, and ``freeadv.evaluate``."""
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from freeadv.cli import main
from freeadv.schemas import read_checked

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "evaluate_own_model.py"
FACTORY = f"{EXAMPLE}:template_matcher"
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The example's fitted template matcher, saved as a state_dict file."""
    from freeadv.runs.any_model import load_factory
    path = tmp_path_factory.mktemp("model") / "template_matcher.pt"
    torch.save(load_factory(f"{EXAMPLE}:fitted")().state_dict(), path)
    return path


def attack(out: Path, *options: str) -> int:
    return main(["attack", "--model", FACTORY, "--dataset", "synthetic", "--n", "64",
                 "--device", "cpu", "--no-progress", "--out", str(out), *options])


def documented_commands(out_dir: Path) -> list[list[str]]:
    """The shell commands of the README's "Use it on your own model, method and data", writing to ``out_dir``."""
    section = README.read_text().split("## Use it on your own model, method and data", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [shlex.split(line.replace("evals/own", str(out_dir)), comments=True) for line in block.splitlines()]


@pytest.mark.slow
def test_the_documented_example_and_command_run_as_written_and_agree(tmp_path, monkeypatch):
    pytest.importorskip("pyautoattack")
    monkeypatch.chdir(ROOT)   # the commands name the example by its path in the repository
    example, command = documented_commands(tmp_path)
    assert example[:2] == ["python", "examples/evaluate_own_model.py"] and command[:2] == ["freeadv", "attack"]
    done = subprocess.run([sys.executable, *example[1:]], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    api = read_checked(tmp_path / "pgd10-eps8-step2-n64.json", "eval")
    assert read_checked(tmp_path / "autoattack5-eps8-n64.json", "eval")["sub_attacks"]
    assert main([*command[1:], "--no-progress"]) == 0
    cli = read_checked(tmp_path / "cli-pgd10.json", "eval")
    assert cli["model"] == "examples/evaluate_own_model.py:template_matcher"
    assert cli["weights_file"] == str(tmp_path / "template_matcher.pt")
    assert cli["weights_digest"] == api["weights_digest"] and cli["per_image"] == api["per_image"]
    assert cli["clean_acc"] > 50 and cli["attack"] == api["attack"] and not cli["warnings"]


def test_the_command_line_writes_the_eval_json_of_a_run(weights, tmp_path):
    out = tmp_path / "pgd.json"
    assert attack(out, "--weights", str(weights), "--steps", "3") == 0
    result = read_checked(out, "eval")
    assert result["kind"] == "eval" and result["dataset"] == "synthetic" and result["n"] == 64
    assert result["attack"]["eps"] == 8 and result["attack"]["step_size"] == 2   # the dataset's defaults
    assert result["robust_acc"] < result["clean_acc"] and {"git", "versions", "device"} <= set(result)


@pytest.mark.parametrize("options, message", [
    (["--model", "no_such_pkg.models:build"], "--model 'no_such_pkg.models:build': module 'no_such_pkg.models' "
                                              "cannot be imported"),
    (["--model", "json:no_factory"], "--model 'json:no_factory': module 'json' has no attribute 'no_factory'"),
    (["--model", "collections:OrderedDict"], "--model 'collections:OrderedDict' returned an object of type "
                                             "OrderedDict, not a torch.nn.Module"),
    (["--model", "no_colon"], "--model 'no_colon' is not PKG.MODULE:FACTORY"),
    (["--model", FACTORY, "--weights", "missing.pt"], "--weights 'missing.pt' does not exist"),
    (["--model", FACTORY, "--weights", "WRONG"], "does not fit the model of --model"),
    (["--model", "torch.nn:Flatten"], "returns (2, 3072) for 2 of synthetic's (3, 32, 32) images, not logits"),
    (["--model", FACTORY, "--run", "RUN"], "give --run RUN_DIR or --model PKG.MODULE:FACTORY, not both"),
    ([], "give --run RUN_DIR or --model PKG.MODULE:FACTORY"),
    (["--model", FACTORY, "--dataset", "mnist"], "--dataset has bad value 'mnist'"),
    (["--run", "RUN", "--dataset", "synthetic"], "--dataset has bad value synthetic: a run's data is its config's"),
])
def test_a_bad_model_is_one_line_naming_it(options, message, tmp_path, capsys):
    wrong = tmp_path / "wrong.pt"
    torch.save({"other.weight": torch.zeros(1)}, wrong)
    options = [str(wrong) if o == "WRONG" else str(tmp_path) if o == "RUN" else o for o in options]
    dataset = [] if "--dataset" in options else ["--dataset", "synthetic"]
    assert main(["attack", *options, *dataset, "--device", "cpu", "--out", str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "e.json").exists()


@pytest.mark.slow
def test_a_killed_autoattack_resumes_from_its_state_file(weights, tmp_path, monkeypatch):
    pytest.importorskip("pyautoattack")
    from test_autoattack import die_on_chunk
    options = ("--weights", str(weights), "--attack", "autoattack", "--steps", "3", "--batch-size", "16")
    assert attack(tmp_path / "whole.json", *options) == 0
    die_on_chunk(monkeypatch, 3)
    out = tmp_path / "resumed.json"
    assert attack(out, *options) == 130
    saved = json.loads((tmp_path / "resumed.state.json").read_text())
    assert saved["current"]["chunks_done"] == 2 and saved["weights_digest"]
    monkeypatch.undo()   # the kill is over: the real adversary again
    assert attack(out, *options) == 0 and not (tmp_path / "resumed.state.json").exists()
    whole, resumed = read_checked(tmp_path / "whole.json", "eval"), read_checked(out, "eval")
    assert resumed["per_image"] == whole["per_image"] and resumed["sub_attacks"] == [
        {**r, "seconds": s["seconds"]} for r, s in zip(whole["sub_attacks"], resumed["sub_attacks"])]
    assert resumed["wall_seconds_earlier_processes"] > 0


def test_the_python_api_takes_a_module_and_names_attacks_by_id_or_short_name(weights, tmp_path):
    import freeadv
    from freeadv.runs.any_model import ModelError, attack_spec, load_factory
    model = load_factory(FACTORY)()
    model.load_state_dict(torch.load(weights, weights_only=True))
    records = freeadv.evaluate(model, "synthetic", ["clean", "pgd3", "bim2-eps4-step1"], n=32, out_dir=tmp_path,
                               device="cpu")
    assert [r["attack"]["kind"] for r in records] == ["none", "pgd", "bim"]
    assert records[2]["attack"]["eps"] == 4 and records[1]["attack"]["step_size"] == 2
    for name in ("clean", "pgd3-eps8-step2-n32", "bim2-eps4-step1-n32"):
        assert read_checked(tmp_path / f"{name}.json", "eval")["model"] == "evaluate_own_model.TemplateMatcher"
    assert attack_spec("autoattack").steps == 100 and attack_spec("cw50").kind == "cw"
    with pytest.raises(ValueError, match="short name, KIND"):
        attack_spec("fgsm")
    with pytest.raises(ModelError, match="not a torch.nn.Module"):
        freeadv.evaluate(object(), "synthetic", ["pgd3"])


@pytest.mark.slow
def test_import_freeadv_imports_no_torch():
    code = ("import sys, freeadv; assert 'torch' not in sys.modules; import inspect; "
            "from freeadv.runs.any_model import evaluate_model; "
            "print(inspect.signature(evaluate_model).parameters['dataset'].default, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["cifar10", "True"]   # torch comes with the evaluation, not with the package


# --- RobustBench's models, through a stand-in for the robustbench package (it needs the network) ----

FAKE_ROBUSTBENCH = '''
import torch
from torch import nn
CALLS = []


def load_model(model_name, dataset, threat_model, model_dir):
    CALLS.append((model_name, dataset, threat_model, model_dir))
    if model_name == "NoSuchModel":
        raise ValueError("NoSuchModel is not in the model zoo\\nmore lines")
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
'''


@pytest.fixture
def fake_robustbench(tmp_path, monkeypatch):
    package = tmp_path / "fake" / "robustbench"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "utils.py").write_text(FAKE_ROBUSTBENCH)
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))
    for name in ("robustbench", "robustbench.utils"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import robustbench.utils
    return robustbench.utils


def test_a_robustbench_model_loads_for_the_datasets_family_linf(fake_robustbench):
    from freeadv.runs.any_model import ROBUSTBENCH_DIR, load_model
    model = load_model("robustbench:Shafahi2019Adversarial", dataset="cifar10-jpeg")
    assert isinstance(model, torch.nn.Module)
    assert fake_robustbench.CALLS == [("Shafahi2019Adversarial", "cifar10", "Linf", ROBUSTBENCH_DIR)]


@pytest.mark.parametrize("argv,message", [
    (["--robustbench", "NoSuchModel", "--dataset", "cifar10"],
     "--robustbench 'NoSuchModel' (cifar10, Linf) cannot be loaded: NoSuchModel is not in the model zoo"),
    (["--robustbench", "Shafahi2019Adversarial", "--dataset", "synthetic"],
     "RobustBench's models are of cifar10, cifar100 or imagenet, and --dataset 'synthetic' is none of them"),
    (["--robustbench", "Shafahi2019Adversarial", "--model", FACTORY, "--dataset", "cifar10"],
     "give --model or --robustbench, not both"),
])
def test_a_robustbench_model_that_cannot_be_had_is_one_line(fake_robustbench, tmp_path, capsys, argv, message):
    assert main(["attack", *argv, "--device", "cpu", "--out", str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_without_the_robustbench_package_the_error_says_what_to_install(monkeypatch):
    from freeadv.runs.any_model import ModelError, load_model
    monkeypatch.setitem(sys.modules, "robustbench", None)   # an import of it fails
    monkeypatch.setitem(sys.modules, "robustbench.utils", None)
    with pytest.raises(ModelError, match=r"needs the robustbench package \(pip install robustbench"):
        load_model("robustbench:Shafahi2019Adversarial", dataset="cifar10")
