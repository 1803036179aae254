"""`barsalign suspects --data DIR`: every labelled frame ranked, most likely wrong first."""

from __future__ import annotations

import argparse
from pathlib import Path

from barsalign.errors import BarsalignError
from barsalign.label_quality.features import SuspectConfig
from barsalign.label_quality.finetune import FinetuneScores
from barsalign.label_quality.suspects import SUSPECTS_FILE, find_suspects, write_suspects
from barsalign.outputs import check_output_file


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "suspects",
        help="rank labelled frames by how likely their label is wrong (cleanlab)",
        description="Out-of-fold scores of the labelled frames (a probe on frozen pretrained "
        "features of the stopper region, or with --scores finetune one fine-tuning per "
        "fold), then cleanlab's label issues: writes every frame "
        "ranked, most likely wrong first, and prints the top ones. Relabel them in notebook "
        '02 with order = "suspect".',
    )
    p.add_argument("--data", dest="data_dir", required=True, help="labelled frames")
    p.add_argument("--out", help=f"the suspects CSV (default: {SUSPECTS_FILE} in the current dir)")
    p.add_argument("--folds", type=int, default=5, help="grouped K-fold (default 5)")
    p.add_argument("--roi", default="auto", help="x0,y0,x1,y1, 'none', or 'auto' (default)")
    p.add_argument("--top", type=int, default=20, help="rows printed (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scores",
        choices=("probe", "finetune"),
        default="probe",
        help="out-of-fold scores from a probe on frozen features (default; seconds), or from "
        "one fine-tuning of the default recipe per fold (minutes each; finds more wrong labels)",
    )
    p.add_argument(
        "--work",
        help="--scores finetune: the folds' labels and runs (default: FOLDS beside --out, "
        "named after it)",
    )
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    out = Path(args.out or SUSPECTS_FILE)
    if out.suffix.lower() != ".csv":
        raise BarsalignError(f"--out {out}: the suspects file is a CSV, name it *.csv")
    check_output_file(out, what="--out")
    if not Path(args.data_dir).exists():
        raise BarsalignError(f"--data {args.data_dir} does not exist")
    cfg = SuspectConfig(folds=args.folds, roi=args.roi, seed=args.seed)
    oof = None
    if args.scores == "finetune":
        work = Path(args.work or out.with_name(f"{out.stem}_folds"))
        oof = FinetuneScores(work, {"seed": args.seed})
        print(f"out-of-fold scores from {args.folds} fine-tunings, runs in {work}")
    df = find_suspects(args.data_dir, cfg, oof)
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
