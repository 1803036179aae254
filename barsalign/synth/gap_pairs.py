"""Gap pairs: a scene with one bar a few pixels short and the same scene with every bar flush.

A plant's first 300 labelled frames hold a few dozen with one bar a few pixels short, and a
network asked to learn "a gap at the stopper face" from so few memorises them instead. The
renderer can show the gap itself: a short-bar scene and its flush twin (`synth.flush_twin`)
differ in nothing else. `render_gap_pairs` renders such pairs from the built-in looks
(`barsalign.synth.looks`), crops each pair around its own stopper face and bar heads at a random
scale (the face fills the crop as much or as little as a proposed region lets it), and writes
them as a labelled folder. Training draws them beside the user's frames
(`FinetuneConfig.gap_pairs`): the looks teach what a gap is, the user's frames what their
camera shows. None of the looks is the user's camera, so nothing here fits one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.config import DATA_DIR
from barsalign.data.labels import NAMES, folder_path
from barsalign.errors import BarsalignError
from barsalign.synth.dataset import partial_dir, write_jsonl
from barsalign.synth.geometry import SceneSpec, head_points_px, stopper_face_px
from barsalign.synth.looks import LOOKS
from barsalign.synth.render import encode_jpeg
from barsalign.synth.render import render as render_spec
from barsalign.synth.scenes import flush_twin, look_config, recording_sessions, still_jobs

GAP_PAIRS_DIR = DATA_DIR / "gap_pairs"
"""Where rendered gap pairs are kept, one folder per setting (rendered once, then reused)."""
PAIRS_VERSION = 2  # bump when the crops or scenes change: older folders are rendered again
SCALE = (1.1, 2.0)  # crop side / extent of the face and heads, drawn per pair
MIN_SIDE = 320  # px: never smaller than the default input side, so no crop is upscaled


def pair_box(
    points: np.ndarray, frame: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A square crop (x0, y0, x1, y1 px) holding `points` (face ends and heads), its side
    `SCALE` times their extent, its centre moved at random within the slack, inside the frame."""
    w, h = frame
    lo, hi = points.min(axis=0), points.max(axis=0)
    extent = float(max(hi - lo))
    side = int(min(max(extent * rng.uniform(*SCALE), MIN_SIDE), w, h))
    slack = np.maximum(side - (hi - lo), 0.0)
    x0 = lo[0] - slack[0] * rng.uniform(0.2, 0.8)
    y0 = lo[1] - slack[1] * rng.uniform(0.2, 0.8)
    x0 = int(np.clip(round(x0), 0, w - side))
    y0 = int(np.clip(round(y0), 0, h - side))
    return x0, y0, x0 + side, y0 + side


def _render_pair(job: tuple[SceneSpec, SceneSpec, int]) -> tuple[bytes, bytes, dict[str, Any]]:
    """Both frames of one pair, cropped to the same box, as JPEG bytes, and the box."""
    short, flush, seed = job
    face = stopper_face_px(short) or []
    points = np.asarray(face + head_points_px(flush), dtype=float)
    box = pair_box(points, (short.width, short.height), np.random.default_rng(seed))
    x0, y0, x1, y1 = box
    crops = [render_spec(s)[y0:y1, x0:x1] for s in (short, flush)]
    data = [encode_jpeg(np.ascontiguousarray(c), short.jpeg_quality) for c in crops]
    return data[0], data[1], {"box_px": list(box)}


def _pair_specs(look: str, n_pairs: int, seed: int) -> list[tuple[SceneSpec, SceneSpec, dict]]:
    """`n_pairs` (short, flush twin, record) of one look: bar scenes at the stopper only."""

    cfg = look_config(look, seed=seed, n_example=0, n_pool=0, n_clips=0)
    cfg = dataclasses.replace(
        cfg,
        aligned_fraction=0.0,
        twin_fraction=1.0,
        other_scene_fraction=0.0,
        hard_fraction=0.8,
        sequence_length=(1, 1),
        motion_blur_fraction=0.0,
    )
    out = []
    for spec, meta in still_jobs(cfg, "train_set", 2 * n_pairs, recording_sessions(cfg), "pair"):
        if meta["label"] == "not_aligned":  # each short frame is followed by its twin
            out.append((spec, flush_twin(spec), meta))
    return out[:n_pairs]


def pairs_folder(frames: int, looks: Sequence[str], seed: int, root: Path = GAP_PAIRS_DIR) -> Path:
    """The folder of one setting (a short hash of it, so settings never mix)."""
    key = json.dumps([PAIRS_VERSION, frames, sorted(looks), seed])
    return root / f"pairs_{frames}_{hashlib.blake2b(key.encode(), digest_size=4).hexdigest()}"


def render_gap_pairs(
    frames: int,
    looks: Sequence[str] | None = None,
    seed: int = 0,
    root: Path = GAP_PAIRS_DIR,
    workers: int | None = None,
) -> Path:
    """`frames` labelled crops (half short, half their flush twins), spread evenly over `looks`
    (default: every built-in look), in `aligned/` and `not_aligned/`; rendered once, the
    folder reused while `pairs.json` matches. Returns the folder."""

    looks = list(LOOKS) if looks is None else list(looks)
    unknown = [lk for lk in looks if lk not in LOOKS]
    if unknown or not looks:
        raise BarsalignError(f"gap pairs: unknown look(s) {unknown}; known: {', '.join(LOOKS)}")
    if frames < 2 * len(looks):
        raise BarsalignError(f"gap pairs: {frames} frames is under one pair per look ({looks})")
    out = pairs_folder(frames, looks, seed, root)
    stamp = {"version": PAIRS_VERSION, "frames": frames, "looks": sorted(looks), "seed": seed}
    if (out / "pairs.json").is_file() and json.loads((out / "pairs.json").read_text()) == stamp:
        return out
    per_look = [frames // 2 // len(looks)] * len(looks)
    for i in range(frames // 2 - sum(per_look)):
        per_look[i] += 1
    jobs, records = [], []
    for k, (look, n) in enumerate(zip(looks, per_look, strict=True)):
        for i, (short, flush, meta) in enumerate(_pair_specs(look, n, seed * 100 + k)):
            jobs.append((short, flush, int(seed * 1_000_003 + k * 10_007 + i)))
            records.append({"look": look, "pair": f"{look}_{i:04d}", **meta})
    workers = workers or min(4, os.cpu_count() or 1)
    with partial_dir(out, overwrite=True) as (_, tmp):
        for name in NAMES.values():
            (tmp / name).mkdir()
        rows = []
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for rec, (short, flush, box) in zip(
                records, pool.map(_render_pair, jobs, chunksize=4), strict=True
            ):
                for label, data in (("not_aligned", short), ("aligned", flush)):
                    rel = folder_path(label, f"{rec['pair']}.jpg")
                    (tmp / rel).write_bytes(data)
                    rows.append({**rec, **box, "file": rel, "clip_id": rec["pair"]})
        write_jsonl(tmp / "metadata.jsonl", rows)
        (tmp / "pairs.json").write_text(json.dumps(stamp))
    return out
