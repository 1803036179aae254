"""The synthetic conveyor: the project's default data set, rendered from a seed and a config.

`render_dataset` writes the plant's own layout — a labelled `example_set/`, an unlabelled
`train_set/` pool, short `clips/` — plus `metadata.jsonl` with each frame's truth. The same seed
and config give the same bytes, whatever the number of workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from barsalign.config import LOOKS_DIR, SYNTH_DIR
from barsalign.errors import BarsalignError
from barsalign.looks import LOOKS, Look, get_look
from barsalign.render import (
    BED_V,
    PROFILES,
    Bar,
    SceneSpec,
    encode_jpeg,
    gap_units_for,
    gaps_px,
    head_points_px,
    stopper_face_px,
)
from barsalign.render import render as render_spec

SCENES = ("bars_at_stopper", "bars_no_stopper", "stopper_no_bars", "background")
LIGHTINGS = ("day", "artificial", "night")
LABELS = ("aligned", "not_aligned")
RENDERER_VERSION = 3
"""Bumped whenever the drawing changes, so `ensure_default` re-renders a stale default set."""
STOPPER_ROI = (0.6111, 0.0752, 1.0, 0.5938)
"""The synthetic cameras' stopper region (x0, y0, x1, y1 frame fractions; 704..1152 x 65..513
at 1152x864): every bar head at the stopper, over all sessions' camera shifts and zoom, lies
inside it with a margin (a test checks). A plant engineer draws the same box once per camera."""


def resolve_roi(roi: Any, data_dir: str | Path | None) -> tuple[float, float, float, float] | None:
    """A `roi` parameter: "auto" is STOPPER_ROI on the synthetic default (`data_dir` None) and
    the whole frame (None) on other data; anything else goes through `parse_roi`."""
    from barsalign.preprocess import parse_roi

    if isinstance(roi, str) and roi.strip().lower() == "auto":
        return STOPPER_ROI if data_dir is None else None
    return parse_roi(roi)


@dataclass(frozen=True)
class SynthConfig:
    """What to render. Defaults make the data set every notebook uses out of the box.

    Args:
        aligned_fraction: share of aligned frames (the rest is not aligned: imbalance).
        other_scene_fraction: share of frames with no bars, no stopper or background only.
        hard_fraction: share of not-aligned bar scenes where one bar is `hard_gap_px` short.
        lighting_mix: weights of day, artificial and night frames (night: gray mean < 55).
        sequence_length: still frames come in short sequences sharing one `clip_id`.
        twin_fraction: share of the pool's not-aligned bar scenes drawn a second time with
            every bar flush (same textures, noise and camera: aligned), in the same clip group.
            Such a pair differs only where a bar head meets the stopper.
        look: the camera and scene look (`LOOKS`); `look_config` also sets the look's fields.
    """

    seed: int = 0
    width: int = 1152
    height: int = 864
    n_example: int = 300
    n_pool: int = 2400
    n_clips: int = 4
    clip_frames: int = 60
    clip_fps: int = 12
    aligned_fraction: float = 0.35
    other_scene_fraction: float = 0.15
    hard_fraction: float = 0.35
    lighting_mix: tuple[float, float, float] = (0.45, 0.35, 0.20)
    min_bars: int = 6
    max_bars: int = 14
    hard_gap_px: tuple[float, float] = (3.0, 8.0)
    align_tolerance_px: float = 1.0
    skew_fraction: float = 0.15
    motion_blur_fraction: float = 0.25
    glare_fraction: float = 0.2
    dust_fraction: float = 0.3
    jpeg_quality: tuple[int, int] = (45, 92)
    n_sessions: int = 6
    sequence_length: tuple[int, int] = (1, 4)
    twin_fraction: float = 0.0
    look: str = "default"

    def __post_init__(self) -> None:
        get_look(self.look)
        counts = ("n_example", "n_pool", "n_clips", "clip_frames", "clip_fps", "n_sessions")
        for name in counts:
            if getattr(self, name) < 0:
                raise BarsalignError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "aligned_fraction",
            "other_scene_fraction",
            "hard_fraction",
            "skew_fraction",
            "motion_blur_fraction",
            "glare_fraction",
            "dust_fraction",
            "twin_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise BarsalignError(f"{name} is a probability and must lie in 0..1, got {value}")
        if self.aligned_fraction + self.other_scene_fraction > 1.0:
            raise BarsalignError("aligned_fraction + other_scene_fraction must not exceed 1")
        if self.width < 64 or self.height < 48:
            raise BarsalignError(f"frame size {self.width}x{self.height} is too small (64x48 min)")
        if not 1 <= self.min_bars <= self.max_bars:
            raise BarsalignError(
                f"need 1 <= min_bars <= max_bars, got {self.min_bars}..{self.max_bars}"
            )
        if len(self.lighting_mix) != 3 or min(self.lighting_mix) < 0 or sum(self.lighting_mix) <= 0:
            raise BarsalignError(
                f"lighting_mix needs 3 non-negative weights, got {self.lighting_mix}"
            )
        if self.n_sessions < 1:
            raise BarsalignError("n_sessions must be >= 1")
        lo, hi = self.sequence_length
        if not 1 <= lo <= hi:
            raise BarsalignError(f"sequence_length must be 1 <= min <= max, got {lo}..{hi}")
        if not 0 < self.hard_gap_px[0] <= self.hard_gap_px[1]:
            raise BarsalignError(f"hard_gap_px must be 0 < min <= max, got {self.hard_gap_px}")
        if self.align_tolerance_px >= self.hard_gap_px[0]:
            raise BarsalignError("align_tolerance_px must be below the smallest hard gap")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise BarsalignError(
                f"jpeg_quality must be 1 <= min <= max <= 100, got {self.jpeg_quality}"
            )

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.look == "default":  # so the default set's stamp keeps its bytes
            del out["look"]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SynthConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        )


@dataclass(frozen=True)
class Session:
    """One camera setup: small shifts, zoom and lens differences between recording sessions."""

    camera: str
    shift: tuple[float, float]
    zoom: float
    roll_deg: float
    distortion: float
    day: str


def _sessions(cfg: SynthConfig, first_day: int = 0) -> list[Session]:
    """The config's recording sessions: the look's cameras in turn, one day each from
    `first_day` (days after 2026-03-01), so sets rendered apart can keep their sessions apart."""
    look = get_look(cfg.look)
    rng = np.random.default_rng([cfg.seed, 7])
    sx, sy = look.shift_px
    out = []
    for i in range(cfg.n_sessions):
        d = first_day + i
        out.append(
            Session(
                camera=look.cameras[i % len(look.cameras)],
                shift=(float(rng.uniform(-sx, sx)), float(rng.uniform(-sy, sy))),
                zoom=float(rng.uniform(*look.zoom)),
                roll_deg=float(rng.uniform(-look.roll_deg, look.roll_deg)),
                distortion=float(rng.uniform(*look.distortion)),
                day=f"2026-{3 + d // 28:02d}-{1 + d % 28:02d}",
            )
        )
    return out


def _choice(rng: np.random.Generator, items: tuple[str, ...], weights) -> str:
    w = np.asarray(weights, dtype=float)
    return items[int(rng.choice(len(items), p=w / w.sum()))]


def sample_scene(cfg: SynthConfig, rng: np.random.Generator, session: Session) -> dict[str, Any]:
    """Draw what a frame shows: label, scene type, lighting, bars and their gaps (pixels)."""
    r = rng.random()
    label = "aligned" if r < cfg.aligned_fraction else "not_aligned"
    scene = "bars_at_stopper"
    if label == "not_aligned" and r < cfg.aligned_fraction + cfg.other_scene_fraction:
        scene = _choice(rng, SCENES[1:], (1, 1, 1))
    lighting = _choice(rng, LIGHTINGS, cfg.lighting_mix)
    n = int(rng.integers(cfg.min_bars, cfg.max_bars + 1)) if scene in SCENES[:2] else 0
    gaps = [0.0] * n
    kind = "flush"
    if scene == "bars_at_stopper" and label == "not_aligned":
        if rng.random() < cfg.hard_fraction:
            kind = "hard"
            gaps[int(rng.integers(n))] = float(rng.uniform(*cfg.hard_gap_px))
        else:
            kind = "rolling"
            short = rng.choice(n, size=int(rng.integers(1, max(2, n // 2) + 1)), replace=False)
            for i in short:
                gaps[int(i)] = float(np.exp(rng.uniform(np.log(12.0), np.log(320.0))))
    if scene == "bars_no_stopper":
        kind = "no_stopper"
    skew = scene == "bars_at_stopper" and rng.random() < cfg.skew_fraction
    blur = kind == "rolling" and rng.random() < cfg.motion_blur_fraction
    return {
        "label": label,
        "scene": scene,
        "lighting": lighting,
        "gaps_px": gaps,
        "kind": kind,
        "skewed": bool(skew),
        "motion_blur": bool(blur),
    }


def _mix_weights(look: Look) -> tuple[float, ...]:
    """Profiles drawn on a mixed table: every profile the look has, alike."""
    return tuple(1.0 if w > 0 else 0.0 for w in look.profile_weights)


def build_spec(
    cfg: SynthConfig,
    scene: dict[str, Any],
    session: Session,
    seed: int,
    rng: np.random.Generator,
    stamp: str,
) -> SceneSpec:
    """Turn a sampled scene into a drawable `SceneSpec` (bar layout, light, degradations)."""
    look = get_look(cfg.look)
    n = len(scene["gaps_px"])
    profile = _choice(rng, PROFILES, look.profile_weights)
    mixed = rng.random() < look.mixed_fraction
    spacing = float(rng.uniform(*look.bar_spacing))
    width = float(min(rng.uniform(*look.bar_width), (BED_V - 80) / max(n, 1) - spacing))
    v = float(rng.uniform(20.0, max(21.0, BED_V - 20 - n * (width + spacing))))
    light = scene["lighting"]
    gain = {
        "day": rng.uniform(0.95, 1.3),
        "artificial": rng.uniform(0.7, 0.95),
        "night": rng.uniform(0.16, 0.28),
    }[light]
    skew_bar = int(rng.integers(n)) if scene["skewed"] and n else -1
    no_stopper = scene["scene"] in ("bars_no_stopper", "background")
    (ox0, ox1), (oy0, oy1) = look.no_stopper_offset
    view = (float(rng.uniform(ox0, ox1)), float(rng.uniform(oy0, oy1))) if no_stopper else (0, 0)
    base = SceneSpec(
        seed=seed,
        width=cfg.width,
        height=cfg.height,
        camera=session.camera,
        shift=session.shift,
        zoom=session.zoom,
        roll_deg=session.roll_deg,
        distortion=session.distortion,
        stopper=not no_stopper,
        view_offset=view,
        bars=(),
        lighting=light,
        gain=float(gain),
        glare=0,
        dust=0.0,
        noise_sigma=0.0,
        jpeg_quality=90,
        caption=look.caption.format(camera=session.camera),
        timestamp=stamp,
        stopper_style=look.stopper_style,
    )
    bars = []
    for i, gap in enumerate(scene["gaps_px"]):
        vc = v + width / 2.0
        units = gap_units_for(base, vc, gap)
        moving = scene["motion_blur"] and gap > 0
        bars.append(
            Bar(
                v_center=vc,
                width=width,
                profile=_choice(rng, PROFILES, _mix_weights(look)) if mixed else profile,
                gap_units=units,
                skew_deg=float(rng.choice([-1, 1]) * rng.uniform(0.4, 1.2))
                if i == skew_bar
                else 0.0,
                speed=float(rng.uniform(8, 30)) if moving else 0.0,
                tone=float(rng.uniform(0.8, 1.15)),
                rust=float(rng.uniform(0.0, 0.8)),
            )
        )
        v += width + spacing
    noise = {"day": (1.0, 4.0), "artificial": (2.0, 6.0), "night": (4.0, 9.0)}[light]
    return dataclasses.replace(
        base,
        bars=tuple(bars),
        glare=int(rng.integers(1, 3)) if rng.random() < cfg.glare_fraction else 0,
        dust=float(rng.uniform(0.2, 0.8)) if rng.random() < cfg.dust_fraction else 0.0,
        noise_sigma=float(rng.uniform(*noise)) * look.noise_scale,
        jpeg_quality=int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)),
    )


def _jitter(spec: SceneSpec, rng: np.random.Generator, seed: int) -> SceneSpec:
    """The next frame of a still sequence: same scene, new noise, a pixel or two of shake."""
    dx, dy = rng.normal(0.0, 1.2, 2)
    return dataclasses.replace(
        spec,
        seed=seed,
        shift=(spec.shift[0] + dx, spec.shift[1] + dy),
        jpeg_quality=int(np.clip(spec.jpeg_quality + rng.integers(-5, 6), 1, 100)),
    )


def _record(spec: SceneSpec, scene: dict[str, Any], cfg: SynthConfig) -> dict[str, Any]:
    gaps = gaps_px(spec)
    heads = head_points_px(spec)
    label = "aligned" if scene["label"] == "aligned" else "not_aligned"
    if gaps and label == "aligned":
        assert max(gaps) <= cfg.align_tolerance_px, gaps
    return {
        "label": label,
        "scene": scene["scene"],
        "kind": scene["kind"],
        "lighting": spec.lighting,
        "n_bars": len(spec.bars),
        "gaps_px": gaps,
        "max_gap_px": max(gaps) if gaps else None,
        "heads_px": heads,
        "skewed": scene["skewed"],
        "motion_blur": scene["motion_blur"],
        "glare": spec.glare > 0,
        "dust": round(spec.dust, 3),
        "jpeg_quality": spec.jpeg_quality,
        "camera": spec.camera,
        "profiles": sorted({b.profile for b in spec.bars}),
        "align_tolerance_px": cfg.align_tolerance_px,
    }


def _still_jobs(
    cfg: SynthConfig,
    subset: str,
    count: int,
    sessions: list[Session] | None = None,
    clip_prefix: str | None = None,
) -> Iterator[tuple[SceneSpec, dict]]:
    """Specs of `count` still frames, in sequences of near-duplicates sharing a clip id."""
    sessions = sessions or _sessions(cfg)
    prefix = clip_prefix or ("ex" if subset == "example_set" else "pool")
    rng = np.random.default_rng([cfg.seed, 1 if subset == "example_set" else 2])
    made, seq = 0, 0
    while made < count:
        session = sessions[int(rng.integers(len(sessions)))]
        scene = sample_scene(cfg, rng, session)
        seconds = int(rng.integers(0, 86400))
        stamp = f"{session.day} {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        spec = build_spec(cfg, scene, session, int(rng.integers(2**31)), rng, stamp)
        length = int(rng.integers(cfg.sequence_length[0], cfg.sequence_length[1] + 1))
        clip_id = f"{prefix}_seq{seq:05d}"
        twin = (  # no draw at twin_fraction 0, so the default pool stays what it was
            cfg.twin_fraction > 0
            and subset == "train_set"
            and scene["label"] == "not_aligned"
            and scene["scene"] == "bars_at_stopper"
            and rng.random() < cfg.twin_fraction
        )
        frames = [spec] + [_jitter(spec, rng, int(rng.integers(2**31))) for _ in range(length - 1)]
        shots = [(f, scene) for f in frames]
        if twin:  # each frame followed by its twin
            flush = {**scene, "label": "aligned", "kind": "twin", "motion_blur": False}
            shots = [s for f in frames for s in ((f, scene), (flush_twin(f), flush))]
        for frame_spec, frame_scene in shots[: count - made]:
            made += 1
            meta = {"index": made, "subset": subset, "clip_id": clip_id, "session": session.day}
            yield frame_spec, {**meta, **_record(frame_spec, frame_scene, cfg)}
        seq += 1


def flush_twin(spec: SceneSpec) -> SceneSpec:
    """The same frame with every bar at the stopper: an aligned counterfactual of `spec`."""
    return dataclasses.replace(
        spec, bars=tuple(dataclasses.replace(b, gap_units=0.0, speed=0.0) for b in spec.bars)
    )


def _render_jpeg(spec: SceneSpec) -> bytes:
    return encode_jpeg(render_spec(spec), spec.jpeg_quality)


def _clip_specs(cfg: SynthConfig, i: int) -> list[tuple[SceneSpec, dict[str, Any]]]:
    """One clip: bars roll in, stop (some short), and are pushed flush; truth per frame."""
    rng = np.random.default_rng([cfg.seed, 3, i])
    session = _sessions(cfg)[i % cfg.n_sessions]
    scene = {
        "label": "aligned",
        "scene": "bars_at_stopper",
        "kind": "clip",
        "lighting": _choice(rng, LIGHTINGS, cfg.lighting_mix),
        "skewed": False,
        "motion_blur": False,
        "gaps_px": [0.0] * int(rng.integers(cfg.min_bars, cfg.max_bars + 1)),
    }
    stamp = f"{session.day} {int(rng.integers(24)):02d}:{int(rng.integers(60)):02d}:00"
    spec = build_spec(cfg, scene, session, int(rng.integers(2**31)), rng, stamp)
    n, total = len(spec.bars), max(cfg.clip_frames, 1)
    start = rng.uniform(150.0, 450.0, n)  # gap (units) when the clip begins
    rest = np.where(rng.random(n) < 0.4, rng.uniform(3.0, 30.0, n), 0.0)  # stops short
    arrive = rng.uniform(0.25, 0.45, n) * total
    push = rng.uniform(0.6, 0.75) * total
    out = []
    for f in range(cfg.clip_frames):
        bars = []
        for b, bar in enumerate(spec.bars):
            if f < arrive[b]:
                gap = start[b] + (rest[b] - start[b]) * f / arrive[b]
                speed = (start[b] - rest[b]) / arrive[b]
            elif f < push:
                gap, speed = rest[b], 0.0
            else:
                gap, speed = max(0.0, rest[b] * (1.0 - (f - push) / 3.0)), 0.0
            bars.append(dataclasses.replace(bar, gap_units=float(gap), speed=float(speed)))
        frame = dataclasses.replace(spec, bars=tuple(bars), seed=int(rng.integers(2**31)))
        gaps = gaps_px(frame)
        aligned = max(gaps) <= cfg.align_tolerance_px
        rec_scene = {**scene, "label": "aligned" if aligned else "not_aligned"}
        out.append(
            (
                frame,
                {
                    "index": f,
                    "frame": f,
                    "subset": "clips",
                    "clip_id": f"clip_{i:03d}",
                    "session": session.day,
                    **_record(frame, rec_scene, cfg),
                },
            )
        )
    return out


def _write_clip(path: Path, frames: list[SceneSpec], fps: int, pool: ProcessPoolExecutor) -> None:
    writer = None
    try:
        for spec, img in zip(frames, pool.map(render_spec, frames), strict=True):
            if writer is None:
                writer = cv2.VideoWriter(
                    str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (spec.width, spec.height)
                )
                if not writer.isOpened():
                    raise BarsalignError(f"{path}: OpenCV cannot open an mp4 writer here")
            writer.write(img)
    finally:
        if writer is not None:
            writer.release()


@contextmanager
def _partial_dir(out_dir: str | Path, overwrite: bool) -> Iterator[tuple[Path, Path]]:
    """(final, temporary) folders: the temporary one, filled in the block, replaces the final
    one when the block ends without error and is removed otherwise (never half a set)."""
    out = Path(out_dir).resolve()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BarsalignError(f"{out} exists and is not empty; pass overwrite=True (--overwrite)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as err:
        raise BarsalignError(f"cannot write the data set to {out}: {err.strerror}") from None
    try:
        yield out, tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "w") as fh:
        for rec in records:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")


def render_dataset(
    out_dir: str | Path,
    cfg: SynthConfig | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Render the whole data set into `out_dir`, atomically (a half-written set never appears)."""
    cfg = cfg or SynthConfig()
    workers = workers or min(4, os.cpu_count() or 1)
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    with _partial_dir(out_dir, overwrite) as (out, tmp):
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for subset, count in (("example_set", cfg.n_example), ("train_set", cfg.n_pool)):
                jobs = list(_still_jobs(cfg, subset, count))
                for (_spec, meta), data in zip(
                    jobs, pool.map(_render_jpeg, [j[0] for j in jobs], chunksize=4), strict=True
                ):
                    name = f"img_{meta['index']:05d}.jpg"
                    rel = (
                        f"example_set/{meta['label']}/{name}"
                        if subset == "example_set"
                        else f"train_set/{name}"
                    )
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / rel).write_bytes(data)
                    records.append({"file": rel, **meta})
                if progress and count:
                    print(f"{subset}: {count} frames", flush=True)
            for i in range(cfg.n_clips):
                rel = f"clips/clip_{i:03d}.mp4"
                (tmp / "clips").mkdir(exist_ok=True)
                specs = _clip_specs(cfg, i)
                _write_clip(tmp / rel, [s for s, _ in specs], cfg.clip_fps, pool)
                records.extend({"file": rel, **m} for _, m in specs)
            if progress and cfg.n_clips:
                print(f"clips: {cfg.n_clips} x {cfg.clip_frames} frames", flush=True)
        _write_jsonl(tmp / "metadata.jsonl", records)
        stamp = {**cfg.to_json(), "renderer_version": RENDERER_VERSION}
        (tmp / "synth_config.json").write_text(json.dumps(stamp, indent=2) + "\n")
    if progress:
        print(f"wrote {len(records)} frames to {out} in {time.perf_counter() - started:.1f} s")
    return out


def look_config(name: str, **overrides: Any) -> SynthConfig:
    """A SynthConfig of the look `name` (`LOOKS`), with any fields in `overrides` on top."""
    look = get_look(name)
    return SynthConfig(**{**look.config, **overrides, "look": name})


LOOK_SPLITS = ("train", "val", "test")


def _split_seed(seed: int, split: str) -> int:
    """A look set's split seed: far from the small seeds of the default set and its test set."""
    entropy = [seed, 20, LOOK_SPLITS.index(split)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] % 2**31)


def render_look_sets(
    look: str,
    out_dir: str | Path | None = None,
    n_train: int = 300,
    n_val: int = 120,
    n_test: int = 300,
    seed: int = 0,
    aligned_fraction: float = 0.5,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """A look's small labelled sets, as a plant's first labelling: `train/`, `val/`, `test/`.

    Each split holds `aligned/` and `not_aligned/` frames named `<clip>_f<n>.jpg` and a
    `metadata.jsonl` (per frame: label, scene, lighting, session, clip id, gaps, bar heads and
    the stopper face in pixels); splits come from their own seeds and recording sessions, so no
    scene or camera setup is shared between them. `look.json` holds the look, its config, and
    the stopper region (x0, y0, x1, y1 frame fractions) around every face and head at the
    stopper with a margin, a box to start `roi` from. Default folder: `data/looks/<look>`.
    """
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if min(counts.values()) < 0:
        raise BarsalignError(f"look set sizes must be >= 0, got {counts}")
    cfg = look_config(  # the counts are the splits' below, not the default set's
        look, seed=seed, aligned_fraction=aligned_fraction, n_example=0, n_pool=0, n_clips=0
    )
    workers = workers or min(4, os.cpu_count() or 1)
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    with _partial_dir(out_dir or LOOKS_DIR / look, overwrite) as (out, tmp):
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for k, split in enumerate(LOOK_SPLITS):
                split_cfg = dataclasses.replace(cfg, seed=_split_seed(seed, split))
                sessions = _sessions(split_cfg, first_day=k * cfg.n_sessions)
                jobs = list(_still_jobs(split_cfg, split, counts[split], sessions, split))
                rows = []
                shots: Counter[str] = Counter()
                specs = [j[0] for j in jobs]
                for (spec, meta), data in zip(
                    jobs, pool.map(_render_jpeg, specs, chunksize=4), strict=True
                ):
                    rel = f"{meta['label']}/{meta['clip_id']}_f{shots[meta['clip_id']]}.jpg"
                    shots[meta["clip_id"]] += 1
                    (tmp / split / rel).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / split / rel).write_bytes(data)
                    face = stopper_face_px(spec)
                    rows.append({"file": rel, "look": look, **meta, "stopper_face_px": face})
                (tmp / split).mkdir(exist_ok=True)
                _write_jsonl(tmp / split / "metadata.jsonl", rows)
                records += rows
                if progress:
                    print(f"{split}: {len(rows)} frames", flush=True)
        info = {
            "look": look,
            "summary": get_look(look).summary,
            "config": cfg.to_json(),
            "seeds": {split: _split_seed(seed, split) for split in LOOK_SPLITS},
            "frames": {split: counts[split] for split in LOOK_SPLITS},
            "renderer_version": RENDERER_VERSION,
            "stopper_roi": _stopper_roi(records, cfg.width, cfg.height),
        }
        (tmp / "look.json").write_text(json.dumps(info, indent=2) + "\n")
    if progress:
        print(f"wrote {len(records)} frames to {out} in {time.perf_counter() - started:.1f} s")
    return out


def _stopper_roi(
    records: list[dict[str, Any]], width: int, height: int, margin: float = 0.05
) -> list[float] | None:
    """The box (frame fractions) around every stopper face and every bar head within 10 px of
    it, grown by `margin` of the frame on each side; None when no frame shows a stopper."""
    pts = [p for r in records if r.get("stopper_face_px") for p in r["stopper_face_px"]]
    pts += [
        h
        for r in records
        if r.get("stopper_face_px")
        for h, g in zip(r["heads_px"], r["gaps_px"], strict=True)
        if g < 10
    ]
    if not pts:
        return None
    xy = np.asarray(pts, dtype=float) / [width, height]
    lo = np.clip(xy.min(axis=0) - margin, 0.0, 1.0)
    hi = np.clip(xy.max(axis=0) + margin, 0.0, 1.0)
    return [round(float(v), 4) for v in (*lo, *hi)]


def load_metadata(data_dir: str | Path) -> list[dict[str, Any]]:
    """The per-frame truth of a rendered data set (one dict per still or clip frame)."""
    path = Path(data_dir) / "metadata.jsonl"
    if not path.is_file():
        raise BarsalignError(f"{path} not found: is {data_dir} a data set from `barsalign synth`?")
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise BarsalignError(f"{path}:{n}: not a JSON line ({err.msg})") from None
    return out


def _stamp_matches(stamp: Path, cfg: SynthConfig) -> bool:
    """Whether a data set's `synth_config.json` says it was rendered from `cfg` by this renderer.

    Read back through SynthConfig, so a field added since (at its default) needs no re-render.
    """
    try:
        have = json.loads(stamp.read_text())
        same = SynthConfig.from_json(have) == cfg
        return same and have.get("renderer_version") == RENDERER_VERSION
    except (OSError, ValueError, TypeError, AttributeError, BarsalignError):
        return False  # unreadable or from another version: render again


def ensure_default(cfg: SynthConfig | None = None, out_dir: str | Path | None = None) -> Path:
    """The default synthetic data set, rendered first if missing or rendered with another config."""
    cfg = cfg or SynthConfig()
    out = Path(out_dir or SYNTH_DIR)
    stamp = out / "synth_config.json"
    if stamp.is_file() and _stamp_matches(stamp, cfg):
        return out
    return render_dataset(out, cfg, overwrite=True, progress=True)


def pool_labels(data_dir: str | Path) -> Path:
    """`train_set/labels.csv` (path,label) from the pool's truth: the labels an annotator gives.

    The plant's way is to train on its own labelled pool and validate on the example set; on
    the synthetic default the renderer's truth stands in for the finished labelling.
    """
    root = Path(data_dir)
    out = root / "train_set" / "labels.csv"
    rows = [r for r in load_metadata(root) if str(r.get("file", "")).startswith("train_set/")]
    if not rows:
        raise BarsalignError(f"{root}/metadata.jsonl: no train_set frames to label")
    text = "path,label\n" + "".join(
        f"{Path(r['file']).relative_to('train_set')},{r['label']}\n" for r in rows
    )
    if not out.is_file() or out.read_text() != text:
        out.write_text(text)
    return out


def mixed_rows(
    pool_root: Path, extra_root: Path, replace: bool, seed: int = 0
) -> list[tuple[Path, str]]:
    """(path, label) of the pool, less whole clip groups (shuffled by `seed`) until as many
    frames as there are extra ones are out when `replace`, followed by the extra frames."""
    pool = [r for r in load_metadata(pool_root) if str(r["file"]).startswith("train_set/")]
    extra = [r for r in load_metadata(extra_root) if str(r["file"]).startswith("train_set/")]
    drop: set[str] = set()
    if replace:
        sizes = Counter(str(r["clip_id"]) for r in pool)
        groups = sorted(sizes)
        random.Random(seed).shuffle(groups)
        dropped = 0
        for g in groups:
            if dropped >= len(extra):
                break
            drop.add(g)
            dropped += sizes[g]
    kept = [(pool_root / r["file"], r["label"]) for r in pool if str(r["clip_id"]) not in drop]
    return kept + [(extra_root / r["file"], r["label"]) for r in extra]


def hard_pool(
    pool_root: str | Path,
    out: str | Path,
    frames: int = 600,
    hard_fraction: float = 0.6,
    hard_gap_px: tuple[float, float] = (3.0, 4.5),
    seed: int = 8,
    add: bool = False,
    twins: bool = False,
) -> Path:
    """A training pool richer in the hardest cases: `out/labels.csv` (path,label).

    `frames` bar scenes are rendered into `out/frames` (once; again when the settings change)
    with the pool's cameras, `hard_fraction` of the not-aligned ones with one bar `hard_gap_px`
    short, and replace as many pool frames (whole clip groups) unless `add`. With `twins`,
    each extra scene comes twice: with its short bar, and with every bar flush (aligned).
    """
    pool_root, out = Path(pool_root), Path(out)
    if frames < 1:
        raise BarsalignError(f"hard pool: frames must be >= 1, not {frames}")
    stamp = pool_root / "synth_config.json"
    if not stamp.is_file():
        raise BarsalignError(f"{stamp} not found: is {pool_root} from `barsalign synth`?")
    try:
        pool_cfg = SynthConfig.from_json(json.loads(stamp.read_text()))
    except (ValueError, TypeError, AttributeError) as err:
        raise BarsalignError(f"{stamp}: not a readable synth config ({err})") from None
    cfg = dataclasses.replace(  # the pool's cameras and frame size; bar scenes only
        pool_cfg,
        seed=seed,
        n_example=0,
        n_pool=frames,
        n_clips=0,
        other_scene_fraction=0.0,
        hard_fraction=hard_fraction,
        hard_gap_px=tuple(hard_gap_px),
    )
    if twins:  # the aligned half of the extra frames are the twins
        cfg = dataclasses.replace(cfg, aligned_fraction=0.0, twin_fraction=1.0)
    extra_root = ensure_default(cfg, out / "frames")
    rows = mixed_rows(pool_root, extra_root, replace=not add)
    csv = out / "labels.csv"
    lines = [f"{os.path.relpath(path, csv.parent)},{label}" for path, label in rows]
    text = "path,label\n" + "\n".join(lines) + "\n"
    if not csv.is_file() or csv.read_text() != text:
        csv.write_text(text)
    return csv


_DEFAULT_SET_FLAGS = (
    "n_example",
    "n_pool",
    "n_clips",
    "clip_frames",
    "hard_fraction",
    "twin_fraction",
    "night_weight",
    "size",
)
_LOOK_FLAGS = ("n_train", "n_val", "n_test")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth", help="render the synthetic conveyor data set", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default {SYNTH_DIR}; with --look, {LOOKS_DIR}/NAME)",
    )
    p.add_argument(
        "--look",
        default=None,
        help=f"render a look's small labelled train/val/test sets: {', '.join(LOOKS)}",
    )
    p.add_argument("--seed", type=int, default=0)
    for split, n in (("train", 300), ("val", 120), ("test", 300)):
        p.add_argument(f"--n-{split}", type=int, default=None, help=f"with --look: {n}")
    p.add_argument(
        "--n-example", type=int, default=None, help=f"labelled frames ({SynthConfig.n_example})"
    )
    p.add_argument(
        "--n-pool", type=int, default=None, help=f"unlabelled frames ({SynthConfig.n_pool})"
    )
    p.add_argument("--n-clips", type=int, default=None, help=f"({SynthConfig.n_clips})")
    p.add_argument("--clip-frames", type=int, default=None, help=f"({SynthConfig.clip_frames})")
    p.add_argument(
        "--aligned-fraction",
        type=float,
        default=None,
        help=f"({SynthConfig.aligned_fraction}; with --look 0.5)",
    )
    p.add_argument(
        "--hard-fraction", type=float, default=None, help=f"({SynthConfig.hard_fraction})"
    )
    p.add_argument(
        "--twin-fraction",
        type=float,
        default=None,
        help="share of the pool's not-aligned bar scenes also drawn with every bar flush (0)",
    )
    p.add_argument(
        "--night-weight",
        type=float,
        default=None,
        help=f"weight of night frames against day 0.45 and artificial 0.35 "
        f"({SynthConfig.lighting_mix[2]})",
    )
    p.add_argument("--size", default=None, help="WIDTHxHEIGHT (1152x864)")
    p.add_argument("--workers", type=int, default=None, help="render processes (default: cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing data set")
    p.set_defaults(func=_cli)


def _flags(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    """The options among `names` given on the command line, spelled as flags."""
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n) is not None]


def _cli(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise BarsalignError(f"--workers must be >= 1, got {args.workers}")
    if args.look is not None:
        get_look(args.look)
        if given := _flags(args, _DEFAULT_SET_FLAGS):
            raise BarsalignError(
                f"{', '.join(given)}: for the default data set only; a look sets its own"
            )
        sizes = {n: getattr(args, n) for n in _LOOK_FLAGS if getattr(args, n) is not None}
        aligned = 0.5 if args.aligned_fraction is None else args.aligned_fraction
        render_look_sets(
            args.look,
            args.out,
            seed=args.seed,
            aligned_fraction=aligned,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=True,
            **sizes,
        )
        return 0
    if given := _flags(args, _LOOK_FLAGS):
        raise BarsalignError(f"{', '.join(given)}: only with --look NAME")

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    size = pick(args.size, "1152x864")
    try:
        width, height = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise BarsalignError(f"--size must look like 1152x864, got {size!r}") from None
    d = SynthConfig
    cfg = SynthConfig(
        seed=args.seed,
        width=width,
        height=height,
        n_example=pick(args.n_example, d.n_example),
        n_pool=pick(args.n_pool, d.n_pool),
        n_clips=pick(args.n_clips, d.n_clips),
        clip_frames=pick(args.clip_frames, d.clip_frames),
        aligned_fraction=pick(args.aligned_fraction, d.aligned_fraction),
        hard_fraction=pick(args.hard_fraction, d.hard_fraction),
        twin_fraction=pick(args.twin_fraction, d.twin_fraction),
        lighting_mix=(0.45, 0.35, pick(args.night_weight, d.lighting_mix[2])),
    )
    out = args.out or SYNTH_DIR
    render_dataset(out, cfg, workers=args.workers, overwrite=args.overwrite, progress=True)
    return 0
