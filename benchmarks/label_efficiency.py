"""Label efficiency: held-out F0.5 of the probe against the number of human labels.

For each look's pool (`--looks`: the synthetic default's 2400-frame pool, scored on the
held-out set; a look of the renderer suite, `data/looks/NAME[_N]/train`, scored on its test
split), the active-learning loop of `barsalign.active` runs with each strategy (random,
uncertainty, diverse) and a simulated annotator (the renderer's truth, wrong with
`--error-rate`), batches of 50, over `--seeds`. At each number of labels the loop's probe (a
logistic regression on frozen Lite0 features of the stopper region, the features cached by
content) is scored on the held-out frames at threshold 0.5, and again after label spreading
added the confident pseudo-labels (`--min-confidence`), with their wrong rate against the
truth. "all" is the probe on every pool frame labelled by the same annotator.

The F0.5 is the probe's, not a fine-tuned network's: a fine-tune per point does not fit a
2-core CPU. For the network's curve, `--write-picks DIR` writes the frames each strategy has had
labelled at each budget (and all of them) as label CSVs, and `--finetune-picks DIR` trains the
default recipe on each (`--jobs` at once, `--set accelerator=gpu` on a GPU machine) and scores
it on the held-out frames; `--network-table DIR/finetune.jsonl` prints the table, and the report
index shows every `reports/label_efficiency*/finetune.jsonl`. The region: on the default look the
one `barsalign suspects` proposes from the pool's labels (5 % flipped, as
benchmarks/label_noise.py; `--region stopper` takes the renderer's box), on another look the
renderer's stopper box (drawn once per camera).

Writes label_efficiency.json and label_efficiency.png into `--out` and prints the tables; the
report index (`barsalign report`) shows the curves and the labels each look needs from every
reports/label_efficiency*/label_efficiency.json.
Run: .venv/bin/python benchmarks/label_efficiency.py [--looks default left_low]
         [--write-picks DIR | --finetune-picks DIR [--jobs N] [--set KEY=VALUE]]
         [--seeds 0 1 2] [--budgets 50 100 ...] [--error-rate 0.05] [--image-size 320]
         [--out reports/label_efficiency]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.config import DATA_DIR, REPORTS_DIR
from barsalign.errors import BarsalignError

OUT = REPORTS_DIR / "label_efficiency"
BUDGETS = (50, 100, 200, 300, 500, 1000)


def proposed_region(pool: list[Any], out: Path) -> Any:
    """The region `barsalign suspects` proposes from the pool's labels with 5 % of them flipped
    (seed 0: what benchmarks/label_noise.py runs), so the features it cached serve here too;
    kept in `out` (pickled: the cache key is the region's exact repr)."""
    import pickle

    from barsalign.label_quality import flip_labels
    from barsalign.roi import propose_roi

    memo = out / "roi_default.pkl"
    if memo.is_file():
        return pickle.loads(memo.read_bytes())
    noisy, _ = flip_labels(pool, 0.05, 0)
    roi = propose_roi([(it.path, it.label) for it in noisy], seed=0).roi
    memo.write_bytes(pickle.dumps(roi))
    return roi


def look_data(name: str, region: str, out: Path) -> dict[str, Any]:
    """The pool (items, sessions), held-out items and the stopper region of one look."""
    from barsalign.data import Item, load_labels, metadata_rows
    from barsalign.evaluation.evaluate import ensure_held_out, labelled_folder
    from barsalign.synth import ensure_default, pool_labels
    from barsalign.synth.geometry import STOPPER_ROI

    if name == "default":
        pool = load_labels(pool_labels(ensure_default()))
        held = labelled_folder(ensure_held_out())
        roi = STOPPER_ROI if region == "stopper" else proposed_region(pool, out)
        test = "data/synthetic_test/example_set"
        where = "data/synthetic/train_set"
    else:  # the biggest rendered pool of the look: data/looks/NAME_<frames>, else NAME
        found = sorted(DATA_DIR.glob(f"looks/{name}_*/look.json")) + [
            DATA_DIR / "looks" / name / "look.json"
        ]
        stamp = next((p for p in found if p.is_file()), None)
        if stamp is None:
            raise BarsalignError(f"no rendered look {name}: run `barsalign synth --look {name}`")
        root = stamp.parent
        pool = load_labels(root / "train")
        held = labelled_folder(root / "test")
        roi = tuple(json.loads(stamp.read_text())["stopper_roi"])
        where, test = str(root.relative_to(DATA_DIR.parent) / "train"), "its test split"
    rows = metadata_rows([it.path for it in pool])
    sessions = [str(rows.get(it.path.resolve(), {}).get("session", it.group)) for it in pool]
    held_items = [Item(p, int(y), str(p)) for p, y in zip(held.paths, held.labels, strict=True)]
    return {
        "pool": pool,
        "sessions": sessions,
        "held": held_items,
        "roi": roi,
        "where": where,
        "test": test,
    }


def f05(probe: Any, x: np.ndarray, y: np.ndarray) -> float:
    from barsalign.evaluation.metrics import binary_metrics

    return float(binary_metrics(y, probe.predict_proba(x)[:, 1], 0.5)["f05"])


def run_look(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every strategy and seed on one look: the curves, the pseudo-labels' quality, diversity."""
    from barsalign.active import (
        STRATEGIES,
        ActiveLoop,
        LoopConfig,
        confident,
        noisy_answer,
        propagate,
        reduce,
        run_loop,
    )
    from barsalign.label_quality import SuspectConfig, fit_probe, region_features

    d = look_data(name, args.region, Path(args.out))
    started = time.perf_counter()
    cfg = SuspectConfig(roi=d["roi"], image_size=args.image_size)
    x, _, _ = region_features(d["pool"], cfg)
    hx, _, _ = region_features(d["held"], cfg)
    feature_s = time.perf_counter() - started
    truth = np.array([it.label for it in d["pool"]])
    hy = np.array([it.label for it in d["held"]])
    clips = [it.group for it in d["pool"]]
    space = reduce(x)
    n = len(truth)
    budgets = [b for b in args.budgets if b < n]
    every = list(range(50, max(budgets) + 1, 50))
    out: dict[str, Any] = {
        "pool": d["where"],
        "frames": n,
        "aligned": int(truth.sum()),
        "held_out": d["test"],
        "held_out_frames": len(hy),
        "roi": list(d["roi"]),
        "feature_seconds": round(feature_s, 1),
        "runs": [],
    }
    import random

    for seed in args.seeds:
        rng = random.Random(seed + 104729)
        given = np.array([noisy_answer(int(t), rng, args.error_rate) for t in truth])
        out.setdefault("all", []).append(f05(fit_probe(x, given, args.C), hx, hy))
        out.setdefault("all_truth", []).append(f05(fit_probe(x, truth, args.C), hx, hy))
        for strategy in STRATEGIES:
            loop_cfg = LoopConfig(strategy=strategy, batch_size=50, C=args.C, seed=seed)
            loop = ActiveLoop(x, d["sessions"], loop_cfg, space=space)
            row: dict[str, Any] = {"strategy": strategy, "seed": seed, "curve": {}, "pseudo": {}}

            def at(k: int, lp: ActiveLoop, row: dict[str, Any] = row) -> None:
                row["curve"][k] = f05(lp.probe, hx, hy) if lp.probe is not None else 0.0
                if k not in budgets or lp.probe is None:
                    return
                proposed, conf = propagate(lp.space, lp.labels)
                sure = confident(lp.labels, proposed, conf, args.min_confidence)
                idx = np.array(list(lp.labels) + list(sure))
                y = np.array(list(lp.labels.values()) + [v[0] for v in sure.values()])
                wrong = sum(v[0] != truth[i] for i, v in sure.items())
                row["pseudo"][k] = {
                    "f05": f05(fit_probe(x[idx], y, args.C), hx, hy),
                    "n": len(sure),
                    "wrong_rate": wrong / len(sure) if sure else None,
                }

            run_loop(loop, truth, every, at, error_rate=args.error_rate)
            later = loop.batches[1:]
            row["clips_per_batch"] = float(np.mean([len({clips[i] for i in b}) for b in later]))
            row["human_errors"] = int(sum(loop.labels[i] != truth[i] for i in loop.labels))
            out["runs"].append(row)
            print(
                f"{name} seed {seed} {strategy}: "
                + " ".join(f"{k}:{row['curve'][k]:.3f}" for k in budgets if k in row["curve"]),
                flush=True,
            )
    map_plot(
        name,
        {"x": x, "truth": truth, "sessions": d["sessions"]},
        Path(args.out) / f"map_{name}.png",
    )
    out["all_mean"] = float(np.mean(out["all"]))
    out["all_truth_mean"] = float(np.mean(out["all_truth"]))
    out["summary"] = summarise(out, budgets, every)
    return out


PRIORITY = (500, 300, 1000, 200, 100, 50)  # the order the network's points are trained in


def write_picks(name: str, args: argparse.Namespace, where: Path) -> list[dict[str, Any]]:
    """The frames each strategy has had labelled at each budget, and all of them, as label CSVs
    (paths relative to the CSV, the simulated annotator's answers) for the network's points;
    returns their manifest rows. Label sets that are the same (the seed batch) are written once."""
    import hashlib
    import os
    import random

    from barsalign.active import STRATEGIES, ActiveLoop, LoopConfig, noisy_answer, reduce, run_loop
    from barsalign.data.labels import write_csv_labels
    from barsalign.label_quality import SuspectConfig, region_features

    d = look_data(name, args.region, Path(args.out))
    x, _, _ = region_features(d["pool"], SuspectConfig(roi=d["roi"], image_size=args.image_size))
    truth = np.array([it.label for it in d["pool"]])
    space = reduce(x)
    budgets = [b for b in args.budgets if b < len(truth)]
    val = "data/synthetic/example_set" if name == "default" else d["where"][: -len("train")] + "val"
    held = os.path.relpath(d["held"][0].path.parent.parent)  # the repo root is the cwd
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}

    def put(labels: dict[int, int], seed: int, strategy: str, k: int | str) -> None:
        pairs = [(d["pool"][i].path.resolve(), int(y)) for i, y in sorted(labels.items())]
        digest = hashlib.sha1(repr([(p.name, y) for p, y in pairs]).encode()).hexdigest()[:12]
        if digest not in seen:
            seen[digest] = f"{name}_s{seed}_{strategy}_{k}.csv"
            write_csv_labels(pairs, where / seen[digest], relative=True)
        rows.append(
            {
                "look": name,
                "seed": seed,
                "strategy": strategy,
                "labels": k,
                "csv": seen[digest],
                "wrong_answers": sum(int(y) != int(truth[i]) for i, y in labels.items()),
                "val": val,
                "held_out": held,
            }
        )

    for seed in args.seeds:
        rng = random.Random(seed + 104729)  # the same annotator as run_look's "all"
        put(
            {i: noisy_answer(int(t), rng, args.error_rate) for i, t in enumerate(truth)},
            seed,
            "all",
            "all",
        )
        for strategy in STRATEGIES:
            loop_cfg = LoopConfig(strategy=strategy, batch_size=50, C=args.C, seed=seed)
            loop = ActiveLoop(x, d["sessions"], loop_cfg, space=space)

            def at(k: int, lp: ActiveLoop, seed: int = seed, strategy: str = strategy) -> None:
                put(dict(lp.labels), seed, strategy, k)

            run_loop(loop, truth, budgets, at, error_rate=args.error_rate)
        print(f"{name} seed {seed}: picks written", flush=True)
    return rows


def _finetune_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train the default recipe on one pick's labels (the settings of `--set` on top), score its
    best checkpoint on the held-out frames; the run's output goes to its own log."""
    import os

    import torch

    from barsalign.evaluation.evaluate import evaluate_scorer, labelled_folder
    from barsalign.inference import load_predictor
    from barsalign.modeling.train import run_training
    from barsalign.modeling.train_config import FinetuneConfig

    torch.set_num_threads(job["threads"])
    run = Path(job["run"])
    run.mkdir(parents=True, exist_ok=True)
    log = os.open(run / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1), os.dup2(log, 2)
    started = time.perf_counter()
    summary = run_training(
        FinetuneConfig(
            data_dir=job["csv"],
            val_data_dir=job["val"],
            seed=job["seed"],
            run_dir=str(run / "run"),
            run_name=run.name,
            overwrite=True,
            tracking=False,
            **job["settings"],
        )
    )
    minutes = (time.perf_counter() - started) / 60
    scorer = load_predictor(run / "run" / "checkpoints" / "best.ckpt")
    m, _ = evaluate_scorer(
        scorer, labelled_folder(job["held_out"]), latency_frames=1, tracking=False
    )
    return {
        "steps": summary["steps"],
        "minutes": round(minutes, 2),
        "val_f05": summary["best_f05"],
        "f05": round(float(m["f05"]), 4),
        "auroc": round(float(m["auroc"]), 4),
        "roi": summary["roi"],
        "weights": summary["weights_source"],
    }


def job_order(picks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One training per label set (picks sharing a CSV share it, their rows kept), "all" first,
    then the budgets in `PRIORITY` order, seeds interleaved."""
    order = {"all": -1, **{k: i for i, k in enumerate(PRIORITY)}}
    todo: dict[str, dict[str, Any]] = {}
    for r in sorted(picks, key=lambda r: (order.get(r["labels"], 99), r["seed"])):
        todo.setdefault(r["csv"], {**r, "rows": []})["rows"].append(r)
    return todo


def finetune_picks(where: Path, args: argparse.Namespace) -> Path:
    """Train the network on every pick of `where/picks.json` (`--jobs` at once), most telling
    first ("all" and 500 labels for every seed, then 300, 1000, 200, 100, 50); no pick starts
    after `--deadline` minutes. Each result is appended to `where/finetune.jsonl` as it comes."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from barsalign.modeling.train_config import parse_settings

    todo = job_order(json.loads((where / "picks.json").read_text()))
    out = where / "finetune.jsonl"
    done = (
        {json.loads(line)["csv"] for line in out.read_text().splitlines()}
        if out.exists()
        else set()
    )
    settings = parse_settings(args.set)
    jobs = [
        {
            **j,
            "csv": str(where / j["csv"]),
            "key": j["csv"],
            "run": str(where / "runs" / Path(j["csv"]).stem),
            "threads": args.threads,
            "settings": settings,
        }
        for j in todo.values()
        if j["csv"] not in done
    ]
    deadline = time.monotonic() + 60 * args.deadline
    print(f"{len(jobs)} trainings to run, {args.jobs} at once", flush=True)
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
        running: dict[Any, dict[str, Any]] = {}
        while jobs or running:
            while jobs and len(running) < args.jobs and time.monotonic() < deadline:
                job = jobs.pop(0)
                running[pool.submit(_finetune_one, job)] = job
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = running.pop(fut)
                try:
                    res = {"csv": job["key"], **fut.result()}
                except Exception as err:  # noqa: BLE001 - reported, the others go on
                    res = {"csv": job["key"], "error": f"{type(err).__name__}: {err}"}
                with out.open("a") as fh:
                    for r in job["rows"]:
                        fh.write(json.dumps({**r, **res}) + "\n")
                print(json.dumps({**job["rows"][0], **res}), flush=True)
    if jobs:
        print(f"deadline: {len(jobs)} trainings not started", flush=True)
    return out


def network_table(rows: list[dict[str, Any]]) -> str:
    """Mean (± sd over seeds) held-out F0.5 of the network per strategy and number of labels,
    and the fewest labels within 0.01 of the network trained on every pool frame."""
    from barsalign.viz.efficiency_report import network_summary

    s = network_summary(rows)
    full = s["all"]
    lines = [
        f"all (every pool frame, {full[2] if full else 0} seeds): "
        + (f"{full[0]:.3f} ±{full[1]:.3f}" if full else "not run"),
        "",
        f"| strategy | {' | '.join(str(k) for k in s['budgets'])} | labels to all-0.01 |",
        "| --- | " + " | ".join("---" for _ in s["budgets"]) + " | --- |",
    ]
    for strategy, points in s["strategies"].items():
        cells = [
            f"{points[k][0]:.3f} ±{points[k][1]:.3f} ({points[k][2]})" if k in points else "-"
            for k in s["budgets"]
        ]
        lines.append(
            f"| {strategy} | {' | '.join(cells)} | {s['reached'][strategy] or 'not reached'} |"
        )
    return "\n".join(lines)


def summarise(res: dict[str, Any], budgets: list[int], every: list[int]) -> dict[str, Any]:
    """Mean (and spread) F0.5 per strategy and budget, with and without pseudo-labels, and the
    fewest labels each strategy needs to come within 0.01 of "all" and to reach 0.90."""
    from barsalign.viz.efficiency_report import labels_to, strategy_curves

    curves = strategy_curves(res)
    out: dict[str, Any] = {}
    for strategy in sorted({r["strategy"] for r in res["runs"]}):
        runs = [r for r in res["runs"] if r["strategy"] == strategy]
        mean = {k: float(np.mean([r["curve"][k] for r in runs])) for k in every}
        s: dict[str, Any] = {
            "f05": {k: mean[k] for k in budgets},
            "f05_sd": {k: float(np.std([r["curve"][k] for r in runs])) for k in budgets},
            "pseudo_f05": {},
            "pseudo_n": {},
            "pseudo_wrong_rate": {},
            "clips_per_batch": float(np.mean([r["clips_per_batch"] for r in runs])),
        }
        for k in budgets:
            ps = [r["pseudo"][k] for r in runs if k in r["pseudo"]]
            if ps:
                s["pseudo_f05"][k] = float(np.mean([p["f05"] for p in ps]))
                s["pseudo_n"][k] = float(np.mean([p["n"] for p in ps]))
                rates = [p["wrong_rate"] for p in ps if p["wrong_rate"] is not None]
                s["pseudo_wrong_rate"][k] = float(np.mean(rates)) if rates else None
        for key, goal in (("labels_to_all", res["all_mean"] - 0.01), ("labels_to_090", 0.90)):
            s[key] = labels_to(curves[strategy], goal)  # the rule the report index uses
        out[strategy] = s
    return out


def table(name: str, res: dict[str, Any]) -> str:
    """The look's markdown table: mean held-out F0.5 per strategy and number of labels."""

    def ints(d: dict) -> dict[int, Any]:  # JSON turns the budgets into strings
        return {int(k): v for k, v in d.items()}

    summ = res["summary"]
    budgets = sorted({int(k) for s in summ.values() for k in s["f05"]})
    head = " | ".join(str(b) for b in budgets)
    lines = [
        f"{name}: pool {res['pool']} ({res['frames']} frames), held-out {res['held_out']} "
        f"({res['held_out_frames']}); 'all' (every pool frame, same annotator) "
        f"{res['all_mean']:.3f} (truth labels {res['all_truth_mean']:.3f})",
        "",
        f"| strategy | {head} | labels to all-0.01 | to 0.90 | clips per batch |",
        "| --- | " + " | ".join("---" for _ in budgets) + " | --- | --- | --- |",
    ]
    for strategy, s in summ.items():
        sd = ints(s["f05_sd"])
        for label, curve in (("", ints(s["f05"])), (" + pseudo", ints(s["pseudo_f05"]))):
            cells = " | ".join(
                (f"{curve[b]:.3f}" + (f" ±{sd[b]:.3f}" if not label else "")) if b in curve else "-"
                for b in budgets
            )
            extra = (
                f"{s['labels_to_all'] or 'not reached'} | {s['labels_to_090'] or 'not reached'} "
                f"| {s['clips_per_batch']:.1f}"
                if not label
                else " | |"
            )
            lines.append(f"| {strategy}{label} | {cells} | {extra} |")
    lines.append("")
    for strategy, s in summ.items():
        rate, n = ints(s["pseudo_wrong_rate"]), ints(s["pseudo_n"])
        cells = ", ".join(
            f"{b}: {rate[b]:.1%} of {n[b]:.0f}" for b in budgets if rate.get(b) is not None
        )
        lines.append(f"- {strategy}: pseudo-labels wrong vs the truth (of how many) {cells}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> Path:
    """The curves as the report index shows them (`barsalign.viz.efficiency_report`)."""
    import matplotlib.pyplot as plt

    from barsalign.viz.efficiency_report import efficiency_figure

    fig = efficiency_figure(results)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def map_plot(name: str, look: dict[str, Any], path: Path) -> Path:
    """The pool's embeddings on a 2-D PCA map, coloured by the truth and by session (static)."""
    import matplotlib.pyplot as plt

    from barsalign.active import embedding_map

    xy = embedding_map(look["x"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    truth = np.asarray(look["truth"])
    for lab, colour, text in ((0, "C3", "not aligned"), (1, "C2", "aligned")):
        m = truth == lab
        axes[0].scatter(xy[m, 0], xy[m, 1], s=4, c=colour, label=text, alpha=0.6)
    sessions = sorted(set(look["sessions"]))
    for k, sess in enumerate(sessions):
        m = np.array([s == sess for s in look["sessions"]])
        axes[1].scatter(xy[m, 0], xy[m, 1], s=4, color=f"C{k % 10}", label=sess, alpha=0.6)
    for ax, what in zip(axes, ("truth", "session"), strict=True):
        ax.set_title(f"{name}: pool embeddings (PCA), by {what}")
        ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--looks", nargs="+", default=["default", "left_low"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    ap.add_argument("--error-rate", type=float, default=0.05, help="the annotator's wrong share")
    ap.add_argument("--min-confidence", type=float, default=0.9, help="pseudo-labels kept")
    ap.add_argument(
        "--image-size", type=int, default=320, help="side of the region fed to the backbone"
    )
    ap.add_argument("--C", type=float, default=0.001, help="the probe's inverse L2 strength")
    ap.add_argument(
        "--region",
        choices=("proposed", "stopper"),
        default="proposed",
        help="default look: the region `barsalign suspects` proposed (label_noise.py's, whose "
        "features are cached) or the renderer's stopper box; a look always uses its box",
    )
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--table", help="only print the tables of a label_efficiency.json")
    ap.add_argument(
        "--write-picks",
        metavar="DIR",
        help="instead of the curves: write the frames each strategy picks at each budget (and "
        "all of them) as label CSVs with a picks.json, for --finetune-picks",
    )
    ap.add_argument(
        "--finetune-picks",
        metavar="DIR",
        help="train the default recipe on every pick in DIR and score it on the held-out "
        "frames (the network's curve; results in DIR/finetune.jsonl)",
    )
    ap.add_argument("--jobs", type=int, default=1, help="--finetune-picks: trainings at once")
    ap.add_argument("--threads", type=int, default=2, help="--finetune-picks: torch threads each")
    ap.add_argument("--deadline", type=float, default=1e9, help="--finetune-picks: minutes")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--finetune-picks: a training setting on top of the default recipe",
    )
    ap.add_argument("--network-table", metavar="JSONL", help="print a finetune.jsonl's table")
    args = ap.parse_args(argv)
    if args.network_table:
        lines = Path(args.network_table).read_text().splitlines()
        print(network_table([json.loads(line) for line in lines]))
        return 0
    if args.finetune_picks:
        print(
            network_table(
                [
                    json.loads(line)
                    for line in finetune_picks(Path(args.finetune_picks), args)
                    .read_text()
                    .splitlines()
                ]
            )
        )
        return 0
    if args.write_picks:
        where = Path(args.write_picks)
        where.mkdir(parents=True, exist_ok=True)
        try:
            rows = [r for name in args.looks for r in write_picks(name, args, where)]
        except BarsalignError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        (where / "picks.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(f"{len(rows)} picks, {len({r['csv'] for r in rows})} label sets, in {where}")
        return 0
    if args.table:
        for name, res in json.loads(Path(args.table).read_text())["looks"].items():
            print("\n" + table(name, res))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for name in args.looks:
            results[name] = run_look(name, args)
    except BarsalignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    (out / "label_efficiency.json").write_text(
        json.dumps({"settings": settings, "looks": results}, indent=1) + "\n"
    )
    plot(results, out / "label_efficiency.png")
    for name, res in results.items():
        print("\n" + table(name, res))
    print(f"\nin {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
