"""Issue 21's hostile inputs: nothing lost, nothing silently wrong, one line instead of a trace.

Real files and real commands (`barsalign.cli.main`). Read-only folders are made immutable
(`chattr +i`) when the tests run as root, as in CI, where permission bits do not stop root;
otherwise a plain `chmod`. Each test names the issue's case it keeps fixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from barsalign import export, inference
from barsalign.cli import main
from barsalign.labelstore import LabelStore, class_file, read_class_file

SIZE = 32  # the tiny models' input side: the tests check the plumbing, not the model's skill


# --- helpers and fixtures ------------------------------------------------------------------
def write_frame(path: Path, seed: int = 0, size: tuple[int, int] = (96, 64)) -> Path:
    """A real image file (JPEG or PNG by suffix) of random pixels, `size` = (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes), links not followed."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> str:
    """The command's stderr: exactly one line, holding every needle."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def _can_write(folder: Path) -> bool:
    try:
        (folder / ".probe").write_bytes(b"")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` made read-only for the block (immutable as root, chmod otherwise)."""
    root = os.geteuid() == 0
    if root:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    else:
        folder.chmod(0o555)
        made = True
    try:
        if not made or _can_write(folder):
            pytest.skip(f"cannot make {folder} read-only on this file system")
        yield folder
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        else:
            folder.chmod(0o755)


@pytest.fixture(scope="session")
def parity_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("parity")
    for i in range(4):
        write_frame(d / ("aligned" if i % 2 else "not_aligned") / f"img_{i:05d}.png", i)
    return d


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained resnet18 checkpoint at 32 px with its preprocessing stored."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    return export.untrained_checkpoint(
        run / "checkpoints" / "best.ckpt", backbone="resnet18", image_size=SIZE
    )


@pytest.fixture(scope="session")
def onnx_model(tiny_ckpt: Path, parity_dir: Path) -> Path:
    cfg = export.ExportConfig(
        checkpoint=str(tiny_ckpt),
        out_dir=str(tiny_ckpt.parent.parent / "export"),
        formats=("onnx",),
        parity_data=str(parity_dir),
        parity_frames=4,
        threshold=0.5,
    )
    return Path(export.export_checkpoint(cfg)["formats"]["onnx"]["path"])


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    """A 6-frame H.264 MP4, 96x64."""
    import imageio_ffmpeg

    path = tmp_path / "v.mp4"
    gen = imageio_ffmpeg.write_frames(str(path), (96, 64), fps=12, macro_block_size=1)
    gen.send(None)
    for i in range(6):
        gen.send(np.full((64, 96, 3), 30 * i, np.uint8))
    gen.close()
    return path


# --- data loss -----------------------------------------------------------------------------
def test_1_export_into_the_imported_folder_keeps_every_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rt = tmp_path / "rt"
    write_frame(rt / "aligned" / "img_00001.jpg", 1)
    write_frame(rt / "not_aligned" / "img_00002.jpg", 2)
    before = snapshot(rt)
    assert main(["labels", "import", str(rt), "--to", str(tmp_path / "lab")]) == 0
    capsys.readouterr()
    assert main(["labels", "export", str(tmp_path / "lab"), "--to", str(rt)]) == 2
    one_line_error(capsys, "img_00001.jpg", "labelled frame")
    assert not any(p.is_symlink() for p in rt.rglob("*"))
    assert snapshot(rt) == before
    out = tmp_path / "out"
    for _ in range(2):  # into another folder it works, and a second export replaces its links
        assert main(["labels", "export", str(tmp_path / "lab"), "--to", str(out)]) == 0
    link = out / "aligned" / "img_00001.jpg"
    assert link.is_symlink() and link.read_bytes() == before["aligned/img_00001.jpg"]


def test_2_a_store_on_the_plant_class_files_imports_them(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    plant = {
        "aligned": ["/plant/img_00001.jpg", "/plant/img_00002.jpg"],
        "not_aligned": ["/plant/img_00003.jpg"],
        "skipped": ["/plant/img_00004.jpg"],
    }
    for cls, paths in plant.items():
        class_file(seed, cls).write_text("".join(p + "\n" for p in paths))
    (tmp_path / "one.csv").write_text("path,label\n/plant/img_00005.jpg,not_aligned\n")
    assert main(["labels", "import", str(tmp_path / "one.csv"), "--to", str(seed)]) == 0
    want = {**{p: c for c, ps in plant.items() for p in ps}, "/plant/img_00005.jpg": "not_aligned"}
    got = {p: c for c in plant for p in read_class_file(class_file(seed, c))}
    assert got == want
    store = LabelStore(seed)  # reopened: the journal now holds them, the files stay
    assert store.labeled() == want
    imported = [e for e in store.entries() if e["annotator"] == "import"]
    assert len(imported) == 5
    # the store alone, on a fresh copy of the plant's files, empties nothing either
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for cls, paths in plant.items():
        class_file(fresh, cls).write_text("".join(p + "\n" for p in paths))
    LabelStore(fresh)
    assert {c: read_class_file(class_file(fresh, c)) for c in plant} == plant


def test_2_an_undone_label_is_not_brought_back_from_a_stale_class_file(tmp_path: Path) -> None:
    store = LabelStore(tmp_path, annotator="ann")
    store.label("/plant/img_00001.jpg", "aligned")
    store.undo()
    class_file(tmp_path, "aligned").write_text("/plant/img_00001.jpg\n")  # a crash left it
    assert LabelStore(tmp_path).labeled() == {}
    assert read_class_file(class_file(tmp_path, "aligned")) == []


def test_4_monitor_never_writes_over_its_source(
    onnx_model: Path, video: Path, capsys: pytest.CaptureFixture
) -> None:
    before = video.read_bytes()
    same = video.parent / "sub" / ".." / video.name
    (video.parent / "sub").mkdir()
    for out in (video, same):
        rc = main(
            ["monitor", "--model", str(onnx_model), "--source", str(video), "--out", str(out)]
        )
        assert rc == 2
        one_line_error(capsys, "never writes over an input")
        assert video.read_bytes() == before
    card = inference.card_path(onnx_model)
    card_bytes = card.read_bytes()
    rc = main(["monitor", "--model", str(onnx_model), "--source", str(video), "--out", str(card)])
    assert rc == 2 and card.read_bytes() == card_bytes
    one_line_error(capsys, ".mp4")
    out = video.parent / "annotated.mp4"  # a new file: written whole, no temporary left
    rc = main(["monitor", "--model", str(onnx_model), "--source", str(video), "--out", str(out)])
    assert rc == 0 and cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT) == 6
    assert sorted(p.name for p in video.parent.iterdir()) == ["annotated.mp4", "sub", "v.mp4"]


def test_5_preprocess_never_writes_over_its_input(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    d = tmp_path / "D"
    write_frame(d / "a.jpg", 1)
    write_frame(d / "a.png", 2)
    write_frame(d / "b.jpg", 3)
    before = snapshot(d)
    assert main(["preprocess", str(d), str(d), "--size", "16"]) == 2
    one_line_error(capsys, "input folder")
    assert snapshot(d) == before
    assert main(["preprocess", str(d), str(d / "out"), "--size", "16"]) == 2
    one_line_error(capsys, "input folder")
    out = tmp_path / "out"
    assert main(["preprocess", str(d), str(out), "--size", "16"]) == 2
    one_line_error(capsys, "a.jpg", "a.png", "both")
    assert snapshot(d) == before and not out.exists()


def test_6_export_refuses_two_frames_of_one_name(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a = write_frame(tmp_path / "cam1" / "img_00001.jpg", 1)
    b = write_frame(tmp_path / "cam2" / "img_00001.jpg", 2)
    store = LabelStore(tmp_path / "lab")
    store.label(str(a), "aligned")
    store.label(str(b), "aligned")
    out = tmp_path / "export"
    assert main(["labels", "export", str(tmp_path / "lab"), "--to", str(out)]) == 2
    one_line_error(capsys, "cam1/img_00001.jpg", "cam2/img_00001.jpg")
    assert not out.exists() or not any(out.rglob("*.jpg"))
    assert main(["labels", "export", str(tmp_path / "lab"), "--to", str(tmp_path / "l.csv")]) == 0
    assert len((tmp_path / "l.csv").read_text().splitlines()) == 3


def test_7_preprocess_into_a_read_only_folder_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    d = tmp_path / "D"
    write_frame(d / "a.jpg", 1)
    write_frame(d / "sub" / "b.jpg", 2)
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        assert main(["preprocess", str(d), str(out), "--size", "16"]) == 2
        one_line_error(capsys, "cannot write", str(out))
    # writable at the start, but one write fails on the way: the command fails, naming it
    (out / "sub").mkdir()
    with read_only(out / "sub"):
        assert main(["preprocess", str(d), str(out), "--size", "16"]) == 2
        one_line_error(capsys, "cannot write", "b.png")


def _serve_forever_briefly(data: bytes) -> tuple[str, list[int], threading.Event]:
    """An HTTP server that answers each connection with `data` (a few frames of MPEG-TS) and
    hangs up: a stream that comes back after every reconnect and drops again at once. It stops
    after 8 connections, so a monitor that would reconnect forever ends too."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    served: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set() and len(served) < 8:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\n\r\n" + data)
                served.append(1)
        sock.close()

    threading.Thread(target=loop, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}/live.ts", served, stop


def test_a_stream_that_drops_after_every_reconnect_gives_up(
    onnx_model: Path, video: Path, tmp_path: Path
) -> None:
    import imageio_ffmpeg

    from barsalign.errors import BarsalignError
    from barsalign.monitor import MonitorConfig, run_monitor

    ts = tmp_path / "v.ts"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [ffmpeg, "-loglevel", "error", "-i", str(video), "-c:v", "libx264", "-f", "mpegts"]
    subprocess.run([*cmd, str(ts)], check=True)
    url, served, stop = _serve_forever_briefly(ts.read_bytes())
    try:
        cfg = MonitorConfig(str(onnx_model), url, reconnects=2, retry_s=0.1, timeout_ms=2000)
        with pytest.raises(BarsalignError, match="did not come back after 2 reconnect"):
            run_monitor(cfg)
    finally:
        stop.set()
    assert len(served) == 3  # the first connection and two reconnects, though each gave frames


# --- silently wrong ------------------------------------------------------------------------
@pytest.fixture()
def frames(tmp_path: Path) -> Path:
    """A labelled folder of four 96x64 frames."""
    d = tmp_path / "frames"
    for i in range(4):
        write_frame(d / ("aligned" if i % 2 else "not_aligned") / f"img_{i:05d}.png", i)
    return d


def copy_model(onnx_model: Path, to: Path, **card_edits: object) -> Path:
    """The exported model and its card copied into `to`, the card's fields edited."""
    to.mkdir(parents=True, exist_ok=True)
    model = to / onnx_model.name
    model.write_bytes(onnx_model.read_bytes())
    card = json.loads(inference.card_path(onnx_model).read_text())
    for key, value in card_edits.items():
        target, *path = key.split("__")
        node = card
        for part in [target, *path][:-1]:
            node = node[part]
        node[[target, *path][-1]] = value
    inference.card_path(model).write_text(json.dumps(card))
    return model


@pytest.mark.parametrize("value", ["nan", "5", "-1", "0", "1"])
def test_a_threshold_outside_0_1_is_refused(
    value: str, tiny_ckpt: Path, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "p.csv"
    args = ["--model", str(tiny_ckpt), "--threshold", value]
    assert main(["predict", *args, "--source", str(frames), "--out", str(out)]) == 2
    one_line_error(capsys, "--threshold")
    assert main(["evaluate", *args, "--data", str(frames), "--json", str(tmp_path / "e")]) == 2
    one_line_error(capsys, "--threshold")
    assert not out.exists() and not (tmp_path / "e").exists()


@pytest.mark.parametrize("value", [5, float("nan"), "abc", None, 0])
def test_a_card_threshold_outside_0_1_is_refused(
    value: object, onnx_model: Path, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = copy_model(onnx_model, tmp_path / "m", threshold=value)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(model), "--source", str(frames), "--out", str(out)]) == 2
    one_line_error(capsys, "threshold", "card")
    assert not out.exists()


def test_a_frame_far_below_the_model_input_is_unreadable(
    tiny_ckpt: Path, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_frame(frames / "aligned" / "img_00009.png", 9, size=(1, 1))
    write_frame(frames / "aligned" / "img_00010.png", 10, size=(40, 12))  # a 12 px square
    out = tmp_path / "p.csv"
    assert (
        main(["predict", "--model", str(tiny_ckpt), "--source", str(frames), "--out", str(out)])
        == 0
    )
    captured = capsys.readouterr()
    assert "scored 4 of 6 frames" in captured.out and "far below" not in captured.out
    rows = {Path(r.split(",")[0]).name: r.split(",")[2] for r in out.read_text().splitlines()[1:]}
    assert rows["img_00009.png"] == rows["img_00010.png"] == "unreadable"
    assert sum(v != "unreadable" for v in rows.values()) == 4


def test_the_monitor_does_not_score_frames_far_below_the_model_input(
    onnx_model: Path, tmp_path: Path
) -> None:
    import imageio_ffmpeg

    from barsalign.monitor import MonitorConfig, run_monitor

    path = tmp_path / "small.mp4"  # 12x12 frames for a 32 px model
    gen = imageio_ffmpeg.write_frames(str(path), (12, 12), fps=12, macro_block_size=1)
    gen.send(None)
    for i in range(4):
        gen.send(np.full((12, 12, 3), 40 * i, np.uint8))
    gen.close()
    stats = run_monitor(MonitorConfig(str(onnx_model), str(path))).stats
    assert stats.frames_read == 4 and stats.frames_scored == 0
    assert len(stats.unreadable) == 4 and "far below" in stats.unreadable[0]


@pytest.mark.parametrize(
    "edit",
    [
        {"data_config__mean": [0.1, 0.2, 0.3]},
        {"data_config__std": [0, 0, 0]},
        {"preprocess__mode": "grayscale"},
        {"preprocess__roi": [0.0, 0.0, 0.5, 0.5]},
        {"preprocess__mask_left": False},
    ],
)
def test_a_hand_edited_card_preprocessing_is_refused(
    edit: dict, onnx_model: Path, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = copy_model(onnx_model, tmp_path / "m", **edit)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(model), "--source", str(frames), "--out", str(out)]) == 2
    one_line_error(capsys, "model card")
    assert not out.exists()
    props = {p.key for p in __import__("onnx").load(str(onnx_model)).metadata_props}
    assert inference.EMBEDDED_KEY in props  # the unedited model says what the card must say


def test_a_csv_path_with_a_line_break_or_no_image_suffix_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    lab = tmp_path / "lab"
    for text in (
        'path,label\n"/plant/img_00001.jpg\n/plant/img_00002.jpg",aligned\n',
        "path,label\n/plant/notes.txt,aligned\n",
    ):
        (tmp_path / "l.csv").write_text(text)
        assert main(["labels", "import", str(tmp_path / "l.csv"), "--to", str(lab)]) == 2
        one_line_error(capsys, "l.csv:2")
    assert not (lab / "journal.jsonl").exists() or not (lab / "journal.jsonl").read_text()


# --- tracebacks where one line belongs -----------------------------------------------------
def test_output_paths_are_checked_before_scoring(
    tiny_ckpt: Path, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # a missing folder is made; a read-only one is a line before any frame is scored
    out = tmp_path / "nodir" / "p.csv"
    assert (
        main(["predict", "--model", str(tiny_ckpt), "--source", str(frames), "--out", str(out)])
        == 0
    )
    assert out.is_file()
    j = tmp_path / "nodir2" / "e.json"
    assert (
        main(["evaluate", "--model", str(tiny_ckpt), "--data", str(frames), "--json", str(j)]) == 0
    )
    assert json.loads(j.read_text())["n"] == 4
    capsys.readouterr()
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        args = ["--model", str(tiny_ckpt)]
        assert main(["predict", *args, "--source", str(frames), "--out", str(ro / "p.csv")]) == 2
        one_line_error(capsys, "cannot write", "p.csv")
        assert main(["evaluate", *args, "--data", str(frames), "--json", str(ro / "e.json")]) == 2
        err = one_line_error(capsys, "cannot write", "e.json")
        assert "scored" not in err
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tiny_ckpt),
                "--data",
                str(frames),
                "--precision-target",
                "2",
            ]
        )
        == 2
    )
    assert "model " not in capsys.readouterr().out  # refused before scoring
    assert (
        main(
            ["predict", "--model", str(tiny_ckpt), "--source", str(frames), "--out", str(tiny_ckpt)]
        )
        == 2
    )
    one_line_error(capsys, "never writes over an input")


def test_preprocess_size_100000_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_frame(tmp_path / "D" / "a.jpg")
    assert main(["preprocess", str(tmp_path / "D"), str(tmp_path / "o"), "--size", "100000"]) == 2
    one_line_error(capsys, "target_size")
    assert not (tmp_path / "o").exists()


def _ckpt_with(tiny_ckpt: Path, to: Path, **hparams: object) -> Path:
    import torch

    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"] = {**ckpt["hyper_parameters"], **hparams}
    torch.save(ckpt, to)
    return to


def test_a_checkpoint_with_an_unknown_hyperparameter_is_one_line(
    tiny_ckpt: Path, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    odd = _ckpt_with(tiny_ckpt, tmp_path / "odd.ckpt", colour="blue")
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(odd), "--source", str(frames), "--out", str(out)]) == 2
    one_line_error(capsys, "odd.ckpt", "colour")
    assert main(["evaluate", "--model", str(odd), "--data", str(frames), "--json", str(out)]) == 2
    one_line_error(capsys, "odd.ckpt", "colour")
    args = ["--checkpoint", str(odd), "--out", str(tmp_path / "x"), "--data", str(frames)]
    assert main(["export", *args]) == 2
    one_line_error(capsys, "odd.ckpt", "colour")
    bad = _ckpt_with(tiny_ckpt, tmp_path / "bad.ckpt", image_size="large")
    assert main(["predict", "--model", str(bad), "--source", str(frames), "--out", str(out)]) == 2
    one_line_error(capsys, "bad.ckpt")


def test_a_random_bytes_checkpoint_is_one_line_without_torch_advice(
    frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(junk), "--source", str(frames), "--out", str(out)]) == 2
    err = one_line_error(capsys, "junk.ckpt", "not a readable checkpoint")
    assert "weights_only" not in err
    evil = tmp_path / "evil.ckpt"  # a pickle of an arbitrary object: refused the same way
    import torch

    torch.save({"state_dict": {}, "hyper_parameters": {"x": Path("/")}}, evil)
    assert main(["predict", "--model", str(evil), "--source", str(frames), "--out", str(out)]) == 2
    assert "weights_only" not in one_line_error(capsys, "evil.ckpt")


def test_export_of_an_export_is_one_line(
    onnx_model: Path, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--checkpoint", str(onnx_model), "--out", str(tmp_path / "x"), "--data", str(frames)]
    assert main(["export", *args]) == 2
    one_line_error(capsys, "already an export")


def test_export_without_data_asks_for_it_or_says_what_it_uses(
    tiny_ckpt: Path, tmp_path: Path
) -> None:
    """Run with an empty data folder: nothing is rendered, the user is asked for --data."""
    env = {**os.environ, "BARSALIGN_DATA_DIR": str(tmp_path / "data")}
    cmd = ["-m", "barsalign", "export", "--checkpoint", str(tiny_ckpt), "--formats", "onnx"]
    cmd += ["--out", str(tmp_path / "x"), "--threshold", "0.5"]
    res = subprocess.run([sys.executable, *cmd], env=env, capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--data" in res.stderr and not (tmp_path / "data").exists()


def test_a_journal_line_without_annotator_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    line = {"t": 1.0, "seq": 0, "path": "/p/img_00001.jpg", "action": "label", "cls": "aligned"}
    (lab / "journal.jsonl").write_text(json.dumps(line) + "\n")
    (tmp_path / "l.csv").write_text("path,label\n/p/img_00002.jpg,aligned\n")
    assert main(["labels", "import", str(tmp_path / "l.csv"), "--to", str(lab)]) == 2
    one_line_error(capsys, "journal.jsonl:1", "annotator")


def test_a_read_only_labels_folder_is_read_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    frame = write_frame(tmp_path / "f" / "img_00001.jpg")
    lab = tmp_path / "lab"
    LabelStore(lab).label(str(frame), "aligned")
    (lab / ".labels.lock").unlink(missing_ok=True)  # as a folder copied off a share would be
    before = snapshot(lab)
    with read_only(lab):
        store = LabelStore(lab)
        assert store.read_only and store.labeled() == {str(frame): "aligned"}
        assert main(["labels", "export", str(lab), "--to", str(tmp_path / "l.csv")]) == 0
        (tmp_path / "l2.csv").write_text(f"path,label\n{frame},not_aligned\n")
        assert main(["labels", "import", str(tmp_path / "l2.csv"), "--to", str(lab)]) == 2
        one_line_error(capsys, "read-only")
    assert snapshot(lab) == before


def test_a_label_file_that_is_not_utf8_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from barsalign.data import load_labels
    from barsalign.errors import BarsalignError

    bad = tmp_path / "l.csv"
    bad.write_bytes(
        "path,label\n/p/img_00001.jpg,aligned\n/p/ímg_2.jpg,aligned\n".encode("latin-1")
    )
    assert main(["labels", "import", str(bad), "--to", str(tmp_path / "lab")]) == 2
    one_line_error(capsys, "l.csv:3", "UTF-8")
    with pytest.raises(BarsalignError, match=r"l.csv:3: not UTF-8"):
        load_labels(bad)
    d = tmp_path / "classes"
    d.mkdir()
    class_file(d, "aligned").write_bytes("/p/ímg_1.jpg\n".encode("latin-1"))
    with pytest.raises(BarsalignError, match=r"class_aligned.txt:1: not UTF-8"):
        load_labels(d)


def test_monitor_bad_sources_and_outputs_are_one_line(
    onnx_model: Path, video: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base = ["monitor", "--model", str(onnx_model)]
    assert main([*base, "--source", "-1"]) == 2
    one_line_error(capsys, "camera index")
    assert main([*base, "--source", str(tmp_path)]) == 2
    one_line_error(capsys, "is a folder")
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        assert main([*base, "--source", str(video), "--out", str(ro / "a.mp4")]) == 2
        one_line_error(capsys, "cannot write", "a.mp4")
    assert main([*base, "--source", str(video), "--threshold", "nan"]) == 2
    one_line_error(capsys, "--threshold")


# --- properties: random bytes, sizes and label files ---------------------------------------
# Deterministic (derandomize) and without an example database, so CI runs the same cases
# each time and nothing is written into the repo; `--hypothesis-seed` explores further.
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_counter = iter(range(10**9))


def _fresh(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A new path per example (Hypothesis reruns the test body within one test)."""
    return tmp_path_factory.getbasetemp() / f"prop_{next(_counter)}_{name}"


def _encoded(data: st.DataObject) -> bytes:
    """A real JPEG or PNG of a random size, then cut, flipped or left alone."""
    w = data.draw(st.integers(1, 40), label="w")
    h = data.draw(st.integers(1, 40), label="h")
    img = np.full((h, w, 3), data.draw(st.integers(0, 255)), np.uint8)
    ext = data.draw(st.sampled_from([".png", ".jpg", ".bmp"]))
    buf = bytearray(cv2.imencode(ext, img)[1].tobytes())
    how = data.draw(st.sampled_from(["whole", "cut", "flip"]))
    if how == "cut":
        buf = buf[: data.draw(st.integers(0, len(buf)))]
    elif how == "flip" and buf:
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] ^= data.draw(st.integers(1, 255))
    return bytes(buf)


@PROPERTY
@given(data=st.data())
def test_read_image_returns_a_bgr_frame_or_one_error(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from barsalign.errors import BarsalignError
    from barsalign.preprocess import read_image

    raw = _encoded(data) if data.draw(st.booleans()) else data.draw(st.binary(max_size=512))
    path = _fresh(tmp_path_factory, "f.png")
    path.write_bytes(raw)
    try:
        img = read_image(path)
    except BarsalignError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        event("refused")
        return
    event("read")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.size > 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


_VALID_CFG = {
    "target_size": st.integers(8, 40),
    "mode": st.sampled_from(["none", "grayscale", "edges"]),
    "mask_left": st.booleans(),
    "mask_fraction": st.floats(0, 1),
    "dark_threshold": st.floats(0, 255),
    "blur_kernel": st.sampled_from([1, 3, 31]),
    "roi": st.one_of(st.none(), st.just([0.2, 0.1, 0.9, 0.8]), st.just([0.0, 0.0, 0.01, 1.0])),
}


@PROPERTY
@given(
    shape=st.tuples(st.integers(0, 48), st.integers(0, 48), st.sampled_from([0, 1, 3, 3, 4, 5])),
    dtype=st.sampled_from([np.uint8, np.uint8, np.uint16, np.float32, np.int32, np.bool_]),
    cfg=st.fixed_dictionaries({}, optional=_VALID_CFG),
    junk=st.one_of(st.none(), st.tuples(st.sampled_from(sorted(_VALID_CFG)), _json)),
    seed=st.integers(0, 2**16),
)
def test_preprocess_returns_a_square_or_one_error(
    shape: tuple[int, int, int],
    dtype: type,
    cfg: dict,
    junk: tuple[str, object] | None,
    seed: int,
) -> None:
    from barsalign.errors import BarsalignError
    from barsalign.preprocess import PreprocessConfig, preprocess

    h, w, c = shape
    dims = (h, w) if c == 0 else (h, w, c)
    img = (np.random.default_rng(seed).random(dims) * 300).astype(dtype)
    cfg = {"target_size": 16, **cfg, **(dict([junk]) if junk else {})}
    try:
        pcfg = PreprocessConfig(**cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "upscaled": small frames are valid
            out = preprocess(img, pcfg)
    except BarsalignError as err:
        assert "\n" not in str(err)
        event("refused")
        return
    event("processed")
    s = pcfg.target_size
    assert out.dtype == np.uint8 and out.shape == ((s, s, 3) if pcfg.mode == "none" else (s, s))


_line = st.one_of(
    st.from_regex(r"/p/[a-z_]{1,8}\.(jpg|png)", fullmatch=True),
    st.sampled_from(["rel/img_2.png", "x.txt", "{}", " /p/a.jpg", "", "/p/a\nb.jpg"]),
    st.text(max_size=40),
)
_label = st.one_of(st.sampled_from(["aligned", "not_aligned", "1", "0"]), st.text(max_size=12))


@PROPERTY
@given(
    rows=st.lists(st.tuples(_line, _label), max_size=6),
    header=st.sampled_from(["path,label\n", "label,path\n", "", "p,l,x\n"]),
    junk=st.one_of(st.just(b""), st.binary(max_size=24)),
    kind=st.sampled_from(["csv", "class_aligned.txt", "class_skipped.txt", "journal.jsonl"]),
)
def test_label_readers_return_labels_or_one_error(
    rows: list[tuple[str, str]],
    header: str,
    junk: bytes,
    kind: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import csv as csv_module
    import io

    from barsalign.data import load_labels
    from barsalign.errors import BarsalignError

    folder = _fresh(tmp_path_factory, "labels")
    folder.mkdir()
    if kind == "csv":
        buf = io.StringIO()
        csv_module.writer(buf).writerows(rows)
        target = folder / "l.csv"
        target.write_bytes((header + buf.getvalue()).encode("utf-8") + junk)
    elif kind == "journal.jsonl":
        target = folder / kind
        entry = {"annotator": "a", "action": "label", "seq": 0, "t": 0.0}
        lines = [json.dumps({**entry, "path": p, "cls": c}) for p, c in rows]
        target.write_bytes("".join(x + "\n" for x in lines).encode() + junk)
    else:
        target = folder / kind
        target.write_bytes("".join(p + "\n" for p, _ in rows).encode("utf-8") + junk)
    readers = [
        lambda: load_labels(target if kind == "csv" else folder),
        lambda: LabelStore(folder).labeled(),
    ]
    for read in readers:
        try:
            got = read()
        except BarsalignError as err:
            assert "\n" not in str(err)
            event("refused")
            continue
        event("read")
        if isinstance(got, dict):
            assert all(isinstance(k, str) and "\n" not in k for k in got)
        else:
            assert got and all(it.label in (0, 1) and isinstance(it.path, Path) for it in got)


@PROPERTY
@given(
    key=st.sampled_from(
        [
            "threshold",
            "image_size",
            "card_version",
            "model_file",
            "format",
            "model_sha256",
            "backbone",
            "metrics",
            "preprocess",
            "data_config",
            "preprocess__target_size",
            "preprocess__mode",
            "preprocess__roi",
            "data_config__mean",
            "data_config__std",
        ]
    ),
    value=st.one_of(st.floats(0, 1), _json),
    how=st.sampled_from(["keep", "edit", "edit", "drop", "raw"]),
    raw=st.binary(max_size=64),
)
def test_the_card_loader_returns_a_checked_card_or_one_error(
    key: str,
    value: object,
    how: str,
    raw: bytes,
    onnx_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from barsalign.errors import BarsalignError

    folder = _fresh(tmp_path_factory, "card")
    model = copy_model(onnx_model, folder)
    card = json.loads(inference.card_path(model).read_text())
    *parents, leaf = key.split("__")
    node = card
    for part in parents:
        node = node[part]
    if how == "drop":
        node.pop(leaf, None)
    elif how == "edit":
        node[leaf] = value
    text = raw if how == "raw" else json.dumps(card).encode()
    inference.card_path(model).write_bytes(text)
    try:
        got = inference.read_card(model)
    except BarsalignError as err:
        assert "\n" not in str(err)
        event("refused")
        return
    event("accepted")
    assert 0.0 < got["threshold"] < 1.0
    assert got["_preprocess_cfg"].target_size == got["image_size"]


def test_3_a_failed_training_leaves_the_earlier_run_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    kept = {run / "checkpoints" / "best.ckpt": b"best", run / "config.yaml": b"old: 1\n"}
    for path, data in kept.items():
        path.write_bytes(data)
    missing = str(tmp_path / "missing.csv")
    assert main(["train", "--data", missing, "--out", str(run), "--overwrite"]) == 2
    assert "missing.csv" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["train", "--data", str(empty), "--weights", "random", "--out", str(run)]
    assert main([*args, "--overwrite"]) == 2  # the labels fail after the model is built
    assert "no labelled frames" in capsys.readouterr().err
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds a run: pass --overwrite" in err and "\n" not in err
    assert all(path.read_bytes() == data for path, data in kept.items())


def test_training_on_one_class_is_refused_naming_the_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    one = tmp_path / "one" / "aligned"
    one.mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(one / f"f{i}.png"), np.full((40, 40, 3), 20 * i, np.uint8))
    args = ["train", "--data", str(one.parent), "--val-data", str(one.parent), "--weights"]
    assert main([*args, "random", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs frames of both classes, it has 6 aligned and 0 not aligned" in err
    assert "\n" not in err and not (tmp_path / "run").exists()


def test_a_profile_field_of_the_wrong_type_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for field, value in (("epochs", '"three"'), ("lr", "fast"), ("overwrite", "maybe")):
        profile = tmp_path / f"{field}.yaml"
        profile.write_text(f"{field}: {value}\n")
        assert main(["train", "--profile", str(profile)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"barsalign train: error: {field} must be") and "\n" not in err
