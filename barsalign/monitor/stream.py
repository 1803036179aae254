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

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.errors import BarsalignError
from barsalign.evaluation.metrics import check_threshold
from barsalign.inference import card_path, load_predictor
from barsalign.monitor.overlay import Overlay
from barsalign.monitor.smoother import Smoother, resolve_smoothing
from barsalign.monitor.source import _Reader, parse_source
from barsalign.monitor.stats import MonitorStats
from barsalign.outputs import check_output_file


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
    k: int | None = None  # None: the card's smoothing (06_export's sweep), else 3 of 4
    n: int | None = None
    margin: float | None = None  # logits; None as k
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
    smoothing: dict[str, Any] = field(default_factory=dict)  # k, n, margin, source
    threshold: float = 0.5


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
    smoothing = resolve_smoothing(model.card, cfg.k, cfg.n, cfg.margin)
    smoother = Smoother(threshold, smoothing["k"], smoothing["n"], smoothing["margin"])
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
    return MonitorResult(
        stats,
        records,
        Path(cfg.out) if cfg.out else None,
        model.card,
        snapshots,
        smoothing,
        threshold,
    )


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
