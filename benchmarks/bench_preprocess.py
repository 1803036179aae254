"""Preprocessing ms per frame (1152x864 → 384, one core, per step) and data-loader frames/s
with and without the disk cache. Target: under 3 ms per frame on one core.

Run: .venv/bin/python benchmarks/bench_preprocess.py [--frames N] [--size 384]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import cv2
import numpy as np

from barsalign.data import AlignmentDataModule
from barsalign.preprocess import (
    PreprocessConfig,
    crop_resize,
    finish,
    list_images,
    preprocess,
    read_image,
)
from barsalign.synth import ensure_default

TARGET_MS = 3.0


def _ms(fn, frames: list[np.ndarray]) -> float:
    """Median milliseconds of fn over the frames (after one warm-up call)."""
    fn(frames[0])
    times = []
    for f in frames:
        t0 = time.perf_counter()
        fn(f)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def _loader_fps(data_dir, size: int, cache_dir, passes: int) -> tuple[float, float]:
    """(setup seconds, frames/s over `passes` passes of the training loader)."""
    dc = {
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "input_size": (3, size, size),
    }
    t0 = time.perf_counter()
    dm = AlignmentDataModule(data_dir, dc, augment=None, cache_dir=cache_dir, batch_size=32)
    dm.setup("fit")
    setup_s = time.perf_counter() - t0
    n, t0 = 0, time.perf_counter()
    for _ in range(passes):
        for x, _y in dm.train_dataloader():
            n += len(x)
    return setup_s, n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames timed per step")
    parser.add_argument("--size", type=int, default=384, help="target_size")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core, as the target says
    data = ensure_default()
    paths = list_images(data / "example_set")[: args.frames]
    frames = [read_image(p) for p in paths]
    cfg = PreprocessConfig(target_size=args.size)
    squares = [crop_resize(f, cfg) for f in frames]
    h, w = frames[0].shape[:2]
    rows = [
        ("steps 1-2 crop + resize", _ms(lambda f: crop_resize(f, cfg), frames)),
        ("steps 3-6 gray..mask", _ms(lambda s: finish(s, cfg), squares)),
        ("steps 1-6 run literally", _ms(lambda f: finish(crop_resize(f, cfg), cfg), frames)),
        ("preprocess (kept columns)", _ms(lambda f: preprocess(f, cfg), frames)),
        ("read_image (JPEG decode)", _ms(read_image, paths)),
    ]
    print(f"preprocessing {w}x{h} -> {args.size}, one OpenCV thread, median of {len(frames)}")
    print(f"{'step':<28} {'ms/frame':>9}")
    for name, ms in rows:
        print(f"{name:<28} {ms:>9.2f}")
    total = rows[3][1]
    verdict = "meets" if total < TARGET_MS else "MISSES"
    print(f"target < {TARGET_MS} ms per frame: {verdict} ({total:.2f} ms)\n")

    cv2.setNumThreads(0)
    print(f"data loader (num_workers=0, batch 32, {args.size} px, no augmentation)")
    print(f"{'cache':<14} {'setup s':>8} {'frames/s':>9}")
    _, fps = _loader_fps(data / "example_set", args.size, None, 1)
    print(f"{'none':<14} {'-':>8} {fps:>9.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        setup_s, _ = _loader_fps(data / "example_set", args.size, tmp, 0)
        print(f"{'cold (fills)':<14} {setup_s:>8.2f} {'-':>9}")
        setup_s, fps = _loader_fps(data / "example_set", args.size, tmp, 2)
        print(f"{'warm':<14} {setup_s:>8.2f} {fps:>9.1f}")


if __name__ == "__main__":
    main()
