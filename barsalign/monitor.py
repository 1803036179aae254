"""The live monitor: a video source in, a glowing green / red / amber frame around it out.

`run_monitor` reads frames with OpenCV (a file, a camera index or an RTSP/HTTP URL),
preprocesses each exactly as the model's card says, scores it with the model
(`inference.load_predictor`: an export run by ONNX Runtime, its card checked), smooths the
decision over time (`Smoother`, pure and separately tested) and draws the border with the
label, the score and the latency. In live mode (cameras and streams; files with `live=True`,
paced at their own frame rate) a reader thread keeps only the newest frame, so when inference
is slower than the source frames are dropped and counted rather than falling behind.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.errors import BarsalignError
from barsalign.inference import card_path, load_predictor
from barsalign.metrics import check_threshold
from barsalign.outputs import check_output_file
from barsalign.overlay import Overlay, Smoother

# our one-line messages replace FFmpeg's own about a dead source; read when FFmpeg first starts
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def parse_source(source: str | int | Path) -> tuple[str, Any]:
    """("camera", index), ("stream", url) or ("file", path) — a missing file is an error."""
    text = str(source).strip()
    if text.isdigit():
        return "camera", int(text)
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


def open_capture(kind: str, value: Any, timeout_ms: int = 5000) -> Any:
    """An opened cv2.VideoCapture, or a BarsalignError saying which source is dead."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

    if kind == "camera":
        cap = cv2.VideoCapture(value)
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
            "camera": "is a camera connected at that index?",
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


@dataclass
class MonitorStats:
    """What happened: frames read, scored, dropped and unreadable, and the timings."""

    source: str
    live: bool
    frames_read: int = 0
    frames_scored: int = 0
    frames_dropped: int = 0
    unreadable: list[str] = field(default_factory=list)
    reconnects: int = 0
    source_fps: float = 0.0
    frame_size: tuple[int, int] = (0, 0)  # width, height
    interrupted: bool = False
    latency_ms: list[float] = field(default_factory=list)  # preprocess + inference per frame
    frame_ms: list[float] = field(default_factory=list)  # + decode wait + draw (+ write)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latency_ms or [np.nan])
        tot = np.asarray(self.frame_ms or [np.nan])
        return {
            "source": self.source,
            "mode": "live" if self.live else "every frame",
            "frames_read": self.frames_read,
            "frames_scored": self.frames_scored,
            "frames_dropped": self.frames_dropped,
            "frames_unreadable": len(self.unreadable),
            "reconnects": self.reconnects,
            "source_fps": round(self.source_fps, 2),
            "frame_size": f"{self.frame_size[0]}x{self.frame_size[1]}",
            "fps": round(self.frames_scored / self.wall_s, 2) if self.wall_s else 0.0,
            **{f"latency_ms_p{q}": round(float(np.nanpercentile(lat, q)), 2) for q in (50, 90, 99)},
            **{f"frame_ms_p{q}": round(float(np.nanpercentile(tot, q)), 2) for q in (50, 90, 99)},
        }


def format_stats(stats: MonitorStats) -> str:
    s = stats.summary()
    lines = [
        f"{s['frames_scored']} frames scored of {s['frames_read']} read in {stats.wall_s:.1f} s: "
        f"{s['fps']:.1f} frames/s ({s['mode']}, source {s['source_fps']:.1f} fps)",
        f"dropped {s['frames_dropped']} (inference slower than the source), unreadable "
        f"{s['frames_unreadable']}, reconnects {s['reconnects']}",
        f"latency (preprocess + inference) ms: p50 {s['latency_ms_p50']:.1f}  "
        f"p90 {s['latency_ms_p90']:.1f}  p99 {s['latency_ms_p99']:.1f}",
        f"whole frame ms: p50 {s['frame_ms_p50']:.1f}  p90 {s['frame_ms_p90']:.1f}  "
        f"p99 {s['frame_ms_p99']:.1f}",
    ]
    lines += [f"unreadable: {u}" for u in stats.unreadable[:10]]
    if stats.interrupted:
        lines.insert(0, "stopped by the user (Ctrl+C)")
    return "\n".join(lines)


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

    def frames(self, queue_size: int = 3) -> Iterator[tuple[int, np.ndarray, Any, float]]:
        """(index, frame, prepared, ms) decoded on a reader thread, overlapping inference.

        Every-frame mode also runs `prepare` (preprocessing) there; live mode leaves it to the
        consumer (None), so no work is spent on frames that get dropped.

        Live: only the newest frame is kept, older ones are dropped and counted. Otherwise a
        queue of `queue_size` frames that the reader waits on: every frame, in order.
        """
        buffer: collections.deque[Any] = collections.deque()
        cond = threading.Condition()
        stop, finished = threading.Event(), threading.Event()

        def pump() -> None:
            period, next_t = 1.0 / (self.pace_fps or self.fps), time.perf_counter()
            try:
                for index, frame in self._read_raw():
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
                        if self.live and buffer:
                            self.stats.frames_dropped += len(buffer)
                            buffer.clear()
                        while not self.live and len(buffer) >= queue_size and not stop.is_set():
                            cond.wait(0.5)
                        buffer.append(item)
                        cond.notify_all()
                    if stop.is_set():
                        return
            except BaseException as err:  # noqa: BLE001 - handed to the consumer
                self.error = err
            finally:
                with cond:
                    finished.set()
                    cond.notify_all()

        thread = threading.Thread(target=pump, name="barsalign-reader", daemon=True)
        thread.start()
        try:
            while True:
                with cond:
                    while not buffer and not finished.is_set():
                        cond.wait(0.5)
                    if not buffer:
                        break
                    item = buffer.popleft()
                    cond.notify_all()
                yield item
        finally:
            stop.set()
            with cond:
                cond.notify_all()
            thread.join(timeout=5)
            self.cap.release()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.cap.release()


class VideoOut:
    """Browser-playable H.264 MP4 (yuv420p, faststart) through imageio-ffmpeg's ffmpeg.

    Written to a temporary file beside `path` and renamed onto it by `close`, so `path` is
    never half a video; `discard` removes the temporary file instead.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float) -> None:
        import imageio_ffmpeg

        self.path = check_output_file(path, what="--out")
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.mp4")
        w, h = size
        self.size = (w - w % 2, h - h % 2)
        self._gen = imageio_ffmpeg.write_frames(
            str(self._tmp),
            self.size,
            pix_fmt_in="bgr24",
            fps=fps,
            codec="libx264",
            macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=["-preset", "veryfast", "-crf", "26", "-movflags", "+faststart"],
        )
        self._send(None)

    def _send(self, frame: np.ndarray | None) -> None:
        try:
            self._gen.send(frame)
        except (OSError, RuntimeError) as err:  # ffmpeg stopped: disk full, folder gone
            self.discard()
            line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise BarsalignError(f"cannot write {self.path}: ffmpeg stopped ({line})") from None

    def write(self, frame: np.ndarray) -> None:
        import cv2

        w, h = self.size
        if frame.shape[:2] != (h, w):  # odd sides, or a stream back at another size
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        self._send(np.ascontiguousarray(frame))

    def close(self) -> None:
        """Finish the video and move it onto `path`."""
        try:
            self._gen.close()
            os.replace(self._tmp, self.path)
        except (OSError, RuntimeError) as err:
            self.discard()
            raise BarsalignError(f"cannot write {self.path}: {err}") from None

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._gen.close()
        self._tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class MonitorConfig:
    """One monitor run. `live` None: live for cameras and streams, every frame for files."""

    model: str
    source: str
    out: str | None = None
    show: bool = False
    live: bool | None = None
    threshold: float | None = None  # None: the card's operating threshold
    k: int = 3
    n: int = 4
    margin: float = 0.5
    reconnects: int = 3
    retry_s: float = 1.0
    timeout_ms: int = 5000
    max_frames: int | None = None
    threads: int | None = None
    pace_fps: float | None = None  # a file played live runs at this rate (None: its own)
    stable_s: float = 30.0  # a connection this long earns a fresh count of reconnects

    def __post_init__(self) -> None:
        if self.threshold is not None:
            check_threshold(self.threshold, "--threshold")
        if self.out is not None and Path(self.out).suffix.lower() != ".mp4":
            raise BarsalignError(
                f"--out {self.out}: the annotated video is H.264 MP4; give a name ending in .mp4"
            )
        checks = [
            (self.stable_s > 0, f"stable_s must be > 0, not {self.stable_s}"),
            (self.reconnects >= 0, f"reconnects must be >= 0, not {self.reconnects}"),
            (self.retry_s >= 0, f"retry_s must be >= 0, not {self.retry_s}"),
            (self.max_frames is None or self.max_frames >= 1, "max_frames must be >= 1"),
            (self.pace_fps is None or self.pace_fps > 0, "pace_fps must be > 0"),
            (self.threads is None or self.threads >= 1, "threads must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BarsalignError(msg)


@dataclass
class MonitorResult:
    stats: MonitorStats
    records: list[dict[str, Any]]
    out: Path | None = None
    card: dict[str, Any] = field(default_factory=dict)
    snapshots: list[np.ndarray] = field(default_factory=list)


def run_monitor(cfg: MonitorConfig, keep_every: int = 0) -> MonitorResult:
    """Run the monitor over the source; returns the stats and one record per scored frame.

    Args:
        keep_every: keep every Nth annotated frame (RGB) in `snapshots` (0: none), for strips.
    """
    import cv2

    # 1. the source and the output path, then the model (an export's card checked)
    kind, value = parse_source(cfg.source)
    if cfg.out:
        inputs = [cfg.model, card_path(cfg.model)] + ([value] if kind == "file" else [])
        check_output_file(cfg.out, inputs, "--out")
    model = load_predictor(cfg.model, threads=cfg.threads)
    threshold = cfg.threshold if cfg.threshold is not None else model.decision_threshold
    smoother = Smoother(threshold, cfg.k, cfg.n, cfg.margin)
    stats = MonitorStats(source=str(cfg.source), live=bool(cfg.live))
    reader = _Reader(
        str(cfg.source),
        stats,
        cfg.live,
        cfg.reconnects,
        cfg.retry_s,
        cfg.timeout_ms,
        cfg.max_frames,
        cfg.stable_s,
    )
    reader.pace_fps = cfg.pace_fps

    def prepare(frame: np.ndarray) -> np.ndarray:
        """Exactly the model's preprocessing and normalisation; a frame far below the model's
        input size is unreadable, never scored."""
        return model.prepare(frame, name=None)

    reader.prepare = prepare
    if cfg.show:
        try:
            cv2.namedWindow("barsalign monitor", cv2.WINDOW_NORMAL)
        except cv2.error:
            reader.close()
            raise BarsalignError(
                "--show needs OpenCV with a GUI (this one is headless): "
                "write the video with --out instead"
            ) from None
    overlay, writer = Overlay(), None
    finished = False
    records: list[dict[str, Any]] = []
    snapshots: list[np.ndarray] = []

    # 2. read → preprocess → infer → smooth → draw (→ write / show)
    started = time.perf_counter()
    t_prev = started
    try:
        seen_reconnects = 0
        for index, frame, prepared, prep_ms in reader.frames():
            t0 = time.perf_counter()
            if stats.reconnects != seen_reconnects:  # the scene may have changed meanwhile
                seen_reconnects = stats.reconnects
                smoother.reset()
            stats.frame_size = (frame.shape[1], frame.shape[0])
            try:
                if prepared is None:
                    prepared = prepare(frame)
                    prep_ms = (time.perf_counter() - t0) * 1000.0
                elif isinstance(prepared, BarsalignError):
                    raise prepared
            except BarsalignError as err:
                reader._unreadable(f"frame {index} of {cfg.source}: {err}")
                continue
            t1 = time.perf_counter()
            batch = np.asarray(prepared, dtype=np.float32)[None]
            logit = float(model.logits(batch)[0])
            score = 1.0 / (1.0 + math.exp(-logit))
            t2 = time.perf_counter()
            latency = prep_ms + (t2 - t1) * 1000.0
            state = smoother.update(score)
            note = f"dropped {stats.frames_dropped}" if stats.frames_dropped else ""
            overlay.draw(frame, state, score, latency, note)
            t3 = time.perf_counter()
            if cfg.out:
                if writer is None:
                    writer = VideoOut(cfg.out, (frame.shape[1], frame.shape[0]), reader.fps)
                writer.write(frame)
            if cfg.show:
                cv2.imshow("barsalign monitor", frame)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
            now = time.perf_counter()
            stats.frames_scored += 1
            stats.latency_ms.append(latency)
            stats.frame_ms.append((now - t_prev) * 1000.0)
            records.append(
                {
                    "frame": index,
                    "score": score,
                    "raw": int(score >= threshold),
                    "state": state,
                    "latency_ms": latency,
                    "read_ms": (t0 - t_prev) * 1000.0,
                    "preprocess_ms": prep_ms,
                    "infer_ms": (t2 - t1) * 1000.0,
                    "draw_ms": (t3 - t2) * 1000.0,
                }
            )
            t_prev = now
            if keep_every and stats.frames_scored % keep_every == 1 % keep_every:
                snapshots.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        finished = True
    except KeyboardInterrupt:  # how an operator stops a live camera: still report the numbers
        stats.interrupted = finished = True
    finally:
        stats.wall_s = time.perf_counter() - started
        if writer is not None:  # the video of a run that failed is not kept
            writer.close() if finished else writer.discard()
        reader.close()
    if stats.frames_read == 0:
        raise BarsalignError(f"source {cfg.source} gave no frames")
    return MonitorResult(stats, records, Path(cfg.out) if cfg.out else None, model.card, snapshots)


def clip_truth(clip: str | Path) -> list[int] | None:
    """Per-frame truth (1 = aligned) of a synthetic clip from its data set's metadata, else None."""
    clip = Path(clip).resolve()
    root = clip.parent.parent
    if not (root / "metadata.jsonl").is_file():
        return None
    from barsalign.synth import load_metadata

    rel = clip.relative_to(root).as_posix()
    rows = sorted(
        (m for m in load_metadata(root) if m.get("file") == rel), key=lambda m: m["frame"]
    )
    return [int(m["label"] == "aligned") for m in rows] or None


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "monitor",
        help="watch a video, camera or stream and show aligned (green) / not aligned (red)",
        description="Score every frame of a video file, camera or RTSP stream with an exported "
        "ONNX model (its card checked) and draw a glowing border: green aligned, red not "
        "aligned, amber uncertain. Prints frames/s and latency percentiles at the end.",
    )
    p.add_argument("--model", required=True, help="model.onnx with its model.onnx.card.json")
    p.add_argument("--source", required=True, help="VIDEO_FILE, CAMERA_INDEX or RTSP_URL")
    p.add_argument("--out", help="write the annotated video here (H.264 MP4)")
    p.add_argument("--show", action="store_true", help="show a window (needs OpenCV with GUI)")
    live = p.add_mutually_exclusive_group()
    live.add_argument(
        "--live",
        dest="live",
        action="store_true",
        default=None,
        help="drop frames when slower than the source (default for cameras)",
    )
    live.add_argument(
        "--every-frame",
        dest="live",
        action="store_false",
        help="score every frame, however long it takes (default for files)",
    )
    p.add_argument("--threshold", type=float, help="override the card's operating threshold")
    p.add_argument("--k", type=int, default=3, help="frames of the last n needed to change colour")
    p.add_argument("--n", type=int, default=4, help="window of the k-of-n smoothing")
    p.add_argument("--margin", type=float, default=0.5, help="uncertain band, logits")
    p.add_argument("--reconnects", type=int, default=3, help="tries after a stream drops")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    cfg = MonitorConfig(
        model=args.model,
        source=args.source,
        out=args.out,
        show=args.show,
        live=args.live,
        threshold=args.threshold,
        k=args.k,
        n=args.n,
        margin=args.margin,
        reconnects=args.reconnects,
        max_frames=args.max_frames,
        threads=args.threads,
    )
    result = run_monitor(cfg)
    print(format_stats(result.stats))
    if result.out:
        print(f"annotated video: {result.out}")
    return 0


__all__ = [
    "MonitorConfig",
    "MonitorResult",
    "MonitorStats",
    "clip_truth",
    "Overlay",
    "Smoother",
    "VideoOut",
    "format_stats",
    "frame_problem",
    "open_capture",
    "parse_source",
    "run_monitor",
]
