"""Every label format's reader and writer (`barsalign.data.labels`), and that the commands and
figures that read labels (`labels import|export`, `evaluate.labelled_folder`, `eda`) agree."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from barsalign.cli import main
from barsalign.data import (
    load_labels,
    read_class_files,
    read_csv_labels,
    read_folder_labels,
    write_csv_labels,
    write_folder_labels,
)
from barsalign.errors import BarsalignError
from barsalign.evaluation.evaluate import labelled_folder
from barsalign.labelstore import LabelStore, class_file, read_class_file
from barsalign.viz import eda

# name -> (subfolder below the layout's root, label); `other/` is outside the layout
FRAMES = {
    "img_00001.jpg": ("aligned", 1),
    "img_00002.png": ("aligned/day2", 1),
    "img_00003.jpg": ("not_aligned", 0),
    "img_00004.jpg": ("not_aligned/day2/aligned", 1),  # the nearest class-named folder counts
    "img_00005.jpg": ("other", None),
}
TRUTH = {name: lab for name, (_, lab) in FRAMES.items() if lab is not None}


def write_frame(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture()
def layout(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for k, (name, (sub, _)) in enumerate(FRAMES.items()):
        write_frame(root / sub / name, k)
    return root


def by_name(pairs) -> dict[str, int]:
    pairs = list(pairs)
    out = {Path(p).name: int(lab) for p, lab in pairs}
    assert len(out) == len(pairs), "one row per frame"
    return out


def test_folder_to_csv_to_folder_round_trip(layout: Path, tmp_path: Path) -> None:
    truth = TRUTH
    pairs = read_folder_labels(layout)
    assert by_name(pairs) == truth
    # CSV, paths relative to its folder, as a plain csv reader sees it
    table = write_csv_labels(pairs, tmp_path / "csv" / "labels.csv", relative=True)
    rows = list(csv.reader(table.open(newline="")))
    assert rows[0] == ["path", "label"]
    assert {Path(r[0]).name: r[1] for r in rows[1:]} == {
        n: "aligned" if lab else "not_aligned" for n, lab in truth.items()
    }
    assert all(not os.path.isabs(r[0]) and r[0].startswith("../src/") for r in rows[1:])
    back = read_csv_labels(table)
    assert [(p.resolve(), lab) for p, lab in back] == [(p.resolve(), lab) for p, lab in pairs]
    mtime = table.stat().st_mtime_ns
    write_csv_labels(back, table, relative=True)  # the same labels: the file is left alone
    assert table.stat().st_mtime_ns == mtime
    # ... and back into a folder layout, copied, then linked
    for copy, out in ((True, tmp_path / "copied"), (False, tmp_path / "linked")):
        assert write_folder_labels(back, out, copy=copy) == len(truth)
        again = read_folder_labels(out)
        assert by_name(again) == truth
        for p, _ in again:
            assert p.is_symlink() != copy
            src = next(q for q, _ in pairs if q.name == p.name)
            assert p.read_bytes() == src.read_bytes()
    # every reader of labels sees the same frames
    for source in (layout, table, tmp_path / "copied"):
        assert by_name((it.path, it.label) for it in load_labels(source)) == truth


BAD_CSVS = {
    "no header": ("/p/img_00001.jpg,aligned\n", "l.csv: needs a header"),
    "unknown label": ("path,label\n/p/img_00001.jpg,maybe\n", "l.csv:2: label 'maybe'"),
    "one field": ("path,label\n/p/img_00001.jpg,aligned\n/p/img_00002.jpg\n", "l.csv:3:"),
    "not an image": ("path,label\n/p/notes.txt,aligned\n", "l.csv:2: '/p/notes.txt'"),
    "line break": ('path,label\n"/p/img_00001.jpg\n/p/img_2.jpg",aligned\n', "l.csv:2:"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_a_bad_csv_is_one_line_naming_file_and_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text, needle = BAD_CSVS[case]
    bad = tmp_path / "l.csv"
    bad.write_text(text)
    with pytest.raises(BarsalignError) as err:
        read_csv_labels(bad)
    assert needle in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BarsalignError, match="l.csv"):
        load_labels(bad)
    lab = tmp_path / "lab"  # the command says the same line and records nothing
    assert main(["labels", "import", str(bad), "--to", str(lab)]) == 2
    out = capsys.readouterr().err.strip()
    assert out.splitlines() == [f"barsalign labels: error: {err.value}"]
    assert not (lab / "journal.jsonl").exists() or not (lab / "journal.jsonl").read_text()


def test_the_csv_writer_refuses_what_its_reader_would(tmp_path: Path) -> None:
    out = tmp_path / "l.csv"
    with pytest.raises(BarsalignError, match=r"l.csv: cannot write .*control character"):
        write_csv_labels([(Path("/p/img_00001.jpg"), 1), (Path("/p/a\nb.jpg"), 0)], out)
    with pytest.raises(BarsalignError, match="not an image path"):
        write_csv_labels([(Path("/p/notes.txt"), 1)], out)
    assert not out.exists()


def test_class_files_with_prefix_mapping_skipped_and_relative(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    al = [write_frame(frames / "aligned" / f"img_{i:05d}.jpg", i) for i in range(1, 4)]
    na = [write_frame(frames / "not_aligned" / f"img_{i:05d}.jpg", i) for i in range(4, 6)]
    lab = tmp_path / "labels"
    lab.mkdir()
    server = "/srv/plant/frames"
    class_file(lab, "aligned").write_text("".join(f"{server}/aligned/{p.name}\n" for p in al))
    class_file(lab, "not_aligned").write_text(
        f"{server}/not_aligned/{na[0].name}\n../frames/not_aligned/{na[1].name}\n"
    )
    class_file(lab, "skipped").write_text(f"{server}/aligned/{al[0].name}\n")
    pairs = read_class_files(lab, path_map=[(server, str(frames))])
    relative = lab / ".." / "frames" / "not_aligned" / na[1].name  # from the files' folder
    assert pairs == [(al[1], 1), (al[2], 1), (na[0], 0), (relative, 0)]
    items = load_labels(lab, path_map=[(server, str(frames))])
    assert [(it.path, it.label) for it in items] == pairs
    class_file(lab, "aligned").write_text("/p/img_00001.jpg\n\t/p/notes.txt\n")
    with pytest.raises(BarsalignError, match=r"class_aligned.txt:2: not an image path"):
        load_labels(lab)


def test_journal_import_export_round_trip(
    layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    truth = TRUTH
    lab = tmp_path / "lab"
    assert main(["labels", "import", str(layout), "--to", str(lab)]) == 0
    store = LabelStore(lab)
    got = store.labeled()
    assert all(os.path.isabs(p) for p in got), "stored as absolute paths"
    assert {Path(p).name: c for p, c in got.items()} == {
        n: "aligned" if v else "not_aligned" for n, v in truth.items()
    }
    # the store's class files are what the class-file reader reads
    assert by_name(read_class_files(lab)) == truth
    assert sorted(read_class_file(class_file(lab, "aligned"))) == sorted(
        p for p, c in got.items() if c == "aligned"
    )
    # export to a CSV and a folder, import both again: the same labels
    assert main(["labels", "export", str(lab), "--to", str(tmp_path / "l.csv")]) == 0
    assert main(["labels", "export", str(lab), "--to", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    rows = list(csv.reader((tmp_path / "l.csv").open(newline="")))
    assert sorted(rows[1:]) == sorted([p, c] for p, c in got.items())
    for src, name in ((tmp_path / "l.csv", "l2"), (tmp_path / "out", "l3")):
        assert main(["labels", "import", str(src), "--to", str(tmp_path / name)]) == 0
        again = LabelStore(tmp_path / name).labeled()
        assert {Path(p).name: c for p, c in again.items()} == {
            Path(p).name: c for p, c in got.items()
        }
    assert LabelStore(tmp_path / "l2").labeled() == got, "a CSV keeps the very paths"
    assert main(["labels", "import", str(tmp_path / "nothing"), "--to", str(lab)]) == 2
    assert "nothing: no such file or folder" in capsys.readouterr().err


def test_eda_and_evaluation_read_the_layout_as_load_labels_does(
    layout: Path, tmp_path: Path
) -> None:
    names = {1: "aligned", 0: "not_aligned"}
    df = eda.inventory(layout)
    want = {n: names[v] for n, v in TRUTH.items()}
    assert dict(zip(df["file"].map(lambda f: Path(f).name), df["label"], strict=True)) == {
        **want,
        "img_00005.jpg": "unlabelled",
    }
    # a data set's root stands for its example_set/, in evaluation as in training
    root = tmp_path / "set"
    root.mkdir()
    layout.rename(root / "example_set")
    data = labelled_folder(root)
    items = load_labels(root)
    assert data.root == root / "example_set"
    assert [(p, int(v)) for p, v in zip(data.paths, data.labels, strict=True)] == [
        (it.path, it.label) for it in items
    ]
    with pytest.raises(BarsalignError, match="neither an aligned/ nor a not_aligned/"):
        labelled_folder(root / "example_set" / "other")


def test_reading_and_converting_labels_imports_no_torch(tmp_path: Path) -> None:
    probe = (
        "import json, sys\n"
        "import barsalign.data, barsalign.labeler, barsalign.synth, barsalign.viz.eda\n"
        "from barsalign.cli import main\n"
        "main(['labels', 'import', sys.argv[1], '--to', sys.argv[2]])\n"
        "print(json.dumps([m for m in ('torch', 'lightning') if m in sys.modules]))\n"
    )
    src = tmp_path / "l.csv"
    src.write_text("path,label\n/p/img_00001.jpg,aligned\n")
    out = subprocess.run(
        [sys.executable, "-c", probe, str(src), str(tmp_path / "lab")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    from barsalign.data import AlignmentDataModule  # the data module still comes on request

    assert AlignmentDataModule.__module__ == "barsalign.data.datamodule"
