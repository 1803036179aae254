"""`barsalign monitor`: watch a video source with a model and draw the operator's border."""

from __future__ import annotations

import argparse

from barsalign.monitor.stats import format_stats
from barsalign.monitor.stream import MonitorConfig, run_monitor


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
    p.add_argument("--k", type=int, default=3, help="frames of the last n needed to change colour")
    p.add_argument("--n", type=int, default=4, help="window of the k-of-n smoothing")
    p.add_argument("--margin", type=float, default=0.5, help="uncertain band, logits")
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
    result = run_monitor(cfg)
    print(format_stats(result.stats))
    if result.out:
        print(f"annotated video: {result.out}")
    return 0
