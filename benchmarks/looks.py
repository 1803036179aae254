"""The default recipe on every look of the renderer: held-out F0.5 beside the classical baseline.

For each look (`barsalign.synth.LOOKS`) its small labelled sets are rendered once into
`data/looks/NAME` (300 train / 120 val / 300 test, half aligned, each split from its own
recording sessions; `--n-train 1200` renders `data/looks/NAME_1200`), then:

- the default recipe trains with no other setting, as `barsalign train --data LOOK/train
  --val-data LOOK/val` would (FinetuneConfig's defaults; `--set key=value` changes one);
- its best checkpoint scores the test split, which no run saw: F0.5 at 0.5 and AUROC;
- with `gap_pairs`, the pairs come from every look but the one trained on (leave one look
  out): a user's camera is none of the renderer's looks either;
- the classical baseline (`modeling.baseline.EdgeBaseline`: logistic regression on the plant's
  edge image) is fitted on the same training frames and scored on the same test split.

The table has one row per look and seed and a mean row; recipes are decided on that mean,
never on one look. `--json` keeps the rows. Each run is tracked (MLflow, tagged with its look),
with its held-out and the baseline's scores on it, so `barsalign runs --markdown --group look
--filter "tags.run_dir LIKE '%/looks/%'"` gives the same table from the tracker.

Run: .venv/bin/python benchmarks/looks.py [--looks default top_down ...] [--seeds 1]
         [--first-seed 0] [--n-train 300] [--set key=value ...] [--out reports/looks]
         [--json rows.json] [--sets-dir data/looks]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from barsalign.config import LOOKS_DIR, REPORTS_DIR
from barsalign.errors import BarsalignError
from barsalign.modeling.train_config import parse_settings
from barsalign.synth.looks import LOOKS

COLUMNS = (
    "look",
    "seed",
    "train",
    "minutes",
    "steps",
    "val_f05",
    "f05",
    "auroc",
    "base_f05",
    "base_auroc",
)


def look_sets(look: str, n_train: int, root: Path = LOOKS_DIR) -> Path:
    """The look's rendered sets (rendered first when missing)."""
    from barsalign.synth import render_look_sets

    out = root / (look if n_train == 300 else f"{look}_{n_train}")
    if not (out / "look.json").is_file():
        render_look_sets(look, out, n_train=n_train)
    return out


def metrics(labels: Any, scores: Any) -> dict[str, float]:
    """F0.5 at 0.5 and AUROC."""
    from barsalign.evaluation.evaluate import evaluate_scores

    m = evaluate_scores(labels, scores)
    return {"f05": float(m["f05"]), "auroc": float(m["auroc"])}


def held_out(checkpoint: Path, test: Path, tracking: bool = True) -> dict[str, float]:
    """A checkpoint's F0.5 at 0.5 and AUROC on a labelled folder (every frame must read);
    with `tracking` an MLflow evaluation run, its numbers on the training run (`heldout_*`)."""
    from barsalign.evaluation.evaluate import evaluate_scorer, labelled_folder, load_scorer

    row, frames = evaluate_scorer(
        load_scorer(checkpoint), labelled_folder(test), latency_frames=1, tracking=tracking
    )
    if row["unreadable"]:
        raise BarsalignError(f"{test}: {row['unreadable']} unreadable frame(s)")
    frames.to_csv(checkpoint.parent.parent / "heldout_frames.csv", index=False)
    print(misses(frames), flush=True)
    return {"f05": float(row["f05"]), "auroc": float(row["auroc"])}


def misses(frames: Any) -> str:
    """Where the held-out errors are: frames per kind of scene and largest gap (the
    renderer's truth), and how many of them the model got wrong, on one line."""
    from barsalign.evaluation.evaluate import error_rates

    table = error_rates(frames).get("gap_px")
    if table is None:
        return "  held-out misses: no renderer truth"
    cells = [f"{r.gap_px} {r.errors}/{r.frames}" for r in table.itertuples() if r.frames]
    return "  held-out misses by largest gap: " + ", ".join(cells)


def baseline(train: Path, test: Path) -> dict[str, float]:
    """The classical baseline fitted on `train` and scored on `test`."""
    from barsalign.data import load_labels
    from barsalign.evaluation.evaluate import labelled_folder
    from barsalign.modeling.baseline import EdgeBaseline
    from barsalign.preprocess import PreprocessConfig, read_image

    items = load_labels(train)
    model = EdgeBaseline(PreprocessConfig())
    model.fit([read_image(it.path) for it in items], [it.label for it in items])
    data = labelled_folder(test)
    return metrics(data.labels, model.scores([read_image(p) for p in data.paths]))


def run_look(
    look: str,
    seed: int,
    n_train: int,
    settings: dict[str, Any],
    out: Path,
    sets_dir: Path = LOOKS_DIR,
    rescore: bool = False,
) -> dict:
    """One row: the default recipe on `look` with `seed`, and the baseline beside it; both
    held-out scores also go on the tracked training run (tagged with the look). With `rescore`
    the run folder's finished training is scored instead of training again (its minutes are the
    training's own, without the region proposal)."""
    from barsalign import tracking
    from barsalign.modeling.train import run_training
    from barsalign.modeling.train_config import FinetuneConfig

    sets = look_sets(look, n_train, sets_dir)
    run = out / f"{look}_{n_train}_s{seed}"
    params = {"data_dir": str(sets / "train"), "val_data_dir": str(sets / "val"), "seed": seed}
    params |= {"run_dir": str(run), "run_name": run.name, "overwrite": True, **settings}
    if params.get("gap_pairs") and params.get("gap_pairs_looks") is None:  # unseen, as yours
        params["gap_pairs_looks"] = [other for other in LOOKS if other != look]
    if rescore:
        try:
            summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise BarsalignError(
                f"{run}/summary.json: no finished run to rescore ({err})"
            ) from None
        minutes = float(summary["seconds"]) / 60
    else:
        started = time.perf_counter()
        summary = run_training(FinetuneConfig(**params))
        minutes = (time.perf_counter() - started) / 60  # region proposal and caching included
    tracked = bool(params.get("tracking", True))
    test = held_out(run / "checkpoints" / "best.ckpt", sets / "test", tracked)
    base = baseline(sets / "train", sets / "test")
    if tracked:  # `barsalign runs --markdown --group look` gives this table from the tracker
        run_id = tracking.log_to_training_run(
            run, {"baseline.heldout_f05": base["f05"], "baseline.heldout_auroc": base["auroc"]}
        )
        if run_id:  # runs older than the look tag get it here
            tracking.client().set_tag(run_id, "look", look)
    row = {
        "look": look,
        "seed": seed,
        "train": n_train,
        "minutes": round(minutes, 1),
        "steps": summary["steps"],
        "val_f05": summary["best_f05"],
        "f05": round(test["f05"], 3),
        "auroc": round(test["auroc"], 3),
        "base_f05": round(base["f05"], 3),
        "base_auroc": round(base["auroc"], 3),
    }
    print("  " + "  ".join(f"{k} {row[k]}" for k in COLUMNS), flush=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per run and the mean over them."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")
    if len(rows) > 1:
        mean = {c: round(statistics.mean(float(r[c]) for r in rows), 3) for c in COLUMNS[3:]}
        sd = statistics.stdev(float(r["f05"]) for r in rows)
        cells = ["**mean**", "", "", *(str(mean[c]) for c in COLUMNS[3:])]
        cells[COLUMNS.index("f05")] = f"**{mean['f05']}** (sd {sd:.3f})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--looks", nargs="+", default=list(LOOKS), help="look names (default all)")
    ap.add_argument("--seeds", type=int, default=1, help="N seeds per look")
    ap.add_argument("--first-seed", type=int, default=0, help="the first of the N seeds")
    ap.add_argument("--n-train", type=int, default=300, help="labelled training frames per look")
    ap.add_argument("--set", action="append", default=[], help="key=value: a recipe setting")
    ap.add_argument("--out", type=Path, default=REPORTS_DIR / "looks", help="run folders")
    ap.add_argument("--json", type=Path, help="write the rows here too")
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="no training: score the finished runs in --out and put the scores on their "
        "tracked training runs (runs made before their held-out scores were tracked)",
    )
    ap.add_argument(
        "--sets-dir", type=Path, default=LOOKS_DIR, help="where the looks' sets are rendered"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        unknown = [look for look in args.looks if look not in LOOKS]
        if unknown:
            raise BarsalignError(f"unknown look {unknown[0]!r}; known: {', '.join(LOOKS)}")
        settings = parse_settings(args.set)
        rows = [
            run_look(look, seed, args.n_train, settings, args.out, args.sets_dir, args.rescore)
            for look in args.looks
            for seed in range(args.first_seed, args.first_seed + args.seeds)
        ]
    except BarsalignError as err:
        print(f"looks.py: error: {err}", file=sys.stderr)
        return 2
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
