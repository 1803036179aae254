"""Repository hygiene: stripped notebooks, agreeing pins, the README's two commands, CI, and
the lab notebook beside the README (dated entries, newest first, each with command and data)."""

from __future__ import annotations

import ast
import datetime
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from barsalign.config import NOTEBOOKS_DIR, PROJ_ROOT


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


@pytest.mark.parametrize("path", sorted(NOTEBOOKS_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_carry_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name} cell {i} has outputs: strip them"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"


def test_environment_yml_pins_agree_with_requirements() -> None:
    req = _pins((PROJ_ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((PROJ_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == req
    assert req["torch"] == "2.14.1" and req["torchvision"] == "0.29.1"


def test_constraints_agree_with_requirements() -> None:
    req = _pins((PROJ_ROOT / "requirements.txt").read_text().splitlines())
    frozen = _pins((PROJ_ROOT / "constraints.txt").read_text().splitlines())
    for name, version in req.items():
        assert frozen.get(name) == version, (
            f"{name}: requirements {version}, constraints {frozen.get(name)}"
        )


def _dist(requirement: str) -> str:
    """A requirement's distribution name, normalised ("PyYAML>=6" → "pyyaml")."""
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _imported_modules() -> set[str]:
    """The top-level modules the package imports (not its own, not the standard library)."""
    found: set[str] = set()
    for path in (PROJ_ROOT / "barsalign").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"barsalign"}


def test_pyproject_dependencies_name_what_the_package_imports() -> None:
    project = tomllib.loads((PROJ_ROOT / "pyproject.toml").read_text())["project"]
    declared = {_dist(r) for r in project["dependencies"]}
    extras = {_dist(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    owners = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in sorted(_imported_modules()):
        dists = {_dist(d) for d in owners.get(module, [module])}  # not installed: its own name
        if not dists & (declared | extras):
            undeclared[module] = sorted(dists)
    assert not undeclared, f"imported by barsalign, missing from pyproject: {undeclared}"
    frozen = set(_pins((PROJ_ROOT / "constraints.txt").read_text().splitlines()))
    assert declared <= frozen, f"not in the tested freeze: {sorted(declared - frozen)}"
    assert {"torch", "timm", "lightning", "mlflow", "scikit-learn"} <= declared


def test_readme_quick_start_is_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (PROJ_ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)", quick, flags=re.M)
    assert commands == ["make demo", "make test"]
    ci = (PROJ_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)


def test_readme_results_name_each_profile_and_link_the_lab_notebook() -> None:
    readme = (PROJ_ROOT / "README.md").read_text()
    results = readme.split("## Results", 1)[1].split("\n## ", 1)[0]
    for profile in ("conf/cpu.yaml", "conf/gpu.yaml"):
        assert profile in results, f"README's Results has no line for {profile}"
    assert "(docs/experiments.md)" in results, "README's Results must link docs/experiments.md"
    assert "## Training profiles" not in readme, "recipe histories belong in docs/experiments.md"


def test_lab_notebook_entries_are_dated_newest_first_with_command_and_data() -> None:
    lab = (PROJ_ROOT / "docs" / "experiments.md").read_text()
    heads = list(re.finditer(r"^## (\d{4}-\d{2}-\d{2}) — .+$", lab, flags=re.M))
    assert len(heads) >= 2, "docs/experiments.md holds no dated '## YYYY-MM-DD — title' entries"
    assert len(heads) == len(re.findall(r"^## ", lab, flags=re.M)), "every entry needs a date"
    dates = [datetime.date.fromisoformat(m.group(1)) for m in heads]
    assert dates == sorted(dates, reverse=True), "entries must run newest first"
    ends = [m.start() for m in heads[1:]] + [len(lab)]
    for m, end in zip(heads, ends, strict=True):
        body = lab[m.end() : end]
        if "(results pending" in body:
            continue
        assert "Data:" in body, f"entry {m.group(0)!r} does not say what data it ran on"
        assert "```bash" in body, f"entry {m.group(0)!r} has no command that gives its numbers"
