"""LabelStore: journal, fsync, undo across restarts, prefix rewrite, crashes, two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from barsalign.errors import BarsalignError
from barsalign.labelstore import (
    LabelStore,
    by_annotator,
    class_file,
    cohen_kappa,
    in_range,
    read_class_file,
)

PATHS = [f"/data/pool/img_{i:05d}.jpg" for i in range(1, 41)]


def test_label_undo_resume(tmp_path: Path) -> None:
    s = LabelStore(tmp_path, annotator="ann")
    s.label(PATHS[0], "aligned")
    s.label(PATHS[1], "not_aligned")
    s.label(PATHS[2], "skipped")
    assert read_class_file(class_file(tmp_path, "aligned")) == [PATHS[0]]
    assert read_class_file(class_file(tmp_path, "not_aligned")) == [PATHS[1]]
    assert read_class_file(class_file(tmp_path, "skipped")) == [PATHS[2]]
    s2 = LabelStore(tmp_path, annotator="ann")  # restart: undo reads the journal
    assert s2.undo() == PATHS[2]
    assert s2.undo() == PATHS[1]
    assert s2.labeled() == {PATHS[0]: "aligned"}
    assert read_class_file(class_file(tmp_path, "not_aligned")) == []
    assert s2.pending(PATHS[:4]) == PATHS[1:4]
    lines = [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [x["action"] for x in lines] == ["label"] * 3 + ["undo"] * 2
    assert {"t", "annotator", "path", "action", "cls"} <= set(lines[0])


def test_class_files_rebuilt_from_journal(tmp_path: Path) -> None:
    s = LabelStore(tmp_path)
    for p in PATHS[:5]:
        s.label(p, "aligned")
    class_file(tmp_path, "aligned").write_text("")  # lost class file
    LabelStore(tmp_path)
    assert read_class_file(class_file(tmp_path, "aligned")) == PATHS[:5]


def test_prefix_rewrite(tmp_path: Path) -> None:
    s = LabelStore(tmp_path, local_prefix="/home/me/frames", server_prefix="/srv/frames")
    s.label("/home/me/frames/img_00001.jpg", "aligned")
    assert class_file(tmp_path, "aligned").read_text() == "/srv/frames/img_00001.jpg\n"
    assert s.labeled() == {"/home/me/frames/img_00001.jpg": "aligned"}
    with pytest.raises(BarsalignError, match="local prefix"):
        s.label("/elsewhere/img_00002.jpg", "aligned")


def test_malformed_lines_named(tmp_path: Path) -> None:
    f = tmp_path / "class_aligned.txt"
    f.write_text('/a/img_00001.jpg\n{"oops": 1}\n')
    with pytest.raises(BarsalignError, match=r"class_aligned.txt:2"):
        read_class_file(f)
    (tmp_path / "journal.jsonl").write_text('{"bad json\n{"x": 1}\n')
    with pytest.raises(BarsalignError, match=r"journal.jsonl:1"):
        LabelStore(tmp_path)


def test_range_and_conflicts_and_kappa(tmp_path: Path) -> None:
    assert in_range(PATHS, 3, 5) == PATHS[2:5]
    a = LabelStore(tmp_path, annotator="a")
    b = LabelStore(tmp_path, annotator="b")
    truth = ["aligned", "not_aligned"] * 5
    for p, c in zip(PATHS[:10], truth, strict=True):
        a.label(p, c)
    flip = {0: "not_aligned", 3: "aligned"}
    for i, (p, c) in enumerate(zip(PATHS[:10], truth, strict=True)):
        b.label(p, flip.get(i, c))
    conf = a.conflicts()
    assert sorted(c["path"] for c in conf) == [PATHS[0], PATHS[3]]
    per = by_annotator(a)
    kappa, dis = cohen_kappa(per["a"], per["b"])
    assert kappa == pytest.approx(0.6)
    assert sorted(d[0] for d in dis) == [PATHS[0], PATHS[3]]
    # each frame in exactly one class file
    files = [read_class_file(class_file(tmp_path, c)) for c in ("aligned", "not_aligned")]
    assert sorted(files[0] + files[1]) == sorted(PATHS[:10])


WRITER = """
import sys
from barsalign.labelstore import LabelStore
folder, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = LabelStore(folder, annotator=who)
for i in range(n):
    s.label(f"/pool/{who}/img_{i:05d}.jpg", "aligned" if i % 2 else "not_aligned")
    print(i, flush=True)
"""


def test_two_processes_same_folder(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), w, "150"], stdout=subprocess.DEVNULL
        )
        for w in ("x", "y")
    ]
    assert all(p.wait(120) == 0 for p in procs)
    lines = read_class_file(class_file(tmp_path, "aligned")) + read_class_file(
        class_file(tmp_path, "not_aligned")
    )
    assert len(lines) == 300 and len(set(lines)) == 300
    assert len(LabelStore(tmp_path).labeled()) == 300


@pytest.mark.slow
def test_killed_in_a_loop(tmp_path: Path) -> None:
    """Kill a labelling process at random moments; every label it reported done survives."""
    done: set[int] = set()
    for k in range(8):
        p = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), "k", "100000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.8 + 0.13 * k)
        os.kill(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        done |= {int(x) for x in out.split()}
        s = LabelStore(tmp_path, annotator="k")  # must open cleanly after every kill
        got = s.labeled()
        assert {f"/pool/k/img_{i:05d}.jpg" for i in done} <= set(got)
        files = read_class_file(class_file(tmp_path, "aligned")) + read_class_file(
            class_file(tmp_path, "not_aligned")
        )
        assert sorted(files) == sorted(got)
    assert done


def test_kappa_of_one_shared_class_is_full_agreement() -> None:
    """Both annotators gave every frame the same one class: kappa 1, no disagreement (the
    formula divides by zero there)."""
    same = {p: "aligned" for p in PATHS[:4]}
    assert cohen_kappa(same, dict(same)) == (1.0, [])
    # one annotator's class differs on one frame: agreement 3/4, chance (1/4)(0) + (3/4)(1)
    other = {**same, PATHS[0]: "not_aligned"}
    assert cohen_kappa(same, other) == (pytest.approx(0.0), [(PATHS[0], "aligned", "not_aligned")])
