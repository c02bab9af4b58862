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
