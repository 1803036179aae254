"""The synthetic conveyor: layout, truth, determinism, lighting, gaps and bad parameters."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from barsalign.cli import main
from barsalign.errors import BarsalignError
from barsalign.synth import STOPPER_ROI, SynthConfig, load_metadata, pool_labels, render_dataset
from barsalign.synth.geometry import (
    STOPPER_U,
    Bar,
    SceneSpec,
    camera_homography,
    distort_points,
    frame_pad,
    gap_units_for,
    gaps_px,
    project,
)
from barsalign.synth.render import NIGHT_MEAN, _distortion_maps, render
from tests.conftest import SMALL


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_layout_matches_metadata(synth_small: Path) -> None:
    meta = load_metadata(synth_small)
    stills = [m for m in meta if m["subset"] != "clips"]
    assert len(stills) == SMALL.n_example + SMALL.n_pool
    for m in stills:
        path = synth_small / m["file"]
        assert path.is_file(), m["file"]
        if m["subset"] == "example_set":
            assert path.parent.name == m["label"]
        else:
            assert path.parent.name == "train_set" and path.name.startswith("img_")
    pool_names = sorted(p.name for p in (synth_small / "train_set").iterdir())
    assert pool_names[0] == "img_00001.jpg" and len(pool_names) == SMALL.n_pool
    img = cv2.imread(str(synth_small / stills[0]["file"]))
    assert img.shape == (SMALL.height, SMALL.width, 3)
    cfg = json.loads((synth_small / "synth_config.json").read_text())
    assert SynthConfig.from_json(cfg) == SMALL


def test_clips_have_per_frame_truth(synth_small: Path) -> None:
    meta = [m for m in load_metadata(synth_small) if m["subset"] == "clips"]
    assert len(meta) == SMALL.n_clips * SMALL.clip_frames
    cap = cv2.VideoCapture(str(synth_small / meta[0]["file"]))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == SMALL.clip_frames
    labels = [m["label"] for m in sorted(meta, key=lambda m: m["frame"])]
    # bars roll in (not aligned) and end pushed flush (aligned), never back
    assert labels[0] == "not_aligned" and labels[-1] == "aligned"
    first_aligned = labels.index("aligned")
    assert set(labels[first_aligned:]) == {"aligned"}
    gaps = [m["max_gap_px"] for m in sorted(meta, key=lambda m: m["frame"])]
    assert gaps[0] > gaps[first_aligned - 1] >= 0


def test_labels_follow_the_gaps(synth_small: Path) -> None:
    for m in load_metadata(synth_small):
        tol = m["align_tolerance_px"]
        if m["label"] == "aligned":
            assert m["scene"] == "bars_at_stopper" and m["n_bars"] >= SMALL.min_bars
            assert max(m["gaps_px"]) <= tol
        elif m["scene"] == "bars_at_stopper":
            assert max(m["gaps_px"]) > tol
        if m["kind"] == "hard":
            short = [g for g in m["gaps_px"] if g > tol]
            assert len(short) == 1
            assert SMALL.hard_gap_px[0] - 0.5 <= short[0] <= SMALL.hard_gap_px[1] + 0.5


def test_class_balance_and_scene_mix_follow_the_config(tmp_path: Path) -> None:
    from barsalign.synth import sample_scene
    from barsalign.synth.scenes import recording_sessions

    cfg = SynthConfig(seed=11)
    rng = np.random.default_rng(0)
    session = recording_sessions(cfg)[0]
    scenes = [sample_scene(cfg, rng, session) for _ in range(4000)]
    aligned = sum(s["label"] == "aligned" for s in scenes) / len(scenes)
    assert abs(aligned - cfg.aligned_fraction) < 0.03
    other = sum(s["scene"] != "bars_at_stopper" for s in scenes) / len(scenes)
    assert abs(other - cfg.other_scene_fraction) < 0.03
    night = sum(s["lighting"] == "night" for s in scenes) / len(scenes)
    assert abs(night - cfg.lighting_mix[2] / sum(cfg.lighting_mix)) < 0.03
    assert Counter(s["kind"] for s in scenes)["hard"] > 0


def test_night_frames_are_dark_and_the_rest_are_not(synth_small: Path) -> None:
    seen = set()
    for m in load_metadata(synth_small):
        if m["subset"] == "clips":
            continue
        gray = cv2.cvtColor(cv2.imread(str(synth_small / m["file"])), cv2.COLOR_BGR2GRAY)
        assert (gray.mean() < NIGHT_MEAN) == (m["lighting"] == "night"), (m["file"], gray.mean())
        seen.add(m["lighting"])
    assert seen == {"day", "artificial", "night"}


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SMALL, n_example=6, n_pool=5, n_clips=1, clip_frames=4)
    a = render_dataset(tmp_path / "a", cfg, workers=1)
    b = render_dataset(tmp_path / "b", cfg, workers=2)
    assert _digest(a) == _digest(b)
    c = render_dataset(tmp_path / "c", dataclasses.replace(cfg, seed=cfg.seed + 1), workers=2)
    assert _digest(a)["metadata.jsonl"] != _digest(c)["metadata.jsonl"]


def _spec(**kw) -> SceneSpec:
    bars = tuple(
        Bar(v_center=100.0 + 52 * i, width=46.0, profile="round", gap_units=0.0) for i in range(9)
    )
    base = dict(
        seed=5,
        width=1152,
        height=864,
        camera="CS1",
        shift=(0.0, 0.0),
        zoom=1.0,
        roll_deg=0.0,
        distortion=0.12,
        stopper=True,
        view_offset=(0.0, 0.0),
        bars=bars,
        lighting="day",
        gain=1.0,
        glare=0,
        dust=0.0,
        noise_sigma=0.0,
        jpeg_quality=90,
        caption="CS1 Stopper",
        timestamp="2026-03-01 12:00:00",
    )
    return SceneSpec(**{**base, **kw})


def test_a_gap_of_a_few_pixels_shows_where_the_metadata_says() -> None:
    flush = _spec()
    v = flush.bars[4].v_center
    units = gap_units_for(flush, v, 4.0)
    bars = list(flush.bars)
    bars[4] = dataclasses.replace(bars[4], gap_units=units)
    short = dataclasses.replace(flush, bars=tuple(bars))
    assert gaps_px(short)[4] == pytest.approx(4.0, abs=0.2)
    assert max(gaps_px(flush)) == 0.0
    diff = np.abs(render(short).astype(int) - render(flush).astype(int)).sum(axis=2)
    ys, xs = np.nonzero(diff > 30)
    assert len(xs) > 10, "a 4-pixel gap must change the frame"
    head = distort_points(
        project(camera_homography(short), np.array([[STOPPER_U, v]])), 1152, 864, short.distortion
    )[0]
    dist = np.hypot(xs - head[0], ys - head[1])
    assert np.median(dist) < 25, "the change must sit at that bar's head"


def test_distortion_maps_agree_with_distort_points() -> None:
    spec = _spec()
    pad = frame_pad(spec)
    map1, map2 = _distortion_maps(1152, 864, spec.distortion, pad)
    maps = cv2.convertMaps(map1, map2, cv2.CV_32FC1)
    src = np.array([[100.0, 80.0], [900.0, 700.0], [576.0, 432.0], [1100.0, 50.0]])
    dst = distort_points(src, 1152, 864, spec.distortion)
    for (x, y), (dx, dy) in zip(src, dst, strict=True):
        back = maps[0][int(round(dy)), int(round(dx))], maps[1][int(round(dy)), int(round(dx))]
        assert abs(back[0] - pad - x) < 2.0 and abs(back[1] - pad - y) < 2.0
    assert np.linalg.norm(dst[0] - [576, 432]) < np.linalg.norm(src[0] - [576, 432])  # barrel


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"n_example": -1}, "n_example must be >= 0"),
        ({"aligned_fraction": 1.5}, "aligned_fraction is a probability"),
        ({"glare_fraction": -0.1}, "glare_fraction is a probability"),
        ({"min_bars": 9, "max_bars": 3}, "min_bars"),
        ({"align_tolerance_px": 5.0}, "align_tolerance_px"),
    ],
)
def test_bad_config_is_one_clear_error(kw: dict, words: str) -> None:
    with pytest.raises(BarsalignError, match=words):
        SynthConfig(**kw)


def test_cli_bad_parameters_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    assert main(["synth", "--out", str(tmp_path / "x"), "--n-pool", "-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "n_pool must be >= 0" in err
    assert main(["synth", "--out", str(tmp_path / "x"), "--aligned-fraction", "2"]) == 2
    assert "probability" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "x"), "--twin-fraction", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "twin_fraction" in err
    assert not (tmp_path / "x").exists()


def test_cli_unwritable_output_leaves_nothing_behind(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert (
        main(
            [
                "synth",
                "--out",
                str(blocker / "data"),
                "--n-example",
                "2",
                "--n-pool",
                "0",
                "--n-clips",
                "0",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot write the data set" in err and str(blocker) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_cli_refuses_to_overwrite_and_cleans_up_on_failure(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "set"
    args = [
        "synth",
        "--out",
        str(out),
        "--size",
        "256x192",
        "--n-example",
        "3",
        "--n-pool",
        "2",
        "--n-clips",
        "0",
        "--workers",
        "1",
    ]
    assert main(args) == 0
    before = _digest(out)
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert _digest(out) == before

    import barsalign.synth.dataset as dataset

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset, "_write_clip", boom)  # an interruption half way through
    assert (
        main([*args[:-4], "--n-clips", "1", "--clip-frames", "2", "--workers", "1", "--overwrite"])
        == 130
    )
    assert _digest(out) == before, "the complete old set stays; no half-written one replaces it"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_ensure_default_renders_once_and_again_when_the_config_changes(tmp_path: Path) -> None:
    from barsalign.synth import ensure_default

    cfg = dataclasses.replace(SMALL, n_example=3, n_pool=2, n_clips=0)
    out = ensure_default(cfg, tmp_path / "default")
    stamp = (out / "synth_config.json").stat().st_mtime_ns
    assert ensure_default(cfg, out) == out
    assert (out / "synth_config.json").stat().st_mtime_ns == stamp, "no second render"
    ensure_default(dataclasses.replace(cfg, n_pool=3), out)
    assert len(list((out / "train_set").iterdir())) == 3


def test_a_stamp_without_a_field_added_since_needs_no_render(tmp_path: Path) -> None:
    from barsalign.synth import ensure_default

    cfg = dataclasses.replace(SMALL, n_example=2, n_pool=0, n_clips=0)
    out = ensure_default(cfg, tmp_path / "default")
    stamp_path = out / "synth_config.json"
    stamp = json.loads(stamp_path.read_text())
    del stamp["twin_fraction"]  # as written before the field existed
    stamp_path.write_text(json.dumps(stamp))
    mtime = stamp_path.stat().st_mtime_ns
    assert ensure_default(cfg, out) == out and stamp_path.stat().st_mtime_ns == mtime
    stamp_path.write_text("{not json")  # a broken stamp renders the set again
    ensure_default(cfg, out)
    assert json.loads(stamp_path.read_text())["twin_fraction"] == 0.0


def test_twins_are_the_same_frame_with_every_bar_flush(tmp_path: Path) -> None:
    cfg = dataclasses.replace(
        SMALL,
        n_example=0,
        n_pool=12,
        n_clips=0,
        twin_fraction=1.0,
        other_scene_fraction=0.0,
        motion_blur_fraction=0.0,  # a moving bar's twin stands still: its whole body changes
    )
    out = render_dataset(tmp_path / "twins", cfg, workers=2)
    meta = load_metadata(out)
    twins = [r for r in meta if r["kind"] == "twin"]
    assert twins and all(r["label"] == "aligned" for r in twins)
    assert all(r["max_gap_px"] <= cfg.align_tolerance_px for r in twins)
    by_clip: dict[str, list[dict]] = {}
    for r in meta:
        by_clip.setdefault(r["clip_id"], []).append(r)
    pairs = []  # each frame of a twinned group is followed by its twin
    for group in by_clip.values():
        if any(r["kind"] == "twin" for r in group):
            pairs += zip(group[0::2], group[1::2], strict=False)
    assert len(pairs) == len(twins) and all(t["kind"] == "twin" for _, t in pairs)
    for orig, twin in pairs:
        assert orig["label"] == "not_aligned" and orig["scene"] == "bars_at_stopper"
        a = cv2.imread(str(out / orig["file"])).astype(int)
        b = cv2.imread(str(out / twin["file"])).astype(int)
        ys, xs = np.nonzero(np.abs(a - b).max(axis=2) > 24)
        assert len(xs), "the short bar must show"
        short = [h for h, g in zip(orig["heads_px"], orig["gaps_px"], strict=True) if g > 1]
        heads = np.asarray(short)[:, None, :]  # [short bars, 1, (x, y)]
        near = np.hypot(xs - heads[..., 0], ys - heads[..., 1]).min(axis=0)
        assert near.max() < 24 + max(orig["gaps_px"]), "pixels change only at a short bar's head"
    plain = dataclasses.replace(cfg, twin_fraction=0.0)
    assert not any(
        r["kind"] == "twin"
        for r in load_metadata(render_dataset(tmp_path / "plain", plain, workers=2))
    )


def test_bar_heads_lie_where_the_plant_preprocessing_looks(synth_small: Path) -> None:
    # the plant's crop keeps the right square and zeroes its left half: x > width - height / 2
    width, height = SMALL.width, SMALL.height
    heads = [
        x
        for r in load_metadata(synth_small)
        if r["scene"] == "bars_at_stopper"
        for (x, _), gap in zip(r["heads_px"], r["gaps_px"], strict=True)
        if gap < 10  # at or within a few pixels of the stopper face
    ]
    assert heads, "the small set has bars at the stopper"
    assert min(heads) > width - height / 2 and max(heads) < width


def test_bar_heads_at_the_stopper_lie_inside_the_stopper_roi(synth_small: Path) -> None:
    """The training default crops to STOPPER_ROI: no head at the stopper may fall near its edge."""
    width, height = SMALL.width, SMALL.height
    x0, y0, x1, y1 = STOPPER_ROI
    heads = [
        (x / width, y / height)
        for r in load_metadata(synth_small)
        if r["scene"] == "bars_at_stopper"
        for (x, y), gap in zip(r["heads_px"], r["gaps_px"], strict=True)
        if gap < 10
    ]
    assert heads, "the small set has bars at the stopper"
    xs, ys = [x for x, _ in heads], [y for _, y in heads]
    margin = 0.03  # of the frame's width or height
    assert x0 + margin < min(xs) and max(xs) < x1 - margin, (min(xs), max(xs))
    assert y0 + margin < min(ys) and max(ys) < y1 - margin, (min(ys), max(ys))


def test_pool_labels_are_the_pool_truth(synth_small: Path) -> None:
    truth = {
        r["file"]: r["label"]
        for r in load_metadata(synth_small)
        if r["file"].startswith("train_set/")
    }
    lines = pool_labels(synth_small).read_text().splitlines()
    assert lines[0] == "path,label" and len(lines) == len(truth) + 1
    for line in lines[1:]:
        name, label = line.split(",")
        assert truth[f"train_set/{name}"] == label
