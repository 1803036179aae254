"""Gap pairs: short-bar scenes and their flush twins, cropped around their own stopper, and
how training draws them beside a user's frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from barsalign.data import AlignmentDataModule
from barsalign.errors import BarsalignError
from barsalign.preprocess import PreprocessConfig
from barsalign.synth import render_look_sets
from barsalign.synth.gap_pairs import pair_box, render_gap_pairs

DC = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "input_size": (3, 64, 64)}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_gap_pairs(12, ["left_low", "top_down"], root=tmp_path_factory.mktemp("gp"))


def test_each_pair_differs_only_where_a_bar_is_short(pairs: Path) -> None:
    rows = [json.loads(line) for line in (pairs / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["look"] for r in rows} == {"left_low", "top_down"}
    by_pair: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_pair.setdefault(r["pair"], {})[r["file"].split("/")[0]] = r
    assert len(by_pair) == 6
    for pair in by_pair.values():
        short, flush = pair["not_aligned"], pair["aligned"]
        assert short["box_px"] == flush["box_px"]  # one crop for both frames
        assert short["max_gap_px"] > 1.0  # a bar is short, and its twin is the same scene
        a = cv2.imread(str(pairs / short["file"])).astype(int)
        b = cv2.imread(str(pairs / flush["file"])).astype(int)
        assert a.shape == b.shape and a.shape[0] == a.shape[1]
        changed = (np.abs(a - b).max(axis=2) > 40).mean()
        assert 0 < changed < 0.25, changed  # the short bar's part of the crop, not the scene


def test_pairs_are_rendered_once_and_reused(pairs: Path) -> None:
    stamp = (pairs / "pairs.json").stat().st_mtime_ns
    again = render_gap_pairs(12, ["top_down", "left_low"], root=pairs.parent)
    assert again == pairs and (pairs / "pairs.json").stat().st_mtime_ns == stamp


def test_the_crop_holds_the_face_and_every_head() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        pts = rng.uniform([0, 0], [1152, 864], size=(6, 2)) * rng.uniform(0.1, 1.0)
        x0, y0, x1, y1 = pair_box(pts, (1152, 864), rng)
        assert x1 - x0 == y1 - y0 and 0 <= x0 and 0 <= y0 and x1 <= 1152 and y1 <= 864
        span = pts.max(axis=0) - pts.min(axis=0)
        if span.max() * 1.1 <= 864:  # a set wider than the frame's height cannot fit a square
            assert (pts >= [x0, y0]).all() and (pts <= [x1, y1]).all()


def test_bad_looks_and_sizes_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(BarsalignError, match="unknown look"):
        render_gap_pairs(12, ["no_such_look"], root=tmp_path)
    with pytest.raises(BarsalignError, match="under one pair per look"):
        render_gap_pairs(2, ["left_low", "top_down"], root=tmp_path)


def test_training_draws_the_pairs_at_their_share(pairs: Path, tmp_path: Path) -> None:
    own = render_look_sets("round_bars", tmp_path / "own", n_train=40, n_val=8, n_test=2)
    pcfg = PreprocessConfig(target_size=64, mode="none", roi=(0.4, 0.0, 1.0, 0.8))
    dm = AlignmentDataModule(
        own / "train",
        DC,
        val_dir=own / "val",
        preprocess=pcfg,
        extra_dir=pairs,
        extra_share=0.25,
        cache_dir=tmp_path / "cache",
    )
    loader = dm.train_dataloader()
    assert dm.n_train == 40 and len(dm.extra_set) == 12  # type: ignore[arg-type]
    assert dm.extra_set.pcfg.roi is None and not dm.extra_set.pcfg.mask_left  # type: ignore[union-attr]
    drawn = np.array([i for _ in range(50) for i in loader.sampler])
    assert len(loader.sampler) == 40  # an epoch is as long as the user's set
    share = (drawn >= 40).mean()
    assert 0.2 < share < 0.3, share
    x, y = next(iter(loader))
    assert x.shape[1:] == (3, 64, 64) and set(y.tolist()) <= {0.0, 1.0}
    with pytest.raises(BarsalignError, match="extra_share"):
        AlignmentDataModule(own / "train", DC, extra_share=1.0)
