"""An attack kind and a table, each added from one file of its own (as docs/extending.md says):
registering it is enough for the spec, the command line and the eval JSON, or for the plan, the
workflow and the table command, to know it."""
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from freeadv.experiments.design import TARGETS
from freeadv.experiments.paper_values import paper_value
from freeadv.experiments.plan import load_plan
from test_tables import fake_results

REPO = Path(__file__).resolve().parents[1]

KIND = textwrap.dedent('''
    from freeadv.attacks import AttackKind, register_attack


    @register_attack
    class SignNoise(AttackKind):
        """x + eps * sign(uniform noise): a random corner of the eps-ball."""
        name = "signnoise"
        gradient = False
        uses_restarts = False

        def cost(self, spec):
            return 0

        def perturb(self, model, x, y, spec, generator):
            import torch
            corner = torch.rand(x.shape, generator=generator, device=x.device).round() * 2 - 1
            return (x + spec.eps_unit * corner).clamp(0, 1)
''')


def test_an_attack_kind_from_its_own_module_runs_from_the_command_line(trained_run, tmp_path):
    (tmp_path / "sign_noise.py").write_text(KIND)
    out = tmp_path / "eval.json"
    check = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
import sign_noise
from freeadv.attacks import AttackSpec
from freeadv.cli import main
spec = AttackSpec.parse("signnoise1-eps8-step2-n16")
assert (spec.kind, spec.n, spec.id) == ("signnoise", 16, "signnoise1-eps8-step2-n16")
raise SystemExit(main(["attack", "--run", {str(trained_run)!r}, "--attack", "signnoise", "--steps", "1",
                       "--n", "16", "--device", "cpu", "--out", {str(out)!r}, "--no-progress"]))
"""
    subprocess.run([sys.executable, "-c", check], check=True)
    result = json.loads(out.read_text())
    assert result["attack"]["kind"] == "signnoise" and result["n"] == 16
    assert result["attack"]["gradient"] is False and 0 <= result["robust_acc"] <= result["clean_acc"]


def documented_table() -> str:
    """The table example of docs/extending.md, as written there."""
    section = (REPO / "docs" / "extending.md").read_text().split("## Adding a table or a figure", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _with_plugin(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "replay_three.py").write_text(documented_table())
    path = os.pathsep.join(filter(None, [str(tmp_path), str(REPO), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, FREEADV_PLUGINS="replay_three", PYTHONPATH=path)


def test_a_table_from_its_own_module_joins_the_plan_the_workflow_and_the_table_command(tmp_path):
    env = _with_plugin(tmp_path / "plugin")
    results = tmp_path / "results" / "smoke"
    plan_file = results / "plan.json"
    freeadv = [sys.executable, "-m", "freeadv"]
    subprocess.run([*freeadv, "plan", "--config", str(REPO / "config" / "config.yaml"), "--scale", "smoke",
                    "--out", str(plan_file)], check=True, env=env, cwd=tmp_path)
    plan = load_plan(plan_file)
    target = plan.targets["replay3"]
    assert target.kind == "table" and [row.key for row in target.rows] == ["natural", "free_m3"]
    assert plan.models[target.rows[1].model].config["replay"] == 3
    assert set(plan.targets) == set(TARGETS) | {"replay3"}

    # the workflow: a rule of the table's name, and the jobs of its cells
    dry = subprocess.run(["snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path / "wd"),
                          "replay3", "-n", "--config", "scale=smoke"], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "rule replay3:" in dry.stdout or "localrule replay3:" in dry.stdout
    assert target.rows[1].metrics["pgd20"].file in dry.stdout

    # the table command needs only the plan: the plugin is not imported here
    fake_results(results, plan, "replay3", lambda row, metric: {"nat": 81.0, "pgd20": 42.0}.get(metric, 1.0))
    subprocess.run([*freeadv, "table", "replay3", "--results", str(results)], check=True, cwd=tmp_path,
                   env={k: v for k, v in env.items() if k != "FREEADV_PLUGINS"})
    markdown = (results / "tables" / "replay3.md").read_text()
    assert markdown.startswith("# Free m=3 on") and "| Free m=3 | 81.00" in markdown
    assert "| Natural | 81.00 [" in markdown and f"/ {paper_value('table1', 'natural', 'nat'):.2f}" in markdown

