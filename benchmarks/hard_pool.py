"""A training pool richer in the hardest cases: the default pool with some of its frames
replaced by (or added to) frames where most not-aligned scenes have one bar 3-4.5 px short.

Bars 3-3.5 px short are the hardest frames (docs/experiments.md has the runs); this asks how
many of them, and in what form, training needs. It renders the extra frames with the synthetic
renderer (`barsalign.synth.hard_pool`, which the CPU profile's `synthetic_twins` uses too), writes
`labels.csv` (the renderer's truth, paths relative to it) and prints the `sweep_recipes.py`
line that trains on it against the profile, on the validation and the held-out set. Whole
clip groups of the pool make room for the new frames (unless `--add`), so a run keeps the
size and the time budget of the profile's.

`--twins` renders every extra scene twice: once with its short bar, once with every bar flush
(the renderer's `twin_fraction`; same textures, noise and camera, so the pair differs only at
the stopper). Half the extra frames are then such aligned twins, and none are plain aligned.

Run: .venv/bin/python benchmarks/hard_pool.py [--out data/hard_pool] [--frames 600]
         [--hard-fraction 0.6] [--hard-gap 3,4.5] [--seed 8] [--add] [--twins] [--pool DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from barsalign.config import DATA_DIR
from barsalign.errors import BarsalignError
from barsalign.synth import STOPPER_ROI, ensure_default, hard_pool, load_metadata


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DATA_DIR / "hard_pool")
    ap.add_argument("--frames", type=int, default=600, help="extra frames to render")
    ap.add_argument("--hard-fraction", type=float, default=0.6)
    ap.add_argument("--hard-gap", default="3,4.5", help="MIN,MAX px of the short bar")
    ap.add_argument("--seed", type=int, default=8, help="render seed (the default pool's is 0)")
    ap.add_argument("--add", action="store_true", help="add to the pool instead of replacing")
    ap.add_argument(
        "--twins", action="store_true", help="each extra scene also with every bar flush"
    )
    ap.add_argument("--pool", type=Path, help="a rendered data set (default: the synthetic one)")
    args = ap.parse_args(argv)
    try:
        try:
            lo, hi = (float(x) for x in args.hard_gap.split(","))
        except ValueError:
            raise BarsalignError(
                f"--hard-gap must look like 3,4.5, not {args.hard_gap!r}"
            ) from None
        pool_root = args.pool or ensure_default()
        csv = hard_pool(
            pool_root,
            args.out,
            frames=args.frames,
            hard_fraction=args.hard_fraction,
            hard_gap_px=(lo, hi),
            seed=args.seed,
            add=args.add,
            twins=args.twins,
        )
    except BarsalignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    extra_root = args.out / "frames"
    kinds = Counter(str(r.get("kind")) for r in load_metadata(extra_root))
    short = f"{kinds['hard']} with a bar {lo:g}-{hi:g} px short"
    if args.twins:
        short += f", {kinds['twin']} flush twins"
    n_rows = len(csv.read_text().splitlines()) - 1
    print(f"{csv}: {n_rows} frames, {args.frames} of them from {extra_root} ({short})")
    roi = ", ".join(f"{v:g}" for v in STOPPER_ROI)
    val = pool_root / "example_set"
    name = "twin pool" if args.twins else "hard pool"
    print(
        "train it against the profile:\n  .venv/bin/python benchmarks/sweep_recipes.py --seeds 2 "
        f'--held-out default \\\n    --recipe "{name}: data_dir={csv}; val_data_dir={val}; '
        f'roi=[{roi}]"'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
