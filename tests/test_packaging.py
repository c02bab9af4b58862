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
