"""freeadv.experiments: torch-free, the committed mini plan is what config/config.yaml builds,
cells read their titles and ids from the method registry, one results layout, and the import
graph the workflow's code inputs come from."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from freeadv.config import load_yaml
from freeadv.experiments import deps, design, layout, scales
from freeadv.experiments.plan import load_plan
from freeadv.methods import METHODS

REPO = Path(__file__).resolve().parents[1]


def test_the_experiment_plan_imports_no_torch():
    code = ("import sys, freeadv.experiments.scales, freeadv.experiments.design, freeadv.experiments.layout, "
            "freeadv.experiments.deps, freeadv.experiments.paper_values, freeadv.report.claims; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr


# The scales whose plan (and, once their run completes, results) the repository holds.
COMMITTED_SCALES = [scale for scale in ("mini", "mini1600") if (REPO / "results" / scale / "plan.json").exists()]


@pytest.mark.parametrize("scale", COMMITTED_SCALES)
def test_committed_plan_is_the_one_the_config_builds(scale):
    """results/<scale>/plan.json (what the committed results were built from) = the plan of today's code."""
    plan = _plan(scale)
    committed = json.loads((REPO / "results" / scale / "plan.json").read_text())
    assert json.loads(json.dumps(plan.to_json())) == committed


# --- the design --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell, title, fragment", [
    (design.natural("cifar10", "wrn32_10"), "Natural", "natural"),
    (design.natural("cifar10", "wrn32_10", 4), "Natural m=4", "natural-m4"),
    (design.free("cifar10", "wrn32_10", 8, 8), "Free m=8", "free-m8"),
    (design.kpgd("cifar10", "wrn32_10", 7, 2, 8), "7-PGD", "pgd7-step2"),
    (design.cell("cifar10", "wrn32_10", "fgsm_rs", eps=8.0), "FGSM-RS", "fgsm_rs"),
])
def test_cells_take_title_and_id_fragment_from_the_method_registry(cell, title, fragment):
    assert cell.title == title and cell.id_fragment == fragment
    assert cell.title == METHODS[cell.method].title(cell.method_params)


def test_cell_params_are_what_the_training_config_sets():
    cell = design.kpgd("cifar100", "wrn32_10", 2, 4, 8)
    assert cell.params == (("eps", 8.0), ("pgd_step_size", 4.0), ("pgd_steps", 2)) and cell.eps == 8.0
    settings = {"datasets": {"cifar100": "synthetic"}, "architectures": {"wrn32_10": {"arch": "small_cnn"}}}
    config = scales.training_config(cell, settings)
    assert config == {"arch": "small_cnn", "dataset": "synthetic", "eps": 8.0, "method": "pgd", "pgd_step_size": 4.0,
                      "pgd_steps": 2, "seed": 0}
    assert scales.model_id(config, cell) == "synthetic-small_cnn-pgd2-step4-eps8-s0"
    assert cell.paper_name == "CIFAR-100 WRN-32-10 2-PGD eps 8"


def _plan(scale):
    return scales.build_plan(**scales.plan_inputs(load_yaml(REPO / "config/config.yaml"), scale))


@pytest.mark.parametrize("scale, iterations", [("mini", "6,400"), ("mini1600", "1,600")])
def test_titles_and_labels_at_mini_name_what_mini_trains(scale, iterations):
    """At mini every title names WRN-32 width 1, the 8,000-image subset and its iterations; the
    design's architectures (WRN-32-10, WRN-34-10 for YOPO's row, PreAct ResNet-18 for Wong et
    al.'s) appear in no title or row label, and no title names a row mini omits (TRADES)."""
    plan = _plan(scale)
    for name in plan.available_targets():
        entry = plan.targets[name]
        title = entry.title
        assert "WRN-32 width 1" in title and f"(8,000 training images, {iterations} iterations)" in title, name
        texts = [title] + [r.label for r in entry.rows if r.model] + [a.label for a in entry.analyses]
        for paper_arch in ("WRN-32-10", "WRN-34-10", "PreAct ResNet-18", "{", "}"):
            assert not [t for t in texts if paper_arch in t], (name, paper_arch)
    assert "TRADES" not in plan.targets["fast"].title
    assert plan.targets["fast"].title.endswith(": FGSM-RS, Free m=8 and 7-PGD")
    assert plan.targets["yopo"].rows[0].label == "WRN-32 width 1 Free m=10, batch 256"


def test_the_paper_scale_keeps_the_papers_wording():
    settings = {"datasets": {d: d for d in design.PAPER_DATASETS},
                "architectures": {a: {"arch": a} for a in design.PAPER_ARCHS}}
    targets = scales.build_plan("paper", settings).targets
    assert targets["table1"].title == "Table 1: CIFAR-10, WRN-32-10, eps 8: accuracy and robustness"
    assert targets["yopo"].rows[0].label == "WRN-34-10 Free m=10, batch 256"
    assert "TRADES beta=6" in targets["fast"].title
    assert "PreAct ResNet-18" in next(r.label for r in targets["fast"].rows if r.key == "fgsm_rs_wong")
    assert [r.label for r in targets["table5"].rows] == ["ResNet-50", "ResNet-101", "ResNet-152"]


def test_title_fields_say_the_subset_and_budget_and_refuse_a_misspelt_field():
    from freeadv.experiments import titles
    assert titles.training_phrase([{"n_train": 8000, "iterations": 1600}] * 2) == \
        " (8,000 training images, 1,600 iterations)"
    assert titles.training_phrase([{"arch": "wrn32_10"}]) == ""
    assert titles.training_phrase([{"iterations": 20}, {"iterations": 40}]) == " (20-40 iterations)"
    assert titles.arch_title({"arch": "wrn32_k", "width": 1}) == "WRN-32 width 1"
    with pytest.raises(ValueError, match="'cifar1'"):
        titles.realise("Table: {cifar1}", titles.name_fields({}))


def test_a_cell_refuses_a_setting_its_method_does_not_have():
    with pytest.raises(ValueError, match="'pgd_steps' is not one of its settings"):
        design.cell("cifar10", "wrn32_10", "free", replay=8, pgd_steps=7)


# --- the layout --------------------------------------------------------------------------------------

def test_one_layout_for_every_file_of_a_scale():
    mini = layout.ScaleLayout("mini")
    assert mini.result(layout.eval_path("m", "pgd20-eps8-step2")) == "results/mini/runs/m/evals/pgd20-eps8-step2.json"
    assert mini.result(layout.train_path("m")) == "results/mini/runs/m/train.json"
    assert mini.result(layout.model_path("{model}")) == "results/mini/runs/{model}/model.pt"
    assert mini.result(layout.analysis_path("m", "a")) == "results/mini/runs/m/analysis/a.json"
    assert mini.table_files("table1") == [f"results/mini/tables/table1.{ext}" for ext in ("csv", "md", "tex")]
    assert mini.figure_files("figure3") == ["figures/mini/figure3.png", "figures/mini/figure3.pdf"]
    assert (mini.plan, mini.claims_text, mini.claims_json) == (
        "results/mini/plan.json", "results/mini/claims.txt", "results/mini/claims.json")
    assert mini.log("train", "{model}.log") == "logs/mini/train/{model}.log"
    assert layout.ScaleLayout.of_plan("elsewhere/results/mini/plan.json") == layout.ScaleLayout("mini", "elsewhere/results")


def test_plan_files_follow_the_layout():
    plan = load_plan(REPO / "results/mini1600/plan.json")
    row = plan.targets["table1"].rows[1]
    assert row.metrics["pgd20"].file == layout.eval_path(row.model, row.metrics["pgd20"].attack)
    assert layout.train_path(row.model) in plan.target_files("table1")


# --- the import graph --------------------------------------------------------------------------------

def test_command_closures_hold_what_their_jobs_run():
    train = deps.closure("freeadv.commands.train")
    attack = deps.closure("freeadv.commands.attack")
    report = deps.closure("freeadv.commands.report")
    analysis = deps.closure("freeadv.commands.analysis")
    assert {"freeadv/sanity.py", "freeadv/cpu.py", "freeadv/runs/evaluation.py"} <= set(attack)
    assert {"freeadv/cpu.py", "freeadv/methods/free.py", "freeadv/distributed.py", "freeadv/__init__.py",
            "freeadv/commands/__init__.py"} <= set(train)
    assert "freeadv/sanity.py" not in train   # an evaluation check does not retrain the models
    assert {"freeadv/report/tables.py", "freeadv/report/figures.py", "freeadv/report/claims.py", "freeadv/sanity.py",
            "freeadv/experiments/scales.py", "freeadv/experiments/paper_values.csv"} <= set(report)
    assert "freeadv/runs/analysis.py" in analysis
    for closure in (train, attack, report, analysis):
        assert not {"freeadv/tools/bench.py", "freeadv/tools/doctor.py", "freeadv/tools/estimate.py", "freeadv/cli.py"} & set(closure)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_closure_follows_every_kind_of_import(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/cmd.py": "from . import a\nfrom .sub import b as _b\n\ndef run():\n    import pkg.late\n",
        "pkg/a.py": "from .lazy import lazy_import\nheavy = lazy_import('pkg.heavy')\nimport os, torch\n",
        "pkg/lazy.py": "", "pkg/heavy.py": "", "pkg/late.py": "", "pkg/unused.py": "",
        "pkg/sub/__init__.py": "", "pkg/sub/b.py": "from ..reg import NAME\n", "pkg/sub/values.csv": "x\n",
        "pkg/reg/__init__.py": "import pkgutil\nfor m in pkgutil.iter_modules(__path__):\n    pass\nNAME = 1\n",
        "pkg/reg/one.py": "", "pkg/reg/two.py": "",
    })
    assert deps.closure("pkg.cmd", root) == [
        "pkg/__init__.py", "pkg/a.py", "pkg/cmd.py", "pkg/heavy.py", "pkg/late.py", "pkg/lazy.py",
        "pkg/reg/__init__.py", "pkg/reg/one.py", "pkg/reg/two.py", "pkg/sub/__init__.py", "pkg/sub/b.py",
        "pkg/sub/values.csv"]
    with pytest.raises(ModuleNotFoundError, match="pkg.nothing"):
        deps.closure("pkg.nothing", root)


def test_a_lazily_loaded_name_counts_every_module_of_its_package(tmp_path):
    """PEP 562: `from p import x` where p's __getattr__ supplies x may run any module of p; a plain
    import of p, or of a name p binds itself, does not."""
    root = _tree(tmp_path, {
        "pkg/__init__.py": "", "pkg/near.py": "from .lazy import BOUND\n", "pkg/far.py": "from .lazy import loaded\n",
        "pkg/lazy/__init__.py": "import importlib\nBOUND = 1\n\ndef __getattr__(name):\n"
                                "    return getattr(importlib.import_module(f'{__name__}.impl'), name)\n",
        "pkg/lazy/impl.py": "",
    })
    assert "pkg/lazy/impl.py" not in deps.closure("pkg.near", root)
    assert "pkg/lazy/impl.py" in deps.closure("pkg.far", root)


@pytest.mark.slow
@pytest.mark.parametrize("scale", COMMITTED_SCALES)
def test_regenerating_the_committed_results_changes_no_byte(tmp_path, monkeypatch, scale):
    """Tables, claims and figures rebuilt from the committed JSON equal the committed files byte
    for byte."""
    import filecmp
    import shutil

    from freeadv.cli import main

    if not (REPO / "results" / scale / "claims.txt").exists():
        # While a run goes on the repository holds only its plan (results/<scale>/plan.json): a run
        # commits its tables, figures and claims when it completes.
        pytest.skip(f"the {scale} run's results are not committed yet (only its plan)")
    shutil.copytree(REPO / "results" / scale, tmp_path / "results" / scale)
    monkeypatch.chdir(tmp_path)   # the claims name the results folder as given: results/<scale>
    assert main(["regenerate", "--scale", scale]) == 0
    rebuilt = [p for p in (tmp_path / "results" / scale / "tables").iterdir()] + \
        [tmp_path / "results" / scale / name for name in ("claims.txt", "claims.json")] + \
        list((tmp_path / "figures" / scale).iterdir())
    assert len(rebuilt) >= 17
    for path in rebuilt:
        committed = REPO / path.relative_to(tmp_path)
        assert filecmp.cmp(path, committed, shallow=False), f"{committed} differs when regenerated"
