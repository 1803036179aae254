"""Labeler: keys, undo, resume, index range, order, unreadable frames (its conversions between
label formats: tests/test_labels.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from barsalign.errors import BarsalignError
from barsalign.labeler import LabelConfig, Labeler, order_frames
from barsalign.labelstore import LabelStore, class_file, read_class_file


@pytest.fixture()
def frames(tmp_path: Path) -> list[str]:
    d = tmp_path / "pool"
    d.mkdir()
    out = []
    for i in range(1, 11):
        img = np.full((864, 1152, 3), i * 20, np.uint8)
        p = d / f"img_{i:05d}.jpg"
        cv2.imwrite(str(p), img)
        out.append(str(p))
    (d / "img_00011.jpg").write_bytes(b"not a jpeg")
    return out + [str(d / "img_00011.jpg")]


def test_keys_undo_resume(tmp_path: Path, frames: list[str]) -> None:
    store = LabelStore(tmp_path / "labels", annotator="t")
    lab = Labeler(frames, store, start=2, end=11)
    box = lab.show()
    assert box is not None and lab._w["img"].value[:2] == b"\xff\xd8"
    assert lab.current == frames[1]
    assert lab.press("ArrowRight") == "aligned"
    assert lab.press("ArrowLeft") == "not_aligned"
    assert lab.press("ArrowDown") == "skipped"
    assert lab.press("u") == "undo"
    assert lab.current == frames[3]
    assert store.labeled() == {frames[1]: "aligned", frames[2]: "not_aligned"}
    assert lab.press("Escape") == "stop" and lab.press("ArrowRight") is None
    lab2 = Labeler(frames, LabelStore(tmp_path / "labels", annotator="t"), start=2, end=11)
    assert lab2.current == frames[3]  # resume: only the rest
    for _ in range(7):
        lab2.press("ArrowRight")
    assert lab2.current is None
    labels = LabelStore(tmp_path / "labels").labeled()
    assert labels[frames[10]] == "unreadable"  # shown as such, recorded, skipped
    assert frames[0] not in labels  # outside the index range
    assert read_class_file(class_file(tmp_path / "labels", "unreadable")) == [frames[10]]


def test_orders(frames: list[str]) -> None:
    assert order_frames(frames[::-1], "index")[0] == frames
    assert order_frames(frames, "index_desc")[0] == frames[::-1]
    r1, r2 = order_frames(frames, "random", 3)[0], order_frames(frames, "random", 3)[0]
    assert r1 == r2 and sorted(r1) == sorted(frames) and r1 != frames
    scores = [i / 10 for i in range(11)]
    ordered, s = order_frames(frames, "uncertain", score=lambda ps: scores)
    assert ordered[0] == frames[5] and s[frames[5]] == 0.5


def _suspects_csv(path: Path, rows: list[tuple[int, str, float, bool]]) -> Path:
    """A suspects file as `barsalign suspects` writes it (rank, path, score, suspect, ...)."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "path", "label", "score", "label_quality", "suspect"])
        for rank, p, score, flagged in rows:
            w.writerow([rank, p, "aligned", score, score, flagged])
    return path


def test_order_suspect(frames: list[str]) -> None:
    suspects = [(frames[6], 0.02), ("/elsewhere/img_00099.jpg", 0.01), (frames[2], 0.1)]
    ordered, scores = order_frames(frames[::-1], "suspect", suspects=suspects)
    assert ordered[:2] == [frames[6], frames[2]]  # rank order; a frame not offered is left out
    assert ordered[2:] == [p for p in frames if p not in (frames[6], frames[2])]  # then by index
    assert scores == {frames[6]: 0.02, frames[2]: 0.1}
    with pytest.raises(BarsalignError, match="needs a suspects file"):
        order_frames(frames, "suspect")


def test_labeler_relabels_suspects_first(tmp_path: Path, frames: list[str]) -> None:
    first = LabelStore(tmp_path / "labels", annotator="first")
    for p in frames[:9]:
        first.label(p, "aligned")
    file = _suspects_csv(
        tmp_path / "suspects.csv",
        [(1, frames[6], 0.02, True), (2, frames[2], 0.1, True), (3, frames[4], 0.4, False)],
    )
    lab = Labeler(
        frames, LabelStore(tmp_path / "labels", annotator="me"), "suspect", suspects_file=file
    )
    # the flagged suspects first although labelled, then the frames without a label
    assert lab.queue == [frames[6], frames[2], frames[9], frames[10]]
    lab.show()
    assert "0.02" in lab._w["guess"].value  # the out-of-fold score is shown beside the frame
    assert lab.press("ArrowLeft") == "not_aligned"  # one key relabels
    assert read_class_file(class_file(tmp_path / "labels", "not_aligned")) == [frames[6]]
    assert frames[6] not in read_class_file(class_file(tmp_path / "labels", "aligned"))
    again = Labeler(
        frames, LabelStore(tmp_path / "labels", annotator="me"), "suspect", suspects_file=file
    )
    assert again.queue[0] == frames[2]  # reviewed since the file was written: not again


def test_labeler_suspects_file_errors(tmp_path: Path, frames: list[str]) -> None:
    store = LabelStore(tmp_path / "labels")
    bad = {
        "missing.csv": (None, "does not exist: write it with `barsalign suspects"),
        "labels.csv": ("path,label\n/a/img_00001.jpg,aligned\n", "not a suspects file"),
        "scoreless.csv": (
            "rank,path,score,suspect\n1,/a/img_00001.jpg,0.1,True\n2,/a/img_00002.jpg,x,True\n",
            r"scoreless.csv:3: rank and score must be numbers",
        ),
        "flagless.csv": (
            "rank,path,score,suspect\n1,/a/img_00001.jpg,0.1,yes\n",
            r"flagless.csv:2: needs a path, a score and suspect True/False",
        ),
    }
    for name, (text, message) in bad.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(BarsalignError, match=message) as err:
            Labeler(frames, store, "suspect", suspects_file=tmp_path / name)
        assert "\n" not in str(err.value) and name in str(err.value)
    with pytest.raises(BarsalignError, match="needs suspects_file"):
        LabelConfig(order="suspect")
