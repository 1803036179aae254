"""`barsalign serve` on live sources that die and come back: a real MJPEG stream (Starlette +
uvicorn in a subprocess, this file run as a script) killed, hung and restarted on the same port;
a camera that is not plugged in. The scorer in-process for the reasons and the watchdog, the
page in Chromium for the seconds an operator sees.

There is no camera on this machine (no /dev/video*, no v4l2loopback without root), so a camera
that vanishes mid-read cannot be made here: the camera tests cover what a missing camera does
(one line at the start, NO SIGNAL and reopening with a growing pause while running), and the
hang and reopen that a camera shares with a stream (`_Reader.frames(stall_s=...)`, `Scorer._run`)
are tested through the stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import pytest
from conftest import wait_for
from test_label_browser import CHROMIUM, FLAGS
from test_monitor import clip, onnx_model  # noqa: F401 - fixtures: the tiny export, the clip
from test_serve import server

from barsalign import cli
from barsalign.inference import load_predictor
from barsalign.monitor.scorer import NO_SIGNAL, FrameHub, Scorer, ServeConfig
from barsalign.monitor.source import camera_index, parse_source

PROJ_ROOT = Path(__file__).resolve().parents[1]


# --- the stream: this file run as a script serves a clip as MJPEG, looped at its frame rate ----


def serve_clip(video: str, port: int) -> None:
    """MJPEG of `video` on http://127.0.0.1:PORT/video.mjpg (GET / answers once it listens).
    GET /hang makes every stream open now stop sending without closing its connection, the way
    a dropped network path does; streams opened after it run normally."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    cap = cv2.VideoCapture(video)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    jpegs = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        jpegs.append(cv2.imencode(".jpg", frame)[1].tobytes())
    generation = [0]

    async def ready(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def hang(request: object) -> PlainTextResponse:
        generation[0] += 1
        return PlainTextResponse("hung")

    async def video(request: object) -> StreamingResponse:
        mine = generation[0]

        async def parts() -> Iterator[bytes]:
            i, next_t = 0, time.monotonic()
            while True:
                if generation[0] != mine:  # hung: the connection stays open, nothing comes
                    await asyncio.sleep(3600)
                jpeg = jpegs[i % len(jpegs)]
                i += 1
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                yield head.encode() + jpeg + b"\r\n"
                next_t += 1.0 / fps
                await asyncio.sleep(max(0.0, next_t - time.monotonic()))

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame")

    routes = [Route("/", ready), Route("/hang", hang), Route("/video.mjpg", video)]
    uvicorn.run(Starlette(routes=routes), host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Stream:
    """The MJPEG server as a subprocess that the test kills and starts again on one port."""

    def __init__(self, video: Path) -> None:
        self.video, self.port = video, free_port()
        self.url = f"http://127.0.0.1:{self.port}/video.mjpg"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start it; returns time.monotonic() when it answers."""
        env = {**os.environ, "PYTHONPATH": str(PROJ_ROOT)}
        cmd = [sys.executable, __file__, str(self.video), str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)

        def up() -> bool:
            assert self.proc.poll() is None, f"the stream server died: {self.proc.stderr.read()}"
            try:
                return get(f"http://127.0.0.1:{self.port}/", timeout=1)[0] == 200
            except OSError:
                return False

        assert wait_for(up, 60, every=0.05), "the stream server did not start"
        return time.monotonic()

    def kill(self) -> float:
        """SIGKILL, as a crashed encoder or a pulled plug; returns when it was sent."""
        assert self.proc is not None
        self.proc.kill()
        t = time.monotonic()
        self.proc.wait()
        return t

    def hang(self) -> float:
        """Every open stream stops sending, its connection left open; returns when."""
        assert get(f"http://127.0.0.1:{self.port}/hang")[0] == 200
        return time.monotonic()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@contextmanager
def stream_of(video: Path) -> Iterator[Stream]:
    stream = Stream(video)
    stream.start()
    try:
        yield stream
    finally:
        stream.stop()


def run_scorer(cfg: ServeConfig) -> Scorer:
    scorer = Scorer(cfg, load_predictor(cfg.model), FrameHub())
    scorer.start()
    return scorer


def readers() -> int:
    return sum(t.name == "barsalign-reader" and t.is_alive() for t in threading.enumerate())


# --- a stream killed, hung and restarted: the scorer in-process ---------------------------------


def test_a_killed_stream_is_no_signal_at_once_and_back_when_it_restarts(
    onnx_model: Path,  # noqa: F811
    clip: Path,  # noqa: F811
) -> None:
    with stream_of(clip) as stream:
        assert parse_source(stream.url) == ("stream", stream.url)
        scorer = run_scorer(ServeConfig(str(onnx_model), stream.url, retry_max_s=1.0))
        try:
            assert wait_for(scorer.signal, 30), scorer.status()["reason"]
            gone = stream.kill()
            assert wait_for(lambda: scorer.status()["state"] == NO_SIGNAL, 2.0)
            assert time.monotonic() - gone < 2.0
            assert f"stream {stream.url} stopped giving frames" in scorer.status()["reason"]
            # reopened meanwhile: refused, a pause of at most retry_max_s between tries
            assert wait_for(lambda: "could not be opened" in scorer.status()["reason"], 3.0)
            scored = scorer.status()["frames_scored"]
            back = stream.start()
            assert wait_for(scorer.signal, 1.0 + 3.0), "back without a restart of the scorer"
            assert time.monotonic() - back < 4.0
            assert wait_for(lambda: scorer.status()["frames_scored"] > scored + 5, 5.0)
            kinds = [e["kind"] for e in scorer.status()["events"]]
            assert kinds.count("signal") == 2 and kinds.count(NO_SIGNAL) == 1, kinds
            assert wait_for(lambda: readers() == 1, 5.0), "the dead reader has ended"
        finally:
            scorer.stop()


def test_a_hung_stream_is_given_up_by_the_watchdog_and_reopened(
    onnx_model: Path,  # noqa: F811
    clip: Path,  # noqa: F811
) -> None:
    """The connection stays open and nothing comes (a dropped network path): FFmpeg's own read
    timeout is set far beyond the test, so only the watchdog can end the read and reopen."""
    cfg = ServeConfig(str(onnx_model), "", timeout_ms=60_000, stall_s=1.5, retry_max_s=1.0)
    with stream_of(clip) as stream:
        scorer = run_scorer(ServeConfig(**{**cfg.__dict__, "source": stream.url}))
        try:
            assert wait_for(scorer.signal, 30), scorer.status()["reason"]
            hung = stream.hang()
            assert wait_for(lambda: scorer.status()["state"] == NO_SIGNAL, 2.0)
            assert time.monotonic() - hung < 2.0
            # the watchdog gives up on the hung read; a new connection gets frames again
            assert wait_for(scorer.signal, 1.5 + 1.0 + 3.0), "reopened by the watchdog"
            assert time.monotonic() - hung < 6.0
            reasons = [e["note"] for e in scorer.status()["events"] if e["kind"] == NO_SIGNAL]
            assert reasons == [f"stream {stream.url} sent no frame for 1.5 s"]
            # the abandoned reader still waits on its read: it holds its capture, nobody else
            assert readers() == 2
        finally:
            scorer.stop()


# --- a camera that is not there: the same reader, the same reopening ----------------------------


def test_a_camera_is_an_index_or_a_dev_path_opened_by_its_index() -> None:
    assert parse_source("0") == ("camera", 0)
    assert parse_source("/dev/video9") == ("camera", "/dev/video9")
    by_id = "/dev/v4l/by-id/usb-Vendor_Cam-video-index0"
    assert parse_source(by_id) == ("camera", by_id)
    assert camera_index(3) == 3
    assert not Path("/dev/video9").exists(), "this test needs /dev/video9 to be absent"
    assert camera_index("/dev/video9") is None and camera_index(by_id) is None


@pytest.mark.parametrize("source", ["9", "/dev/video9"])
def test_serve_on_a_camera_that_is_not_plugged_in_is_one_line(
    onnx_model: Path,  # noqa: F811
    capsys: pytest.CaptureFixture,
    source: str,
) -> None:
    capsys.readouterr()
    rc = cli.main(["serve", "--model", str(onnx_model), "--source", source, "--port", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    want = f"camera {source} could not be opened: is a camera plugged in there?"
    assert rc == 2 and err == [f"barsalign serve: error: {want}"], err


def test_a_camera_gone_while_serving_is_no_signal_and_reopened_with_a_growing_pause(
    onnx_model: Path,  # noqa: F811
    capfd: pytest.CaptureFixture,
) -> None:
    """The scorer's side of an unplugged camera: it stays up, says which camera is gone, logs it
    once and keeps trying it (each try puts a fresh NO SIGNAL picture out), pausing longer each
    time up to retry_max_s, through the same `Scorer._run` as the stream above."""
    cfg = ServeConfig(str(onnx_model), "/dev/video9", retry_s=0.1, retry_max_s=0.8)
    hub = FrameHub()
    scorer = Scorer(cfg, load_predictor(cfg.model), hub)
    tries: list[float] = []
    scorer.start()
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.0:
            seq = hub.latest()[0]
            if seq > len(tries):
                tries.extend([time.monotonic()] * (seq - len(tries)))
            time.sleep(0.01)
        status = scorer.status()
    finally:
        scorer.stop()
    assert status["state"] == NO_SIGNAL and not status["signal"]
    assert (
        status["reason"] == "camera /dev/video9 could not be opened: is a camera plugged in there?"
    )
    assert [e["kind"] for e in status["events"]] == [NO_SIGNAL]
    pauses = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    # 0.1, 0.2, 0.4, 0.8, 0.8, ...: about 7 tries in 4 s, never a pause much over 0.8 s
    assert 5 <= len(tries) <= 10, tries
    assert pauses[0] < pauses[2] and max(pauses) < 0.8 + 0.5, pauses
    err = capfd.readouterr().err
    assert err.count("barsalign serve: no signal: camera /dev/video9") == 1, err


# --- the page in Chromium: what the operator sees when the stream goes and comes back ----------


@pytest.mark.slow
def test_the_page_shows_no_signal_within_2_s_of_a_stream_dying_and_recovers(
    onnx_model: Path,  # noqa: F811
    clip: Path,  # noqa: F811
) -> None:
    """`barsalign serve --source http://...` in a subprocess, the stream killed and restarted
    three times and hung once, one Chromium page watching; the server is never restarted.
    Prints the seconds (run with -s): from the kill (or hang) to NO SIGNAL on the page, and from
    the stream answering again to the picture back on the page."""
    from playwright.sync_api import sync_playwright

    state = "() => document.querySelector('#screen').dataset.state"
    live = f"() => ['aligned', 'not_aligned', 'uncertain'].includes(({state})())"
    with (
        stream_of(clip) as stream,
        server("--model", str(onnx_model), "--source", stream.url) as (base, proc, errors),
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(base, wait_until="load")
        page.wait_for_function(live, timeout=30_000, polling=20)
        lost, back = [], []
        for how in ("kill", "kill", "kill", "hang"):
            gone = stream.kill() if how == "kill" else stream.hang()
            page.wait_for_function(f"() => ({state})() === 'no_signal'", timeout=2_000, polling=20)
            lost.append(time.monotonic() - gone)
            assert page.locator("#nosignal").is_visible()
            assert "NO SIGNAL" in page.locator("#nosignal").inner_text()
            if how == "kill":
                time.sleep(1.0)  # down a while: the server's tries are refused meanwhile
                up = stream.start()
            else:
                up = gone
            page.wait_for_function(live, timeout=8_000, polling=20)
            back.append(time.monotonic() - up)
            assert not page.locator("#nosignal").is_visible()
            # frames flow again: the frame number on the page moves on
            shown = page.locator("#last").inner_text()
            page.wait_for_function(
                f"() => document.querySelector('#last').textContent !== {json.dumps(shown)}",
                timeout=3_000,
            )
            assert proc.poll() is None, "the same server throughout"
        events = json.loads(get(base + "status")[1])["events"]
        browser.close()
    print(
        f"\nstream source: NO SIGNAL on the page {', '.join(f'{s:.2f}' for s in lost)} s after "
        f"the kill/hang (median {statistics.median(lost[:3]):.2f} s over the kills); picture back "
        f"{', '.join(f'{s:.2f}' for s in back)} s after the stream answered again (median "
        f"{statistics.median(back[:3]):.2f} s over the restarts), after the hang "
        f"{back[3]:.2f} s"
    )
    assert max(lost) < 2.0
    kinds = [e["kind"] for e in events]
    assert kinds.count(NO_SIGNAL) == 4 and kinds.count("signal") == 5, kinds
    assert not [e for e in errors if "Traceback" in e], errors


if __name__ == "__main__":  # the stream server: python tests/test_serve_sources.py CLIP PORT
    serve_clip(sys.argv[1], int(sys.argv[2]))
