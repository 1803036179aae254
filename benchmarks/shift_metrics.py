"""Operator metrics of an exported model on the simulated shift, smoothing picked elsewhere.

Scores the tuning video (default: the synthetic default set's `clips/`; with --tune-shift,
another shift rendered from another seed) and the shift (`barsalign synth --shift`) once each,
as the monitor does (every frame), caching the scores under --scores; replays the smoother over
`DEFAULT_GRID`; picks the setting on the tuning video (no false green, then the quickest green)
and reports it on the shift, which the choice never saw, beside the default 3 of 4 and the
shift's own sweep.

Run: .venv/bin/python benchmarks/shift_metrics.py --model M.onnx --shift data/shift
     [--tune-shift data/shift_tune]
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from barsalign.config import SYNTH_DIR
from barsalign.monitor.operator import DEFAULT_GRID, ScoredClip, pick_setting, score_clips, sweep
from barsalign.synth.shift import SHIFT_CLIP


def cached(model: Path, clip: Path, store: Path) -> tuple[ScoredClip, float]:
    """The clip's scores from `store`, scored first when missing."""
    path = store / f"{clip.parent.parent.name}_{clip.stem}.csv"  # e.g. shift_60m_shift.csv
    if not path.is_file():
        (scored,), threshold = score_clips(model, [clip])
        store.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["time_s", "score", "aligned", "frame_s", "threshold"])
            for t, s, y in zip(scored.times, scored.scores, scored.truth, strict=True):
                w.writerow([t, s, y, scored.frame_s, threshold])
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    clip_scores = ScoredClip(
        clip.name,
        [float(r["score"]) for r in rows],
        [int(r["aligned"]) for r in rows],
        [float(r["time_s"]) for r in rows],
        float(rows[0]["frame_s"]),
    )
    return clip_scores, float(rows[0]["threshold"])


def table(rows: list[dict]) -> str:
    def sec(x: float) -> str:
        return "never" if math.isinf(x) else "-" if math.isnan(x) else f"{x:.2f}"

    head = f"{'k':>2} {'n':>2} {'margin':>6} {'episodes':>8} {'never':>5} {'ttg med s':>9} "
    head += f"{'ttg p95 s':>9} {'false green':>11} {'per hour':>8} {'flicker/min':>11} {'amber':>6}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['k']:>2} {r['n']:>2} {r['margin']:>6.1f} {r['episodes']:>8} "
            f"{r['episodes_never_green']:>5} {sec(r['time_to_green_median_s']):>9} "
            f"{sec(r['time_to_green_p95_s']):>9} {r['false_green_events']:>11} "
            f"{r['false_green_per_hour']:>8.2f} {r['flicker_per_min']:>11.2f} "
            f"{r['amber_share']:>6.1%}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model.onnx with its card")
    parser.add_argument(
        "--shift", type=Path, required=True, help="a `barsalign synth --shift` folder"
    )
    parser.add_argument("--clips", type=Path, default=SYNTH_DIR / "clips", help="tuning clips")
    parser.add_argument(
        "--tune-shift", type=Path, help="pick the smoothing on this shift instead of the clips"
    )
    parser.add_argument(
        "--scores", type=Path, default=None, help="score cache (default beside model)"
    )
    args = parser.parse_args()
    store = args.scores or args.model.parent / "scores"
    clips = [args.tune_shift / SHIFT_CLIP] if args.tune_shift else sorted(args.clips.glob("*.mp4"))
    tuning = [cached(args.model, c, store) for c in clips]
    threshold = tuning[0][1]
    rows = sweep([c for c, _ in tuning], threshold, DEFAULT_GRID)
    where = args.tune_shift or args.clips
    print(f"tuning video: {len(tuning)} clip(s) from {where}, threshold {threshold:g}")
    print(table(rows))
    best = pick_setting(rows)
    shift, _ = cached(args.model, args.shift / SHIFT_CLIP, store)
    minutes = (shift.times[-1] + shift.frame_s) / 60
    on_shift = {(r["k"], r["n"], r["margin"]): r for r in sweep([shift], threshold, DEFAULT_GRID)}
    print(f"\nshift: {len(shift.scores)} frames, {minutes:.1f} min, from {args.shift}")
    print(table(list(on_shift.values())))
    picked = [] if best is None else [on_shift[(best["k"], best["n"], best["margin"])]]
    print("\npicked on the tuning video" + ("" if best else ": none without a false green"))
    if picked:
        print(table(picked))
    print("default 3 of 4, margin 0.5")
    print(table([on_shift[(3, 4, 0.5)]]))


if __name__ == "__main__":
    main()
