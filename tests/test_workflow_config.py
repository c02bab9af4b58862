"""The workflow's config is safe to put in a shell line: a scale's name is an identifier (anything
else stops the workflow before any job, with one line saying so), every path and config value in
a rule's shell command is quoted, and an `omit` that empties a target is a plan error."""
import ast
import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from freeadv.config import load_yaml
from freeadv.experiments import design, scales

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
RULES = REPO / "workflow" / "rules"
INJECTION = "x;touch PWNED;y"


def snakemake(*args: str, workdir: Path, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run this checkout's Snakefile from ``cwd`` with its outputs under ``workdir``."""
    executable = shutil.which("snakemake")
    command = [executable] if executable else [sys.executable, "-m", "snakemake"]
    command += ["-s", str(SNAKEFILE), "--directory", str(workdir), *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def smoke_settings() -> dict:
    return load_yaml(REPO / "config" / "config.yaml")["scales"]["smoke"]


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


# --- scale names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["command line", pytest.param("configfile", marks=pytest.mark.slow),
                                  pytest.param("escape", marks=pytest.mark.slow)])
def test_a_scale_name_that_is_not_an_identifier_stops_before_any_job(tmp_path, case):
    """Not a dry run: the `plan` job would run if the name got through."""
    workdir = tmp_path / "outer" / "inner" / "work"
    workdir.mkdir(parents=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    name = "../../escape" if case == "escape" else INJECTION
    if case == "command line":
        args = ["--config", f"scale={name}"]
    else:
        extra = write_config(tmp_path / "extra.yaml", {"scale": name, "scales": {name: smoke_settings()}})
        args = ["--configfile", str(extra)]
    run = snakemake("plan", "--cores", "1", *args, workdir=workdir, cwd=cwd)
    text = output(run)
    assert run.returncode != 0, text[-3000:]
    errors = [line for line in text.splitlines() if "is not an identifier" in line]
    assert errors == [f"scale name '{name}' is not an identifier: a scale's name starts with a letter and has "
                      "only letters, digits, '_' and '-' (it names the scale's folders and goes into job commands)"], \
        text[-3000:]
    assert "rule plan" not in text and "Job stats" not in text, text[-3000:]
    assert not list(tmp_path.rglob("PWNED")) and not (REPO / "PWNED").exists()
    assert not list(tmp_path.rglob("plan.json"))
    assert sorted(p.name for p in workdir.iterdir()) in ([], [".snakemake"])
    assert not (tmp_path / "outer" / "escape").exists() and not (tmp_path / "escape").exists()


def test_schema_refuses_a_scale_name_that_is_not_an_identifier():
    """The schema holds the rule too (the pattern the workflow checks names against)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = load_yaml(REPO / "workflow" / "schemas" / "config.schema.yaml")
    config = load_yaml(REPO / "config" / "config.yaml")
    jsonschema.validate(config, schema)
    for name in (INJECTION, "../../escape", "1st", "-x", "a b", "x/y", "x$y"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**config, "scale": name}, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**config, "scales": {**config["scales"], name: smoke_settings()}}, schema)
    for name in ("smoke", "mini_2", "a-b", "X9"):
        jsonschema.validate({**config, "scale": name, "scales": {**config["scales"], name: smoke_settings()}}, schema)


# --- quoting in shell commands -------------------------------------------------------------------

# Params that hold several arguments, each already shlex-quoted (common.smk), a fixed command, or
# a fixed flag or nothing (an empty quoted argument would be an argument).
PRE_QUOTED = {"threads", "params.launcher", "params.settings", "params.args", "params.attack", "params.command",
              "params.gpu_slot",     # `freeadv gpu-slot --gpus N --slots M -- `: words and integers only
              "resources.attempt"}   # an integer, the retry's attempt number


def shell_strings() -> dict[str, str]:
    """rule name -> its shell: string, from workflow/rules/*.smk."""
    found = {}
    for path in sorted(RULES.glob("*.smk")):
        text = path.read_text()
        for match in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", text, flags=re.S | re.M):
            shell = re.search(r"^\s+shell:\n((?:\s+\".*\"\n)+)", match[2], flags=re.M)
            if shell:
                found[match[1]] = "".join(ast.literal_eval(line.strip()) for line in shell[1].splitlines())
    return found


def test_every_field_of_every_shell_command_is_quoted_or_pre_quoted():
    shells = shell_strings()
    assert {"train", "cost_bench", "attack", "analysis", "plan", "table", "curves", "figure", "cost",
            "claims"} <= set(shells), sorted(shells)
    for rule, shell in shells.items():
        for _, field, spec, _ in string.Formatter().parse(shell):
            if field is None:
                continue
            assert spec == "q" or (field in PRE_QUOTED and not spec), (rule, field, spec)


@pytest.mark.slow
def test_dry_run_from_a_folder_with_a_space_and_a_semicolon_quotes_every_path_and_value(tmp_path):
    """Every rule's printed command splits into the paths and config values it was given, one token
    each: the working directory and a data_root with a space, ';' and '$' in it. The scale trains on
    files (cifar10-jpeg), so that the data rule prints its command, and keeps its best weights, so
    that attack_best (use rule attack) prints its command too."""
    workdir = tmp_path / "dir with space;x"
    workdir.mkdir()
    data_root = f"{workdir}/data $HOME;`x`"
    extra = write_config(workdir / "extra config.yaml", {
        "scale": "mini1600", "data": {"cifar10-jpeg": {"data_root": data_root}},
        "scales": {"mini1600": {"train": {"keep_best": True}}}})
    dry = snakemake("all", "-n", "-p", "--configfile", str(extra), workdir=workdir, cwd=workdir)
    text = output(dry)
    assert dry.returncode == 0, text[-3000:]
    commands = {}
    rule = None
    for line in text.splitlines():
        if re.match(r"^(local)?rule \w+:", line):
            rule = line.split()[-1].rstrip(":")
        if line.startswith("Shell command: ") and line != "Shell command: None":   # None: a rule of inputs only
            commands.setdefault(rule, []).append(shlex.split(line[len("Shell command: "):]))
    assert set(shell_strings()) <= set(commands), sorted(commands)
    path_options = {"--out", "--run", "--results", "--out-dir", "--plan", "--json", ">"}
    for rule, printed in commands.items():
        for tokens in printed:
            # the data rule leaves stderr to Snakemake's output: its one-line error shows there
            assert tokens[-2:] == [">", tokens[-1]] if rule == "data" else (tokens[-1] == "2>&1" and tokens[-3] == ">"), \
                (rule, tokens)
            for option, value in zip(tokens, tokens[1:]):
                if option in path_options:
                    assert re.fullmatch(r"(results|figures|logs)(/mini1600(/[\w.=-]+)*)?", value), (rule, option, value)
    for tokens in commands["train"]:
        assert f'data_root="{data_root}"' in tokens, tokens
    (fetch,) = commands["data"]
    assert fetch[fetch.index("--data-root") + 1] == data_root
    (plan,) = commands["plan"]
    inputs = json.loads(plan[plan.index("--inputs") + 1])
    assert inputs["data"]["cifar10-jpeg"]["data_root"] == data_root
    for tokens in commands["attack"] + commands["attack_best"]:
        assert tokens[tokens.index("--attack") + 1] in {"pgd", "cw", "none", "autoattack", "apgd", "noise"}, tokens
    assert sorted(p.name for p in workdir.iterdir()) == [".snakemake", "extra config.yaml"]


# --- omissions -----------------------------------------------------------------------------------

def _smoke_plan_settings(omit: dict) -> dict:
    inputs = scales.plan_inputs({"scales": {"smoke": smoke_settings()}}, "smoke")
    return dict(inputs, settings=dict(inputs["settings"], omit=omit))


def test_an_omit_that_removes_every_row_of_a_table_is_a_plan_error():
    rows = [row.key for row in design.TARGETS["table1"].rows]
    with pytest.raises(scales.PlanError, match=r"^scales\.smoke\.omit\.table1\.rows leaves table1 none of its trained rows"):
        scales.build_plan(**_smoke_plan_settings({"table1": {"rows": rows}}))
    metrics = [metric.key for metric in design.TARGETS["table1"].metrics]
    with pytest.raises(scales.PlanError, match=r"^scales\.smoke\.omit\.table1 leaves every column of table1 .* without a cell"):
        scales.build_plan(**_smoke_plan_settings({"table1": {key: rows for key in metrics}}))
    inputs = _smoke_plan_settings({"table1": {"rows": rows}})
    with pytest.raises(scales.PlanError, match=r"^scales\.smoke\.omit\.table1\.rows leaves table1"):
        scales.check_omissions(inputs["settings"], design.make_targets(inputs["settings"].get("sweeps")),
                               scale="smoke")
    # Leaving out one column's every cell, or all rows but one, is a budget cut, not an error.
    scales.build_plan(**_smoke_plan_settings({"table1": {"aa": rows, "rows": rows[1:]}}))


@pytest.mark.slow
def test_an_omit_that_empties_table1_stops_the_workflow_naming_it(tmp_path):
    rows = [row.key for row in design.TARGETS["table1"].rows]
    extra = write_config(tmp_path / "omit.yaml", {"scale": "smoke", "scales": {"smoke": {"omit": {"table1": {"rows": rows}}}}})
    workdir = tmp_path / "work"
    workdir.mkdir()
    run = snakemake("all", "-n", "--configfile", str(extra), workdir=workdir, cwd=tmp_path)
    text = output(run)
    assert run.returncode != 0, text[-3000:]
    assert "scales.smoke.omit.table1.rows leaves table1 none of its trained rows" in text, text[-3000:]
    assert "Job stats" not in text
