"""The shift simulation: cycles with per-frame truth, day to night, deterministic by seed."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from barsalign.cli import main
from barsalign.errors import BarsalignError
from barsalign.monitor import clip_truth
from barsalign.synth import load_metadata
from barsalign.synth.geometry import gaps_px
from barsalign.synth.shift import SHIFT_CLIP, ShiftConfig, render_shift, shift_shots

SMALL_SHIFT = ShiftConfig(minutes=0.4, width=192, height=144, idle_s=(2, 4), hold_s=(2, 4))


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _frames(video: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        out.append(frame)


@pytest.fixture(scope="module")
def shift(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_shift(tmp_path_factory.mktemp("shift") / "a", SMALL_SHIFT, workers=1)


def test_truth_has_one_record_per_frame_of_the_video(shift: Path) -> None:
    frames = _frames(shift / SHIFT_CLIP)
    rows = load_metadata(shift)
    assert len(frames) == len(rows) == SMALL_SHIFT.frames == 0.4 * 60 * 5
    assert [r["frame"] for r in rows] == list(range(len(rows)))
    assert clip_truth(shift / SHIFT_CLIP) == [int(r["label"] == "aligned") for r in rows]
    info = json.loads((shift / "shift.json").read_text())
    assert info["fps"] == 5 == cv2.VideoCapture(str(shift / SHIFT_CLIP)).get(cv2.CAP_PROP_FPS)
    assert info["frames"] == len(rows) and info["aligned_frames"] == sum(
        clip_truth(shift / SHIFT_CLIP)
    )


def test_same_seed_same_bytes_whatever_the_workers(shift: Path, tmp_path: Path) -> None:
    b = render_shift(tmp_path / "b", SMALL_SHIFT, workers=2)
    assert _digest(shift) == _digest(b)
    other = ShiftConfig(**{**SMALL_SHIFT.__dict__, "seed": 1})
    c = render_shift(tmp_path / "c", other, workers=2)
    assert _digest(shift)["metadata.jsonl"] != _digest(c)["metadata.jsonl"]


def test_the_phases_carry_the_truth_an_operator_expects(shift: Path) -> None:
    rows = load_metadata(shift)
    by_phase: dict[str, Counter] = {}
    for r in rows:
        by_phase.setdefault(r["phase"], Counter())[r["label"]] += 1
    assert by_phase["idle"] == Counter(not_aligned=by_phase["idle"].total())  # no bars
    assert set(by_phase["held"]) == {"aligned"}
    assert "aligned" not in by_phase.get("waiting", {})
    assert all(r["n_bars"] == 0 for r in rows if r["phase"] == "idle")


def test_still_phases_get_fresh_noise_on_one_drawing(shift: Path) -> None:
    rows = load_metadata(shift)
    frames = _frames(shift / SHIFT_CLIP)
    held = [i for i, r in enumerate(rows) if r["phase"] == "held"][:2]
    a, b = (frames[i].astype(np.int16) for i in held)
    diff = np.abs(a - b)
    assert diff.mean() > 0.1  # new noise on each frame (softened by mp4v), not one picture
    assert diff.mean() < 12 and abs(a.mean() - b.mean()) < 1.5  # on the same scene


def test_a_shift_goes_from_day_to_night_and_mixes_cycle_kinds() -> None:
    shots = list(shift_shots(ShiftConfig(minutes=60)))
    assert sum(s.frames for s in shots) == 18000
    order = {"day": 0, "artificial": 1, "night": 2}
    lights = [order[s.spec.lighting] for s in shots]
    assert lights == sorted(lights) and set(lights) == {0, 1, 2}
    kinds = Counter(s.kind for s in shots if s.phase == "idle")
    assert set(kinds) == {"flush", "short", "hard"}
    hard = [s for s in shots if s.kind == "hard" and s.phase == "waiting"]
    assert all(3.0 - 0.2 <= max(gaps_px(s.spec)) <= 8.0 + 0.2 for s in hard[:5])
    drawings = len(shots)
    assert drawings < 18000 / 10  # still phases are drawn once


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--minutes", "5"], "--minutes: only with --shift"),
        (["--shift", "--look", "top_down"], "--look: not with --shift"),
        (["--shift", "--n-pool", "3"], "--n-pool: not with --shift"),
        (["--shift", "--minutes", "0"], "minutes must be > 0"),
        (["--shift", "--fps", "0"], "fps must lie in 1..60"),
    ],
)
def test_cli_bad_shift_flags_exit_2_with_one_line(
    tmp_path: Path, capsys, argv: list[str], words: str
) -> None:
    assert main(["synth", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err
    assert not (tmp_path / "x").exists()


def test_cli_renders_a_short_shift(tmp_path: Path) -> None:
    out = tmp_path / "shift"
    argv = ["synth", "--shift", "--minutes", "0.1", "--fps", "4", "--size", "160x120"]
    assert main([*argv, "--out", str(out), "--workers", "1"]) == 0
    info = json.loads((out / "shift.json").read_text())
    assert info["frames"] == 24 and info["fps"] == 4
    assert len(_frames(out / SHIFT_CLIP)) == 24


def test_bad_shift_config_is_one_clear_error() -> None:
    with pytest.raises(BarsalignError, match="start must look like"):
        ShiftConfig(start="4pm")
    with pytest.raises(BarsalignError, match="frame size"):
        ShiftConfig(width=10)
