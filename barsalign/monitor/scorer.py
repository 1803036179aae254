"""The operator screen's one scoring thread (`Scorer`) and the newest frame it shares (`FrameHub`).

The scorer reads the source through the monitor's live reader (only the newest frame is kept,
so it never falls behind), scores each frame with the model (`inference`), smooths it
(`Smoother`), draws the border (`Overlay`) and keeps the newest annotated JPEG, the state, the
decision strip and the event log. When the source dies (a file deleted or replaced, a camera
unplugged, a stream ended or hung) the state says "no_signal" at once and the source is reopened
with a growing pause; cameras and streams go through the same reader, watchdog and reopening.
`FrameHub` hands each viewer the newest JPEG when it is ready for one, so a slow viewer only
misses frames. `serve` puts both behind the web page.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from barsalign.errors import BarsalignError
from barsalign.evaluation.metrics import check_threshold
from barsalign.inference import Predictor, sigmoid
from barsalign.monitor.overlay import Overlay
from barsalign.monitor.smoother import ALIGNED, NOT_ALIGNED, Smoother, resolve_smoothing
from barsalign.monitor.source import SourceStalled, _Reader, parse_source
from barsalign.monitor.stats import MonitorStats

NO_SIGNAL = "no_signal"
ENDED = "the file ended"


@dataclass(frozen=True)
class ServeConfig:
    """One `barsalign serve`. `port` 0 picks a free port (the URL is printed)."""

    model: str
    source: str
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    allow_remote: bool = False
    loop: bool = False  # a file source starts again at its end
    threshold: float | None = None  # None: the card's operating threshold
    k: int | None = None  # None: the card's smoothing (06_export's sweep), else 3 of 4
    n: int | None = None
    margin: float | None = None
    threads: int | None = None
    history_s: float = 300.0  # the decision strip's length
    no_signal_s: float = 1.0  # no new frame this long: "no signal"
    retry_s: float = 0.25  # first pause before reopening a dead source, doubled up to retry_max_s
    retry_max_s: float = 2.0
    timeout_ms: int = 3000  # opening a stream; reading one (FFmpeg's own timeout)
    stall_s: float = 2.0  # the watchdog: a live source that sends nothing this long is reopened
    jpeg_quality: int = 80

    def __post_init__(self) -> None:
        if self.threshold is not None:
            check_threshold(self.threshold, "--threshold")
        checks = [
            (0 <= self.port <= 65535, f"--port {self.port} is not a TCP port"),
            (self.token is None or self.token.strip() != "", "--token must not be empty"),
            (self.history_s > 0, "history_s must be > 0"),
            (self.no_signal_s > 0, "no_signal_s must be > 0"),
            (0 < self.retry_s <= self.retry_max_s, "need 0 < retry_s <= retry_max_s"),
            (self.stall_s > 0, "stall_s must be > 0"),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality must lie in 1..100"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BarsalignError(msg)


class FrameHub:
    """The newest JPEG and its number; viewers (asyncio) wait for a newer one, never queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seq, self.jpeg = 0, b""
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def publish(self, jpeg: bytes) -> None:
        """Called by the scorer; never blocks on a viewer."""
        with self._lock:
            self.seq += 1
            self.jpeg = jpeg
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that viewer's loop has closed
                loop.call_soon_threadsafe(event.set)

    def latest(self) -> tuple[int, bytes]:
        with self._lock:
            return self.seq, self.jpeg

    async def frames(self, keepalive_s: float = 5.0) -> Any:
        """(seq, jpeg) each time a newer frame is there when this viewer asks; the newest only.
        The same frame again after `keepalive_s` without one, so a gone viewer is noticed."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.add(entry)
        try:
            last = -1
            while True:
                event.clear()
                seq, jpeg = self.latest()
                if seq == last or not jpeg:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), keepalive_s)
                    seq, jpeg = self.latest()
                    if not jpeg:
                        continue
                last = seq
                yield seq, jpeg
        finally:
            with self._lock:
                self._waiters.discard(entry)


class Scorer:
    """The one scoring thread: source → score → smoothed state → annotated JPEG, reopening the
    source with backoff whenever it dies; `status()` is what the page shows."""

    def __init__(self, cfg: ServeConfig, model: Predictor, hub: FrameHub) -> None:
        self.cfg, self.model, self.hub = cfg, model, hub
        self.kind, self.value = parse_source(cfg.source)
        self.threshold = cfg.threshold if cfg.threshold is not None else model.decision_threshold
        self.smoothing = resolve_smoothing(model.card, cfg.k, cfg.n, cfg.margin)
        sm = self.smoothing
        self.smoother = Smoother(self.threshold, sm["k"], sm["n"], sm["margin"])
        self.stats = MonitorStats(source=str(cfg.source), live=True)
        self.overlay = Overlay()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state, self.score, self.frame_index = NO_SIGNAL, None, -1
        self.last_frame_t: float | None = None  # time.time() of the newest scored frame
        self._last_frame_mono = -math.inf
        self.connected, self.reason = False, "waiting for the source"
        self.source_fps = 0.0
        self._times: collections.deque[float] = collections.deque(maxlen=120)
        self.strip: collections.deque[tuple[float, str]] = collections.deque()
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)
        self._event_id = 0
        self._red_since: float | None = None  # when the current not-yet-green stretch went red
        self._shown: str = NO_SIGNAL  # the state last logged

    # --- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="barsalign-scorer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        pause = self.cfg.retry_s
        while not self._stop.is_set():
            try:
                reader = _Reader(
                    str(self.cfg.source), self.stats, True, 0, 0.0, self.cfg.timeout_ms, None
                )
            except BarsalignError as err:
                self._lost(str(err))
                self._stop.wait(pause)
                pause = min(2 * pause, self.cfg.retry_max_s)
                continue
            pause = self.cfg.retry_s
            try:
                reason = self._play(reader)
            except Exception as err:  # noqa: BLE001 - the screen must say so and try again
                reason = f"scoring stopped: {type(err).__name__}: {err}".splitlines()[0]
            if reason == ENDED and self.cfg.loop:  # straight on from the first frame
                continue
            self._lost(reason)
            if reason == ENDED:  # played once: wait until it is replaced
                stamp = _file_stamp(self.value)
                while not self._stop.wait(0.25) and _file_stamp(self.value) == stamp:
                    pass
                continue
            self._stop.wait(pause)

    def _play(self, reader: _Reader) -> str:
        """Score the reader's frames until the source dies; returns why it stopped."""
        stamp = _file_stamp(self.value) if self.kind == "file" else None
        self.smoother.reset()  # the scene may have changed while it was away
        with self._lock:
            self.source_fps = reader.fps
        frames = reader.frames(stall_s=self.cfg.stall_s)
        try:
            for index, frame, _, _ in frames:
                if self._stop.is_set():
                    return "the server is stopping"
                if stamp is not None and _file_stamp(self.value) != stamp:
                    return f"file {self.value} was removed or replaced"
                self._score(index, frame, reader)
        except SourceStalled as err:  # the watchdog: a camera or stream that hangs
            return str(err)
        except BarsalignError as err:  # a live source that dropped (no reconnects here)
            return (
                f"{self.kind} {self.value} stopped giving frames"
                if self.kind != "file"
                else str(err)
            )
        finally:
            frames.close()
        return ENDED if self.kind == "file" else f"{self.kind} {self.value} ended"

    def _score(self, index: int, frame: np.ndarray, reader: _Reader) -> None:
        import cv2

        t0 = time.perf_counter()
        try:
            prepared = self.model.prepare(frame, name=None)
        except BarsalignError as err:
            reader._unreadable(f"frame {index} of {self.cfg.source}: {err}")
            return
        score = float(sigmoid(self.model.logits(np.asarray(prepared, np.float32)[None]))[0])
        latency = (time.perf_counter() - t0) * 1000.0
        state = self.smoother.update(score)
        self.overlay.draw(frame, state, score, latency)
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        now, mono = time.time(), time.monotonic()
        with self._lock:
            self.stats.frames_scored += 1
            self.stats.latency_ms.append(latency)
            del self.stats.latency_ms[:-1000]
            self.stats.frame_size = (frame.shape[1], frame.shape[0])
            if not self.connected:
                self.connected = True
                self._event("signal", now, note=f"{self.kind} {self.value}")
            self.state, self.score, self.frame_index = state, score, index
            self.last_frame_t, self._last_frame_mono = now, mono
            self._times.append(mono)
            self.strip.append((now, state))
            while self.strip and self.strip[0][0] < now - self.cfg.history_s:
                self.strip.popleft()
            self._log_state(state, score, now)
        if ok:
            self.hub.publish(jpeg.tobytes())

    def _lost(self, reason: str) -> None:
        """The source is gone: say so on the page and in the event log, once."""
        now = time.time()
        with self._lock:
            self.reason = reason
            if self.connected or not self.events:
                self._event(NO_SIGNAL, now, note=reason)
                print(f"barsalign serve: no signal: {reason}", file=sys.stderr, flush=True)
            self.connected = False
            self._shown, self._red_since = NO_SIGNAL, None
        self.hub.publish(self._no_signal_jpeg(reason))

    def _no_signal_jpeg(self, reason: str) -> bytes:
        import cv2

        w, h = self.stats.frame_size if self.stats.frame_size[0] else (640, 480)
        img = np.full((h, w, 3), 32, np.uint8)
        scale = max(0.8, h / 300.0)
        cv2.putText(
            img, "NO SIGNAL", (w // 10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (200, 200, 200), 2
        )
        cv2.putText(
            img, reason[:90], (w // 10, h // 2 + int(40 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
            scale * 0.35, (160, 160, 160), 1,
        )  # fmt: skip
        return cv2.imencode(".jpg", img)[1].tobytes()

    # --- events (called with the lock held) ---------------------------------------------------

    def _event(self, kind: str, t: float, **fields: Any) -> dict[str, Any]:
        self._event_id += 1
        event = {"id": self._event_id, "kind": kind, "t": round(t, 3), **fields}
        self.events.append(event)
        return event

    def _log_state(self, state: str, score: float, now: float) -> None:
        """A "red" event when the border turns red, a "green" one (with how long the bars took
        to align, from the start of the red) when it turns green."""
        if state == self._shown or state not in (ALIGNED, NOT_ALIGNED):
            return
        if state == NOT_ALIGNED:
            if self._red_since is None:
                self._red_since = now
            self._event("red", now, score=round(score, 4))
        else:
            took = None if self._red_since is None else round(now - self._red_since, 3)
            self._event("green", now, score=round(score, 4), align_s=took)
            self._red_since = None
        self._shown = state

    def flag(self, note: str = "") -> dict[str, Any]:
        """The operator marks what is on the screen now as a false-alarm candidate."""
        with self._lock:
            return self._event(
                "flag",
                time.time(),
                state=self.current_state(),
                score=None if self.score is None else round(self.score, 4),
                frame=self.frame_index,
                note=note[:200],
            )

    # --- what the page shows ------------------------------------------------------------------

    def signal(self) -> bool:
        """A source is open and a frame came recently (a stalled stream is no signal too)."""
        fps = self.source_fps or 25.0
        stale_s = max(self.cfg.no_signal_s, 2.5 / fps)
        return self.connected and time.monotonic() - self._last_frame_mono <= stale_s

    def current_state(self) -> str:
        return self.state if self.signal() else NO_SIGNAL

    def status(self, since: float = 0.0) -> dict[str, Any]:
        """The page's JSON: state, score, frames/s, the strip after `since`, the events."""
        with self._lock:
            mono = time.monotonic()
            recent = [t for t in self._times if t >= mono - 2.0]
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 else 0.0
            signal = self.signal()
            return {
                "state": self.state if signal else NO_SIGNAL,
                "signal": signal,
                "reason": "" if signal else self.reason,
                "score": self.score,
                "threshold": self.threshold,
                "smoothing": self.smoothing,
                "fps": round(fps, 2),
                "source_fps": round(self.source_fps, 2),
                "last_frame_time": self.last_frame_t,
                "frame": self.frame_index,
                "frames_scored": self.stats.frames_scored,
                "frames_dropped": self.stats.frames_dropped,
                "unreadable": len(self.stats.unreadable),
                "source": str(self.cfg.source),
                "model": self.model.name,
                "server_time": time.time(),
                "history_s": self.cfg.history_s,
                "strip": [[round(t, 3), s] for t, s in self.strip if t > since][-5000:],
                "events": list(self.events)[-200:],
            }


def _file_stamp(path: Any) -> tuple[int, int, int] | None:
    """A file's inode, size and mtime (None when it is gone): changes when it is replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
