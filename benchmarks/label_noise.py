"""Label noise: how many flipped labels `barsalign suspects` finds, and what relabelling gains.

On the synthetic default's labelled pool (`train_set/labels.csv`, the renderer's truth) a share
of the labels (`--flip`, 5 %) is flipped at random (`--seed`). The suspects are found from the
flipped labels alone (`label_quality.suspects_of`: out-of-fold probe scores, cleanlab); the
table says how many flips the top `--top` share (10 %) of suspects holds and how many frames
cleanlab flags. Relabelling takes the truth for the top suspects (what an annotator going
through them in 02 with order "suspect" would give). Then one model per labelling (the truth,
the flipped labels, the relabelled ones) is scored on the held-out set (05's, F0.5 at 0.5):
the probe on the same features (`--final probe`, seconds), or a real fine-tuning per labelling
(`--final finetune`, the profile's recipe; `--set key=value` changes it, e.g. max_steps=150).
Writes `label_noise.json` and the suspects CSV into `--out` (default a folder per probe and seed
under reports/label_noise/, which 05_evaluate's suspects section summarises), and
logs them as an MLflow run (tag kind=label_noise: `barsalign runs --kind label_noise --markdown`
prints the table of such runs; `--no-tracking` skips it). `--pool` and `--held-out` take
other rendered sets (the renderer's truth read from their labels), `--features`, `--C`,
`--image-size`, `--backbone` and `--roi` the probe's `SuspectConfig`.

Run: .venv/bin/python benchmarks/label_noise.py [--flip 0.05] [--top 0.1] [--seed 0]
         [--features head stage3 ...] [--C 0.001] [--folds 5]
         [--final probe|finetune] [--profile conf/cpu.yaml] [--set key=value ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.config import CONF_DIR, REPORTS_DIR
from barsalign.errors import BarsalignError
from barsalign.label_quality import FEATURE_BLOCKS, NAMES, SuspectConfig

OUT = REPORTS_DIR / "label_noise"
NAMES_TO_LABEL = {v: k for k, v in NAMES.items()}


def relabelled(items: list[Any], truth: list[Any], paths: set[str]) -> list[Any]:
    """`items` with the truth's label for the frames in `paths`."""
    return [
        dataclasses.replace(it, label=t.label) if str(it.path) in paths else it
        for it, t in zip(items, truth, strict=True)
    ]


def probe_f05(
    features: np.ndarray, items: list[Any], held: np.ndarray, held_labels, C: float
) -> float:
    """Held-out F0.5 at 0.5 of the probe fitted on all of `items`' labels."""
    from barsalign.evaluation.evaluate import evaluate_scores
    from barsalign.label_quality import fit_probe

    probe = fit_probe(features, np.array([it.label for it in items]), C)
    return float(evaluate_scores(held_labels, probe.predict_proba(held)[:, 1])["f05"])


def finetune_f05(items: list[Any], name: str, base: dict[str, Any], out: Path, held) -> float:
    """Held-out F0.5 at 0.5 of a fine-tuning on `items`' labels (validated on the example set)."""
    from sweep_recipes import held_out_f05

    from barsalign.label_quality import write_labels_csv
    from barsalign.modeling.train import run_training
    from barsalign.modeling.train_config import FinetuneConfig
    from barsalign.synth import ensure_default

    labels = write_labels_csv(items, out / f"labels_{name}.csv")
    run = out / f"run_{name}"
    cfg = FinetuneConfig(
        **{
            **base,
            "synthetic_twins": 0,
            "data_dir": str(labels),
            "val_data_dir": str(ensure_default() / "example_set"),
            "run_name": run.name,
            "run_dir": str(run),
            "overwrite": True,
            "tracking": False,
        }
    )
    run_training(cfg)
    return held_out_f05(run / "checkpoints" / "best.ckpt", held)


def log_run(result: dict[str, Any], args: argparse.Namespace, pool: Path, out: Path) -> str:
    """The measurement as an MLflow run (kind label_noise): the settings as params, the
    numbers as metrics, the JSON and the suspects CSV as artefacts."""
    from barsalign import tracking

    cfg = result["suspect_config"]
    params = {
        "flip": args.flip,
        "top_share": args.top,
        "seed": args.seed,
        "final": args.final,
        "scores": result["scores"],
        **{k: v for k, v in cfg.items() if k != "features"},
        "features": "+".join(cfg["features"]),
        "roi": result["roi"],
        "settings": result["settings"],
    }
    numbers = {k: v for k, v in result.items() if isinstance(v, int | float)}
    numbers |= {f"held_out_f05.{k}": v for k, v in result["held_out_f05"].items()}
    numbers |= {f"wrong_labels.{k}": v for k, v in result["wrong_labels"].items()}
    tags = {"out": str(out.resolve()), **tracking.data_identity(pool)}
    name = f"label_noise seed {args.seed} {params['features']} C={args.C:g}"
    if result["scores"] == "finetune":
        name = f"label_noise seed {args.seed} finetune {args.folds} folds"
    files = [out / "label_noise.json", out / "suspects.csv"]
    return tracking.log_run("label_noise", name, params, numbers, tags, files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flip", type=float, default=0.05, help="share of labels flipped")
    ap.add_argument("--top", type=float, default=0.10, help="share of suspects relabelled")
    ap.add_argument("--seed", type=int, default=0, help="which labels are flipped")
    ap.add_argument("--folds", type=int, default=SuspectConfig.folds)
    ap.add_argument(
        "--features",
        nargs="+",
        default=list(SuspectConfig.features),
        help=f"the probe's feature blocks (of {', '.join(FEATURE_BLOCKS)})",
    )
    ap.add_argument("--C", type=float, default=SuspectConfig.C, help="the probe's L2 strength")
    ap.add_argument("--image-size", type=int, default=SuspectConfig.image_size)
    ap.add_argument("--backbone", default=SuspectConfig.backbone)
    ap.add_argument("--roi", default="auto", help="x0,y0,x1,y1, 'none', or 'auto' (default)")
    ap.add_argument("--pool", help="the labelled pool (default: the synthetic default's)")
    ap.add_argument("--held-out", help="labelled frames to score (default: 05's held-out set)")
    ap.add_argument("--no-tracking", action="store_true", help="log no MLflow run")
    ap.add_argument(
        "--scores",
        choices=("probe", "finetune"),
        default="probe",
        help="out-of-fold scores from the probe, or from one fine-tuning per fold",
    )
    ap.add_argument(
        "--scores-set",
        action="append",
        default=[],
        help="key=value for the per-fold fine-tunings of --scores finetune (default recipe)",
    )
    ap.add_argument("--final", choices=("probe", "finetune"), default="probe")
    ap.add_argument("--profile", default=str(CONF_DIR / "cpu.yaml"), help="--final finetune")
    ap.add_argument("--set", action="append", default=[], help="key=value for the fine-tunings")
    ap.add_argument("--out", help="default: reports/label_noise/FEATURES_cC_fFOLDS_seedSEED/")
    args = ap.parse_args(argv)
    from sweep_recipes import parse_settings

    from barsalign.data import Item, load_labels
    from barsalign.evaluation.evaluate import ensure_held_out, labelled_folder
    from barsalign.label_quality import flip_labels, region_features, suspects_of, write_suspects
    from barsalign.modeling.train_config import load_profile
    from barsalign.synth import ensure_default, pool_labels

    try:
        if not 0 < args.top < 1:
            raise BarsalignError(f"--top must lie in (0, 1), not {args.top}")
        base = load_profile(args.profile) if args.final == "finetune" else {}
        for text in args.set:
            base.update(parse_settings(text, f"--set {text!r}"))
        fold_settings: dict[str, Any] = {}
        for text in args.scores_set:
            fold_settings.update(parse_settings(text, f"--scores-set {text!r}"))
        pool = Path(args.pool) if args.pool else pool_labels(ensure_default())
        truth = load_labels(pool)
        noisy, flipped = flip_labels(truth, args.flip, args.seed)
        cfg = SuspectConfig(
            folds=args.folds,
            seed=args.seed,
            features=tuple(args.features),
            C=args.C,
            image_size=args.image_size,
            backbone=args.backbone,
            roi=args.roi,
        )
    except BarsalignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = f"{'+'.join(cfg.features)}_c{cfg.C:g}_f{cfg.folds}_seed{args.seed}"
    if args.scores == "finetune":
        name = f"finetune_f{cfg.folds}_seed{args.seed}"
    out = Path(args.out or OUT / name)
    out.mkdir(parents=True, exist_ok=True)
    # 1. the suspects, from the flipped labels only
    started = time.perf_counter()
    oof = None
    if args.scores == "finetune":
        from barsalign.label_quality.finetune import FinetuneScores

        oof = FinetuneScores(out / "folds", {"seed": args.seed, **fold_settings})
    df, features = suspects_of(noisy, cfg, "the flipped pool", oof)
    write_suspects(df, out / "suspects.csv")
    seconds = time.perf_counter() - started
    flips = {str(truth[i].path) for i in flipped}
    n_top = round(args.top * len(df))
    top = set(df["path"].head(n_top))
    flagged = set(df.loc[df["suspect"], "path"])
    from sklearn.metrics import roc_auc_score

    true_label = {str(it.path): it.label for it in truth}
    given = np.array([NAMES_TO_LABEL[v] for v in df["label"]])
    result: dict[str, Any] = {
        "seed": args.seed,
        "flip": args.flip,
        "top_share": args.top,
        "frames": len(df),
        "oof_auroc_given": round(float(roc_auc_score(given, df["score"])), 4),
        "oof_auroc_vs_truth": round(
            float(roc_auc_score([true_label[p] for p in df["path"]], df["score"])), 4
        ),
        "flipped": len(flips),
        "top": n_top,
        "flips_in_top": len(flips & top),
        "share_found": round(len(flips & top) / len(flips), 3),
        "cleanlab_flagged": len(flagged),
        "flips_flagged": len(flips & flagged),
        "suspects_seconds": round(seconds, 1),
        "roi": list(df.attrs["roi"]) if df.attrs["roi"] else None,
        "final": args.final,
        "scores": args.scores,
        "scores_settings": fold_settings if args.scores == "finetune" else {},
        "suspect_config": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(cfg).items()
            if k != "roi"
        },
        "settings": base if args.final == "finetune" else {},
    }
    # 2. one model per labelling, scored on the held-out set
    held = labelled_folder(Path(args.held_out) if args.held_out else ensure_held_out())
    fixed = relabelled(noisy, truth, top)
    labellings = {"truth": truth, "flipped": noisy, "relabelled": fixed}
    if args.final == "probe":
        held_items = [Item(p, int(y), str(p)) for p, y in zip(held.paths, held.labels, strict=True)]
        region = dataclasses.replace(cfg, roi=df.attrs["roi"])
        held_features = region_features(held_items, region)[0]
        f05 = {
            k: probe_f05(features, v, held_features, held.labels, cfg.C)
            for k, v in labellings.items()
        }
    else:  # the suspects' region for all three, unless --set roi=... says otherwise
        region = {"roi": list(df.attrs["roi"]) if df.attrs["roi"] else None, **base}
        f05 = {k: finetune_f05(v, k, region, out, held) for k, v in labellings.items()}
    wrong = {
        k: sum(a.label != t.label for a, t in zip(v, truth, strict=True))
        for k, v in labellings.items()
    }
    result["held_out_f05"] = {k: round(v, 4) for k, v in f05.items()}
    result["wrong_labels"] = wrong
    result["f05_gained"] = round(f05["relabelled"] - f05["flipped"], 4)
    result["seconds"] = round(time.perf_counter() - started, 1)
    (out / "label_noise.json").write_text(json.dumps(result, indent=1) + "\n")
    if not args.no_tracking:
        log_run(result, args, pool, out)
    print(
        f"{result['flipped']} of {result['frames']} labels flipped (seed {args.seed}); the top "
        f"{args.top:.0%} of suspects ({n_top}) hold {result['flips_in_top']} of them "
        f"({result['share_found']:.0%}); cleanlab flags {len(flagged)} frames, "
        f"{result['flips_flagged']} of them flips; suspects in {seconds / 60:.1f} min"
    )
    print(f"\n| labels | wrong labels | held-out F0.5 ({args.final}) |\n| --- | --- | --- |")
    for k in labellings:
        print(f"| {k} | {wrong[k]} | {f05[k]:.3f} |")
    print(f"\nrelabelling the top {args.top:.0%} gains {result['f05_gained']:+.3f} F0.5; in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
