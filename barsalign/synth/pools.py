"""Training pools from the default set: its labels as a CSV, mixes with the example set, and
the hard pool of short-bar scenes with their flush twins.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from pathlib import Path

from barsalign.data.labels import LABELS, write_csv_labels
from barsalign.errors import BarsalignError
from barsalign.synth.dataset import ensure_default, load_metadata
from barsalign.synth.scenes import SynthConfig


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
    pairs = [(root / r["file"], LABELS[r["label"]]) for r in rows]
    return write_csv_labels(pairs, out, relative=True)


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
    pairs = [(path, LABELS[label]) for path, label in rows]
    return write_csv_labels(pairs, out / "labels.csv", relative=True)
