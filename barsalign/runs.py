"""`barsalign runs`: the tracker's training runs as a terminal table, to find and compare them.

Reads the store `barsalign.tracking` writes (`MLFLOW_TRACKING_URI`, else the repo's mlflow.db):
one row per training run, newest first, with the held-out F0.5 that `barsalign evaluate` put on
it where the run was scored on frames it never saw.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from barsalign import tracking
from barsalign.errors import BarsalignError

RUNS_COLUMNS = ("run", "data", "backbone", "steps", "val F0.5", "held-out F0.5", "minutes")


def runs_table(experiment: str | None = None, last: int = 20) -> list[dict[str, Any]]:
    """The newest `last` training runs of `experiment`, one row each (`RUNS_COLUMNS`)."""
    if last < 1:
        raise BarsalignError(f"--last must be 1 or more, not {last}")
    c = tracking.client()
    name = tracking.experiment_name(experiment)
    found = c.get_experiment_by_name(name)
    if found is None:
        raise BarsalignError(f"no experiment {name!r} in {tracking.tracking_uri()}")
    runs = c.search_runs(
        [found.experiment_id],
        filter_string="tags.kind = 'train'",
        order_by=["attributes.start_time DESC"],
        max_results=last,
    )
    rows = []
    for r in runs:
        m, p, t = r.data.metrics, r.data.params, r.data.tags
        seconds = m.get("summary.seconds")
        if seconds is None and r.info.end_time:
            seconds = (r.info.end_time - r.info.start_time) / 1000
        data = t.get("data_dir")
        rows.append(
            {
                "run": t.get("mlflow.runName", r.info.run_id[:8]),
                "data": f"{tracking.data_label(data)} ({t['data_sha256'][:8]})" if data else "-",
                "backbone": p.get("backbone", "-"),
                "steps": int(m["summary.steps"]) if "summary.steps" in m else None,
                "val F0.5": m.get("summary.best_f05"),
                "held-out F0.5": m.get("heldout_f05"),
                "minutes": None if seconds is None else seconds / 60,
                "status": r.info.status,
                "run_id": r.info.run_id,
            }
        )
    return rows


def format_runs(rows: Sequence[dict[str, Any]]) -> str:
    """The runs as an aligned text table (what `barsalign runs` prints)."""

    def cell(key: str, v: Any) -> str:
        if v is None:
            return "-"
        if key in ("val F0.5", "held-out F0.5"):
            return f"{v:.3f}"
        if key == "minutes":
            return f"{v:.1f}"
        return str(v)

    cols = [*RUNS_COLUMNS, "run_id"]
    cells = [
        [
            cell(k, r[k])
            + ("" if k != "run" or r["status"] == "FINISHED" else f" ({r['status'].lower()})")
            for k in cols
        ]
        for r in rows
    ]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(cols)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "runs",
        help="list and compare tracked training runs (MLflow)",
        description="Training runs from the MLflow tracker (MLFLOW_TRACKING_URI, else the "
        "repo's mlflow.db), newest first: data, backbone, steps, validation and held-out "
        "F0.5 (once `barsalign evaluate` scored the run), minutes.",
    )
    p.add_argument("--experiment", help="experiment name (default: barsalign)")
    p.add_argument("--last", type=int, default=20, help="the newest N runs (default 20)")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    rows = runs_table(args.experiment, args.last)
    if not rows:
        name = tracking.experiment_name(args.experiment)
        print(f"no training runs in experiment {name!r} ({tracking.tracking_uri()})")
        return 0
    print(format_runs(rows))
    return 0


__all__ = ["format_runs", "runs_table"]
