"""The `barsalign` console script: one subcommand per concern.

Each module named in `COMMAND_MODULES` exposes `add_commands(subparsers)`, which adds its
subcommands and sets `func` on each; a `BarsalignError` becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from barsalign.errors import BarsalignError

COMMAND_MODULES: tuple[str, ...] = (
    "barsalign.synth",
    "barsalign.preprocess",
    "barsalign.data",
    "barsalign.reports",
    "barsalign.roi",
    "barsalign.train",
    "barsalign.predict",
    "barsalign.export",
    "barsalign.monitor",
    "barsalign.labeler",
    "barsalign.runs",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="barsalign",
        description="Label, preprocess, train, evaluate and monitor bar-alignment classifiers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
