"""Frames whose label is most likely wrong: out-of-fold scores, then cleanlab's label issues.

1. **Out-of-fold scores.** A logistic regression on the region features (`features`) is fitted
   `folds` times, each time on the other folds, and scores the frames it never saw. The folds
   are grouped by clip (`data.Item.group`), so a frame is never scored by a model that trained
   on its near-twin from the same clip. A probe, not a fine-tune: one pass over the frames
   instead of `folds` trainings (what it finds on the synthetic default: docs/experiments.md).
2. **cleanlab** ranks the frames by self-confidence, the out-of-fold probability of the label
   given (lowest first), and flags label issues by confident learning
   (`cleanlab.filter.find_label_issues`). Where the renderer's truth is known (a synthetic data
   set's `metadata.jsonl`), each row says whether it confirms the label is wrong.

The suspects CSV (`write_suspects`) ranks every frame; `read_suspects` gives the labeler
(`order="suspect"`) the flagged ones.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from barsalign.errors import BarsalignError
from barsalign.label_quality.features import SuspectConfig, region_features
from barsalign.labelstore import read_text_file
from barsalign.outputs import atomic_write_text
from barsalign.preprocess import PreprocessConfig, crop_resize, read_image

if TYPE_CHECKING:
    import pandas as pd

    from barsalign.data import Item

SUSPECTS_FILE = "suspects.csv"
COLUMNS = ("rank", "path", "label", "score", "label_quality", "suspect", "truth", "truth_confirms")
"""The suspects CSV: `score` is the out-of-fold P(aligned), `label_quality` cleanlab's
self-confidence (P(the given label)), `suspect` cleanlab's label issue flag, `truth` the
renderer's label where known and `truth_confirms` whether it says the given label is wrong."""
NAMES = {1: "aligned", 0: "not_aligned"}
OutOfFold = Callable[[Sequence["Item"], np.ndarray, np.ndarray, Any], np.ndarray]
"""(items, labels, fold, region) → each frame's P(aligned) from a model fitted without its
fold: what replaces the probe's scores (`finetune.FinetuneScores`)."""


def fold_groups(labels: np.ndarray, groups: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """Each frame's fold (0..folds-1): stratified by label, whole clip groups kept together."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups))
    if n_groups < folds:
        raise BarsalignError(
            f"only {n_groups} clip groups: too few for {folds} folds; pass fewer folds"
        )
    fold = np.full(len(labels), -1)
    skf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(skf.split(np.zeros(len(labels)), labels, groups)):
        fold[test] = k
    return fold


def fit_probe(features: np.ndarray, labels: np.ndarray, C: float = 0.001) -> Any:
    """Standardised features → class-balanced logistic regression (scikit-learn pipeline)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=3000)
    ).fit(features, labels)


def out_of_fold_scores(
    features: np.ndarray, labels: np.ndarray, fold: np.ndarray, C: float = 0.001
) -> np.ndarray:
    """P(aligned) of each frame from a probe fitted on the other folds."""
    scores = np.full(len(labels), np.nan)
    for k in np.unique(fold):
        train, test = fold != k, fold == k
        if len(set(labels[train].tolist())) < 2:
            raise BarsalignError(f"fold {k}: the other folds hold one class only; label more")
        scores[test] = fit_probe(features[train], labels[train], C).predict_proba(features[test])[
            :, 1
        ]
    return scores


def rank_suspects(
    paths: Sequence[Path | str],
    labels: np.ndarray,
    scores: np.ndarray,
    truth: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Every frame ranked by cleanlab's self-confidence (most likely wrong first), with its
    label issue flag and, where `truth` (path → label) knows the frame, whether it agrees."""
    import pandas as pd
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=int)
    probs = np.column_stack([1.0 - scores, scores])
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    issues = find_label_issues(labels, probs, filter_by="prune_by_noise_rate")
    order = np.argsort(quality, kind="stable")
    df = pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "path": [str(paths[i]) for i in order],
            "label": [NAMES[int(labels[i])] for i in order],
            "score": np.round(scores[order], 4),
            "label_quality": np.round(quality[order], 4),
            "suspect": issues[order],
        }
    )
    known = truth or {}
    df["truth"] = [NAMES[known[p]] if p in known else "" for p in df["path"]]
    df["truth_confirms"] = [
        "" if not t else ("yes" if t != lab else "no")
        for t, lab in zip(df["truth"], df["label"], strict=True)
    ]
    return df


def synthetic_truth(paths: Sequence[Path | str]) -> dict[str, int]:
    """The renderer's label (1 aligned) of each frame a `metadata.jsonl` above it knows."""
    from barsalign.data import LABELS, metadata_rows

    rows = metadata_rows([Path(p) for p in paths])
    out = {}
    for p in paths:
        row = rows.get(Path(p).resolve())
        if row is not None and str(row.get("label")) in LABELS:
            out[str(p)] = LABELS[str(row["label"])]
    return out


def find_suspects(
    source: str | Path, cfg: SuspectConfig | None = None, oof: OutOfFold | None = None
) -> pd.DataFrame:
    """The ranked suspects table of the labelled frames at `source` (a folder layout, the
    labeler's class files or a CSV path,label: `data.load_labels`); `attrs["roi"]` holds the
    region the features came from. `oof` as in `suspects_of`."""
    from barsalign.data import load_labels

    return suspects_of(load_labels(source), cfg or SuspectConfig(), str(source), oof)[0]


def suspects_of(
    items: Sequence[Item],
    cfg: SuspectConfig,
    source: str = "the labels",
    oof: OutOfFold | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """`find_suspects` of labelled items, and their region features (for a caller that fits
    more on them). `oof` (items, labels, fold, region) → out-of-fold P(aligned) replaces the
    probe's scores, e.g. `finetune.FinetuneScores`."""
    labels = np.array([it.label for it in items])
    if min(labels.sum(), len(labels) - labels.sum()) < cfg.folds:
        raise BarsalignError(
            f"{source}: {labels.sum()} aligned and {len(labels) - labels.sum()} not aligned "
            f"frames: each class needs at least {cfg.folds} (one per fold)"
        )
    fold = fold_groups(labels, [it.group for it in items], cfg.folds, cfg.seed)
    features, roi, _ = region_features(items, cfg)
    if oof is None:
        scores = out_of_fold_scores(features, labels, fold, cfg.C)
    else:
        scores = oof(items, labels, fold, roi)
    paths = [str(it.path) for it in items]
    df = rank_suspects(paths, labels, scores, synthetic_truth(paths))
    df.attrs["roi"] = roi
    return df, features


def write_suspects(df: pd.DataFrame, path: str | Path) -> Path:
    """The table as CSV (`COLUMNS`), written atomically."""
    return atomic_write_text(path, df[list(COLUMNS)].to_csv(index=False))


def read_suspects(path: str | Path) -> list[tuple[str, float]]:
    """(path, out-of-fold P(aligned)) of the flagged suspects in a suspects CSV, in rank order."""
    path = Path(path)
    if not path.is_file():
        raise BarsalignError(
            f"suspects file {path} does not exist: write it with `barsalign suspects --data DIR`"
        )
    reader = csv.DictReader(io.StringIO(read_text_file(path), newline=""))
    missing = [
        c for c in ("rank", "path", "score", "suspect") if c not in (reader.fieldnames or [])
    ]
    if missing:
        raise BarsalignError(f"{path}: not a suspects file (no column {', '.join(missing)})")
    rows = []
    for n, row in enumerate(reader, 2):
        try:
            rank, score = int(row["rank"]), float(row["score"])
        except (TypeError, ValueError):
            raise BarsalignError(f"{path}:{n}: rank and score must be numbers") from None
        if row["suspect"] not in ("True", "False") or not row["path"] or not math.isfinite(score):
            raise BarsalignError(f"{path}:{n}: needs a path, a score and suspect True/False")
        if row["suspect"] == "True":
            rows.append((rank, row["path"], score))
    return [(p, s) for _, p, s in sorted(rows)]


def thumbnails(df: pd.DataFrame, roi: Any, n: int, side: int = 224) -> list[dict[str, Any]]:
    """The first `n` rows as `plots.gallery` items: the square the probe saw (region, stopper
    square, resized; RGB), given label and score."""
    view = PreprocessConfig(target_size=side, mode="none", roi=roi)
    items = []
    for _, row in df.head(n).iterrows():
        truth = f"\ntruth {row['truth']}" if row.get("truth") else ""
        items.append(
            {
                "image": cv2.cvtColor(
                    crop_resize(read_image(row["path"]), view), cv2.COLOR_BGR2RGB
                ),
                "cam": None,
                "caption": f"#{row['rank']} {Path(row['path']).name}: labelled {row['label']}\n"
                f"P(aligned) {row['score']:.3f}{truth}",
            }
        )
    return items
