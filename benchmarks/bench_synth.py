"""Frames rendered per second by the synthetic conveyor, per frame size and worker count.

With --shift-minutes M, also a shift of M minutes (`barsalign synth --shift`, 1152x864, 5 fps)
and what an hour would take at that rate.

Run: .venv/bin/python benchmarks/bench_synth.py [--frames N] [--shift-minutes M]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from barsalign.synth import SynthConfig, render_dataset
from barsalign.synth.shift import ShiftConfig, render_shift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="still frames per measurement")
    parser.add_argument("--shift-minutes", type=float, default=0.0, help="time a shift too")
    parser.add_argument("--skip-stills", action="store_true", help="only the shift")
    args = parser.parse_args()
    if args.shift_minutes > 0:
        shift_table(args.shift_minutes)
    if args.skip_stills:
        return
    rows = []
    for size in ((1152, 864), (640, 480)):
        for workers in (1, 2):
            cfg = dataclasses.replace(
                SynthConfig(seed=1),
                width=size[0],
                height=size[1],
                n_example=args.frames,
                n_pool=0,
                n_clips=0,
            )
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                render_dataset(Path(tmp) / "set", cfg, workers=workers)
                seconds = time.perf_counter() - started
            rows.append(
                (f"{size[0]}x{size[1]}", workers, args.frames, seconds, args.frames / seconds)
            )
    print(f"{'size':>10} {'workers':>8} {'frames':>7} {'seconds':>8} {'frames/s':>9}")
    for size, workers, frames, seconds, fps in rows:
        print(f"{size:>10} {workers:>8} {frames:>7} {seconds:>8.2f} {fps:>9.2f}")


def shift_table(minutes: float) -> None:
    """Seconds to render a shift of `minutes`, with 1 and 2 workers, and an hour at that rate."""
    print(
        f"{'shift min':>9} {'workers':>8} {'frames':>7} {'drawings':>8} {'seconds':>8} "
        f"{'hour, min':>9}"
    )
    for workers in (1, 2):
        cfg = ShiftConfig(minutes=minutes)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            out = render_shift(Path(tmp) / "shift", cfg, workers=workers)
            seconds = time.perf_counter() - started
            drawings = json.loads((out / "shift.json").read_text())["drawings"]
        hour = seconds * 60 / minutes / 60
        print(
            f"{minutes:>9g} {workers:>8} {cfg.frames:>7} {drawings:>8} {seconds:>8.1f} {hour:>9.1f}"
        )


if __name__ == "__main__":
    main()
