"""`barsalign synth`: render the default data set, a look's small labelled sets (`--look`), or a
shift of video with per-frame truth (`--shift`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from barsalign.config import DATA_DIR, LOOKS_DIR, SYNTH_DIR
from barsalign.errors import BarsalignError
from barsalign.synth.dataset import render_dataset, render_look_sets
from barsalign.synth.looks import LOOKS, get_look
from barsalign.synth.scenes import SynthConfig
from barsalign.synth.shift import ShiftConfig, render_shift

_DEFAULT_SET_FLAGS = (
    "n_example",
    "n_pool",
    "n_clips",
    "clip_frames",
    "hard_fraction",
    "twin_fraction",
    "night_weight",
    "size",
)


_LOOK_FLAGS = ("n_train", "n_val", "n_test")


_SHIFT_FLAGS = ("minutes", "fps")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth", help="render the synthetic conveyor data set", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default {SYNTH_DIR}; with --look, {LOOKS_DIR}/NAME)",
    )
    p.add_argument(
        "--look",
        default=None,
        help=f"render a look's small labelled train/val/test sets: {', '.join(LOOKS)}",
    )
    p.add_argument(
        "--shift",
        action="store_true",
        help=f"render a shift of video at the stopper with per-frame truth into "
        f"{DATA_DIR}/shift (idle table, bars rolling in, pushes, day to night)",
    )
    p.add_argument(
        "--minutes", type=float, default=None, help=f"with --shift ({ShiftConfig.minutes:g})"
    )
    p.add_argument("--fps", type=int, default=None, help=f"with --shift ({ShiftConfig.fps})")
    p.add_argument("--seed", type=int, default=0)
    for split, n in (("train", 300), ("val", 120), ("test", 300)):
        p.add_argument(f"--n-{split}", type=int, default=None, help=f"with --look: {n}")
    p.add_argument(
        "--n-example", type=int, default=None, help=f"labelled frames ({SynthConfig.n_example})"
    )
    p.add_argument(
        "--n-pool", type=int, default=None, help=f"unlabelled frames ({SynthConfig.n_pool})"
    )
    p.add_argument("--n-clips", type=int, default=None, help=f"({SynthConfig.n_clips})")
    p.add_argument("--clip-frames", type=int, default=None, help=f"({SynthConfig.clip_frames})")
    p.add_argument(
        "--aligned-fraction",
        type=float,
        default=None,
        help=f"({SynthConfig.aligned_fraction}; with --look 0.5)",
    )
    p.add_argument(
        "--hard-fraction", type=float, default=None, help=f"({SynthConfig.hard_fraction})"
    )
    p.add_argument(
        "--twin-fraction",
        type=float,
        default=None,
        help="share of the pool's not-aligned bar scenes also drawn with every bar flush (0)",
    )
    p.add_argument(
        "--night-weight",
        type=float,
        default=None,
        help=f"weight of night frames against day 0.45 and artificial 0.35 "
        f"({SynthConfig.lighting_mix[2]})",
    )
    p.add_argument("--size", default=None, help="WIDTHxHEIGHT (1152x864)")
    p.add_argument("--workers", type=int, default=None, help="render processes (default: cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing data set")
    p.set_defaults(func=_cli)


def _flags(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    """The options among `names` given on the command line, spelled as flags."""
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n) is not None]


def _cli(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise BarsalignError(f"--workers must be >= 1, got {args.workers}")
    if args.shift:
        return _shift(args)
    if given := _flags(args, _SHIFT_FLAGS):
        raise BarsalignError(f"{', '.join(given)}: only with --shift")
    if args.look is not None:
        get_look(args.look)
        if given := _flags(args, _DEFAULT_SET_FLAGS):
            raise BarsalignError(
                f"{', '.join(given)}: for the default data set only; a look sets its own"
            )
        sizes = {n: getattr(args, n) for n in _LOOK_FLAGS if getattr(args, n) is not None}
        aligned = 0.5 if args.aligned_fraction is None else args.aligned_fraction
        render_look_sets(
            args.look,
            args.out,
            seed=args.seed,
            aligned_fraction=aligned,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=True,
            **sizes,
        )
        return 0
    if given := _flags(args, _LOOK_FLAGS):
        raise BarsalignError(f"{', '.join(given)}: only with --look NAME")
    width, height = _size(args.size)

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    d = SynthConfig
    cfg = SynthConfig(
        seed=args.seed,
        width=width,
        height=height,
        n_example=pick(args.n_example, d.n_example),
        n_pool=pick(args.n_pool, d.n_pool),
        n_clips=pick(args.n_clips, d.n_clips),
        clip_frames=pick(args.clip_frames, d.clip_frames),
        aligned_fraction=pick(args.aligned_fraction, d.aligned_fraction),
        hard_fraction=pick(args.hard_fraction, d.hard_fraction),
        twin_fraction=pick(args.twin_fraction, d.twin_fraction),
        lighting_mix=(0.45, 0.35, pick(args.night_weight, d.lighting_mix[2])),
    )
    out = args.out or SYNTH_DIR
    render_dataset(out, cfg, workers=args.workers, overwrite=args.overwrite, progress=True)
    return 0


def _size(size: str | None) -> tuple[int, int]:
    size = size or "1152x864"
    try:
        width, height = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise BarsalignError(f"--size must look like 1152x864, got {size!r}") from None
    return width, height


def _shift(args: argparse.Namespace) -> int:
    others = ("aligned_fraction", *_LOOK_FLAGS, *(f for f in _DEFAULT_SET_FLAGS if f != "size"))
    if args.look is not None or (given := _flags(args, others)):
        flags = ["--look"] if args.look is not None else given
        raise BarsalignError(f"{', '.join(flags)}: not with --shift")
    width, height = _size(args.size)
    fields = {"minutes": args.minutes, "fps": args.fps}
    cfg = ShiftConfig(
        seed=args.seed,
        width=width,
        height=height,
        **{k: v for k, v in fields.items() if v is not None},
    )
    render_shift(
        args.out or DATA_DIR / "shift",
        cfg,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=True,
    )
    return 0
