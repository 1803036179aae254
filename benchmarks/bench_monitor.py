"""End-to-end monitor speed and held-out F0.5 per model variant (fp32, int8, other sizes).

Target (issue 25): >= 25 frames/s scored end to end at 1152x864 on this 2-core CPU (decode,
preprocess, ONNX Runtime, draw; every frame of the clip scored in order), with held-out F0.5
within 0.01 of the fp32 model. Variants: the fp32 export (`--model`; default: the newest
`model.onnx` of a trained run, else an untrained Lite0 at 224, whose F0.5 means nothing), its
int8 quantization (`--int8`; default: `MODEL.int8.onnx` beside it, else quantized now into a
temporary folder on `--calib` frames), and any `--extra` exports (a smaller input size). Each
model scores the held-out set at its card's threshold.
Run: .venv/bin/python benchmarks/bench_monitor.py [--model M.onnx] [--int8 M.int8.onnx]
     [--calib DIR] [--extra OTHER.onnx ...] [--clip C.mp4] [--held-out DIR] [--passes N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from barsalign import export
from barsalign.config import RUNS_DIR
from barsalign.evaluation.evaluate import ensure_held_out, labelled_folder, score_paths
from barsalign.evaluation.metrics import binary_metrics
from barsalign.inference import load_predictor, physical_cores
from barsalign.monitor import MonitorConfig, run_monitor


def default_model(work: Path) -> Path:
    """The newest exported ONNX model of a trained run, else an untrained Lite0 at 224."""
    found = [*RUNS_DIR.glob("*/model.onnx"), *RUNS_DIR.glob("*/export/model.onnx")]
    found = sorted(found, key=lambda p: p.stat().st_mtime)
    if found:
        return found[-1]
    ckpt = export.untrained_checkpoint(work / "untrained" / "checkpoints" / "best.ckpt")
    cfg = export.ExportConfig(
        checkpoint=str(ckpt),
        out_dir=str(work / "export"),
        formats=("onnx",),
        threshold=0.5,
        tracking=False,
    )
    return Path(export.export_checkpoint(cfg)["formats"]["onnx"]["path"])


def int8_model(model: Path, given: str | None, calib: str | None, work: Path) -> Path:
    """The int8 variant: given, beside the fp32 model, or quantized now on `calib`."""
    from barsalign.export.quantize import QuantizeConfig, quantize_model

    beside = model.with_name(f"{model.stem}.int8.onnx")
    if given:
        return Path(given)
    if beside.is_file():
        return beside
    if calib is None:
        calib = str(export.default_parity_data())
    out = work / "int8" / beside.name
    quantize_model(QuantizeConfig(str(model), calib, out=str(out)))
    return out


def heldout_f05(model: Path, held_out: Path) -> float:
    """F0.5 (aligned positive) on the held-out set at the model card's threshold."""
    scorer = load_predictor(model)
    data = labelled_folder(held_out)
    scores, bad, _ = score_paths(scorer, data.paths)
    if bad:
        raise SystemExit(f"{len(bad)} held-out frames unreadable: {bad[0]}")
    return float(binary_metrics(data.labels, scores, scorer.decision_threshold)["f05"])


def speed(model: Path, clip: Path, passes: int, threads: int | None) -> dict[str, float]:
    """Every frame of the clip scored in order, `passes` times: p50s and frames/s."""
    run_monitor(MonitorConfig(str(model), str(clip), max_frames=5, threads=threads))  # warm
    records, wall, frames = [], 0.0, 0
    for _ in range(passes):
        result = run_monitor(MonitorConfig(str(model), str(clip), threads=threads))
        records += result.records
        wall += result.stats.wall_s
        frames += result.stats.frames_scored
    w, h = result.stats.frame_size
    return {
        "preprocess": float(np.percentile([r["preprocess_ms"] for r in records], 50)),
        "inference": float(np.percentile([r["infer_ms"] for r in records], 50)),
        "fps": frames / wall,
        "size": f"{w}x{h}",
        "frames": frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an fp32 .onnx export with its card")
    parser.add_argument("--int8", help="its int8 quantization (barsalign quantize)")
    parser.add_argument("--calib", help="frames to quantize on when there is no int8 model")
    parser.add_argument("--extra", nargs="*", default=[], help="other exports to compare")
    parser.add_argument("--clip", help="a video (default: the synthetic clip_000.mp4)")
    parser.add_argument("--held-out", help="labelled frames (default: the held-out set)")
    parser.add_argument("--passes", type=int, default=3, help="times through the clip")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    args = parser.parse_args()
    from barsalign.synth import ensure_default

    clip = Path(args.clip) if args.clip else ensure_default() / "clips" / "clip_000.mp4"
    held_out = Path(args.held_out) if args.held_out else ensure_held_out()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else default_model(Path(tmp))
        int8 = int8_model(model, args.int8, args.calib, Path(tmp))
        variants = [model, int8, *[Path(p) for p in args.extra]]
        threads = args.threads or physical_cores()
        print(f"fp32 model {model}\nclip {clip}\nheld-out {held_out}")
        print(f"{os.cpu_count()} CPUs, ONNX Runtime intra-op threads: {threads}")
        rows = []
        for path in variants:
            card = load_predictor(path).card
            method = card.get("quantization", {}).get("method")
            name = f"{card.get('variant', 'fp32')} {card['image_size']}"
            name += f" ({method})" if method else ""
            rows.append({"variant": name, **speed(path, clip, args.passes, args.threads)})
            rows[-1]["f05"] = heldout_f05(path, held_out)
        base = rows[0]["f05"]
        print(f"\nevery frame of the clip scored in order, {args.passes} passes")
        head = ("variant", "preprocess ms p50", "inference ms p50", "frames/s")
        print(f"| {' | '.join(head)} | held-out F0.5 | F0.5 - fp32 |")
        print("|" + "---|" * (len(head) + 2))
        for r in rows:
            print(
                f"| {r['variant']} | {r['preprocess']:.1f} | {r['inference']:.1f} | "
                f"{r['fps']:.1f} at {r['size']} | {r['f05']:.4f} | {r['f05'] - base:+.4f} |"
            )
        best = max(rows, key=lambda r: r["fps"])
        ok = [r for r in rows if r["fps"] >= 25 and abs(r["f05"] - base) <= 0.01]
        print(
            f"\ntarget >= 25 frames/s with F0.5 within 0.01 of fp32: "
            f"{'met by ' + ', '.join(r['variant'] for r in ok) if ok else 'NOT met'} "
            f"(fastest: {best['variant']}, {best['fps']:.1f} frames/s)"
        )


if __name__ == "__main__":
    main()
