"""The synthetic data sets on disk: the default set, the looks' small labelled sets, metadata.

`render_dataset` writes the plant's own layout — a labelled `example_set/`, an unlabelled
`train_set/` pool, short `clips/` — plus `metadata.jsonl` with each frame's truth. The same seed
and config give the same bytes, whatever the number of workers. Folders are written beside
their destination and moved into place whole, so an interrupted render leaves nothing half done.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from barsalign.config import LOOKS_DIR, SYNTH_DIR
from barsalign.data.labels import folder_path
from barsalign.errors import BarsalignError
from barsalign.preprocess import parse_roi
from barsalign.synth.geometry import STOPPER_ROI, SceneSpec, stopper_face_px
from barsalign.synth.looks import get_look
from barsalign.synth.render import encode_jpeg
from barsalign.synth.render import render as render_spec
from barsalign.synth.scenes import (
    SynthConfig,
    clip_specs,
    look_config,
    recording_sessions,
    still_jobs,
)

RENDERER_VERSION = 3
"""Bumped whenever the drawing changes, so `ensure_default` re-renders a stale default set."""


def resolve_roi(roi: Any, data_dir: str | Path | None) -> tuple[float, float, float, float] | None:
    """A `roi` parameter: "auto" is STOPPER_ROI on the synthetic default (`data_dir` None) and
    the whole frame (None) on other data; anything else goes through `parse_roi`."""

    if isinstance(roi, str) and roi.strip().lower() == "auto":
        return STOPPER_ROI if data_dir is None else None
    return parse_roi(roi)


def _render_jpeg(spec: SceneSpec) -> bytes:
    return encode_jpeg(render_spec(spec), spec.jpeg_quality)


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
def partial_dir(out_dir: str | Path, overwrite: bool) -> Iterator[tuple[Path, Path]]:
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


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
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
    with partial_dir(out_dir, overwrite) as (out, tmp):
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for subset, count in (("example_set", cfg.n_example), ("train_set", cfg.n_pool)):
                jobs = list(still_jobs(cfg, subset, count))
                for (_spec, meta), data in zip(
                    jobs, pool.map(_render_jpeg, [j[0] for j in jobs], chunksize=4), strict=True
                ):
                    name = f"img_{meta['index']:05d}.jpg"
                    rel = (
                        f"example_set/{folder_path(meta['label'], name)}"
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
                specs = clip_specs(cfg, i)
                _write_clip(tmp / rel, [s for s, _ in specs], cfg.clip_fps, pool)
                records.extend({"file": rel, **m} for _, m in specs)
            if progress and cfg.n_clips:
                print(f"clips: {cfg.n_clips} x {cfg.clip_frames} frames", flush=True)
        write_jsonl(tmp / "metadata.jsonl", records)
        stamp = {**cfg.to_json(), "renderer_version": RENDERER_VERSION}
        (tmp / "synth_config.json").write_text(json.dumps(stamp, indent=2) + "\n")
    if progress:
        print(f"wrote {len(records)} frames to {out} in {time.perf_counter() - started:.1f} s")
    return out


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
    with partial_dir(out_dir or LOOKS_DIR / look, overwrite) as (out, tmp):
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for k, split in enumerate(LOOK_SPLITS):
                split_cfg = dataclasses.replace(cfg, seed=_split_seed(seed, split))
                sessions = recording_sessions(split_cfg, first_day=k * cfg.n_sessions)
                jobs = list(still_jobs(split_cfg, split, counts[split], sessions, split))
                rows = []
                shots: Counter[str] = Counter()
                specs = [j[0] for j in jobs]
                for (spec, meta), data in zip(
                    jobs, pool.map(_render_jpeg, specs, chunksize=4), strict=True
                ):
                    rel = folder_path(
                        meta["label"], f"{meta['clip_id']}_f{shots[meta['clip_id']]}.jpg"
                    )
                    shots[meta["clip_id"]] += 1
                    (tmp / split / rel).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / split / rel).write_bytes(data)
                    face = stopper_face_px(spec)
                    rows.append({"file": rel, "look": look, **meta, "stopper_face_px": face})
                (tmp / split).mkdir(exist_ok=True)
                write_jsonl(tmp / split / "metadata.jsonl", rows)
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


def stamp_matches(stamp: Path, cfg: SynthConfig) -> bool:
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
    if stamp.is_file() and stamp_matches(stamp, cfg):
        return out
    return render_dataset(out, cfg, overwrite=True, progress=True)
