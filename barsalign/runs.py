"""`barsalign runs`: the tracker's runs as tables, to find, compare and write them up.

Reads the store `barsalign.tracking` writes (`MLFLOW_TRACKING_URI`, else the repo's mlflow.db):
one row per training run, newest first, with the held-out F0.5 and AUROC that an evaluation
(`barsalign evaluate`, 05, benchmarks/looks.py) put on it where it scored frames the run never
saw. `--markdown` prints the table the lab notebook (`docs/experiments.md`) pastes, `--group
look` one row per look and seed with the means, as benchmarks/looks.py's table; `--kind
label_noise` takes benchmarks/label_noise.py's runs instead (`tracking.log_run`: how many
flipped labels the top suspects held); `--registry` lists the exported versions and which one
is on the line (`barsalign.registry`).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from typing import Any

from barsalign import tracking
from barsalign.errors import BarsalignError

RUNS_COLUMNS = ("run", "data", "backbone", "steps", "val F0.5", "held-out F0.5", "minutes")
MARKDOWN_COLUMNS = (
    "run",
    "look/data",
    "backbone",
    "seed",
    "frames",
    "steps",
    "val F0.5",
    "held-out F0.5",
    "held-out AUROC",
    "minutes",
)
BASELINE_COLUMNS = ("baseline F0.5", "baseline AUROC")
"""Shown when a run carries them (benchmarks/looks.py fits the classical baseline beside it)."""
SCORES = ("val F0.5", "held-out F0.5", "held-out AUROC", *BASELINE_COLUMNS)
NOISE_COLUMNS = (
    "run",
    "seed",
    "scores",
    "features",
    "C",
    "folds",
    "OOF AUROC (given)",
    "OOF AUROC (truth)",
    "flips",
    "top",
    "flips in top",
    "share found",
    "cleanlab flags",
    "flips flagged",
    "F0.5 truth",
    "F0.5 flipped",
    "F0.5 relabelled",
    "minutes",
)
"""`--kind label_noise`: benchmarks/label_noise.py's runs (seed: which labels were flipped;
scores: out-of-fold scores from the frozen probe or from one fine-tuning per fold; features and
C: the probe's; F0.5: held-out, of the final model fitted on each labelling)."""
NOISE_METRICS = {
    "OOF AUROC (given)": "oof_auroc_given",
    "OOF AUROC (truth)": "oof_auroc_vs_truth",
    "flips": "flipped",
    "top": "top",
    "flips in top": "flips_in_top",
    "share found": "share_found",
    "cleanlab flags": "cleanlab_flagged",
    "flips flagged": "flips_flagged",
    "F0.5 truth": "held_out_f05.truth",
    "F0.5 flipped": "held_out_f05.flipped",
    "F0.5 relabelled": "held_out_f05.relabelled",
}
COUNTS = ("flips", "top", "flips in top", "cleanlab flags", "flips flagged")
MEANS = (*SCORES, "minutes", *NOISE_METRICS)
"""The columns a group's mean row averages."""
KINDS = ("train", "label_noise")


def runs_table(
    experiment: str | None = None,
    last: int = 20,
    filter_string: str | Sequence[str] | None = None,
    kind: str = "train",
) -> list[dict[str, Any]]:
    """The newest `last` runs of `kind` (`KINDS`) in `experiment` (those matching
    `filter_string`, an MLflow search filter such as "tags.look = 'top_down'"; several filters
    give the runs matching any of them, as MLflow's filters have no OR), one row each."""
    if last < 1:
        raise BarsalignError(f"--last must be 1 or more, not {last}")
    if kind not in KINDS:
        raise BarsalignError(f"--kind {kind!r}: one of {', '.join(KINDS)}")
    c = tracking.client()
    name = tracking.experiment_name(experiment)
    found = c.get_experiment_by_name(name)
    if found is None:
        raise BarsalignError(f"no experiment {name!r} in {tracking.tracking_uri()}")
    filters = [filter_string] if isinstance(filter_string, str) else list(filter_string or [None])
    from mlflow.exceptions import MlflowException

    by_id: dict[str, Any] = {}
    for one in filters:
        query = f"tags.kind = '{kind}'" + (f" and {one}" if one else "")
        try:
            for r in c.search_runs(
                [found.experiment_id],
                filter_string=query,
                order_by=["attributes.start_time DESC"],
                max_results=last,
            ):
                by_id[r.info.run_id] = r
        except MlflowException as err:
            first = (str(err).strip().splitlines() or ["?"])[0][:200]
            raise BarsalignError(f"--filter {one!r}: {first}") from None
    runs = sorted(by_id.values(), key=lambda r: r.info.start_time, reverse=True)[:last]
    return [(_row if kind == "train" else _noise_row)(r) for r in runs]


def _noise_row(r: Any) -> dict[str, Any]:
    """One label-noise run (benchmarks/label_noise.py) as a table row."""
    m, p, t = r.data.metrics, r.data.params, r.data.tags
    row: dict[str, Any] = {k: m.get(v) for k, v in NOISE_METRICS.items()}
    for k in COUNTS:
        row[k] = None if row[k] is None else int(row[k])
    seconds = m.get("seconds")
    return {
        **row,
        "run": t.get("mlflow.runName", r.info.run_id[:8]),
        "seed": int(p["seed"]) if p.get("seed", "").lstrip("-").isdigit() else None,
        "scores": p.get("scores", "probe"),
        "features": p.get("features", "-"),
        "C": p.get("C", "-"),
        "folds": p.get("folds", "-"),
        "minutes": None if seconds is None else seconds / 60,
        "status": r.info.status,
        "run_id": r.info.run_id,
        "tags": t,
        "params": p,
    }


def _row(r: Any) -> dict[str, Any]:
    """One training run as a table row."""
    m, p, t = r.data.metrics, r.data.params, r.data.tags
    seconds = m.get("summary.seconds")
    if seconds is None and r.info.end_time:
        seconds = (r.info.end_time - r.info.start_time) / 1000
    data = t.get("data_dir")
    label = tracking.data_label(data) if data else "-"
    return {
        "run": t.get("mlflow.runName", r.info.run_id[:8]),
        "data": f"{label} ({t['data_sha256'][:8]})" if data else "-",
        "look": t.get("look"),
        "look/data": t.get("look") or label,
        "backbone": p.get("backbone", "-"),
        "seed": int(p["seed"]) if p.get("seed", "").lstrip("-").isdigit() else None,
        "frames": int(t["data_frames"]) if "data_frames" in t else None,
        "steps": int(m["summary.steps"]) if "summary.steps" in m else None,
        "val F0.5": m.get("summary.best_f05"),
        "held-out F0.5": m.get("heldout_f05"),
        "held-out AUROC": m.get("heldout_auroc"),
        "baseline F0.5": m.get("baseline.heldout_f05"),
        "baseline AUROC": m.get("baseline.heldout_auroc"),
        "minutes": None if seconds is None else seconds / 60,
        "status": r.info.status,
        "run_id": r.info.run_id,
        "tags": t,
        "params": p,
    }


def _cell(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if key == "share found":
        return f"{100 * v:.1f} %"
    if key in COUNTS:
        return str(v) if isinstance(v, int) else f"{v:.1f}"
    if key == "minutes":
        return f"{v:.1f}"
    if key in MEANS or key == "threshold":
        return f"{v:.3f}"
    return str(v)


def _aligned(cols: Sequence[str], cells: list[list[str]]) -> str:
    """Columns padded to their widest cell, a header line first."""
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(cols)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def format_runs(rows: Sequence[dict[str, Any]]) -> str:
    """The runs as an aligned text table (what `barsalign runs` prints)."""
    cols = [*RUNS_COLUMNS, "run_id"]
    cells = [
        [
            _cell(k, r[k])
            + ("" if k != "run" or r["status"] == "FINISHED" else f" ({r['status'].lower()})")
            for k in cols
        ]
        for r in rows
    ]
    return _aligned(cols, cells)


def group_value(row: dict[str, Any], key: str) -> str:
    """A run's value of `key`: its tag, else its param, else "-"."""
    return str(row["tags"].get(key, row["params"].get(key, "-")))


def _mean_row(rows: Sequence[dict[str, Any]], label: str, cols: Sequence[str]) -> list[str]:
    """ "mean" cells over `rows`: the scores, counts and minutes averaged, held-out F0.5 and
    the share of flips found with their sd."""
    cells = [""] * len(cols)
    cells[0] = f"**{label}**"
    for i, k in enumerate(cols):
        if k not in MEANS:
            continue
        values = [float(r[k]) for r in rows if r.get(k) is not None]
        if not values:
            continue
        cells[i] = _cell(k, statistics.mean(values))
        if k in ("held-out F0.5", "share found") and len(values) > 1:
            sd = statistics.stdev(values) * (100 if k == "share found" else 1)
            cells[i] = f"**{cells[i]}** (sd {sd:.{1 if k == 'share found' else 3}f})"
    return cells


def format_markdown(
    rows: Sequence[dict[str, Any]], group: str | None = None, kind: str = "train"
) -> str:
    """The runs as a markdown table for the lab notebook (`MARKDOWN_COLUMNS`, and the
    baseline's where a run has them; `NOISE_COLUMNS` for label-noise runs). With `group` (a
    tag or param, e.g. "look") the rows come in order of it, then seed, its value is the first
    column, each group of several runs gets its mean row, and for training runs a last row
    gives the mean over every run."""
    cols = list(MARKDOWN_COLUMNS if kind == "train" else NOISE_COLUMNS)
    if kind == "train" and any(r.get(k) is not None for r in rows for k in BASELINE_COLUMNS):
        cols[cols.index("minutes") : cols.index("minutes")] = BASELINE_COLUMNS
    body: list[list[str]] = []
    if group:
        cols = [group, *(k for k in cols if k != group and (k != "look/data" or group != "look"))]
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in sorted(rows, key=lambda r: (group_value(r, group), r["seed"] or 0)):
            groups.setdefault(group_value(r, group), []).append(r)
        for value, members in groups.items():
            body += [[value, *(_cell(k, r[k]) for k in cols[1:])] for r in members]
            if len(members) > 1:
                body.append(_mean_row(members, f"mean {value}", cols))
        if len(groups) > 1 and kind == "train":  # one recipe over looks; not across probes
            body.append(_mean_row(rows, "mean", cols))
    else:
        body = [[_cell(k, r[k]) for k in cols] for r in rows]
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def format_noise(rows: Sequence[dict[str, Any]]) -> str:
    """Label-noise runs as an aligned text table (`barsalign runs --kind label_noise`)."""
    cols = [*NOISE_COLUMNS, "run_id"]
    return _aligned(cols, [[_cell(k, r[k]) for k in cols] for r in rows])


def format_registry(rows: Sequence[dict[str, Any]]) -> str:
    """The registered versions as an aligned text table (`barsalign runs --registry`)."""
    from barsalign.registry import REGISTRY_COLUMNS

    cols = [*REGISTRY_COLUMNS, "checkpoint"]
    return _aligned(cols, [[_cell(k, r[k]) for k in cols] for r in rows])


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "runs",
        help="list and compare tracked training runs (MLflow)",
        description="Training runs from the MLflow tracker (MLFLOW_TRACKING_URI, else the "
        "repo's mlflow.db), newest first: data, backbone, steps, validation and held-out "
        "F0.5 (once an evaluation scored the run on unseen frames), minutes.",
    )
    p.add_argument("--experiment", help="experiment name (default: barsalign)")
    p.add_argument("--last", type=int, default=20, help="the newest N runs (default 20)")
    p.add_argument(
        "--filter",
        action="append",
        help="an MLflow search filter, e.g. \"tags.look = 'top_down'\" or "
        "\"params.backbone = 'resnet18'\"; given twice or more, the runs matching any",
    )
    p.add_argument(
        "--kind",
        default="train",
        choices=KINDS,
        help="training runs (default), or benchmarks/label_noise.py's runs",
    )
    p.add_argument("--markdown", action="store_true", help="a markdown table for docs/")
    p.add_argument(
        "--group", help="with --markdown: order by this tag or param (e.g. look), with means"
    )
    p.add_argument(
        "--registry",
        action="store_true",
        help="the registered model's versions and which is on the line (alias champion)",
    )
    p.add_argument(
        "--promote",
        type=int,
        metavar="VERSION",
        help="with --registry: make this version the one on the line",
    )
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    if args.promote is not None and not args.registry:
        raise BarsalignError("--promote VERSION goes with --registry")
    if args.group and not args.markdown:
        raise BarsalignError("--group goes with --markdown")
    if args.registry:
        from barsalign import registry

        if args.promote is not None:
            registry.promote(args.promote)
            print(f"{registry.REGISTERED_MODEL} version {args.promote} is now {registry.CHAMPION}")
        rows = registry.versions()
        if not rows:
            print(f"no {registry.REGISTERED_MODEL} versions in {tracking.tracking_uri()}")
            return 0
        print(format_registry(rows))
        return 0
    rows = runs_table(args.experiment, args.last, args.filter, args.kind)
    if not rows:
        name = tracking.experiment_name(args.experiment)
        what = "training" if args.kind == "train" else args.kind
        print(f"no {what} runs in experiment {name!r} ({tracking.tracking_uri()})")
        return 0
    if args.markdown:
        print(format_markdown(rows, args.group, args.kind))
    else:
        print(format_runs(rows) if args.kind == "train" else format_noise(rows))
    return 0


__all__ = [
    "format_markdown",
    "format_noise",
    "format_registry",
    "format_runs",
    "group_value",
    "runs_table",
]
