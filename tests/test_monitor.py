"""The monitor: smoothing on scripted scores, real runs over clips and streams, bad sources."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from conftest import export_untrained

from barsalign import cli, export, inference
from barsalign.errors import BarsalignError
from barsalign.monitor import (
    ALIGNED,
    NOT_ALIGNED,
    UNCERTAIN,
    MonitorConfig,
    MonitorStats,
    Overlay,
    Smoother,
    format_stats,
    frame_problem,
    run_monitor,
)
from barsalign.monitor.source import _Reader

A, N, U = ALIGNED, NOT_ALIGNED, UNCERTAIN


# --- smoothing: a pure function of the score sequence -------------------------------------


def states(smoother: Smoother, scores: list[float]) -> list[str]:
    return [smoother.update(s) for s in scores]


def test_never_green_before_k_aligned_frames_in_a_row() -> None:
    s = Smoother(0.5, k=3, n=3, margin=0.0)
    assert states(s, [0.9, 0.9, 0.9, 0.9]) == [U, U, A, A]
    assert states(s, [0.1]) == [U]  # one bad frame: green is gone at once
    assert states(s, [0.9, 0.9, 0.9]) == [U, U, A]  # and needs k in a row again


def test_k_of_n_tolerates_one_flicker_while_bars_roll_in() -> None:
    rolling_in = [0.05, 0.1, 0.08, 0.7, 0.06, 0.1, 0.04]  # one spurious high score
    s = Smoother(0.5, k=3, n=4, margin=0.0)
    assert states(s, rolling_in) == [U, U, N, U, N, N, N]
    s = Smoother(0.5, k=3, n=4, margin=0.0)
    # aligned with one dip: the dip is never shown green, the rest is
    assert states(s, [0.9, 0.9, 0.9, 0.2, 0.9, 0.9]) == [U, U, A, U, A, A]


def test_scores_near_the_threshold_are_amber() -> None:
    s = Smoother(0.5, k=1, n=1, margin=0.5)  # band: logits within 0.5 of 0, i.e. 0.378..0.622
    assert states(s, [0.6, 0.4, 0.63, 0.37, 0.99, 0.01]) == [U, U, A, N, A, N]
    s = Smoother(0.97, k=1, n=1, margin=0.5)  # the same band in logits at a high threshold
    assert states(s, [0.96, 0.975, 0.99, 0.9]) == [U, U, A, N]


def test_reset_forgets_the_past() -> None:
    s = Smoother(0.5, k=2, n=2, margin=0.0)
    assert states(s, [0.9, 0.9]) == [U, A]
    s.reset()
    assert states(s, [0.9]) == [U]


def test_smoother_rejects_bad_parameters() -> None:
    with pytest.raises(BarsalignError, match="1 <= k <= n"):
        Smoother(0.5, k=4, n=3)
    with pytest.raises(BarsalignError, match="threshold"):
        Smoother(1.0)
    with pytest.raises(BarsalignError, match="threshold"):
        Smoother(0.0)
    with pytest.raises(BarsalignError, match="margin must be >= 0"):
        Smoother(0.5, margin=-0.1)


def test_the_defaults_are_3_of_the_last_4() -> None:
    # the third aligned frame turns green; two red frames later, 2 of the last 4 are not enough
    assert states(Smoother(0.5), [0.9, 0.9, 0.9, 0.1, 0.1, 0.9]) == [U, U, A, U, U, U]
    assert states(Smoother(0.5, k=1, n=1), [0.75, 0.6]) == [A, U]  # band: 0.5 logits


def test_the_edges_of_the_band_and_of_the_scores() -> None:
    # a score at the threshold counts as aligned; one exactly `margin` logits off is clear
    assert states(Smoother(0.25, k=1, n=1, margin=0.0), [0.25]) == [A]
    assert states(Smoother(0.5, k=1, n=1, margin=math.log(3.0)), [0.75, 0.1]) == [A, N]
    # certain scores are clipped, never a division by zero
    assert states(Smoother(0.5, k=1, n=1, margin=0.0), [1.0, 0.0]) == [A, N]


def test_overlay_paints_the_border_in_the_state_colour() -> None:
    frame = np.full((120, 160, 3), 128, np.uint8)
    out = Overlay().draw(frame.copy(), ALIGNED, 0.93, 12.0)
    b, g, r = out[1, 80]
    assert g > 200 and r < 100 and b < 100  # green at the edge
    assert (out[60, 80] == 128).all()  # the middle untouched
    red = Overlay().draw(frame.copy(), NOT_ALIGNED, 0.1, 12.0)
    assert red[1, 80, 2] > 200 and red[1, 80, 1] < 100
    assert frame_problem(np.zeros((4, 4), np.uint8)) is not None
    assert frame_problem(None) == "decoder returned no image"


# --- real runs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory, synth_small: Path) -> Path:
    pytest.importorskip("barsalign.preprocess", reason="barsalign.preprocess has not landed yet")
    return export_untrained(tmp_path_factory, synth_small, "tiny_run", 64)[1]


@pytest.fixture(scope="module")
def clip(synth_small: Path) -> Path:
    return next((synth_small / "clips").glob("*.mp4"))


def test_every_frame_of_a_file_is_scored_and_written_as_h264(
    onnx_model: Path, clip: Path, tmp_path: Path
) -> None:
    out = tmp_path / "annotated.mp4"
    result = run_monitor(MonitorConfig(str(onnx_model), str(clip), out=str(out)), keep_every=4)
    total = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
    s = result.stats.summary()
    assert s["frames_read"] == s["frames_scored"] == total == len(result.records)
    assert s["frames_dropped"] == 0 and s["frames_unreadable"] == 0
    assert [r["frame"] for r in result.records] == list(range(total))
    assert all(0.0 <= r["score"] <= 1.0 for r in result.records)
    assert s["fps"] > 0 and s["latency_ms_p50"] > 0
    assert len(result.snapshots) == (total + 3) // 4
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = reader.__next__()
    assert meta["codec"].startswith("h264") and "yuv420p" in meta["pix_fmt"]
    assert sum(1 for _ in reader) == total
    assert "frames/s" in format_stats(result.stats)


def test_live_mode_drops_frames_when_slower_than_the_source(onnx_model: Path, clip: Path) -> None:
    # played at 2000 fps the source outruns inference: frames are dropped and counted
    cfg = MonitorConfig(str(onnx_model), str(clip), live=True, pace_fps=2000.0)
    result = run_monitor(cfg)
    s = result.stats.summary()
    assert s["mode"] == "live" and s["frames_dropped"] > 0
    assert s["frames_scored"] + s["frames_dropped"] == s["frames_read"]
    assert result.records[-1]["frame"] == s["frames_read"] - 1, "the newest frame is never dropped"
    # at its own 12 fps nothing is dropped
    s = run_monitor(MonitorConfig(str(onnx_model), str(clip), live=True, max_frames=6)).stats
    assert s.frames_dropped == 0 and s.frames_scored == 6


def test_live_mode_scores_the_newest_waiting_frame(clip: Path) -> None:
    """A consumer that falls behind gets the newest frame next, never an older waiting one."""
    total = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
    stats = MonitorStats(source=str(clip), live=True)
    reader = _Reader(str(clip), stats, True, 0, 0.0, 2000, None)
    reader.pace_fps = 1000.0
    items = reader.frames()
    first = next(items)[0]
    deadline = time.monotonic() + 30
    while stats.frames_read < total and time.monotonic() < deadline:  # busy with `first`
        time.sleep(0.01)
    time.sleep(0.2)  # the reader hands its last frame over
    rest = [index for index, *_ in items]
    assert first < total - 1 and rest == [total - 1]
    assert stats.frames_dropped == total - 2


def _mjpeg(path: Path, frames: int = 8) -> list[int]:
    """A small MJPEG AVI; returns where each frame's JPEG starts in the file."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, (160, 120))
    for i in range(frames):
        writer.write(np.full((120, 160, 3), 20 * i, np.uint8))
    writer.release()
    data = path.read_bytes()
    return [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]


def test_an_undecodable_frame_is_counted_not_skipped(onnx_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "damaged.avi"
    starts = _mjpeg(path)
    data = bytearray(path.read_bytes())
    data[starts[3] : starts[3] + 300] = bytes(300)  # wipe the 4th frame's JPEG header
    path.write_bytes(bytes(data))
    stats = run_monitor(MonitorConfig(str(onnx_model), str(path))).stats
    assert stats.frames_read == 8 and stats.frames_scored == 7
    assert len(stats.unreadable) == 1 and "frame 3 of" in stats.unreadable[0]


def test_a_truncated_file_reports_the_frames_it_lacks(onnx_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.avi"
    starts = _mjpeg(path)
    path.write_bytes(path.read_bytes()[: starts[5] - 8])  # the header still says 8 frames
    stats = run_monitor(MonitorConfig(str(onnx_model), str(path))).stats
    assert stats.frames_scored == 5 and stats.frames_read == 8
    assert [u.split(":")[0] for u in stats.unreadable] == [
        f"frame {i} of {path}" for i in (5, 6, 7)
    ]


@pytest.mark.parametrize(
    "source, message",
    [
        ("missing.mp4", "no such file"),
        ("NOT_A_VIDEO", "could not be opened"),
        ("9", "camera 9 could not be opened"),
        ("rtsp://127.0.0.1:9/stream", "stream rtsp://127.0.0.1:9/stream could not be opened"),
    ],
)
def test_bad_sources_give_one_clear_line(
    onnx_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, source: str, message: str
) -> None:
    if source == "NOT_A_VIDEO":
        source = str(tmp_path / "notes.mp4")
        Path(source).write_text("not a video\n")
    capsys.readouterr()
    rc = cli.main(["monitor", "--model", str(onnx_model), "--source", source])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_a_model_whose_card_does_not_match_is_refused(
    onnx_model: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(onnx_model, model)
    card = json.loads(inference.card_path(onnx_model).read_text())
    card["model_sha256"] = "0" * 64
    inference.card_path(model).write_text(json.dumps(card))
    rc = cli.main(["monitor", "--model", str(model), "--source", str(clip)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "does not match model.onnx" in err[0]
    inference.card_path(model).unlink()
    with pytest.raises(BarsalignError, match="has no model card"):
        run_monitor(MonitorConfig(str(model), str(clip)))


def test_show_without_a_gui_says_so(onnx_model: Path, clip: Path) -> None:
    try:
        cv2.namedWindow("probe")
    except cv2.error:
        with pytest.raises(BarsalignError, match="needs OpenCV with a GUI"):
            run_monitor(MonitorConfig(str(onnx_model), str(clip), show=True))
    else:  # a GUI build: nothing to check here
        cv2.destroyAllWindows()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_dropped_stream_reconnects_then_gives_up(onnx_model: Path, clip: Path) -> None:
    """A real HTTP stream (ffmpeg serving the clip twice, at its own rate): the monitor comes
    back after the first drop, and gives up after the second when nothing answers."""
    url = f"http://127.0.0.1:{_free_port()}/live.ts"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    serve = (
        f"for i in 1 2; do '{ffmpeg}' -hide_banner -loglevel error -re -i '{clip}' "
        "-c:v libx264 -preset ultrafast -tune zerolatency -g 4 -f mpegts -listen 1 "
        f"{url}; done"
    )
    server = subprocess.Popen(["bash", "-c", serve])
    try:
        time.sleep(0.5)
        cfg = MonitorConfig(str(onnx_model), url, reconnects=2, retry_s=0.5, timeout_ms=3000)
        with pytest.raises(BarsalignError, match="did not come back after 2 reconnect") as err:
            run_monitor(cfg)
        frames = int(str(err.value).split("dropped after ")[1].split()[0])
        total = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
        assert frames > total  # frames from both servings: the first reconnect worked
    finally:
        server.kill()
        server.wait()


# --- the operator's metrics against the truth ----------------------------------------------


def test_monitor_truth_prints_the_operator_metrics_and_writes_them(
    onnx_model: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from itertools import groupby

    from barsalign.monitor import clip_truth

    out = tmp_path / "summary.json"
    argv = ["monitor", "--model", str(onnx_model), "--source", str(clip)]
    assert cli.main([*argv, "--truth", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "time to green: median" in printed and "false-green events" in printed
    assert "smoothing: 3 of 4, margin 0.5 logits (default)" in printed
    summary = json.loads(out.read_text())
    op = summary["operator"]
    truth = clip_truth(clip)
    assert op["frames"] == len(truth) == summary["frames_scored"]
    assert op["video_s"] == pytest.approx(len(truth) / summary["source_fps"], abs=1e-3)
    assert op["episodes"] == sum(1 for v, _ in groupby(truth) if v == 1)
    assert 0.0 <= op["amber_share"] <= 1.0 and op["false_green_events"] >= 0

    # your own clip: the truth CSV beside it (all aligned: one episode), else one clear line
    own = tmp_path / "own.mp4"
    shutil.copy(clip, own)
    assert cli.main([*argv[:3], "--source", str(own), "--truth"]) == 2
    assert "own.mp4 has no truth: put own.csv" in capsys.readouterr().err
    rows = "".join(f"{i},1\n" for i in range(len(truth)))
    (tmp_path / "own.csv").write_text("frame,aligned\n" + rows)
    assert cli.main([*argv[:3], "--source", str(own), "--truth", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["operator"]["episodes"] == 1
    bad = tmp_path / "short.csv"
    bad.write_text("frame,aligned\n0,1\n")
    capsys.readouterr()
    assert cli.main([*argv, "--truth", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and f"clip has {len(truth)}" in err[0]


def test_the_monitor_takes_the_smoothing_on_the_card(
    onnx_model: Path, clip: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(onnx_model, model)
    shutil.copy(inference.card_path(onnx_model), inference.card_path(model))
    export.write_smoothing(model, {"k": 1, "n": 2, "margin": 0.0, "chosen_on": "test"})
    result = run_monitor(MonitorConfig(str(model), str(clip), max_frames=3))
    assert result.smoothing == {"k": 1, "n": 2, "margin": 0.0, "source": "model card"}
    result = run_monitor(MonitorConfig(str(model), str(clip), max_frames=3, k=2, n=2, margin=1))
    assert result.smoothing["source"] == "command line" and result.smoothing["k"] == 2
    with pytest.raises(BarsalignError, match="smoothing"):
        export.write_smoothing(model, {"k": 3, "n": 2, "margin": 0.0})
