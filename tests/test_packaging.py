"""Set-up files stay consistent: environment.yml lists what pyproject.toml lists."""

import re
import sys
from pathlib import Path

import yaml

import latentlab

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _normalise(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= set(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    (pip_section,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    listed = {r for r in pip_section if not r.startswith("-e")}
    assert {_normalise(r) for r in listed} == {_normalise(r) for r in wanted}


def test_python_requirement_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert project["requires-python"] == ">=3.10"
    assert "python>=3.10" in env["dependencies"]


def test_torch_is_never_pinned_to_one_version():
    # An exact pin (torch==2.13.0) takes a CPU-only build that the registry's torchvision cannot load.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = dict(_normalise(r) for r in project["dependencies"])
    assert specs["torch"].startswith(">=") and "==" not in specs["torch"]
    assert specs["torchvision"].startswith(">=") and "==" not in specs["torchvision"]


def test_version_lives_in_one_place():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject.split("[tool")[0]
    assert re.fullmatch(r"\d+\.\d+\.\d+", latentlab.__version__)
