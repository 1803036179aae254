"""benchmarks/sweep_recipes.py: recipes parse or fail in one line, and a tiny sweep trains."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from barsalign.config import PROJ_ROOT
from barsalign.errors import BarsalignError


def _sweep_module():
    path = PROJ_ROOT / "benchmarks" / "sweep_recipes.py"
    spec = importlib.util.spec_from_file_location("sweep_recipes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipes_parse_with_yaml_values_or_fail_in_one_line() -> None:
    sweep = _sweep_module()
    name, changes = sweep.parse_recipe("no blur: augment={p_blur: 0}; pos_weight=0.333")
    assert name == "no blur" and changes == {"augment": {"p_blur": 0}, "pos_weight": 0.333}
    for bad, match in (
        ("no name here", "expected 'NAME: key=value"),
        ("x: lrate=0.1", "'lrate=0.1' is not key=value with a FinetuneConfig key"),
        ("x: lr", "'lr' is not key=value"),
        ("x: augment={p_blur: [}", "augment's value"),
    ):
        with pytest.raises(BarsalignError, match=match):
            sweep.parse_recipe(bad)


@pytest.mark.slow
def test_a_tiny_sweep_trains_every_recipe_and_seed(
    synth_small: Path, tmp_path: Path, capsys
) -> None:
    sweep = _sweep_module()
    profile = tmp_path / "tiny.yaml"
    profile.write_text(
        "backbone: resnet18\nimage_size: 64\nepochs: 1\nweights: random\naccelerator: cpu\n"
        f"data_dir: {synth_small / 'example_set'}\n"
    )
    out = tmp_path / "sweep"
    args = ["--profile", str(profile), "--seeds", "2", "--out", str(out)]
    assert sweep.main([*args, "--recipe", "no aug: augment=false", "--set", "batch_size=8"]) == 0
    rows = json.loads((out / "sweep.json").read_text())
    assert [r["recipe"] for r in rows] == ["profile", "no aug"]
    assert all(len(r["f05"]) == 2 and 0.0 <= r["mean"] <= 1.0 for r in rows)
    for run in ("profile_s0", "profile_s1", "no_aug_s0", "no_aug_s1"):
        assert (out / run / "summary.json").is_file()
    config = (out / "no_aug_s1" / "config.yaml").read_text()
    assert "augment: false" in config and "seed: 1" in config and "batch_size: 8" in config
    table = capsys.readouterr().out
    assert "| no aug | augment=False |" in table and "| profile | - |" in table
    assert sweep.main([*args, "--recipe", "bad: augment={p_blurr: 0}"]) == 2
    assert "error: recipe 'bad': augment: no field 'p_blurr'" in capsys.readouterr().err
