"""Looks of the synthetic conveyor: names, sizes, determinism, geometry and the look sets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from barsalign.cli import main
from barsalign.data import load_labels
from barsalign.errors import BarsalignError
from barsalign.synth import (
    LOOK_SPLITS,
    LOOKS,
    SynthConfig,
    flush_twin,
    load_metadata,
    look_config,
    render_look_sets,
)
from barsalign.synth.geometry import (
    SceneSpec,
    gap_units_for,
    gaps_px,
    head_points_px,
    stopper_face_px,
)
from barsalign.synth.render import render
from barsalign.synth.scenes import recording_sessions, still_jobs

SMALL_SETS = {"n_train": 2, "n_val": 1, "n_test": 1}


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def look_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every look's sets, 2 + 1 + 1 frames, rendered once for this module."""
    root = tmp_path_factory.mktemp("looks")
    return {
        name: render_look_sets(name, root / name, seed=1, workers=2, **SMALL_SETS) for name in LOOKS
    }


def _scenes(name: str, count: int = 150, **kw) -> list[tuple[SceneSpec, dict]]:
    """`count` still-frame specs of a look with their truth (drawn, not rendered: fast)."""
    cfg = look_config(name, seed=5, **kw)
    return list(still_jobs(cfg, "x", count, recording_sessions(cfg), "x"))


def test_the_looks_are_there_and_default_is_the_default_set() -> None:
    assert {"default", "top_down", "left_low", "round_bars", "plain_stopper"} <= set(LOOKS)
    assert {"wide_720", "heavy_jpeg"} <= set(LOOKS)
    assert look_config("default") == SynthConfig()
    assert "look" not in SynthConfig().to_json(), "the default set's stamp keeps its bytes"
    cfg = look_config("wide_720", seed=4)
    assert (cfg.width, cfg.height, cfg.seed, cfg.look) == (1280, 720, 4, "wide_720")
    assert SynthConfig.from_json(cfg.to_json()) == cfg
    assert look_config("heavy_jpeg").jpeg_quality[1] <= 35


@pytest.mark.parametrize("bad", ["nope", "Default", ""])
def test_a_bad_look_name_is_one_line_naming_the_known_ones(bad: str) -> None:
    for call in (lambda: look_config(bad), lambda: SynthConfig(look=bad)):
        with pytest.raises(BarsalignError) as err:
            call()
        text = str(err.value)
        assert "\n" not in text and f"unknown look {bad!r}" in text
        assert "known: default, " in text and "left_low" in text


@pytest.mark.parametrize("name", list(LOOKS))
def test_each_look_renders_the_same_bytes_at_its_own_size(
    name: str, look_sets: dict[str, Path], tmp_path: Path
) -> None:
    again = render_look_sets(name, tmp_path / name, seed=1, workers=1, **SMALL_SETS)
    first = _digest(look_sets[name])
    assert first == _digest(again)
    frames = [f for f in first if f.endswith(".jpg")]
    assert len(frames) == sum(SMALL_SETS.values())
    cfg = look_config(name)
    for rel in frames:
        img = cv2.imread(str(again / rel))
        assert img.shape == (cfg.height, cfg.width, 3), (name, rel)


@pytest.mark.parametrize("name", list(LOOKS))
def test_heads_and_stopper_face_lie_inside_the_frame(name: str) -> None:
    cfg = look_config(name)
    seen_face = 0
    for spec, meta in _scenes(name):
        # with no stopper in view the bar heads (at the stopper) are out of view too
        pts = list(meta["heads_px"]) if spec.stopper else []
        face = stopper_face_px(spec)
        if face:
            seen_face += 1
            pts += face
        for x, y in pts:
            assert 0 <= x < cfg.width and 0 <= y < cfg.height, (name, meta["camera"], x, y)
        if meta["scene"] == "bars_at_stopper":  # the whole face, not a clipped end of it
            assert face is not None
            span = np.hypot(*np.subtract(face[1], face[0]))
            assert span > 0.2 * min(cfg.width, cfg.height), (name, face)
        if meta["scene"] in ("bars_no_stopper", "background"):
            assert face is None
    assert seen_face > 50


def test_the_left_look_has_its_stopper_on_the_left_and_the_default_on_the_right() -> None:
    for name, left in (("left_low", True), ("default", False)):
        half = look_config(name).width / 2
        for spec, meta in _scenes(name, 80):
            face = stopper_face_px(spec)
            if face is None:
                continue
            at_stopper = [
                h for h, g in zip(meta["heads_px"], meta["gaps_px"], strict=True) if g < 10
            ]
            xs = [x for x, _ in face + at_stopper]
            assert (max(xs) < half) if left else (min(xs) > half), (name, xs)


@pytest.mark.parametrize("name", ["left_low", "top_down", "wide_720"])
def test_a_short_bar_changes_the_frame_where_the_metadata_says(name: str) -> None:
    """The raster (mirrored, other cameras) and the pixel truth must agree: render a scene with
    one bar 5 px short and its flush twin; the pixels that differ sit at that bar's head."""
    spec = next(s for s, m in _scenes(name, 40) if m["scene"] == "bars_at_stopper")
    flush = flush_twin(dataclasses.replace(spec, noise_sigma=0.0))
    i = len(flush.bars) // 2
    units = gap_units_for(flush, flush.bars[i].v_center, 5.0)
    bars = list(flush.bars)
    bars[i] = dataclasses.replace(bars[i], gap_units=units)
    short = dataclasses.replace(flush, bars=tuple(bars))
    assert gaps_px(short)[i] == pytest.approx(5.0, abs=0.2)
    diff = np.abs(render(short).astype(int) - render(flush).astype(int)).sum(axis=2)
    ys, xs = np.nonzero(diff > 30)
    assert len(xs) > 10, "a 5-pixel gap must change the frame"
    hx, hy = head_points_px(short)[i]
    assert np.median(np.hypot(xs - hx, ys - hy)) < 25, "the change must sit at that bar's head"


@pytest.mark.parametrize("name", list(LOOKS))
def test_hard_gaps_span_a_few_pixels_at_each_look(name: str) -> None:
    cfg = look_config(name)
    assert 3.0 <= cfg.hard_gap_px[0] and cfg.hard_gap_px[1] <= 10.0
    hard = [
        max(m["gaps_px"])
        for _, m in _scenes(name, 120, aligned_fraction=0.0, hard_fraction=1.0)
        if m["kind"] == "hard"
    ]
    assert hard and min(hard) >= cfg.hard_gap_px[0] - 0.3 and max(hard) <= cfg.hard_gap_px[1] + 0.3


def test_look_sets_keep_splits_apart_and_clips_together(look_sets: dict[str, Path]) -> None:
    root = look_sets["top_down"]
    info = json.loads((root / "look.json").read_text())
    assert info["look"] == "top_down" and info["config"]["look"] == "top_down"
    x0, y0, x1, y1 = info["stopper_roi"]
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    seen: dict[str, set[str]] = {}
    for split in LOOK_SPLITS:
        meta = load_metadata(root / split)
        assert len(meta) == SMALL_SETS[f"n_{split}"]
        for m in meta:
            assert (root / split / m["file"]).is_file() and m["look"] == "top_down"
            assert Path(m["file"]).parent.name == m["label"] and m["subset"] == split
            assert len(m["heads_px"]) == len(m["gaps_px"]) == m["n_bars"]
            if m["scene"] in ("bars_at_stopper", "stopper_no_bars"):
                assert len(m["stopper_face_px"]) == 2
        seen[split] = {m["session"] for m in meta} | {m["clip_id"] for m in meta}
        groups = {i.path.name: i.group for i in load_labels(root / split)}
        assert groups == {Path(m["file"]).name: m["clip_id"] for m in meta}
    assert not seen["train"] & seen["val"] and not seen["train"] & seen["test"]
    assert not seen["val"] & seen["test"]


def test_a_look_split_is_evaluated_with_its_renderer_truth(look_sets: dict[str, Path]) -> None:
    """A look's split keeps metadata.jsonl beside aligned/: evaluation finds it, so the error
    rates by scene and gap (05_evaluate, benchmarks/looks.py) work on the looks too."""
    from barsalign.evaluation.evaluate import labelled_folder

    split = look_sets["left_low"] / "test"
    data = labelled_folder(split)
    truth = {m["file"]: m for m in load_metadata(split)}
    assert data.meta and all(m is not None for m in data.meta)
    for path, label, meta in zip(data.paths, data.labels, data.meta, strict=True):
        assert meta == truth[path.relative_to(split).as_posix()]
        assert (meta["label"] == "aligned") == bool(label)


def test_cli_bad_look_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["synth", "--look", "nope", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown look 'nope'" in err and "top_down" in err
    assert main(["synth", "--look", "top_down", "--n-pool", "3", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--n-pool" in err
    assert main(["synth", "--n-train", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--look" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_renders_a_look(tmp_path: Path) -> None:
    out = tmp_path / "round"
    args = ["synth", "--look", "round_bars", "--out", str(out), "--workers", "1"]
    assert main([*args, "--n-train", "2", "--n-val", "1", "--n-test", "1", "--seed", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["look.json", "test", "train", "val"]
    meta = load_metadata(out / "train")
    assert len(meta) == 2 and all(m["profiles"] in ([], ["round"]) for m in meta)
    assert json.loads((out / "look.json").read_text())["frames"] == {
        "train": 2,
        "val": 1,
        "test": 1,
    }
