"""Frames whose label is most likely wrong: out-of-fold scores, then cleanlab's label issues.

1. **Out-of-fold scores.** Every frame's stopper region (the region training would crop: given,
   or proposed from these labels by `barsalign.roi`) goes once through the frozen pretrained
   backbone; a logistic regression on the pooled features is fitted `folds` times, each time on
   the other folds, and scores the frames it never saw. The folds are grouped by clip
   (`data.Item.group`), so a frame is never scored by a model that trained on its near-twin from
   the same clip. A probe, not a fine-tune: one pass over the frames instead of `folds`
   trainings (what it finds on the synthetic default: docs/experiments.md).
2. **cleanlab** ranks the frames by self-confidence, the out-of-fold probability of the label
   given (lowest first), and flags label issues by confident learning
   (`cleanlab.filter.find_label_issues`). Where the renderer's truth is known (a synthetic data
   set's `metadata.jsonl`), each row says whether it confirms the label is wrong.

The suspects CSV (`write_suspects`) ranks every frame; `read_suspects` gives the labeler
(`order="suspect"`) the flagged ones. `barsalign suspects --data DIR` runs it all.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from barsalign.cache import DEFAULT_CACHE, FrameCache
from barsalign.errors import BarsalignError
from barsalign.labelstore import read_text_file
from barsalign.outputs import atomic_write_text, check_output_file
from barsalign.preprocess import (
    PreprocessConfig,
    crop_resize,
    decode_image,
    preprocess,
    read_image,
    to_tensor,
)

if TYPE_CHECKING:
    import pandas as pd

    from barsalign.data import Item

SUSPECTS_FILE = "suspects.csv"
COLUMNS = ("rank", "path", "label", "score", "label_quality", "suspect", "truth", "truth_confirms")
"""The suspects CSV: `score` is the out-of-fold P(aligned), `label_quality` cleanlab's
self-confidence (P(the given label)), `suspect` cleanlab's label issue flag, `truth` the
renderer's label where known and `truth_confirms` whether it says the given label is wrong."""
NAMES = {1: "aligned", 0: "not_aligned"}
FEATURE_BLOCKS = {
    "head": "mean and max over the backbone's last feature map",
    "head_grid": "the last feature map averaged over a 2x2 grid (where in the region)",
    "stage4": "mean and max over timm's feature stage 4 (stride 32, before any head conv)",
    "stage3": "mean and max over timm's feature stage 3 (stride 16)",
    "stage2": "mean and max over timm's feature stage 2 (stride 8)",
}
"""The pooled blocks `region_features` can give; one network pass makes all that are asked."""


@dataclass(frozen=True)
class SuspectConfig:
    """How the out-of-fold scores are made.

    Args:
        folds: K of the grouped K-fold; each frame is scored by a probe fitted without its fold.
        roi: the region the features are taken from: "auto" proposes it from the labels (as
            training does), None is the whole frame, or (x0, y0, x1, y1) frame fractions.
        image_size: side of the region's square fed to the backbone.
        C: inverse L2 strength of the logistic regression (features standardised); strong
            regularisation gave the best out-of-fold AUROC on the flipped labels themselves
            (docs/experiments.md, 2026-11-30).
        features: which pooled feature blocks the probe sees, concatenated (`FEATURE_BLOCKS`).
    """

    folds: int = 5
    backbone: str = "tf_efficientnet_lite0"
    image_size: int = 320
    roi: Any = "auto"
    C: float = 0.001
    features: tuple[str, ...] = ("head",)
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        from barsalign.preprocess import parse_roi

        if self.roi != "auto":
            object.__setattr__(self, "roi", parse_roi(self.roi))
        object.__setattr__(self, "features", tuple(self.features))
        unknown = [f for f in self.features if f not in FEATURE_BLOCKS]
        checks = [
            (bool(self.features), "features: name at least one feature block"),
            (
                not unknown,
                f"features: no block {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(FEATURE_BLOCKS)}",
            ),
            (self.folds >= 2, f"folds must be >= 2, not {self.folds}"),
            (self.image_size >= 32, f"image_size must be >= 32, not {self.image_size}"),
            (self.C > 0, f"C must be > 0, not {self.C}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, not {self.batch_size}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BarsalignError(msg)


def region_features(
    items: Sequence[Item], cfg: SuspectConfig, cache_dir: str | Path | None = DEFAULT_CACHE
) -> tuple[np.ndarray, Any, str]:
    """Frozen-backbone features of every frame's region [N, D]: the `cfg.features` blocks
    (`FEATURE_BLOCKS`) concatenated, the region used and why. Each frame's blocks are kept in
    the frame cache (`barsalign.cache`) by content hash, backbone, block and preprocessing, so
    a second look at the same frames costs no network pass, and a block asked before is reused
    by a later choice of blocks."""
    import torch

    from barsalign.model import create_backbone, data_config

    roi, why = cfg.roi, "given" if cfg.roi is not None else "whole frame"
    if roi == "auto":
        from barsalign.roi import propose_roi

        proposal = propose_roi([(it.path, it.label) for it in items], seed=cfg.seed)
        roi, why = proposal.roi, f"proposed: {proposal.reason}"
    pcfg = PreprocessConfig(target_size=cfg.image_size, mode="none", roi=roi, mask_left=False)
    keys = {
        b: f"features:{cfg.backbone}:{pcfg.key()}"  # the first block's key, as cached before
        if b == "head"
        else f"features:{cfg.backbone}:{b}:{pcfg.key()}"
        for b in cfg.features
    }
    cache = FrameCache(cache_dir)
    digests = [hashlib.blake2b(_read(it.path), digest_size=20).hexdigest() for it in items]
    blocks = [{b: cache.get(d, k) for b, k in keys.items()} for d in digests]
    todo = [i for i, got in enumerate(blocks) if any(v is None for v in got.values())]
    if todo:
        model, _ = create_backbone(cfg.backbone)
        model.eval()
        dc = data_config(model, cfg.image_size)
        with torch.inference_mode():
            for start in range(0, len(todo), cfg.batch_size):
                batch = todo[start : start + cfg.batch_size]
                frames = [decode_image(_read(items[i].path), str(items[i].path)) for i in batch]
                x = torch.stack([to_tensor(preprocess(f, pcfg), dc) for f in frames])
                pooled = _pooled_blocks(model, x, cfg.features)
                for j, i in enumerate(batch):
                    for b, k in keys.items():
                        if blocks[i][b] is None:
                            blocks[i][b] = pooled[b][j]
                            cache.put(digests[i], k, pooled[b][j])
    feats = [np.concatenate([got[b] for b in cfg.features]) for got in blocks]
    return np.stack(feats), roi, why


def _pooled_blocks(model: Any, x: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The asked `FEATURE_BLOCKS` of a batch, from one pass through the backbone."""
    import torch

    def mean_max(f: torch.Tensor) -> np.ndarray:
        return torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1).numpy()

    stages = sorted(int(n[-1]) for n in names if n.startswith("stage"))
    if stages:
        final, inter = model.forward_intermediates(x, indices=stages)
        by_stage = dict(zip(stages, inter, strict=True))
    else:
        final, by_stage = model.forward_features(x), {}
    out = {f"stage{k}": mean_max(f) for k, f in by_stage.items()}
    out["head"] = mean_max(final)
    out["head_grid"] = torch.nn.functional.adaptive_avg_pool2d(final, 2).flatten(1).numpy()
    return {n: out[n] for n in names}


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise BarsalignError(f"{path}: cannot read ({err.strerror or err})") from None


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


def find_suspects(source: str | Path, cfg: SuspectConfig | None = None) -> pd.DataFrame:
    """The ranked suspects table of the labelled frames at `source` (a folder layout, the
    labeler's class files or a CSV path,label: `data.load_labels`); `attrs["roi"]` holds the
    region the features came from."""
    from barsalign.data import load_labels

    return suspects_of(load_labels(source), cfg or SuspectConfig(), str(source))[0]


def suspects_of(
    items: Sequence[Item],
    cfg: SuspectConfig,
    source: str = "the labels",
    oof: Callable[[Sequence[Item], np.ndarray, np.ndarray, Any], np.ndarray] | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """`find_suspects` of labelled items, and their region features (for a caller that fits
    more on them). `oof` (items, labels, fold, region) → out-of-fold P(aligned) replaces the
    probe's scores, e.g. `suspect_finetune.FinetuneScores`."""
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


def flip_labels(items: Sequence[Item], share: float, seed: int = 0) -> tuple[list[Item], list[int]]:
    """The items with `share` of their labels flipped at random (seeded), and which ones."""
    if not 0 < share < 1:
        raise BarsalignError(f"share must lie in (0, 1), not {share}")
    flipped = sorted(random.Random(seed).sample(range(len(items)), round(share * len(items))))
    out = list(items)
    for i in flipped:
        out[i] = dataclasses.replace(out[i], label=1 - out[i].label)
    return out, flipped


def write_labels_csv(items: Sequence[Item], path: str | Path) -> Path:
    """Items as a CSV `path,label` (absolute paths) that `data.load_labels` reads back."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("path", "label"))
    writer.writerows((str(Path(it.path).resolve()), NAMES[it.label]) for it in items)
    return atomic_write_text(path, buf.getvalue())


def recorded_noise(root: str | Path) -> pd.DataFrame:
    """benchmarks/label_noise.py's results under `root` (every `label_noise.json`), one row
    each: flip seed, how the scores were made (probe or fine-tunings; features, C, folds),
    flips, flips in the top suspects and their share, held-out F0.5 of the flipped and the
    relabelled labels; empty when none was recorded."""
    import pandas as pd

    rows = []
    for path in sorted(Path(root).rglob("label_noise.json")):
        try:
            r = json.loads(path.read_text(encoding="utf-8"))
            cfg = r.get("suspect_config") or {"features": ["head"], "C": r["settings"]["C"]}
            rows.append(
                {
                    "seed": r.get("seed", cfg.get("seed")),
                    "scores": r.get("scores", "probe"),
                    "features": "+".join(cfg["features"]),
                    "C": cfg["C"],
                    "folds": cfg.get("folds", 5),
                    "frames": r["frames"],
                    "flips": r["flipped"],
                    "top": r["top"],
                    "flips in top": r["flips_in_top"],
                    "share found": r["share_found"],
                    "F0.5 flipped": r["held_out_f05"]["flipped"],
                    "F0.5 relabelled": r["held_out_f05"]["relabelled"],
                    "file": str(path),
                }
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise BarsalignError(f"{path}: not a label_noise.json ({err})") from None
    return pd.DataFrame(rows)


def noise_summary(root: str | Path) -> str:
    """A markdown paragraph for the report: the share of flipped labels the top suspects held,
    per probe (mean over the flip seeds measured), or a line saying it was not measured."""
    df = recorded_noise(root)
    if df.empty:
        return (
            f"**Not measured**: no `label_noise.json` under `{root}` (run "
            "`benchmarks/label_noise.py` to measure how many flipped labels the suspects hold)."
        )
    lines = []
    for (scores, features, c, folds), g in df.groupby(
        ["scores", "features", "C", "folds"], sort=False
    ):
        per_seed = ", ".join(
            f"seed {int(r['seed'])}: {r['flips in top']} of {r['flips']}"
            for _, r in g.sort_values("seed").iterrows()
        )
        how = (
            f"one fine-tuning per fold ({folds} folds)"
            if scores == "finetune"
            else f"probe on `{features}` (C {c:g}, {folds} folds)"
        )
        lines.append(
            f"- {how}: the top {int(g['top'].iloc[0])} of "
            f"{int(g['frames'].iloc[0])} suspects held **{g['share found'].mean():.0%}** of the "
            f"flipped labels on average "
            f"({per_seed}); held-out F0.5 {g['F0.5 flipped'].mean():.3f} with the flipped "
            f"labels, {g['F0.5 relabelled'].mean():.3f} after relabelling the top suspects"
        )
    return (
        "Recorded by `benchmarks/label_noise.py` (labels flipped at random, found from the "
        "flipped labels alone; one line per way of scoring):\n\n" + "\n".join(lines)
    )


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
