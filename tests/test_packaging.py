"""pyproject.toml and environment.yml must ask for the same packages at the same versions."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= set(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_pins = {d for d in pip_section if not d.startswith("-")}
    by_name = {_name(r): r for r in wanted}
    env_by_name = {_name(r): r for r in conda_pins}
    assert set(by_name) == set(env_by_name), set(by_name) ^ set(env_by_name)
    for name, requirement in by_name.items():
        assert env_by_name[name].replace(" ", "") == requirement.replace(" ", ""), name


def test_console_script_points_at_cli_main():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["freeadv"] == "freeadv.cli:main"
    from freeadv.cli import main
    assert callable(main)


# --- the Snakemake workflow catalog's layout ("standardized usage") -------------------------------

def _schema_keys(node) -> set[str]:
    """Every key the config schema defines, at any depth (properties of objects, $defs included)."""
    keys: set[str] = set()
    if isinstance(node, dict):
        keys |= set(node.get("properties", {}))
        for value in node.values():
            keys |= _schema_keys(value)
    elif isinstance(node, list):
        for value in node:
            keys |= _schema_keys(value)
    return keys


def test_license_is_mit_and_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == {"text": "MIT"} and text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge, to any person obtaining a copy" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    copyright_line = next(line for line in text.splitlines() if line.startswith("Copyright (c)"))
    assert "2026" in copyright_line
    assert project["authors"] and all(author["name"] in copyright_line for author in project["authors"])


def test_snakemake_runs_workflow_snakefile_from_the_root(monkeypatch):
    """Snakemake's own search (Snakefile, then workflow/Snakefile) finds the one workflow."""
    from snakemake.api import resolve_snakefile

    monkeypatch.chdir(ROOT)
    assert Path(resolve_snakefile(None)).resolve() == ROOT / "workflow" / "Snakefile"
    snakefile = (ROOT / "workflow" / "Snakefile").read_text()
    for rules in (ROOT / "workflow" / "rules").glob("*.smk"):   # every rule file is included
        assert f'include: "rules/{rules.name}"' in snakefile, rules.name


def test_config_readme_describes_every_schema_key():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    readme = (ROOT / "config" / "README.md").read_text()
    keys = _schema_keys(schema)
    assert {"scale", "data", "scales", "datasets", "resources", "sweeps", "runtime"} <= keys
    assert not [key for key in sorted(keys) if f"`{key}`" not in readme]
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for scale, settings in config["scales"].items():   # the keys actually used, and each scale named
        assert f"`{scale}`" in readme
        assert not [key for key in settings if f"`{key}`" not in readme], scale


def test_catalog_settings_give_the_usage():
    settings = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert settings["mandatory-flags"]["desc"] and "--config scale=" in settings["mandatory-flags"]["flags"]
    deployment = settings["software-stack-deployment"]
    assert set(deployment) <= {"conda", "apptainer", "apptainer+conda"} and deployment["conda"] is True
    assert all(isinstance(value, bool) for value in deployment.values())
    assert settings["report"] is True
    readme = (ROOT / "README.md").read_text().lower()
    assert "snakemake" in readme and "workflow" in readme   # how the catalog finds the repository


# --- versions ---------------------------------------------------------------------------------------

def test_version_is_written_once_and_printed_by_the_cli(capsys):
    import importlib.metadata

    import pytest

    import freeadv
    from freeadv.cli import main
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"freeadv {freeadv.__version__}"
    assert importlib.metadata.version("freeadv") == freeadv.__version__
    assert "version" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dynamic"]


def test_lock_file_pins_every_requirement_inside_its_range():
    """requirements/lock.txt (pip freeze of a fresh venv) pins each package pyproject names, at a
    version pyproject allows, and nothing unpinned or editable."""
    from packaging.requirements import Requirement
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [line.strip() for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines()]
    pins = {}
    for line in lines:
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version and not line.startswith("-e"), f"not an exact pin: {line!r}"
        pins[_name(name).replace("_", "-")] = version
    wanted = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    for text in wanted:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in the lock file"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement.specifier}"


def test_ci_builds_a_fresh_venv_and_runs_the_readme_commands():
    """.ci/run tests what a newcomer gets: a new venv in a temporary folder on every run, then the
    README's install and test commands, word for word, inside it."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Set up and run the tests", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    install, test = block.strip().split(" && ")
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    venv = lines.index('python3 -m venv "$VENV"            # fresh venv, every run')
    assert any(line.startswith('VENV="$(mktemp -d') for line in lines[:venv])
    assert lines[venv + 1] == 'source "$VENV/bin/activate"'
    assert venv < lines.index(install) < lines.index(test)
    assert any('rm -rf "$VENV"' in line for line in lines)


def test_every_test_file_keeps_a_fast_test():
    """`pytest -m "not slow"` (the fast tier) still runs something of every test file."""
    import ast
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        module_slow = any(isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)
                          and "slow" in ast.unparse(node.value) for node in tree.body)
        fast = [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
                and not any("mark.slow" in ast.unparse(d) for d in node.decorator_list)]
        assert fast and not module_slow, f"{path.name} has no test outside the slow tier"
