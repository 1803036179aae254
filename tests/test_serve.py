"""`barsalign serve`: a real uvicorn server (a subprocess) on a real ONNX export, fed a rendered
clip; the scorer in-process for the source dying and coming back; the page in Chromium."""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import wait_for
from test_label_browser import CHROMIUM, FLAGS, browser_versions
from test_monitor import clip, onnx_model  # noqa: F401 - fixtures: the tiny export, the clip

from barsalign import cli
from barsalign.inference import load_predictor
from barsalign.monitor.scorer import NO_SIGNAL, FrameHub, Scorer, ServeConfig

PROJ_ROOT = Path(__file__).resolve().parents[1]


def clip_scores(model: Path, video: Path) -> np.ndarray:
    """P(aligned) of every frame of the video, scored apart from the server."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    return load_predictor(model).scores(frames)


@pytest.fixture(scope="module")
def split(onnx_model: Path, clip: Path) -> float:  # noqa: F811
    """A threshold with some of the clip's frames above it and some below (the tiny export is
    untrained, so its scores only differ a little): k=1, n=1, margin 0 shows both colours."""
    scores = np.sort(clip_scores(onnx_model, clip))
    assert scores[-1] - scores[0] > 1e-4, f"the clip's scores do not differ: {scores}"
    mid = len(scores) // 2
    return float((scores[mid - 1] + scores[mid]) / 2)


def live_copy(video: Path, path: Path) -> Path:
    """The video at `path`, written beside it and renamed (never half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.copy(video, tmp)
    os.replace(tmp, path)
    return path


@contextmanager
def server(*args: str) -> Iterator[tuple[str, subprocess.Popen, list[str]]]:
    """`barsalign serve ARGS --port 0` as a subprocess: (its URL, the process, stderr lines)."""
    env = {**os.environ, "PYTHONPATH": str(PROJ_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "barsalign", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    errors: list[str] = []
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: [errors.append(x) for x in proc.stderr], daemon=True).start()
    try:
        try:
            first = lines.get(timeout=90)
        except queue.Empty:
            raise AssertionError(f"the server did not start: {''.join(errors)}") from None
        assert "operator's screen is on http://" in first, first + "".join(errors)
        url = first.split(" on ", 1)[1].strip()
        yield url, proc, errors
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def signal(base: str, errors: list[str], timeout: float = 60) -> dict:
    """The server's status once it shows a picture (fails with what it said otherwise)."""
    status: dict = {}

    def on() -> bool:
        status.update(json.loads(get(base + "status")[2]))
        return status["signal"]

    assert wait_for(on, timeout), f"no picture: {status} {''.join(errors)}"
    return status


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# --- refusals: one line, before anything is served ------------------------------------------


@pytest.mark.parametrize(
    "what, message",
    [
        ("model", "model {dir}/gone.onnx does not exist"),
        ("source", "source {dir}/gone.mp4: no such file"),
        ("not a video", "video file {dir}/notes.mp4 could not be opened"),
        ("remote", "--host 0.0.0.0 serves the screen beyond this machine: pass --allow-remote"),
    ],
)
def test_bad_model_source_or_host_is_one_line(
    onnx_model: Path,  # noqa: F811
    clip: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    what: str,
    message: str,
) -> None:
    (tmp_path / "notes.mp4").write_text("not a video\n")
    model, source, extra = str(onnx_model), str(clip), []
    if what == "model":
        model = str(tmp_path / "gone.onnx")
    elif what == "source":
        source = str(tmp_path / "gone.mp4")
    elif what == "not a video":
        source = str(tmp_path / "notes.mp4")
    else:
        extra = ["--host", "0.0.0.0"]
    capsys.readouterr()
    rc = cli.main(["serve", "--model", model, "--source", source, "--port", "0", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert message.format(dir=tmp_path) in err[0], err


def test_a_remote_host_warns_and_the_token_guards_every_route(
    onnx_model: Path,  # noqa: F811
    clip: Path,  # noqa: F811
) -> None:
    token = "s3cret-42"
    args = ["--model", str(onnx_model), "--source", str(clip), "--loop"]
    with server(*args, "--host", "0.0.0.0", "--allow-remote", "--token", token) as (
        url,
        _,
        errors,
    ):
        base = url.replace("0.0.0.0", "127.0.0.1")
        assert [e for e in errors if "warning" in e] == [
            "barsalign serve: warning: listening on 0.0.0.0, reachable from the network\n"
        ]
        for path in ("", "status", "stream.mjpg", "frame.jpg", "static/serve.js", "nowhere"):
            assert get(base + path)[0] == 401, path
            assert get(base + path + "?token=wrong")[0] == 401, path
        code, headers, body = get(base + f"?token={token}")
        assert code == 200 and b'id="screen"' in body
        cookie = headers["set-cookie"].split(";")[0]
        assert cookie == f"barsalign_token={token}"
        assert get(base + "status", {"Cookie": cookie})[0] == 200
        assert get(base + "static/serve.js", {"X-Barsalign-Token": token})[0] == 200
        assert get(base + "status", {"Authorization": f"Bearer {token}"})[0] == 200
        flagged = urllib.request.Request(base + "flag", method="POST", headers={"Cookie": cookie})
        with urllib.request.urlopen(flagged, timeout=10) as r:
            assert json.load(r)["kind"] == "flag"
        refused = urllib.request.Request(base + "flag", method="POST")
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(refused, timeout=10)


# --- viewers: each gets the newest frame, a slow one never holds the others back --------------


def mjpeg_parts(conn: http.client.HTTPResponse) -> Iterator[int]:
    """The X-Frame-Seq of each part of an MJPEG response, as it arrives."""
    while True:
        line = conn.readline()
        if not line:
            return
        if line.strip() != b"--frame":
            continue
        head = {}
        while (line := conn.readline().strip()) != b"":
            key, value = line.decode().split(":", 1)
            head[key.lower()] = value.strip()
        jpeg = conn.read(int(head["content-length"]))
        assert jpeg[:2] == b"\xff\xd8", "each part is a JPEG"
        yield int(head["x-frame-seq"])


def open_stream(base: str, rcvbuf: int | None = None) -> http.client.HTTPResponse:
    host, port = base.removeprefix("http://").strip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.connect()
    if rcvbuf:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    conn.request("GET", "/stream.mjpg")
    response = conn.getresponse()
    assert response.status == 200
    assert response.headers["content-type"] == "multipart/x-mixed-replace; boundary=frame"
    return response


@pytest.mark.slow
def test_a_slow_viewer_misses_frames_and_holds_nobody_back(
    onnx_model: Path,  # noqa: F811
    clip: Path,  # noqa: F811
) -> None:
    with server("--model", str(onnx_model), "--source", str(clip), "--loop") as (base, _, errors):
        signal(base, errors)
        slow = mjpeg_parts(open_stream(base, rcvbuf=4096))
        first_slow = next(slow)
        fast = mjpeg_parts(open_stream(base))
        seen: list[tuple[float, int]] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.0:  # the slow viewer reads nothing meanwhile
            seen.append((time.monotonic(), next(fast)))
        newest = max(s for _, s in seen)
        after: list[int] = []  # read on until it has the newest frame the fast one saw
        while len(after) < 60 and (not after or after[-1] < newest):
            after.append(next(slow))
        status = json.loads(get(base + "status")[2])
    seqs = [s for _, s in seen]
    # never out of order; the same frame twice only as the keepalive (no new frame in 5 s)
    assert seqs == sorted(seqs), "a viewer never gets an older frame after a newer one"
    # the fast viewer got nearly every frame the scorer made while the slow one stalled
    assert len(seqs) >= 0.8 * (seqs[-1] - seqs[0] + 1) and len(seqs) >= 20, seqs
    # the slow viewer resumed with a jump: frames were dropped for it, not queued
    gaps = np.diff([first_slow, *after])
    assert (gaps >= 0).all() and gaps.max() > 5, gaps
    assert after[-1] >= seqs[-1], "it catches up with the newest frame"
    assert status["frames_scored"] >= seqs[-1] - 5  # NO SIGNAL pictures count in seq only


# --- the source dies and comes back: the scorer alone -------------------------------------------


def run_scorer(cfg: ServeConfig) -> Scorer:
    scorer = Scorer(cfg, load_predictor(cfg.model), FrameHub())
    scorer.start()
    return scorer


def test_no_signal_when_the_file_ends_or_goes_and_back_when_it_returns(
    onnx_model: Path,  # noqa: F811
    clip: Path,  # noqa: F811
    split: float,
    tmp_path: Path,
) -> None:
    live = live_copy(clip, tmp_path / "live.mp4")
    cfg = ServeConfig(str(onnx_model), str(live), threshold=split, k=1, n=1, margin=0.0)
    scorer = run_scorer(cfg)
    try:
        assert wait_for(scorer.signal, 20)
        # played once (no --loop): no signal at its end, until the file is replaced
        ended = wait_for(lambda: scorer.status()["state"] == NO_SIGNAL, 5)
        assert ended and scorer.status()["reason"] == "the file ended"
        scored = scorer.status()["frames_scored"]
        time.sleep(1.0)
        assert scorer.status()["frames_scored"] == scored, "an ended file is not replayed"
        live_copy(clip, live)
        assert wait_for(scorer.signal, 5), "a replaced file plays again"
    finally:
        scorer.stop()
    scorer = run_scorer(ServeConfig(str(onnx_model), str(live), loop=True, retry_max_s=1.0))
    try:
        assert wait_for(scorer.signal, 20)
        time.sleep(1.5)  # past the clip's end: a looped file plays on
        assert scorer.signal() and scorer.status()["frames_scored"] > 12
        live.unlink()
        gone = time.monotonic()
        assert wait_for(lambda: scorer.status()["state"] == NO_SIGNAL, 2.0)
        assert time.monotonic() - gone < 2.0
        assert "removed or replaced" in scorer.status()["reason"]
        time.sleep(2.5)  # retried meanwhile (no such file), a pause of at most 1 s
        assert "no such file" in scorer.status()["reason"]
        live_copy(clip, live)
        assert wait_for(scorer.signal, 3.0), "back without a restart"
        kinds = [e["kind"] for e in scorer.status()["events"]]
        assert kinds.count("signal") == 2 and kinds.count(NO_SIGNAL) == 1
    finally:
        scorer.stop()


def test_the_event_log_times_each_red_to_green(
    onnx_model: Path,  # noqa: F811
    clip: Path,  # noqa: F811
    split: float,
) -> None:
    """With 1-of-1 smoothing the border is the score against the threshold, frame by frame: the
    events and the strip must agree with the scores computed apart from the server."""
    cfg = ServeConfig(str(onnx_model), str(clip), loop=True, threshold=split, k=1, n=1, margin=0)
    scorer = run_scorer(cfg)
    try:
        assert wait_for(lambda: scorer.status()["frames_scored"] >= 30, 30)
        flagged = scorer.flag("bars were short")
        status = scorer.status()
    finally:
        scorer.stop()
    scores = clip_scores(onnx_model, clip)

    def frame_state(score: float) -> str:
        """The state of the clip's frame with this (rounded) score, scored apart."""
        nearest = scores[np.argmin(np.abs(scores - score))]
        assert abs(nearest - score) < 1e-4, f"{score} is none of the clip's scores"
        return "aligned" if nearest >= split else "not_aligned"

    strip, events = status["strip"], status["events"]
    assert {state for _, state in strip} == {"aligned", "not_aligned"}
    for e in events:
        if e["kind"] in ("green", "red"):
            assert frame_state(e["score"]) == {"green": "aligned", "red": "not_aligned"}[e["kind"]]
    # each green event: the time since the first red frame after the previous green frame
    red_start, greens = None, []
    for t, state in strip:
        if state == "not_aligned" and red_start is None:
            red_start = t
        if state == "aligned":
            if red_start is not None:
                greens.append(round(t - red_start, 3))
            red_start = None
    logged = [e["align_s"] for e in events if e["kind"] == "green" and e["align_s"] is not None]
    assert len(logged) >= 3 and logged == pytest.approx(greens, abs=2e-3)
    assert flagged["kind"] == "flag" and flagged["note"] == "bars were short"
    assert flagged["state"] == frame_state(flagged["score"])


# --- the page in Chromium ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_page_shows_the_border_no_signal_and_recovery_offline(
    onnx_model: Path,  # noqa: F811
    clip: Path,  # noqa: F811
    split: float,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (make test does)"
    live = live_copy(clip, tmp_path / "live.mp4")
    args = ["--model", str(onnx_model), "--source", str(live), "--loop", "--threshold", str(split)]
    with (
        server(*args, "--k", "1", "--n", "1", "--margin", "0") as (base, _, _),
        sync_playwright() as pw,
    ):
        try:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        except Exception as err:
            raise AssertionError(f"{browser_versions()}: {err}"[:2000]) from err
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        requests: list[str] = []
        context.on("request", lambda r: requests.append(r.url))
        context.route(  # nothing leaves the machine, even where the check below would miss it
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(base) else route.abort()
            ),
        )
        page = context.new_page()
        page.goto(base, wait_until="load")
        screen = page.locator("#screen")
        # 1. the border follows the state: green and red both come (the clip loops)
        for state, rgb in (("aligned", "rgb(60, 220, 60)"), ("not_aligned", "rgb(235, 40, 40)")):
            page.wait_for_function(
                f"() => document.querySelector('#screen').dataset.state === '{state}' && "
                f"getComputedStyle(document.querySelector('#screen')).borderLeftColor === '{rgb}'",
                timeout=15_000,
                polling=20,
            )
        # the pixels of the border on the screen, not just the style: both colours seen
        seen = set()
        deadline = time.monotonic() + 15
        while len(seen) < 2 and time.monotonic() < deadline:
            shot = cv2.imdecode(np.frombuffer(screen.screenshot(), np.uint8), cv2.IMREAD_COLOR)
            b, g, r = (int(v) for v in shot[shot.shape[0] // 2, 5])
            seen |= {"green"} if g > 180 and r < 100 else {"red"} if r > 180 and g < 100 else set()
        assert seen == {"green", "red"}, seen
        video = page.locator("#video")
        assert video.evaluate("e => e.naturalWidth") == 384, "the MJPEG shows"
        assert float(page.locator("#score").inner_text()) == pytest.approx(split, abs=0.05)
        page.wait_for_function("() => document.querySelectorAll('#events li.green').length > 0")
        strip = page.evaluate(
            "() => { const c = document.querySelector('#strip'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
            " for (let i = 0; i < d.length; i += 4) n += d[i + 3] > 0; return n; }"
        )
        assert strip > 0, "the strip shows the decisions"
        # 2. f flags a false alarm: the server keeps it, the page lists it
        page.keyboard.press("f")
        page.wait_for_function("() => document.querySelectorAll('#flags li').length === 1")
        flags = [e for e in json.loads(get(base + "status")[2])["events"] if e["kind"] == "flag"]
        assert len(flags) == 1 and flags[0]["state"] in ("aligned", "not_aligned")
        # 3. the file goes: NO SIGNAL within 2 s; it comes back: so does the picture
        live.unlink()
        gone = time.monotonic()
        page.wait_for_function(
            "() => document.querySelector('#screen').dataset.state === 'no_signal'",
            timeout=2_000,
            polling=20,
        )
        assert time.monotonic() - gone < 2.0
        assert page.locator("#nosignal").is_visible()
        assert "NO SIGNAL" in page.locator("#nosignal").inner_text()
        live_copy(clip, live)
        page.wait_for_function(
            "() => ['aligned', 'not_aligned'].includes("
            "document.querySelector('#screen').dataset.state)",
            timeout=10_000,
        )
        assert not page.locator("#nosignal").is_visible()
        assert page.locator("#events li.no_signal").count() == 1
        browser.close()
    outside = [u for u in requests if not u.startswith(base)]
    assert not outside, f"requests that left 127.0.0.1: {outside}"
    assert any(u.startswith(base + "stream.mjpg") for u in requests)


def test_the_screen_takes_the_smoothing_on_the_card(
    onnx_model: Path,  # noqa: F811
    clip: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    from barsalign.export import write_smoothing

    model = tmp_path / onnx_model.name
    for f in onnx_model.parent.glob(onnx_model.name + "*"):
        shutil.copy(f, tmp_path / f.name)
    write_smoothing(model, {"k": 2, "n": 5, "margin": 1.0})
    card = Scorer(
        ServeConfig(model=str(model), source=str(clip)), load_predictor(model), FrameHub()
    )
    assert card.smoothing == {"k": 2, "n": 5, "margin": 1.0, "source": "model card"}
    assert (card.smoother.k, card.smoother.n, card.smoother.margin) == (2, 5, 1.0)
    given = ServeConfig(model=str(model), source=str(clip), k=1, n=1, margin=0.0)
    assert Scorer(given, load_predictor(model), FrameHub()).smoothing["source"] == "command line"
    plain = Scorer(
        ServeConfig(model=str(onnx_model), source=str(clip)), load_predictor(onnx_model), FrameHub()
    )
    assert plain.smoothing["source"] == "default"
