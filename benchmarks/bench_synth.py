"""Frames rendered per second by the synthetic conveyor, per frame size and worker count.

Run: .venv/bin/python benchmarks/bench_synth.py [--frames N]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from barsalign.synth import SynthConfig, render_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="still frames per measurement")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
