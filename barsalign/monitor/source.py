"""Where the monitor's frames come from: a file, a camera (an index or a /dev path) or an
RTSP/HTTP URL.

In live mode (cameras and streams; files with `live=True`, paced at their own frame rate) a
reader thread keeps only the newest frame, so when inference is slower than the source frames
are dropped and counted rather than falling behind. A camera and a stream fail the same way:
a read that errors or times out ends the reader, and `frames(stall_s=...)` gives up on a
source that sends nothing for that long even where the backend's own read never returns.
"""

from __future__ import annotations

import collections
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.errors import BarsalignError
from barsalign.monitor.stats import MonitorStats

# our one-line messages replace FFmpeg's own about a dead source; read when FFmpeg first starts
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# a camera that stops sending: OpenCV's V4L2 backend ignores CAP_PROP_READ_TIMEOUT_MSEC and waits
# this many seconds per read (10 by default); read when the first camera is opened
os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", "2")


class SourceStalled(BarsalignError):
    """A live source sent no frame for the watchdog's time (`_Reader.frames(stall_s=...)`)."""


def parse_source(source: str | int | Path) -> tuple[str, Any]:
    """("camera", index or /dev path), ("stream", url) or ("file", path) — a missing file is an
    error; a missing /dev path is a camera that is not plugged in (opening it says so)."""
    text = str(source).strip()
    if text.isdigit():
        return "camera", int(text)
    if text.startswith("/dev/"):  # /dev/video0, or a stable /dev/v4l/by-id/... name for it
        return "camera", text
    if text.startswith("-") and text[1:].isdigit():
        raise BarsalignError(f"source {text}: a camera index is 0 or more")
    if "://" in text:
        return "stream", text
    path = Path(text)
    if path.is_dir():
        raise BarsalignError(
            f"source {text} is a folder: give a video file, a camera index or an rtsp:// URL "
            "(frames in a folder are scored with barsalign predict)"
        )
    if not path.is_file():
        raise BarsalignError(
            f"source {text}: no such file (give a video file, a camera index "
            "like 0, or an rtsp:// URL)"
        )
    return "file", path


def camera_index(value: int | str) -> int | None:
    """The V4L2 index of a camera given as an index or a /dev path (a by-id link is followed
    anew at each open, so a camera plugged back under another number is found); None when the
    path names no /dev/videoN now."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"/dev/video(\d+)", os.path.realpath(value))
    return int(match.group(1)) if match and os.path.exists(value) else None


def open_capture(kind: str, value: Any, timeout_ms: int = 5000) -> Any:
    """An opened cv2.VideoCapture, or a BarsalignError saying which source is dead."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

    if kind == "camera":  # this OpenCV's V4L2 opens cameras by index only, not by path
        index = camera_index(value)
        cap = cv2.VideoCapture() if index is None else cv2.VideoCapture(index)
    else:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            timeout_ms,
        ]
        cap = cv2.VideoCapture(str(value), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        what = {"camera": "camera", "stream": "stream", "file": "video file"}[kind]
        hint = {
            "camera": "is a camera plugged in there?",
            "stream": "is the URL right and the camera reachable?",
            "file": "is it a video OpenCV can decode (mp4, avi, mkv)?",
        }[kind]
        raise BarsalignError(f"{what} {value} could not be opened: {hint}")
    return cap


def frame_problem(frame: Any) -> str | None:
    """Why a decoded frame cannot be scored (None when it can)."""
    if frame is None:
        return "decoder returned no image"
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        return f"not an 8-bit image ({getattr(frame, 'dtype', type(frame).__name__)})"
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 8 or frame.shape[1] < 8:
        return f"not a colour image (shape {frame.shape})"
    return None


class _Reader:
    """Frames from a source with reconnects; in live mode a thread keeps only the newest.

    `frames()` yields (index, frame). Live sources that end are reconnected up to
    `reconnects` times (a delay of `retry_s` each) before a BarsalignError; files end normally.
    The count starts again only after a connection has run `stable_s` seconds, so a stream that
    gives a frame and stalls after every reconnect gives up instead of reconnecting forever.
    """

    def __init__(
        self,
        source: str,
        stats: MonitorStats,
        live: bool | None,
        reconnects: int,
        retry_s: float,
        timeout_ms: int,
        max_frames: int | None,
        stable_s: float = 30.0,
    ) -> None:
        self.kind, self.value = parse_source(source)
        self.stable_s = stable_s
        self.live = self.kind != "file" if live is None else live
        self.stats, self.reconnects, self.retry_s = stats, reconnects, retry_s
        self.timeout_ms, self.max_frames = timeout_ms, max_frames
        self.cap = open_capture(self.kind, self.value, timeout_ms)
        import cv2

        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 25.0
        self.expected = (
            int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.kind == "file" else 0
        )
        stats.source_fps, stats.live = self.fps, self.live
        self.error: BaseException | None = None
        self.pace_fps: float | None = None
        self.prepare: Any = None
        self._attempts = 0
        self._connected_at = time.monotonic()
        self._thread: threading.Thread | None = None

    def _unreadable(self, why: str) -> None:
        self.stats.unreadable.append(why)
        print(
            f"barsalign monitor: warning: {why} (counted, not scored)", file=sys.stderr, flush=True
        )

    def _read_raw(self) -> Iterator[tuple[int, np.ndarray]]:
        """Every scorable frame the source gives, reconnecting live sources; frames that cannot
        be decoded are counted in the stats and named on stderr, never skipped silently."""
        index, misses = 0, 0
        while self.max_frames is None or index < self.max_frames:
            ok, frame = self.cap.read()
            if ok or (self.kind == "file" and index < self.expected and misses < 5):
                self.stats.frames_read += 1
                problem = frame_problem(frame) if ok else "could not be decoded"
                index += 1
                if problem is None:
                    misses = 0
                    yield index - 1, frame
                else:
                    misses += 0 if ok else 1
                    self._unreadable(f"frame {index - 1} of {self.value}: {problem}")
                continue
            if self.kind == "file":
                if index < self.expected and self.max_frames is None:
                    self._unreadable(
                        f"frames {index}-{self.expected - 1} of {self.value}: the file ends "
                        f"early (its header promises {self.expected} frames)"
                    )
                return
            self._reconnect(index)

    def _reconnect(self, index: int) -> None:
        """Reopen a dropped live source: `reconnects` tries, counted afresh only when the last
        connection ran at least `stable_s` seconds (bounded in time, not per frame)."""
        self.cap.release()
        if time.monotonic() - self._connected_at >= self.stable_s:
            self._attempts = 0
        while self._attempts < self.reconnects:
            self._attempts += 1
            print(
                f"barsalign monitor: {self.kind} {self.value} dropped after frame {index}; "
                f"reconnect {self._attempts}/{self.reconnects}",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(self.retry_s)
            try:
                self.cap = open_capture(self.kind, self.value, self.timeout_ms)
            except BarsalignError:
                continue
            self.stats.reconnects += 1
            self._connected_at = time.monotonic()
            return
        raise BarsalignError(
            f"{self.kind} {self.value} dropped after {index} frames and did not come back after "
            f"{self.reconnects} reconnect(s) (none of them stayed up {self.stable_s:g} s)"
        )

    def frames(
        self, queue_size: int = 3, stall_s: float | None = None
    ) -> Iterator[tuple[int, np.ndarray, Any, float]]:
        """(index, frame, prepared, ms) decoded on a reader thread, overlapping inference.

        Every-frame mode also runs `prepare` (preprocessing) there; live mode leaves it to the
        consumer (None), so no work is spent on frames that get dropped.

        Live: only the newest frame is kept, older ones are dropped and counted. Otherwise a
        queue of `queue_size` frames that the reader waits on: every frame, in order.

        `stall_s`: the watchdog. When the source has sent no frame for that long, SourceStalled
        is raised and the reader thread is left to finish its read (it releases its capture
        then), so a camera or stream whose read hangs is given up on all the same.
        """
        buffer: collections.deque[Any] = collections.deque()
        cond = threading.Condition()
        stop, finished = threading.Event(), threading.Event()
        last_frame = [time.monotonic()]  # when the reader last got a frame

        def pump() -> None:
            period, next_t = 1.0 / (self.pace_fps or self.fps), time.perf_counter()
            try:
                for index, frame in self._read_raw():
                    last_frame[0] = time.monotonic()
                    item = (index, frame, None, 0.0)
                    if self.prepare is not None and not self.live:  # overlaps inference
                        t = time.perf_counter()
                        try:
                            prepared: Any = self.prepare(frame)
                        except BarsalignError as err:
                            prepared = err
                        item = (index, frame, prepared, (time.perf_counter() - t) * 1000.0)
                    if self.live and self.kind == "file":  # a file played live is paced
                        next_t += period
                        time.sleep(max(0.0, next_t - time.perf_counter()))
                    with cond:
                        if stop.is_set():
                            return
                        if self.live and buffer:
                            self.stats.frames_dropped += len(buffer)
                            buffer.clear()
                        while not self.live and len(buffer) >= queue_size and not stop.is_set():
                            cond.wait(0.5)
                        buffer.append(item)
                        cond.notify_all()
            except BaseException as err:  # noqa: BLE001 - handed to the consumer
                self.error = err
            finally:
                self.cap.release()  # here, by the thread that reads it, never during a read
                with cond:
                    finished.set()
                    cond.notify_all()

        self._thread = threading.Thread(target=pump, name="barsalign-reader", daemon=True)
        self._thread.start()
        stalled = False
        try:
            while True:
                with cond:
                    while not buffer and not finished.is_set():
                        waited = time.monotonic() - last_frame[0]
                        if stall_s is not None and waited >= stall_s:
                            stalled = True
                            break
                        cond.wait(0.5 if stall_s is None else min(0.5, stall_s - waited))
                    if not buffer:
                        break
                    item = buffer.popleft()
                    cond.notify_all()
                yield item
        finally:
            stop.set()
            with cond:
                cond.notify_all()
            self._thread.join(timeout=0.5 if stalled else 5)
        if stalled:
            raise SourceStalled(f"{self.kind} {self.value} sent no frame for {stall_s:g} s")
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Release the capture, unless the reader thread still holds it (it releases it)."""
        if self._thread is None or not self._thread.is_alive():
            self.cap.release()
