"""`barsalign suspects --data DIR`: every labelled frame ranked, most likely wrong first."""

from __future__ import annotations

import argparse
from pathlib import Path

from barsalign.errors import BarsalignError
from barsalign.label_quality.features import SuspectConfig
from barsalign.label_quality.suspects import SUSPECTS_FILE, find_suspects, write_suspects
from barsalign.outputs import check_output_file


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "suspects",
        help="rank labelled frames by how likely their label is wrong (cleanlab)",
        description="Out-of-fold scores of the labelled frames (a probe on frozen pretrained "
        "features of the stopper region), then cleanlab's label issues: writes every frame "
        "ranked, most likely wrong first, and prints the top ones. Relabel them in notebook "
        '02 with order = "suspect".',
    )
    p.add_argument("--data", dest="data_dir", required=True, help="labelled frames")
    p.add_argument("--out", help=f"the suspects CSV (default: {SUSPECTS_FILE} in the current dir)")
    p.add_argument("--folds", type=int, default=5, help="grouped K-fold (default 5)")
    p.add_argument("--roi", default="auto", help="x0,y0,x1,y1, 'none', or 'auto' (default)")
    p.add_argument("--top", type=int, default=20, help="rows printed (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    out = Path(args.out or SUSPECTS_FILE)
    if out.suffix.lower() != ".csv":
        raise BarsalignError(f"--out {out}: the suspects file is a CSV, name it *.csv")
    check_output_file(out, what="--out")
    if not Path(args.data_dir).exists():
        raise BarsalignError(f"--data {args.data_dir} does not exist")
    cfg = SuspectConfig(folds=args.folds, roi=args.roi, seed=args.seed)
    df = find_suspects(args.data_dir, cfg)
    write_suspects(df, out)
    flagged = int(df["suspect"].sum())
    print(f"{len(df)} frames, {flagged} flagged as label issues by cleanlab; all ranked in {out}")
    if (df["truth"] != "").any():
        top = df[df["suspect"]]
        print(
            f"the renderer's truth confirms {int((top['truth_confirms'] == 'yes').sum())} of them"
        )
    print(
        df.head(args.top)[["rank", "label", "score", "suspect", "truth", "path"]].to_string(
            index=False
        )
    )
    return 0
