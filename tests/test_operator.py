"""Operator metrics on hand-built truth and states, the truth CSV, and the smoothing sweep."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from barsalign.errors import BarsalignError
from barsalign.monitor import ALIGNED, NOT_ALIGNED, UNCERTAIN
from barsalign.monitor.operator import (
    ScoredClip,
    clip_events,
    jsonable,
    operator_metrics,
    pick_setting,
    read_truth_csv,
    replay,
    summarize,
    sweep,
    truth_for_frames,
)
from barsalign.monitor.smoother import DEFAULT_SMOOTHING, resolve_smoothing

G, R, A = ALIGNED, NOT_ALIGNED, UNCERTAIN


def metrics(truth: str, states: str, fps: float = 10.0) -> dict:
    """Metrics of strings like "0011" and "RAGG" (one character per frame at `fps`)."""
    code = {"G": G, "R": R, "A": A}
    t = [i / fps for i in range(len(truth))]
    return operator_metrics([int(c) for c in truth], [code[c] for c in states], t, 1 / fps)


def test_time_to_green_per_episode_median_and_p95() -> None:
    # three episodes at 10 fps: green 2, 0 and 4 frames after each episode starts
    m = metrics("0111110011100111111", "RAAGGG" + "RR" + "GGG" + "RR" + "AAAAGG")
    assert m["episodes"] == 3 and m["episodes_never_green"] == 0
    assert m["time_to_green_median_s"] == pytest.approx(0.2)
    # p95 of [0.0, 0.2, 0.4]: 0.2 + 0.9 * (0.4 - 0.2)
    assert m["time_to_green_p95_s"] == pytest.approx(0.38)
    assert m["false_green_events"] == 0


def test_an_episode_that_never_turns_green_waits_forever() -> None:
    m = metrics("01110111", "RGGGRAAA")
    assert m["episodes"] == 2 and m["episodes_never_green"] == 1
    assert m["time_to_green_median_s"] == math.inf  # (0.1 + inf) / 2
    assert math.isinf(m["time_to_green_p95_s"])
    m = metrics("0111011101110", "RGGGRAAARGGGR")
    assert m["time_to_green_median_s"] == pytest.approx(0.0)
    assert jsonable(m)["time_to_green_p95_s"] == "never"


def test_false_green_counts_green_episodes_touching_unaligned_truth() -> None:
    # episode 1: green while truly aligned, then holds one frame too long (1 event);
    # episode 2: green before the bars arrive (1 event); episode 3: green inside truth (none)
    truth = "0111000000111000111"
    state = "RRGGGRRRGGGGRRRRGGR"
    m = metrics(truth, state)
    assert m["false_green_events"] == 2
    seconds = len(truth) / 10
    assert m["false_green_per_hour"] == pytest.approx(2 / (seconds / 3600))
    assert metrics("000", "GGG")["false_green_events"] == 1
    assert metrics("000", "GRG")["false_green_events"] == 2


def test_flicker_and_amber_share() -> None:
    # 6 frames at 2 fps: 3 seconds; changes G->A, A->G, G->R: 3 per 3 s = 60 per minute
    m = metrics("111111", "GAAGRR", fps=2.0)
    assert m["flicker_per_min"] == pytest.approx(60.0)
    assert m["amber_share"] == pytest.approx(2 / 6)
    assert m["video_s"] == pytest.approx(3.0)


def test_dropped_frames_weigh_by_time() -> None:
    # frames at 0, 0.1 and 1.0 s (live mode dropped 0.2..0.9): amber held 0.9 s of 1.1 s
    ev = clip_events([1, 1, 1], [G, A, G], [0.0, 0.1, 1.0], 0.1)
    assert ev.seconds == pytest.approx(1.1) and ev.amber_s == pytest.approx(0.9)


def test_clips_pool_episodes_and_time() -> None:
    a = clip_events([0, 1, 1], [R, A, G], [0.0, 0.5, 1.0], 0.5)
    b = clip_events([1, 1, 0], [G, G, G], [0.0, 0.5, 1.0], 0.5)
    m = summarize([a, b])
    assert m["episodes"] == 2 and m["time_to_green_median_s"] == pytest.approx(0.25)
    assert m["false_green_events"] == 1 and m["video_s"] == pytest.approx(3.0)
    assert m["flicker_per_min"] == pytest.approx(2 / 3.0 * 60)


def test_inconsistent_inputs_are_refused() -> None:
    with pytest.raises(BarsalignError, match="length"):
        clip_events([1, 0], [G], [0.0, 0.1], 0.1)
    with pytest.raises(BarsalignError, match="increase"):
        clip_events([1, 0], [G, R], [0.1, 0.1], 0.1)


# --- the truth CSV ---------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "clip.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_frame_and_time_csvs_give_per_frame_truth(tmp_path: Path) -> None:
    p = write(tmp_path, "frame,aligned\n0,0\n1,0\n2,1\n3,true\n")
    assert read_truth_csv(p) == ("frame", [0, 1, 2, 3], [0, 0, 1, 1])
    assert truth_for_frames(p, 4, 10.0) == [0, 0, 1, 1]
    # time rows at 10 fps: frames 0-4 not aligned, 5-7 aligned, 8-9 not (steps at 0.5 and 0.8 s)
    p = write(tmp_path, "Time,Aligned\n0,0\n0.5,1\n0.8,0\n")
    assert truth_for_frames(p, 10, 10.0) == [0] * 5 + [1] * 3 + [0] * 2


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("frame,label\n0,1\n", "header"),
        ("frame,aligned\n", "no rows"),
        ("frame,aligned\n0,1\nx,0\n", r":3: frame 'x' is not a number"),
        ("frame,aligned\n0,1\n1,maybe\n", r":3: aligned 'maybe' is not 0 or 1"),
        ("frame,aligned\n0,1\n0,0\n", "rows must increase"),
        ("frame,aligned\n0,1,2\n", "3 fields"),
        ("time,aligned\n-1,1\n", "not >= 0"),
    ],
)
def test_a_bad_truth_csv_gives_one_line_naming_the_file(
    tmp_path: Path, text: str, match: str
) -> None:
    p = write(tmp_path, text)
    with pytest.raises(BarsalignError, match=match) as err:
        truth_for_frames(p, 2, 10.0)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_a_truth_csv_that_does_not_fit_the_clip_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "frame,aligned\n0,0\n1,1\n")
    with pytest.raises(BarsalignError, match=f"{p}.*lists 2 frames.*clip has 3"):
        truth_for_frames(p, 3, 10.0)
    p = write(tmp_path, "frame,aligned\n0,0\n2,1\n3,1\n")
    with pytest.raises(BarsalignError, match="frame 1 is missing"):
        truth_for_frames(p, 3, 10.0)
    p = write(tmp_path, "time,aligned\n0.1,0\n")
    with pytest.raises(BarsalignError, match="first time is 0.1 s"):
        truth_for_frames(p, 3, 10.0)
    p = write(tmp_path, "time,aligned\n0,0\n0.3,1\n")
    with pytest.raises(BarsalignError, match="past the clip's end"):
        truth_for_frames(p, 3, 10.0)
    with pytest.raises(BarsalignError, match="does not exist"):
        read_truth_csv(tmp_path / "missing.csv")


# --- the sweep -------------------------------------------------------------------------------


def test_sweep_picks_the_quickest_setting_without_a_false_green() -> None:
    # truth: 10 not aligned, 10 aligned, 10 not aligned; the model gives one confident false
    # "aligned" at frame 4 and a borderline 0.55 at frame 25 (within 1 logit of 0.5), and
    # some aligned frames only at 0.6 (amber within a 1-logit band: flicker)
    truth = [0] * 10 + [1] * 10 + [0] * 10
    aligned = [0.9, 0.9, 0.6, 0.9, 0.6, 0.9, 0.6, 0.9, 0.9, 0.9]
    scores = [0.1] * 10 + aligned + [0.1] * 10
    scores[4], scores[25] = 0.95, 0.55
    clip = ScoredClip("c", scores, truth, [i / 10 for i in range(30)], 0.1)
    grid = [(1, 1, 0.0), (1, 1, 1.0), (2, 3, 1.0), (2, 2, 0.0), (3, 4, 0.0)]
    rows = sweep([clip], 0.5, grid)
    by = {(r["k"], r["n"], r["margin"]): r for r in rows}
    assert by[(1, 1, 0.0)]["false_green_events"] == 2  # frame 4 and frame 25
    assert by[(1, 1, 1.0)]["false_green_events"] == 1  # the band hides 0.55, not 0.95
    assert by[(2, 2, 0.0)]["false_green_events"] == 0
    assert by[(2, 2, 0.0)]["time_to_green_median_s"] == pytest.approx(0.1)
    assert by[(3, 4, 0.0)]["time_to_green_median_s"] == pytest.approx(0.2)
    assert by[(2, 3, 1.0)]["false_green_events"] == 0
    assert by[(2, 3, 1.0)]["time_to_green_median_s"] == pytest.approx(0.1)
    assert by[(2, 3, 1.0)]["flicker_per_min"] > by[(2, 2, 0.0)]["flicker_per_min"]
    best = pick_setting(rows)
    assert (best["k"], best["n"], best["margin"]) == (2, 2, 0.0)  # as quick, less flicker


def test_replay_is_the_smoother() -> None:
    assert replay([0.9, 0.9, 0.9, 0.1], 0.5, 2, 3, 0.0) == [A, G, G, A]


def test_a_tie_in_time_to_green_goes_to_fewer_waits_never_green() -> None:
    row = {"false_green_events": 0, "episodes": 5, "time_to_green_median_s": 0.4}
    rows = [
        {**row, "k": 1, "episodes_never_green": 2, "flicker_per_min": 0.5},
        {**row, "k": 2, "episodes_never_green": 0, "flicker_per_min": 1.0},
        {**row, "k": 3, "episodes_never_green": 0, "flicker_per_min": 2.0},
    ]
    assert pick_setting(rows)["k"] == 2


def test_a_folder_without_a_shift_video_is_one_line(tmp_path: Path) -> None:
    from barsalign.monitor.operator import score_shift

    with pytest.raises(BarsalignError, match=r"no clips/shift.mp4 \(render one with"):
        score_shift(tmp_path / "model.onnx", tmp_path)


def test_no_safe_setting_is_none() -> None:
    clip = ScoredClip("c", [0.9, 0.9, 0.9], [0, 0, 0], [0.0, 0.1, 0.2], 0.1)
    assert pick_setting(sweep([clip], 0.5, [(1, 1, 0.0), (2, 2, 0.0)])) is None


def test_smoothing_comes_from_the_card_unless_given() -> None:
    assert resolve_smoothing({}) == {**DEFAULT_SMOOTHING, "source": "default"}
    card = {"smoothing": {"k": 2, "n": 3, "margin": 1.0}}
    assert resolve_smoothing(card) == {"k": 2, "n": 3, "margin": 1.0, "source": "model card"}
    assert resolve_smoothing(card, 4, 5, 0.0)["source"] == "command line"
    assert resolve_smoothing(card, k=3)["k"] == 3
    with pytest.raises(BarsalignError, match="smoothing"):
        resolve_smoothing({"smoothing": {"k": 5, "n": 3, "margin": 0.5}})
