"""What a synthetic frame shows, drawn from a seed: `SynthConfig`, recording sessions,
scenes (label, lighting, bars and their gaps), still sequences, flush twins and video clips.

Nothing here draws pixels: the functions return `SceneSpec`s and their truth records, which
`barsalign.synth.dataset` renders and writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from barsalign.errors import BarsalignError
from barsalign.synth.geometry import (
    BED_V,
    PROFILES,
    Bar,
    SceneSpec,
    gap_units_for,
    gaps_px,
    head_points_px,
)
from barsalign.synth.looks import Look, get_look

SCENES = ("bars_at_stopper", "bars_no_stopper", "stopper_no_bars", "background")


LIGHTINGS = ("day", "artificial", "night")


LABELS = ("aligned", "not_aligned")


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


def look_config(name: str, **overrides: Any) -> SynthConfig:
    """A SynthConfig of the look `name` (`LOOKS`), with any fields in `overrides` on top."""
    look = get_look(name)
    return SynthConfig(**{**look.config, **overrides, "look": name})


@dataclass(frozen=True)
class Session:
    """One camera setup: small shifts, zoom and lens differences between recording sessions."""

    camera: str
    shift: tuple[float, float]
    zoom: float
    roll_deg: float
    distortion: float
    day: str


def recording_sessions(cfg: SynthConfig, first_day: int = 0) -> list[Session]:
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


def still_jobs(
    cfg: SynthConfig,
    subset: str,
    count: int,
    sessions: list[Session] | None = None,
    clip_prefix: str | None = None,
) -> Iterator[tuple[SceneSpec, dict]]:
    """Specs of `count` still frames, in sequences of near-duplicates sharing a clip id."""
    sessions = sessions or recording_sessions(cfg)
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


def clip_specs(cfg: SynthConfig, i: int) -> list[tuple[SceneSpec, dict[str, Any]]]:
    """One clip: bars roll in, stop (some short), and are pushed flush; truth per frame."""
    rng = np.random.default_rng([cfg.seed, 3, i])
    session = recording_sessions(cfg)[i % cfg.n_sessions]
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
