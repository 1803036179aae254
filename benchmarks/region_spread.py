"""Where the pixels go: each look's proposed square against the spread of its bar heads.

For each rendered look (`data/looks/NAME`, `benchmarks/looks.py` renders them) the box holding
99 % of the stopper-face ends and of the heads of bars within `--near` px of the face, over every
training frame (the renderer's `metadata.jsonl`), grown by `--pad` px a side; beside it the
square the default recipe proposed for that look's run (`--runs`, the run's `config.yaml`) and
the input scale each gives at `--size` px: how many pixels a gap keeps.

Run: .venv/bin/python benchmarks/region_spread.py [--looks ...] [--runs 'reports/looks*']
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
from pathlib import Path

import numpy as np
import yaml

from barsalign.config import DATA_DIR
from barsalign.synth.looks import LOOKS


def spread(look_dir: Path, near: float, pad: float) -> tuple[float, float]:
    """Width and height of the box around the face ends and the near heads (1st-99th pct)."""
    xs, ys = [], []
    for line in (look_dir / "train" / "metadata.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        points = list(row.get("stopper_face_px") or [])
        heads = zip(row.get("heads_px") or [], row.get("gaps_px") or [], strict=False)
        points += [h for h, g in heads if g <= near]
        xs += [p[0] for p in points]
        ys += [p[1] for p in points]
    lo, hi = 0.5, 99.5
    return (
        float(np.percentile(xs, hi) - np.percentile(xs, lo) + 2 * pad),
        float(np.percentile(ys, hi) - np.percentile(ys, lo) + 2 * pad),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--looks", nargs="+", default=list(LOOKS))
    ap.add_argument("--runs", default="reports/looks*", help="glob of benchmarks/looks.py --out")
    ap.add_argument("--near", type=float, default=20.0, help="heads this close to the face count")
    ap.add_argument("--pad", type=float, default=40.0)
    ap.add_argument("--size", type=int, default=320, help="the model's input side")
    args = ap.parse_args(argv)
    s = args.size
    print(
        "| look | proposed square (px) | scale | heads + face box (px) | scale, same area, "
        "box kept | scale, box fitted in the input |\n| --- | --- | --- | --- | --- | --- |"
    )
    for look in args.looks:
        look_dir = DATA_DIR / "looks" / look
        configs = sorted(glob.glob(f"{args.runs}/{look}_300_s0/config.yaml"))
        if not (look_dir / "train" / "metadata.jsonl").is_file() or not configs:
            print(f"| {look} | not rendered or not trained | | | | |")
            continue
        cfg = json.loads((look_dir / "look.json").read_text(encoding="utf-8"))["config"]
        roi = yaml.safe_load(Path(configs[0]).read_text(encoding="utf-8"))["roi"]
        side = min((roi[2] - roi[0]) * cfg["width"], (roi[3] - roi[1]) * cfg["height"])
        bw, bh = spread(look_dir, args.near, args.pad)
        print(
            f"| {look} | {side:.0f} | {s / side:.2f} | {bw:.0f}x{bh:.0f} | "
            f"{math.sqrt(s * s / (bw * bh)):.2f} | {min(s / bw, s / bh):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
