"""A shift at the stopper: an hour (or `minutes`) of synthetic video with per-frame truth.

One camera watches cycles strung together: the table idle (stopper, no bars), bars rolling
in, bars at rest (all flush, some short, or one a hard 3-8 px short), short bars pushed flush,
the aligned bars held until they are cut, then the table idle again. The light goes from day
through artificial light to night over the shift. Frames are drawn by the clip renderer
(`render`), so a frame of a shift is a frame of the data set.

It stays cheap by drawing what changes: every frame of a cycle shares the cycle's seed (the
same hall, floor and light; the bars move), a still phase is drawn once, and each frame gets
fresh sensor noise at the cycle's sigma, so no two frames are equal. At 5 fps an hour is 18000
frames from about 1100 drawings (`benchmarks/bench_synth.py --shift-minutes M` times it).

Output (`render_shift`): `clips/shift.mp4`, `metadata.jsonl` (one truth record per frame, as
the data set's clips have, so `monitor.clip_truth` reads it) and `shift.json` (the config,
the frame rate, the phases).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from barsalign.errors import BarsalignError
from barsalign.synth.dataset import RENDERER_VERSION, partial_dir, write_jsonl
from barsalign.synth.geometry import SceneSpec, gap_units_for, gaps_px
from barsalign.synth.render import render
from barsalign.synth.scenes import SynthConfig, build_spec, recording_sessions

SHIFT_CLIP = "clips/shift.mp4"


@dataclass(frozen=True)
class ShiftConfig:
    """What shift to render.

    Args:
        minutes: length of the video.
        fps: frames per second of the video (a modest rate keeps an hour cheap).
        start: the clock time burned into the first frame; the light follows the shift's
            progress (day for its first 40 %, artificial light to 70 %, then night).
        flush_fraction, hard_fraction: shares of cycles whose bars all arrive flush, and whose
            one bar stops a hard 3-8 px short; the rest stop some bars 3-30 units short.
    """

    minutes: float = 60.0
    fps: int = 5
    seed: int = 0
    width: int = 1152
    height: int = 864
    start: str = "2026-03-01 16:00:00"
    idle_s: tuple[float, float] = (6.0, 30.0)
    roll_s: tuple[float, float] = (1.2, 2.4)
    wait_s: tuple[float, float] = (2.0, 10.0)
    push_frames: int = 3
    hold_s: tuple[float, float] = (8.0, 25.0)
    flush_fraction: float = 0.35
    hard_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise BarsalignError(f"minutes must be > 0, not {self.minutes}")
        if not 1 <= self.fps <= 60:
            raise BarsalignError(f"fps must lie in 1..60, not {self.fps}")
        if (
            self.flush_fraction + self.hard_fraction > 1
            or min(self.flush_fraction, self.hard_fraction) < 0
        ):
            raise BarsalignError("flush_fraction and hard_fraction must be >= 0, at most 1 in sum")
        if self.push_frames < 1:
            raise BarsalignError("push_frames must be >= 1")
        SynthConfig(width=self.width, height=self.height)  # the frame size's own checks
        try:
            datetime.datetime.strptime(self.start, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise BarsalignError(
                f"start must look like 2026-03-01 16:00:00, not {self.start!r}"
            ) from None

    @property
    def frames(self) -> int:
        return max(1, int(round(self.minutes * 60 * self.fps)))

    def synth_config(self) -> SynthConfig:
        return SynthConfig(seed=self.seed, width=self.width, height=self.height)


def lighting_at(progress: float) -> str:
    """The light at this share of the shift: day, then artificial, then night."""
    return "day" if progress < 0.4 else "artificial" if progress < 0.7 else "night"


@dataclass(frozen=True)
class Shot:
    """One drawing and how many consecutive frames show it (a still phase: many)."""

    spec: SceneSpec  # drawn without noise; each frame adds its own
    frames: int
    phase: str
    cycle: int
    kind: str


def _with_gaps(spec: SceneSpec, gaps: np.ndarray, speed: float = 0.0) -> SceneSpec:
    bars = tuple(
        dataclasses.replace(b, gap_units=float(g), speed=speed if g > 0 else 0.0)
        for b, g in zip(spec.bars, gaps, strict=True)
    )
    return dataclasses.replace(spec, bars=bars)


def _stamp(start: str, seconds: float) -> str:
    t = datetime.datetime.strptime(start, "%Y-%m-%d %H:%M:%S")
    return (t + datetime.timedelta(seconds=int(seconds))).strftime("%Y-%m-%d %H:%M:%S")


def shift_shots(cfg: ShiftConfig) -> Iterator[Shot]:
    """The shift as shots, cycle after cycle, until `cfg.frames` frames (the last cut short)."""
    scfg = cfg.synth_config()
    session = recording_sessions(scfg)[0]  # one camera all shift
    rng = np.random.default_rng([cfg.seed, 31])
    made, cycle = 0, 0

    def seconds(span: tuple[float, float]) -> int:
        return max(1, int(round(rng.uniform(*span) * cfg.fps)))

    while made < cfg.frames:
        light = lighting_at(made / cfg.frames)
        r = rng.random()
        kind = "short"
        if r < cfg.flush_fraction + cfg.hard_fraction:
            kind = "flush" if r < cfg.flush_fraction else "hard"
        n = int(rng.integers(scfg.min_bars, scfg.max_bars + 1))
        scene = {
            "label": "aligned",
            "scene": "bars_at_stopper",
            "kind": "shift",
            "lighting": light,
            "skewed": False,
            "motion_blur": False,
            "gaps_px": [0.0] * n,
        }
        stamp = _stamp(cfg.start, made / cfg.fps)
        seed = int(rng.integers(2**31))
        base = build_spec(scfg, scene, session, seed, rng, stamp)
        base = dataclasses.replace(base, noise_sigma=0.0, jpeg_quality=100)
        rest = np.zeros(n)
        if kind == "short":
            short = rng.choice(n, size=int(rng.integers(1, max(1, n // 3) + 1)), replace=False)
            rest[short] = rng.uniform(3.0, 30.0, len(short))
        elif kind == "hard":
            i = int(rng.integers(n))
            rest[i] = gap_units_for(base, base.bars[i].v_center, rng.uniform(*scfg.hard_gap_px))
        start = rng.uniform(150.0, 450.0, n)
        roll = seconds(cfg.roll_s)
        arrive = np.maximum(1.0, rng.uniform(0.6, 1.0, n) * roll)
        idle = dataclasses.replace(base, bars=())
        shots = [Shot(idle, seconds(cfg.idle_s), "idle", cycle, kind)]
        for f in range(roll):
            frac = np.minimum(1.0, (f + 1) / arrive)
            gaps = start + (rest - start) * frac
            speed = float(np.mean((start - rest) / arrive))
            shots.append(Shot(_with_gaps(base, gaps, speed), 1, "rolling", cycle, kind))
        if kind != "flush":
            shots.append(Shot(_with_gaps(base, rest), seconds(cfg.wait_s), "waiting", cycle, kind))
            for j in range(1, cfg.push_frames):
                gaps = rest * (1.0 - j / cfg.push_frames)
                shots.append(Shot(_with_gaps(base, gaps), 1, "push", cycle, kind))
        shots.append(Shot(_with_gaps(base, np.zeros(n)), seconds(cfg.hold_s), "held", cycle, kind))
        for shot in shots:
            take = min(shot.frames, cfg.frames - made)
            if take <= 0:
                return
            yield dataclasses.replace(shot, frames=take)
            made += take
        cycle += 1


def _noise_sigma(shot: Shot, seed: int) -> float:
    """The cycle's sensor noise (the spec is drawn without it)."""
    light = shot.spec.lighting
    lo, hi = {"day": (1.0, 4.0), "artificial": (2.0, 6.0), "night": (4.0, 9.0)}[light]
    return float(np.random.default_rng([seed, 37, shot.cycle]).uniform(lo, hi))


class _Noise:
    """Fresh sensor noise for every frame, cheaply: random windows of a few stored fields."""

    PAD = 16

    def __init__(self, width: int, height: int, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 41])
        shape = (height + self.PAD, width + self.PAD, 3)
        self.bank = [
            (self.rng.standard_normal(shape, dtype=np.float32) * 64).astype(np.int16)
            for _ in range(4)
        ]
        self.size = (width, height)

    def add(self, img16: np.ndarray, sigma: float) -> np.ndarray:
        """`img16` (int16 BGR) plus N(0, sigma) noise, saturated to uint8."""
        w, h = self.size
        y, x = self.rng.integers(0, self.PAD, 2)
        field = self.bank[int(self.rng.integers(len(self.bank)))][y : y + h, x : x + w]
        return cv2.addWeighted(img16, 1.0, field, sigma / 64.0, 0.0, dtype=cv2.CV_8U)


def _truth(spec: SceneSpec, tolerance: float) -> dict[str, Any]:
    gaps = gaps_px(spec)
    aligned = bool(gaps) and max(gaps) <= tolerance
    return {
        "label": "aligned" if aligned else "not_aligned",
        "n_bars": len(spec.bars),
        "max_gap_px": round(max(gaps), 2) if gaps else None,
        "lighting": spec.lighting,
    }


def render_shift(
    out_dir: str | Path,
    cfg: ShiftConfig | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Render the shift into `out_dir` (atomically): the video, its per-frame truth, shift.json."""
    cfg = cfg or ShiftConfig()
    workers = workers or min(4, os.cpu_count() or 1)
    started = time.perf_counter()
    tolerance = cfg.synth_config().align_tolerance_px
    shots = list(shift_shots(cfg))
    records: list[dict[str, Any]] = []
    phases: list[dict[str, Any]] = []
    noise = _Noise(cfg.width, cfg.height, cfg.seed)
    with partial_dir(out_dir, overwrite) as (out, tmp):
        (tmp / "clips").mkdir()
        path = tmp / SHIFT_CLIP
        writer = cv2.VideoWriter(
            str(path), cv2.VideoWriter_fourcc(*"mp4v"), cfg.fps, (cfg.width, cfg.height)
        )
        if not writer.isOpened():
            raise BarsalignError(f"{path}: OpenCV cannot open an mp4 writer here")
        try:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                drawn = pool.map(render, [s.spec for s in shots], chunksize=2)
                for shot, img in zip(shots, drawn, strict=True):
                    img16 = img.astype(np.int16)
                    sigma = _noise_sigma(shot, cfg.seed)
                    truth = _truth(shot.spec, tolerance)
                    if not phases or phases[-1]["phase"] != shot.phase:
                        phases.append(
                            {"phase": shot.phase, "cycle": shot.cycle, "frame": len(records)}
                        )
                    for _ in range(shot.frames):
                        writer.write(noise.add(img16, sigma))
                        f = len(records)
                        records.append(
                            {
                                "file": SHIFT_CLIP,
                                "frame": f,
                                "time_s": round(f / cfg.fps, 3),
                                "clip_id": "shift",
                                "subset": "shift",
                                "phase": shot.phase,
                                "cycle": shot.cycle,
                                "kind": shot.kind,
                                **truth,
                            }
                        )
                    if progress and shot.cycle % 10 == 0 and shot.phase == "idle":
                        print(f"shift: {len(records)} / {cfg.frames} frames", flush=True)
        finally:
            writer.release()
        write_jsonl(tmp / "metadata.jsonl", records)
        aligned = sum(r["label"] == "aligned" for r in records)
        info = {
            "config": dataclasses.asdict(cfg),
            "fps": cfg.fps,
            "frames": len(records),
            "seconds": len(records) / cfg.fps,
            "aligned_frames": aligned,
            "cycles": records[-1]["cycle"] + 1,
            "drawings": len(shots),
            "renderer_version": RENDERER_VERSION,
            "video": SHIFT_CLIP,
            "phases": phases,
        }
        (tmp / "shift.json").write_text(json.dumps(info, indent=1) + "\n")
    if progress:
        print(
            f"wrote {len(records)} frames ({len(shots)} drawings, {info['cycles']} cycles) to "
            f"{out / SHIFT_CLIP} in {time.perf_counter() - started:.1f} s"
        )
    return out
