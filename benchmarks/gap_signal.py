"""How much of a short bar reaches the network: hard gaps at native scale and at the input.

For each look, `--pairs` short-bar scenes with one bar `--max-gap` px short or less and their
flush twins (`barsalign.synth.gap_pairs`: the same scene, every bar at the stopper, nothing else
changed) are rendered and JPEG-compressed at the scene's own quality. A pair's *signal* is the
number of pixels whose gray level differs by more than `--level` between the two frames: at the
camera's own scale, and after the look's region (the run's `config.yaml` from `--runs`, else the
renderer's box from `look.json`) is scaled to each input side in `--sizes`. Medians over pairs,
over all lights and at night. No training; it says how many pixels a model has to find a gap in.

Run: .venv/bin/python benchmarks/gap_signal.py [--looks ...] [--sizes 320 512] [--pairs 40]
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from barsalign.config import DATA_DIR
from barsalign.synth.gap_pairs import _pair_specs
from barsalign.synth.looks import LOOKS
from barsalign.synth.render import render as render_spec


def look_region(look: str, runs: str) -> tuple[list[float], str]:
    """The look's region (x0, y0, x1, y1 in frame fractions) and where it came from."""
    for path in sorted(glob.glob(f"{runs}/{look}_300_s0/config.yaml")):
        roi = yaml.safe_load(Path(path).read_text(encoding="utf-8")).get("roi")
        if isinstance(roi, list) and len(roi) == 4:
            return roi, path
    meta = json.loads((DATA_DIR / "looks" / look / "look.json").read_text(encoding="utf-8"))
    return meta["stopper_roi"], "look.json stopper_roi"


def _gray_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok, "JPEG encoding failed"
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32)


def signal(a: np.ndarray, b: np.ndarray, scale: float, level: float) -> int:
    """Pixels differing by more than `level` gray levels once both frames are scaled."""
    if scale != 1.0:
        a = cv2.resize(a, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return int((np.abs(a - b) > level).sum())


def look_row(look: str, args: argparse.Namespace) -> dict:
    """One look's medians: native and per input size, all lights and night."""
    roi, source = look_region(look, args.runs)
    rows = []
    for short, flush, meta in _pair_specs(look, args.pairs, args.seed):
        if max(meta["gaps_px"]) > args.max_gap:
            continue
        a = _gray_jpeg(render_spec(short), short.jpeg_quality)
        b = _gray_jpeg(render_spec(flush), flush.jpeg_quality)
        h, w = a.shape
        side = max((roi[2] - roi[0]) * w, (roi[3] - roi[1]) * h) if roi[2] <= 1 else roi[2] - roi[0]
        row = {"gap": max(meta["gaps_px"]), "night": meta["lighting"] == "night", "side": side}
        row["native"] = signal(a, b, 1.0, args.level)
        for size in args.sizes:
            row[size] = signal(a, b, min(1.0, size / side), args.level)
        rows.append(row)
    if not rows:
        return {"look": look, "pairs": 0}
    out = {"look": look, "pairs": len(rows), "side": rows[0]["side"], "source": source}
    out["gap"] = float(np.median([r["gap"] for r in rows]))
    night = [r for r in rows if r["night"]]
    for key in ["native", *args.sizes]:
        out[key] = float(np.median([r[key] for r in rows]))
        out[f"{key} night"] = float(np.median([r[key] for r in night])) if night else float("nan")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--looks", nargs="+", default=list(LOOKS))
    ap.add_argument("--sizes", nargs="+", type=int, default=[320, 512])
    ap.add_argument("--pairs", type=int, default=40, help="pairs rendered per look")
    ap.add_argument("--max-gap", type=float, default=8.0, help="px: the hard gaps only")
    ap.add_argument("--level", type=float, default=20.0, help="gray levels that count as changed")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", default="reports/looks*", help="run folders NAME_300_s0 (glob)")
    args = ap.parse_args(argv)
    head = ["look", "hard pairs", "region side px", "median gap px", "native (night)"]
    head += [f"at {s} px (night)" for s in args.sizes]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for look in args.looks:
        r = look_row(look, args)
        if not r["pairs"]:
            print(f"| {look} | 0 |" + " |" * (len(head) - 2))
            continue
        cells = [look, str(r["pairs"]), f"{r['side']:.0f}", f"{r['gap']:.1f}"]
        cells += [f"{r[k]:.0f} ({r[f'{k} night']:.0f})" for k in ["native", *args.sizes]]
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
