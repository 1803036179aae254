"""`barsalign monitor`: watch a video source with a model and draw the operator's border."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from barsalign.errors import BarsalignError
from barsalign.monitor.operator import (
    clip_truth_for,
    format_metrics,
    jsonable,
    records_metrics,
    video_frames,
)
from barsalign.monitor.stats import format_stats
from barsalign.monitor.stream import MonitorConfig, run_monitor
from barsalign.outputs import atomic_write_text, check_output_file


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "monitor",
        help="watch a video, camera or stream and show aligned (green) / not aligned (red)",
        description="Score every frame of a video file, camera or RTSP stream with an exported "
        "ONNX model (its card checked) and draw a glowing border: green aligned, red not "
        "aligned, amber uncertain. Prints frames/s and latency percentiles at the end.",
    )
    p.add_argument("--model", required=True, help="model.onnx with its model.onnx.card.json")
    p.add_argument("--source", required=True, help="VIDEO_FILE, CAMERA_INDEX or RTSP_URL")
    p.add_argument("--out", help="write the annotated video here (H.264 MP4)")
    p.add_argument("--show", action="store_true", help="show a window (needs OpenCV with GUI)")
    live = p.add_mutually_exclusive_group()
    live.add_argument(
        "--live",
        dest="live",
        action="store_true",
        default=None,
        help="drop frames when slower than the source (default for cameras)",
    )
    live.add_argument(
        "--every-frame",
        dest="live",
        action="store_false",
        help="score every frame, however long it takes (default for files)",
    )
    p.add_argument("--threshold", type=float, help="override the card's operating threshold")
    p.add_argument(
        "--k",
        type=int,
        help="frames of the last n needed to change colour (default: the model card's, else 3)",
    )
    p.add_argument("--n", type=int, help="window of the k-of-n smoothing (card's, else 4)")
    p.add_argument("--margin", type=float, help="uncertain band, logits (card's, else 0.5)")
    p.add_argument(
        "--truth",
        nargs="?",
        const="auto",
        help="print the operator's metrics against the truth: a CSV (frame,aligned or "
        "time,aligned); bare --truth: CLIP.csv beside a file, else a synthetic clip's metadata",
    )
    p.add_argument("--json", help="write the run's summary (and the operator's metrics) here")
    p.add_argument("--reconnects", type=int, default=3, help="tries after a stream drops")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    cfg = MonitorConfig(
        model=args.model,
        source=args.source,
        out=args.out,
        show=args.show,
        live=args.live,
        threshold=args.threshold,
        k=args.k,
        n=args.n,
        margin=args.margin,
        reconnects=args.reconnects,
        max_frames=args.max_frames,
        threads=args.threads,
    )
    if args.truth is not None and not Path(args.source).is_file():
        raise BarsalignError(f"--truth needs a video file as --source, not {args.source}")
    if args.truth not in (None, "auto") and not Path(args.truth).is_file():
        raise BarsalignError(f"truth file {args.truth} does not exist")
    if args.json:
        check_output_file(args.json, [args.model], "--json")
    result = run_monitor(cfg)
    print(format_stats(result.stats))
    sm = result.smoothing
    print(f"smoothing: {sm['k']} of {sm['n']}, margin {sm['margin']:g} logits ({sm['source']})")
    summary = {**result.stats.summary(), "threshold": result.threshold, "smoothing": sm}
    if args.truth is not None:
        given = None if args.truth == "auto" else args.truth
        n_frames = video_frames(args.source, result.stats.frames_read)
        truth = clip_truth_for(args.source, given, n_frames, result.stats.source_fps)
        metrics = records_metrics(result.records, truth, result.stats.source_fps)
        print(format_metrics(metrics))
        summary["operator"] = jsonable(metrics)
    if result.out:
        print(f"annotated video: {result.out}")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(summary, indent=2) + "\n")
        print(f"summary: {args.json}")
    return 0
