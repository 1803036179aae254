"""End-to-end monitor speed on a 1152x864 clip: decode, preprocess, infer (ONNX Runtime), draw.

Target (issue 7): >= 30 frames/s on this 2-core CPU and < 30 ms per frame, for the default
model (tf_efficientnet_lite0 at 224). Weights do not change the speed: without `--model`, the
best run's export is used when there is one, else an untrained Lite0 is exported for the
measurement. Two passes: every frame scored in order (what `--out` uses), then live at a
simulated 30 fps camera, where the reader thread decodes while the model infers.
Run: .venv/bin/python benchmarks/bench_monitor.py [--model M.onnx] [--clip C.mp4] [--passes N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from barsalign import export
from barsalign.config import RUNS_DIR
from barsalign.inference import load_predictor
from barsalign.monitor import MonitorConfig, run_monitor


def default_model(work: Path) -> Path:
    """The newest exported ONNX model of a trained run, else an untrained Lite0 at 224."""
    found = [*RUNS_DIR.glob("*/model.onnx"), *RUNS_DIR.glob("*/export/model.onnx")]
    found = sorted(found, key=lambda p: p.stat().st_mtime)
    if found:
        return found[-1]
    ckpt = export.untrained_checkpoint(work / "untrained" / "checkpoints" / "best.ckpt")
    cfg = export.ExportConfig(
        checkpoint=str(ckpt), out_dir=str(work / "export"), formats=("onnx",), threshold=0.5
    )
    return Path(export.export_checkpoint(cfg)["formats"]["onnx"]["path"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an exported .onnx with its card")
    parser.add_argument("--clip", help="a video (default: the synthetic clip_000.mp4)")
    parser.add_argument("--passes", type=int, default=3, help="times through the clip")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    args = parser.parse_args()
    from barsalign.synth import ensure_default

    clip = Path(args.clip) if args.clip else ensure_default() / "clips" / "clip_000.mp4"
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else default_model(Path(tmp))
        card = load_predictor(model).card
        print(f"model {model} ({card['backbone']} at {card['image_size']}), clip {clip}")
        print(f"{os.cpu_count()} CPUs, ONNX Runtime threads: {args.threads or 'default'}")
        records, walls, frames = [], 0.0, 0
        run_monitor(MonitorConfig(str(model), str(clip), max_frames=5, threads=args.threads))
        # "read" is the wait for the reader thread, which decodes while the model infers
        for _ in range(args.passes):
            result = run_monitor(MonitorConfig(str(model), str(clip), threads=args.threads))
            records += result.records
            walls += result.stats.wall_s
            frames += result.stats.frames_scored
        stages = ("read_ms", "preprocess_ms", "infer_ms", "draw_ms")
        size = f"{result.stats.frame_size[0]}x{result.stats.frame_size[1]}"
        print(f"\nevery frame scored in order: {frames} frames of {size} in {args.passes} passes")
        print(f"{'stage':<22}{'mean ms':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
        whole = np.sum([[r[k] for k in stages] for r in records], axis=1)
        for name, values in [
            *[(k[:-3], [r[k] for r in records]) for k in stages],
            ("frame latency (sum)", whole),
        ]:
            v = np.asarray(values)
            print(
                f"{name:<22}{v.mean():>9.2f}{np.percentile(v, 50):>9.2f}"
                f"{np.percentile(v, 90):>9.2f}{np.percentile(v, 99):>9.2f}"
            )
        fps = frames / walls
        p50 = float(np.percentile(whole, 50))
        print(
            f"\nend to end: {fps:.1f} frames/s, {1000.0 / fps:.1f} ms per frame "
            f"(median frame {p50:.1f} ms)"
        )
        print(
            f"target >= 30 frames/s: {'met' if fps >= 30 else 'NOT met'}; "
            f"< 30 ms per frame: {'met' if 1000.0 / fps < 30 else 'NOT met'}"
        )
        live = run_monitor(
            MonitorConfig(str(model), str(clip), live=True, pace_fps=30.0, threads=args.threads)
        ).stats.summary()
        print(
            f"\nlive, the clip played as a 30 fps camera: {live['frames_scored']} scored, "
            f"{live['frames_dropped']} dropped of {live['frames_read']} "
            f"({live['fps']:.1f} frames/s scored; latency p50 {live['latency_ms_p50']:.1f} ms, "
            f"p90 {live['latency_ms_p90']:.1f} ms)"
        )


if __name__ == "__main__":
    main()
