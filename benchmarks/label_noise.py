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
Writes `label_noise.json` and the suspects CSV into `--out` (default reports/label_noise/).

Run: .venv/bin/python benchmarks/label_noise.py [--flip 0.05] [--top 0.1] [--seed 0]
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

OUT = REPORTS_DIR / "label_noise"


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
    from barsalign.evaluate import evaluate_scores
    from barsalign.label_quality import fit_probe

    probe = fit_probe(features, np.array([it.label for it in items]), C)
    return float(evaluate_scores(held_labels, probe.predict_proba(held)[:, 1])["f05"])


def finetune_f05(items: list[Any], name: str, base: dict[str, Any], out: Path, held) -> float:
    """Held-out F0.5 at 0.5 of a fine-tuning on `items`' labels (validated on the example set)."""
    from sweep_recipes import held_out_f05

    from barsalign.label_quality import write_labels_csv
    from barsalign.synth import ensure_default
    from barsalign.train import FinetuneConfig, run_training

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flip", type=float, default=0.05, help="share of labels flipped")
    ap.add_argument("--top", type=float, default=0.10, help="share of suspects relabelled")
    ap.add_argument("--seed", type=int, default=0, help="which labels are flipped")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--final", choices=("probe", "finetune"), default="probe")
    ap.add_argument("--profile", default=str(CONF_DIR / "cpu.yaml"), help="--final finetune")
    ap.add_argument("--set", action="append", default=[], help="key=value for the fine-tunings")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    from sweep_recipes import parse_settings

    from barsalign.data import Item, load_labels
    from barsalign.evaluate import ensure_held_out, labelled_folder
    from barsalign.label_quality import (
        SuspectConfig,
        flip_labels,
        region_features,
        suspects_of,
        write_suspects,
    )
    from barsalign.synth import ensure_default, pool_labels
    from barsalign.train import load_profile

    try:
        if not 0 < args.top < 1:
            raise BarsalignError(f"--top must lie in (0, 1), not {args.top}")
        base = load_profile(args.profile) if args.final == "finetune" else {}
        for text in args.set:
            base.update(parse_settings(text, f"--set {text!r}"))
        truth = load_labels(pool_labels(ensure_default()))
        noisy, flipped = flip_labels(truth, args.flip, args.seed)
    except BarsalignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # 1. the suspects, from the flipped labels only
    started = time.perf_counter()
    cfg = SuspectConfig(folds=args.folds, seed=args.seed)
    df, features = suspects_of(noisy, cfg, "the flipped pool")
    write_suspects(df, out / "suspects.csv")
    seconds = time.perf_counter() - started
    flips = {str(truth[i].path) for i in flipped}
    n_top = round(args.top * len(df))
    top = set(df["path"].head(n_top))
    flagged = set(df.loc[df["suspect"], "path"])
    from sklearn.metrics import roc_auc_score

    true_label = {str(it.path): it.label for it in truth}
    result: dict[str, Any] = {
        "frames": len(df),
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
        "settings": base if args.final == "finetune" else {"C": cfg.C},
    }
    # 2. one model per labelling, scored on the held-out set
    held = labelled_folder(ensure_held_out())
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
    (out / "label_noise.json").write_text(json.dumps(result, indent=1) + "\n")
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
