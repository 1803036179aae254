"""03_preprocess's view of training: resolved by the training code, written as a profile fragment
that `barsalign train --profile` trains on unchanged, and the sliders that rewrite it."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from barsalign.cli import main
from barsalign.errors import BarsalignError
from barsalign.modeling.train_config import load_profile, profile_params, write_profile
from barsalign.preprocess import PreprocessConfig, preprocess, read_image
from barsalign.viz import preview

REGION = [0.45, 0.05, 0.95, 0.75]


def test_write_profile_round_trips_and_refuses_what_would_not_train(tmp_path: Path) -> None:
    values = {"image_size": 96, "roi": (0.5, 0.0, 1.0, 0.8), "augment": {"p_rotate": 0.25}}
    path = write_profile(tmp_path / "f.yaml", values, "a fragment\nsecond line")
    text = path.read_text()
    assert text.startswith("# a fragment\n# second line\n")
    assert load_profile(path) == {**values, "roi": [0.5, 0.0, 1.0, 0.8]}
    for bad, words in (
        ({"image_sise": 96}, "unknown parameter(s) ['image_sise']"),
        ({"roi": [0.9, 0, 0.1, 1]}, "x0 < x1"),
        ({"augment": {"p_rotate": 2.0}}, "p_rotate must lie in [0, 1]"),
        ({"preprocess_mode": "sobel"}, "preprocess_mode must be one of"),
    ):
        with pytest.raises(BarsalignError, match=re.escape(words)):
            write_profile(tmp_path / "bad.yaml", bad)
        assert not (tmp_path / "bad.yaml").exists(), f"{bad}: nothing written"


def test_profiles_apply_in_order_and_a_changed_parameter_wins(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("backbone: resnet18\nimage_size: 320\nlr: 0.001\nroi: auto\n")
    frag = write_profile(tmp_path / "frag.yaml", {"image_size": 96, "roi": "0.5,0,1,0.8"})
    # a notebook's globals: untouched defaults (lr 3e-4, roi auto) leave the profiles' values
    notebook = {"lr": 3e-4, "roi": "auto", "batch_size": 4, "min_f05": 0.5, "seed": 0}
    merged = profile_params(notebook, [base, frag])
    assert merged["backbone"] == "resnet18" and merged["lr"] == 0.001
    assert merged["image_size"] == 96 and merged["roi"] == "0.5,0,1,0.8", "the fragment is last"
    assert merged["batch_size"] == 4, "a parameter set away from training's default wins"
    assert "min_f05" not in merged, "only training's parameters"
    assert profile_params(notebook, None) == {
        k: notebook[k] for k in ("lr", "roi", "batch_size", "seed")
    }
    with pytest.raises(BarsalignError, match="profile .*nothing.yaml does not exist"):
        profile_params({}, tmp_path / "nothing.yaml")


def test_the_view_is_what_training_resolves(synth_small: Path) -> None:
    data = str(synth_small / "example_set")
    view = preview.training_view({"data_dir": data, "image_size": 80, "roi": REGION})
    p = view.preprocess
    assert (p.target_size, p.mode, p.roi, p.mask_left) == (80, "none", tuple(REGION), False)
    assert view.augment is not None and view.augment.p_rotate == 0.5, "training's defaults"
    assert view.frames and all(Path(f).is_file() for f, _ in view.frames)
    assert {label for _, label in view.frames} == {0, 1}
    off = view.adjusted(augment=False, preprocess_mode="edges", roi="none")
    assert off.augment is None and off.preprocess.mode == "edges" and off.preprocess.roi is None
    assert off.preprocess.mask_left is False, "the training config's mask_left stands"
    with pytest.raises(BarsalignError, match="no setting"):
        view.adjusted(target_size=64)


@pytest.mark.slow
def test_a_fragment_from_03_trains_unchanged(synth_small: Path, tmp_path: Path) -> None:
    """What 03 shows and writes is what `barsalign train --profile BASE --profile FRAGMENT`
    trains on, and what 03 then shows for the trained checkpoint."""
    data = str(synth_small / "example_set")
    base = write_profile(
        tmp_path / "tiny.yaml",
        {"backbone": "resnet18", "weights": "random", "batch_size": 4, "accelerator": "cpu"},
    )
    view = preview.training_view({"data_dir": data}, base)
    assert view.preprocess.target_size == 224 and view.profiles == (str(base),)
    # the sliders' way: a region, a size and an augmentation changed, then the fragment
    shown = view.adjusted(image_size=64, roi=REGION, augment={"p_rotate": 0.0, "p_hflip": 0.5})
    frag = preview.write_fragment(shown, tmp_path / "profile_fragment.yaml")
    assert f"--profile {base} --profile profile_fragment.yaml" in frag.read_text()
    run = tmp_path / "run"
    args = ["train", "--profile", str(base), "--profile", str(frag), "--data", data]
    assert main([*args, "--max-steps", "2", "--out", str(run), "--no-tracking"]) == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    # config.yaml holds plain YAML types: the region and the JPEG quality range as lists
    assert config["preprocess"] == json.loads(json.dumps(dataclasses.asdict(shown.preprocess)))
    assert config["augment"] == json.loads(json.dumps(dataclasses.asdict(shown.augment)))
    assert config["backbone"] == "resnet18" and config["plan"]["steps"] == 2
    trained = preview.training_view({}, checkpoint=run / "checkpoints" / "best.ckpt")
    assert trained.preprocess == shown.preprocess and trained.augment == shown.augment
    assert trained.source.startswith("checkpoint ") and len(trained.frames) == len(view.frames)


def test_sliders_redraw_and_rewrite_the_fragment(synth_small: Path, tmp_path: Path) -> None:
    data = str(synth_small / "example_set")
    view = preview.training_view({"data_dir": data, "image_size": 64, "roi": REGION})
    paths = [f for f, _ in view.frames[:3]]
    frag = tmp_path / "frag.yaml"
    ui = preview.interactive(paths, view, frag)
    frame, (left, right) = ui.children[0], ui.children[1].children
    knobs = {k.description: k for k in [*left.children, *right.children]}
    assert load_profile(frag)["image_size"] == 64, "written once on opening"
    frame.value = str(paths[1])
    knobs["image_size"].value = 96
    knobs["roi_x"].value = (0.5, 1.0)
    knobs["p_rotate"].value = 0.0
    written = load_profile(frag)
    assert written["image_size"] == 96 and written["roi"] == [0.5, 0.05, 1.0, 0.75]
    assert written["augment"]["p_rotate"] == 0.0
    state = ui.state
    square = preprocess(read_image(paths[1]), state["view"].preprocess)
    assert square.shape[:2] == (96, 96)
    steps = preview.pipeline_steps(read_image(paths[1]), state["view"].preprocess)
    np.testing.assert_array_equal(steps[-1][1], square)
    assert state["fig"].axes[0].get_title().endswith("+ roi")
    knobs["roi_x"].value = (0.5, 0.5)  # an empty region: said, and the fragment kept
    assert load_profile(frag)["roi"] == [0.5, 0.05, 1.0, 0.75]
    knobs["roi_x"].value = (0.5, 1.0)  # a region again, so the next change is written
    knobs["augment"].value = False
    assert load_profile(frag)["augment"] is False and state["view"].augment is None
    assert json.dumps(written)  # plain YAML types


def test_pipeline_steps_end_in_the_square_preprocess_gives(synth_small: Path) -> None:
    path = next((synth_small / "example_set" / "aligned").glob("*.jpg"))
    region = PreprocessConfig(target_size=64, mask_left=False, roi=(0.5, 0.1, 1.0, 0.8))
    steps = preview.pipeline_steps(read_image(path), region)
    assert steps[0][0].endswith("+ roi") and steps[-1][0] == "no mask"
    np.testing.assert_array_equal(steps[-1][1], preprocess(read_image(path), region))
    for mode, n in (("none", 2), ("grayscale", 3)):  # the steps that mode runs, then the mask
        for mask in (True, False):
            cfg = PreprocessConfig(target_size=64, mode=mode, mask_left=mask)
            steps = preview.pipeline_steps(read_image(path), cfg)
            assert len(steps) == n + mask
            np.testing.assert_array_equal(steps[-1][1], preprocess(read_image(path), cfg))
