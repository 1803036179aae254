"""`barsalign export`: the best run (or a checkpoint) exported, checked and carded."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from barsalign.export.build import FORMATS, ExportConfig, export_checkpoint
from barsalign.export.checks import default_parity_data
from barsalign.export.report import format_summary
from barsalign.export.sources import check_checkpoint


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX/TorchScript (CoreML if installed) with model cards",
        description="Export a trained checkpoint (default: the best run) to ONNX and "
        "TorchScript, check each against PyTorch on real frames, and write a model card "
        "beside each. CoreML is exported where coremltools is installed, else skipped.",
    )
    p.add_argument("--checkpoint", help="a .ckpt (default: the best run's best.ckpt)")
    p.add_argument("--runs-dir", help="where runs live (default reports/runs)")
    p.add_argument("--out", dest="out_dir", help="output folder (default <run>/export)")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--threshold", type=float, help="operating threshold (default: evaluation's)")
    p.add_argument("--evaluation", help="05_evaluate's comparison.csv to take the threshold from")
    p.add_argument("--data", dest="parity_data", help="frames for the parity check")
    p.add_argument("--parity-frames", type=int, default=32)
    p.add_argument(
        "--no-tracking", dest="tracking", action="store_false", default=None, help="no MLflow run"
    )
    p.add_argument(
        "--promote",
        action="store_true",
        default=None,
        help="make this export the model on the line (registry alias 'champion')",
    )
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(ExportConfig)}
    params = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    ExportConfig(**params)  # the settings first, then where the parity frames come from
    if args.checkpoint:
        check_checkpoint(Path(args.checkpoint))
    if args.parity_data is None:
        params["parity_data"] = str(default_parity_data(render=False))
    summary = export_checkpoint(ExportConfig(**params))
    print(format_summary(summary))
    return 0
