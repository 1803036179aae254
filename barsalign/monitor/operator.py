"""The numbers an operator judges a monitor by, on video whose truth is known per frame.

Truth is 1 where every bar is truly at the stopper. From it and the states the monitor showed
(green "aligned", red "not_aligned", amber "uncertain") at each scored frame's time:

- **time to green**: per alignment episode (a run of truly aligned frames), the seconds from its
  first frame to the first green frame within it; an episode that never turns green waits
  forever (`inf`) and is counted as missed;
- **false-green events**: green episodes (runs of green frames) that start or hold while the
  bars are not truly aligned, per hour of video;
- **flicker**: changes of the state shown, per minute; **amber share**: the time shown amber.

Your own clips carry their truth in a CSV beside the clip (`frame,aligned` or `time,aligned`,
read by `read_truth_csv`); the synthetic ones in their data set's metadata (`clip_truth`).
`sweep` replays the `Smoother` over scores computed once, for a grid of smoothing settings, and
`pick_setting` chooses the one an operator wants: no false green, then the quickest green
(then the fewest waits never green).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.errors import BarsalignError
from barsalign.monitor.smoother import ALIGNED, UNCERTAIN, Smoother

DEFAULT_GRID = tuple(
    (k, n, m)
    for k, n in ((1, 1), (2, 2), (2, 3), (3, 4), (3, 5), (4, 5), (5, 6), (6, 8))
    for m in (0.0, 0.5, 1.0, 1.5)
)
"""(k, n, margin) settings 06_export tries."""


@dataclass
class ClipEvents:
    """What one stretch of video showed against its truth (summed over clips by `summarize`)."""

    time_to_green_s: list[float]  # one per alignment episode; inf: never green within it
    false_green: int  # green episodes touching a frame that is truly not aligned
    changes: int  # state changes between consecutive scored frames
    seconds: float
    amber_s: float
    frames: int


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in `mask`."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def clip_events(
    truth: Sequence[int], states: Sequence[str], times: Sequence[float], frame_s: float
) -> ClipEvents:
    """Compare the states shown with the truth at the same scored frames.

    Args:
        truth: 1 (all bars aligned) or 0 at each scored frame.
        states: the state shown at each scored frame.
        times: each scored frame's time in the video, seconds, increasing.
        frame_s: how long one source frame lasts (1 / fps): the last frame's duration.
    """
    y = np.asarray(truth, dtype=int)
    s = np.asarray(states, dtype=object)
    t = np.asarray(times, dtype=float)
    if not len(y) == len(s) == len(t):
        raise BarsalignError(
            f"truth, states and times differ in length ({len(y)}, {len(s)}, {len(t)})"
        )
    if len(t) and np.any(np.diff(t) <= 0):
        raise BarsalignError("frame times must increase")
    if frame_s <= 0:
        raise BarsalignError(f"frame_s must be > 0, not {frame_s}")
    dur = np.append(np.diff(t), frame_s) if len(t) else np.zeros(0)
    green = s == ALIGNED
    ttg = []
    for a, b in _runs(y == 1):
        hits = np.flatnonzero(green[a:b])
        ttg.append(float(t[a + hits[0]] - t[a]) if len(hits) else math.inf)
    false_green = sum(int(np.any(y[a:b] == 0)) for a, b in _runs(green))
    return ClipEvents(
        time_to_green_s=ttg,
        false_green=false_green,
        changes=int(np.sum(s[1:] != s[:-1])) if len(s) else 0,
        seconds=float(dur.sum()),
        amber_s=float(dur[s == UNCERTAIN].sum()),
        frames=len(s),
    )


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile where `inf` (never green) ranks last; nan when empty."""
    if not values:
        return math.nan
    v = np.sort(np.asarray(values, dtype=float))
    pos = q * (len(v) - 1)
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    if math.isinf(v[hi]):  # between a finite wait and a never: never
        return math.inf
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def summarize(events: Iterable[ClipEvents]) -> dict[str, Any]:
    """The operator's metrics over one or more clips (episodes pooled, rates over all time)."""
    events = list(events)
    ttg = [x for e in events for x in e.time_to_green_s]
    seconds = sum(e.seconds for e in events)
    false_green = sum(e.false_green for e in events)
    changes = sum(e.changes for e in events)
    return {
        "frames": sum(e.frames for e in events),
        "video_s": round(seconds, 3),
        "episodes": len(ttg),
        "episodes_never_green": sum(math.isinf(x) for x in ttg),
        "time_to_green_median_s": _quantile(ttg, 0.5),
        "time_to_green_p95_s": _quantile(ttg, 0.95),
        "false_green_events": false_green,
        "false_green_per_hour": false_green / (seconds / 3600.0) if seconds else math.nan,
        "flicker_per_min": changes / (seconds / 60.0) if seconds else math.nan,
        "amber_share": sum(e.amber_s for e in events) / seconds if seconds else math.nan,
    }


def operator_metrics(
    truth: Sequence[int], states: Sequence[str], times: Sequence[float], frame_s: float
) -> dict[str, Any]:
    """`summarize` of one clip's `clip_events`."""
    return summarize([clip_events(truth, states, times, frame_s)])


def records_metrics(
    records: Sequence[dict[str, Any]], truth: Sequence[int], fps: float
) -> dict[str, Any]:
    """The metrics of a monitor run (`MonitorResult.records`) against per-frame truth of the
    whole source (indexed by frame number, as `clip_truth` and `truth_for_frames` give it)."""
    if fps <= 0:
        raise BarsalignError(f"the source's frame rate is unknown ({fps}): cannot time events")
    frames = [int(r["frame"]) for r in records]
    if frames and max(frames) >= len(truth):
        raise BarsalignError(
            f"the truth covers {len(truth)} frames but frame {max(frames)} was scored"
        )
    y = [int(truth[f]) for f in frames]
    return operator_metrics(y, [r["state"] for r in records], [f / fps for f in frames], 1 / fps)


def format_metrics(m: dict[str, Any]) -> str:
    """The operator's metrics as a few printed lines."""

    def sec(x: float) -> str:
        return "never" if math.isinf(x) else "--" if math.isnan(x) else f"{x:.2f} s"

    return "\n".join(
        [
            f"operator metrics on {m['frames']} frames ({m['video_s'] / 60:.1f} min of video), "
            f"{m['episodes']} alignment episodes ({m['episodes_never_green']} never green)",
            f"time to green: median {sec(m['time_to_green_median_s'])}, "
            f"p95 {sec(m['time_to_green_p95_s'])}",
            f"false-green events: {m['false_green_events']} "
            f"({m['false_green_per_hour']:.2f} per hour)",
            f"flicker: {m['flicker_per_min']:.2f} state changes per minute; "
            f"amber {m['amber_share']:.1%} of the time",
        ]
    )


def jsonable(m: dict[str, Any]) -> dict[str, Any]:
    """The metrics with inf/nan spelled as JSON can hold them (None; `never` for inf)."""
    out: dict[str, Any] = {}
    for k, v in m.items():
        if isinstance(v, float) and math.isinf(v):
            out[k] = "never"
        elif isinstance(v, float) and math.isnan(v):
            out[k] = None
        else:
            out[k] = round(v, 4) if isinstance(v, float) else v
    return out


# --- truth from a CSV beside your own clip -------------------------------------------------


def read_truth_csv(path: str | Path) -> tuple[str, list[float], list[int]]:
    """("frame" or "time", keys, aligned) from a CSV with a header `frame,aligned` or
    `time,aligned` (seconds); keys strictly increasing, aligned 0/1 (or true/false)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BarsalignError(f"truth file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BarsalignError(f"cannot read truth file {path}: {err}") from None
    rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
    if not rows:
        raise BarsalignError(f"truth file {path} is empty: it needs a header frame,aligned")
    header = [c.strip().lower() for c in rows[0]]
    if len(header) != 2 or header[0] not in ("frame", "time") or header[1] != "aligned":
        raise BarsalignError(
            f"truth file {path}: header is {','.join(rows[0])!r}, not frame,aligned or time,aligned"
        )
    if len(rows) < 2:
        raise BarsalignError(f"truth file {path} has a header but no rows")
    kind = header[0]
    keys: list[float] = []
    aligned: list[int] = []
    values = {"1": 1, "0": 0, "true": 1, "false": 0}
    for n, row in enumerate(rows[1:], 2):
        if len(row) != 2:
            raise BarsalignError(f"truth file {path}:{n}: {len(row)} fields, not 2")
        try:
            key = int(row[0]) if kind == "frame" else float(row[0])
        except ValueError:
            raise BarsalignError(
                f"truth file {path}:{n}: {kind} {row[0]!r} is not a number"
            ) from None
        flag = values.get(row[1].strip().lower())
        if flag is None:
            raise BarsalignError(f"truth file {path}:{n}: aligned {row[1]!r} is not 0 or 1")
        if not math.isfinite(key) or key < 0:
            raise BarsalignError(f"truth file {path}:{n}: {kind} {row[0]} is not >= 0")
        if keys and key <= keys[-1]:
            raise BarsalignError(
                f"truth file {path}:{n}: {kind} {row[0]} does not follow {keys[-1]:g} "
                "(rows must increase)"
            )
        keys.append(key)
        aligned.append(flag)
    return kind, keys, aligned


def truth_for_frames(path: str | Path, n_frames: int, fps: float) -> list[int]:
    """Per-frame truth of a clip of `n_frames` at `fps` from its truth CSV.

    `frame,aligned` must list every frame 0..n_frames-1; `time,aligned` gives each frame the
    value of the last row at or before its time, and must start at 0 and not end after the clip.
    """
    kind, keys, aligned = read_truth_csv(path)
    if kind == "frame":
        if keys != list(range(len(keys))) or len(keys) != n_frames:
            missing = sorted(set(range(n_frames)) - {int(k) for k in keys})[:3]
            raise BarsalignError(
                f"truth file {path}: lists {len(keys)} frames (up to {int(keys[-1])}) but the "
                f"clip has {n_frames}" + (f"; frame {missing[0]} is missing" if missing else "")
            )
        return aligned
    if fps <= 0:
        raise BarsalignError(f"truth file {path} gives times, but the clip's fps is unknown")
    length = n_frames / fps
    if keys[0] != 0:
        raise BarsalignError(f"truth file {path}: the first time is {keys[0]:g} s, not 0")
    if keys[-1] >= length:
        raise BarsalignError(
            f"truth file {path}: time {keys[-1]:g} s is past the clip's end ({length:.2f} s)"
        )
    idx = np.searchsorted(np.asarray(keys), np.arange(n_frames) / fps + 1e-9, side="right") - 1
    return [aligned[i] for i in idx]


# --- the smoothing sweep: score once, replay the Smoother ---------------------------------


def replay(scores: Sequence[float], threshold: float, k: int, n: int, margin: float) -> list[str]:
    """The states a fresh `Smoother(threshold, k, n, margin)` shows for these scores."""
    smoother = Smoother(threshold, k, n, margin)
    return [smoother.update(s) for s in scores]


@dataclass(frozen=True)
class ScoredClip:
    """One clip's scores, computed once, with its truth at the same frames."""

    name: str
    scores: list[float]
    truth: list[int]
    times: list[float]
    frame_s: float

    @classmethod
    def from_records(
        cls, name: str, records: Sequence[dict[str, Any]], truth: Sequence[int], fps: float
    ) -> ScoredClip:
        """From a monitor run's records and the source's per-frame truth."""
        frames = [int(r["frame"]) for r in records]
        if frames and max(frames) >= len(truth):
            raise BarsalignError(f"{name}: the truth covers {len(truth)} frames, fewer than scored")
        return cls(
            name,
            [float(r["score"]) for r in records],
            [int(truth[f]) for f in frames],
            [f / fps for f in frames],
            1 / fps,
        )


def sweep(
    clips: Sequence[ScoredClip],
    threshold: float,
    grid: Iterable[tuple[int, int, float]] = DEFAULT_GRID,
) -> list[dict[str, Any]]:
    """One row of operator metrics per (k, n, margin), pooled over the clips."""
    rows = []
    for k, n, margin in grid:
        events = [
            clip_events(c.truth, replay(c.scores, threshold, k, n, margin), c.times, c.frame_s)
            for c in clips
        ]
        rows.append({"k": k, "n": n, "margin": margin, **summarize(events)})
    return rows


def pick_setting(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with no false-green event and the lowest median time to green (tie: the fewest
    episodes never green, then the least flicker); None when every setting showed green while
    the bars were not aligned (or the clips hold no aligned episode)."""
    safe = [r for r in rows if r["false_green_events"] == 0 and r["episodes"] > 0]
    if not safe:
        return None

    def key(r: dict[str, Any]) -> tuple[float, int, float]:
        med = r["time_to_green_median_s"]
        return (
            math.inf if math.isnan(med) else med,
            r["episodes_never_green"],
            r["flicker_per_min"],
        )

    return min(safe, key=key)


def score_shift(model: str | Path, shift_dir: str | Path) -> tuple[ScoredClip, float]:
    """Score a `barsalign synth --shift` folder's video once, with its per-frame truth."""
    from barsalign.synth.shift import SHIFT_CLIP

    video = Path(shift_dir) / SHIFT_CLIP
    if not video.is_file():
        raise BarsalignError(
            f"shift folder {shift_dir}: no {SHIFT_CLIP} (render one with `barsalign synth "
            f"--shift --out {shift_dir}`)"
        )
    (scored,), threshold = score_clips(model, [video])
    return scored, threshold


def clip_truth_for(
    source: str | Path, truth: str | Path | None, n_frames: int, fps: float
) -> list[int]:
    """Per-frame truth of a video file: from the CSV `truth`, or (None) the CSV beside the clip
    (same name, `.csv`), else the synthetic data set's metadata; one line when there is none."""
    from barsalign.monitor.stream import clip_truth

    if truth is not None:
        return truth_for_frames(truth, n_frames, fps)
    beside = Path(source).with_suffix(".csv")
    if beside.is_file():
        return truth_for_frames(beside, n_frames, fps)
    found = clip_truth(source)
    if found is None:
        raise BarsalignError(
            f"{source} has no truth: put {beside.name} (frame,aligned) beside it, or give "
            "--truth CSV"
        )
    if len(found) != n_frames:
        raise BarsalignError(
            f"{source}: its data set's metadata.jsonl gives truth for {len(found)} frames, "
            f"the video has {n_frames}"
        )
    return found


def video_frames(source: str | Path, scored: int) -> int:
    """The container's frame count (so a run cut short still checks its truth), else `scored`."""
    import cv2

    cap = cv2.VideoCapture(str(source))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return n if n > 0 else scored


def score_clips(
    model: str | Path, clips: Sequence[str | Path], threads: int | None = None
) -> tuple[list[ScoredClip], float]:
    """Score every frame of each clip once, as the monitor does, with each clip's truth
    (`clip_truth_for`); returns the clips and the operating threshold they were scored at."""
    from barsalign.monitor.stream import MonitorConfig, run_monitor

    scored, threshold = [], 0.5
    for clip in clips:
        result = run_monitor(MonitorConfig(str(model), str(clip), live=False, threads=threads))
        fps = result.stats.source_fps
        truth = clip_truth_for(clip, None, video_frames(clip, result.stats.frames_read), fps)
        scored.append(ScoredClip.from_records(Path(clip).name, result.records, truth, fps))
        threshold = result.threshold
    return scored, threshold
