"""Training images per second per backbone on this CPU: forward, backward and an AdamW step.

The median of `--steps` timed steps after a warm-up step, so a busy neighbour skews it less.

Measures the classifier alone (random input tensors of the preset's image size), so it is the
ceiling that data loading can only lower. `--all` adds the GPU-profile backbones. The model
trains in channels-last (NHWC) layout; the last column is the plain NCHW layout for comparison.
A second table times the CPU profile's backbone at the profile's image size with 0-3 frozen
early stages (`freeze_stages`; the profile's own choice is marked).
Run: .venv/bin/python benchmarks/bench_train.py [--steps N] [--batch-size B] [--all]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from barsalign.config import CONF_DIR
from barsalign.modeling.model import PRESETS, AlignmentClassifier, count_parameters
from barsalign.modeling.train_config import load_profile


def images_per_s(
    backbone: str,
    size: int,
    batch: int,
    steps: int,
    channels_last: bool = True,
    freeze_stages: int = 0,
) -> tuple[float, float, int]:
    """(training images/s, inference images/s, parameters) after one warm-up step."""
    model = AlignmentClassifier(
        backbone,
        image_size=size,
        weights="random",
        channels_last=channels_last,
        freeze_stages=freeze_stages,
    ).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size)
    y = (torch.arange(batch) % 2).float()

    def step() -> None:
        opt.zero_grad()
        model.loss(model(x), y).backward()
        opt.step()

    def median_seconds(fn) -> float:
        fn()  # warm-up: first-call allocations and kernel choices
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    train = batch / median_seconds(step)
    model.eval()
    with torch.no_grad():
        infer = batch / median_seconds(lambda: model(x))
    return train, infer, count_parameters(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per backbone")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--all", action="store_true", help="also the GPU-profile backbones")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print(
        f"{'backbone':<30} {'size':>5} {'params M':>9} {'train img/s':>12} {'infer img/s':>12}"
        f" {'train NCHW':>11}"
    )
    for preset in PRESETS.values():
        if preset.profile != "cpu" and not args.all:
            continue
        train, infer, params = images_per_s(
            preset.name, preset.image_size, args.batch_size, args.steps
        )
        plain, _, _ = images_per_s(
            preset.name, preset.image_size, args.batch_size, args.steps, channels_last=False
        )
        print(
            f"{preset.name:<30} {preset.image_size:>5} {params / 1e6:>9.1f} "
            f"{train:>12.1f} {infer:>12.1f} {plain:>11.1f}",
            flush=True,
        )
    profile = load_profile(CONF_DIR / "cpu.yaml")
    backbone, size = profile["backbone"], int(profile["image_size"])
    print(f"\nconf/cpu.yaml: {backbone} at {size} px, training images/s by frozen early stages")
    print(f"{'freeze_stages':>13} {'train img/s':>12}")
    for n in range(4):
        train, _, _ = images_per_s(backbone, size, args.batch_size, args.steps, freeze_stages=n)
        mark = "  <- conf/cpu.yaml" if n == int(profile.get("freeze_stages", 0)) else ""
        print(f"{n:>13} {train:>12.1f}{mark}", flush=True)


if __name__ == "__main__":
    main()
