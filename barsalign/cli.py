"""The `barsalign` console script: one subcommand per concern, each imported only when run.

`COMMANDS` names every subcommand, the module that defines it and its one-line help, so
`barsalign --help` lists them without importing a single command module (nor torch). Running
`barsalign CMD ...` imports CMD's module only; it exposes `add_commands(subparsers)`, which adds
its subcommands and sets `func` on each. A `BarsalignError` becomes one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NamedTuple

from barsalign.errors import BarsalignError


class Command(NamedTuple):
    """Where a subcommand is defined and the line `barsalign --help` shows for it."""

    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "synth": Command("barsalign.synth.cli", "render the synthetic conveyor data set"),
    "preprocess": Command(
        "barsalign.preprocess.cli", "write preprocessed frames for a visual check"
    ),
    "cache": Command(
        "barsalign.data.cache", "show, prune or clear the preprocessed-frame cache (bounded, 8 GiB)"
    ),
    "demo": Command("barsalign.reports", "render the default data and run every notebook"),
    "report": Command(
        "barsalign.reports", "convert executed notebooks to HTML and write the index"
    ),
    "roi": Command("barsalign.roi", "propose the stopper region from labelled frames and draw it"),
    "train": Command("barsalign.modeling.train", "fine-tune one backbone into a run folder"),
    "evaluate": Command("barsalign.evaluation.predict", "metrics of a model on a labelled folder"),
    "predict": Command("barsalign.evaluation.predict", "score a folder of frames into a CSV"),
    "export": Command(
        "barsalign.export.cli",
        "export a checkpoint to ONNX/TorchScript (CoreML if installed) with model cards",
    ),
    "quantize": Command(
        "barsalign.export.quantize",
        "int8 static quantization of an ONNX export, calibrated on real frames",
    ),
    "monitor": Command(
        "barsalign.monitor.cli",
        "watch a video, camera or stream and show aligned (green) / not aligned (red)",
    ),
    "serve": Command(
        "barsalign.monitor.serve",
        "the operator's screen in a browser: live border, score, strip and event log",
    ),
    "labels": Command(
        "barsalign.data.labels", "convert labels between class files, folders and CSV"
    ),
    "suspects": Command(
        "barsalign.label_quality.cli",
        "rank labelled frames by how likely their label is wrong (cleanlab)",
    ),
    "runs": Command("barsalign.runs", "list and compare tracked training runs (MLflow)"),
}
"""Every subcommand in the order `barsalign --help` lists them."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with `command`'s module imported; every other command is a help line only."""
    parser = argparse.ArgumentParser(
        prog="barsalign",
        description="Label, preprocess, train, evaluate and monitor bar-alignment classifiers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if command is not None:
        importlib.import_module(COMMANDS[command].module).add_commands(subparsers)
    for name, c in COMMANDS.items():
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=c.help)
    return parser


def command_named(argv: Sequence[str]) -> str | None:
    """The subcommand on the command line (its first bare word), None when there is none."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(command_named(argv)).parse_args(argv)
    try:
        result = args.func(args)
    except BarsalignError as err:
        print(f"barsalign {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"barsalign {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
