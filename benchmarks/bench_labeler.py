"""Labeler speed: key-to-next-frame latency (median, p95) and labels/s the store sustains.

With `--loop`, the labeler carries an active-learning loop (`active.LiveLoop`) that refits its
probe in a background thread every 20 labels on embeddings of the default pool's size (2400
frames, of which the N shown, 2560-wide, random), so the keys are timed while retrains run;
the table says how many of the timed keys fell during a retrain.

Run: .venv/bin/python benchmarks/bench_labeler.py [N] [--loop]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from barsalign.labeler import Labeler
from barsalign.labelstore import LabelStore


def main(n: int = 200, loop: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(1, n + 1):
            p = Path(tmp) / f"img_{i:05d}.jpg"
            cv2.imwrite(str(p), rng.integers(0, 255, (864, 1152, 3), np.uint8))
            paths.append(str(p))
        live = None
        if loop:
            from barsalign.active import LiveLoop, LoopConfig

            pool = paths + [f"{tmp}/pool_{i:05d}.jpg" for i in range(2400 - n)]
            x = rng.normal(size=(len(pool), 2560)).astype(np.float32)
            live = LiveLoop(pool, x, LoopConfig("diverse", 20), retrain_every=20)
        lab = Labeler(paths, LabelStore(Path(tmp) / "labels"), loop=live)
        lab.show()  # real widgets, so each key also renders the next frame into the Image
        lat, during = [], 0
        for i in range(n - 1):
            time.sleep(0.25)  # a person's pace: prefetch has time to work
            busy = live is not None and live.busy
            t = time.perf_counter()
            lab.press("ArrowRight" if i % 3 else "ArrowLeft")
            lat.append((time.perf_counter() - t) * 1000)
            during += busy
        if live is not None:
            live.close()
        store = LabelStore(Path(tmp) / "store_only")
        t = time.perf_counter()
        for p in paths:
            store.label(p, "aligned")
        rate = n / (time.perf_counter() - t)
    q = statistics.quantiles(lat, n=20)
    print("| metric | value |\n|---|---|")
    print(f"| key-to-next-frame median (ms) | {statistics.median(lat):.1f} |")
    print(f"| key-to-next-frame p95 (ms) | {q[18]:.1f} |")
    print(f"| store labels/s (fsync each, locked) | {rate:.0f} |")
    print(f"| frames | {n} (1152x864 JPEG, shown at 640 px) |")
    if loop:
        print(f"| keys timed while a retrain ran | {during} of {len(lat)} |")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--loop"]
    main(int(args[0]) if args else 200, "--loop" in sys.argv[1:])
