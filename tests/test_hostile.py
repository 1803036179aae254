"""Issue 21's hostile inputs: nothing lost, nothing silently wrong, one line instead of a trace.

Real files and real commands (`barsalign.cli.main`). Read-only folders are made immutable
(`chattr +i`) when the tests run as root, as in CI, where permission bits do not stop root;
otherwise a plain `chmod`. Each test names the issue's case it keeps fixed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from barsalign import export
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
    card = export.card_path(onnx_model)
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
