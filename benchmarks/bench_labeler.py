"""Labeler speed: key-to-next-frame latency (median, p95) and labels/s the store sustains.

Run: .venv/bin/python benchmarks/bench_labeler.py [N]
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


def main(n: int = 200) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(1, n + 1):
            p = Path(tmp) / f"img_{i:05d}.jpg"
            cv2.imwrite(str(p), rng.integers(0, 255, (864, 1152, 3), np.uint8))
            paths.append(str(p))
        lab = Labeler(paths, LabelStore(Path(tmp) / "labels"))
        lab.show()  # real widgets, so each key also renders the next frame into the Image
        lat = []
        for _ in range(n - 1):
            time.sleep(0.25)  # a person's pace: prefetch has time to work
            t = time.perf_counter()
            lab.press("ArrowRight")
            lat.append((time.perf_counter() - t) * 1000)
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


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
