"""Evaluate trained models on a held-out labelled set: scores, metrics, thresholds, errors.

Models are loaded by `inference.load_predictor` (here also `load_scorer`, the notebooks' name):
a checkpoint or an exported model with the exact preprocessing it was trained with.
`score_paths` scores frames, listing unreadable ones instead of dropping them;
`evaluate_scorer` gives one row of the study's Table 1 and more, and logs it to MLflow
(`track_evaluation`, linked to the training run it scores).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from barsalign.config import DATA_DIR, RUNS_DIR
from barsalign.data.labels import layout_root, read_folder_labels
from barsalign.errors import BarsalignError
from barsalign.evaluation.metrics import (
    binary_metrics,
    threshold_for_precision,
    threshold_max_fbeta,
)
from barsalign.inference import Predictor, as_predictor, load_predictor, sigmoid
from barsalign.modeling.baseline import EdgeBaseline
from barsalign.outputs import atomic_write_text
from barsalign.preprocess import read_image

HELD_OUT_DIR = DATA_DIR / "synthetic_test"
"""The default held-out set: rendered from another seed, so no training run has seen it."""


def held_out_config():
    """The SynthConfig of the default held-out set (300 labelled frames, seed 1000)."""
    from barsalign.synth import SynthConfig

    return SynthConfig(seed=1000, n_example=300, n_pool=0, n_clips=0)


def ensure_held_out() -> Path:
    """The default held-out set's labelled folder, rendered first if missing."""
    from barsalign.synth import ensure_default

    return ensure_default(held_out_config(), HELD_OUT_DIR) / "example_set"


@dataclass
class LabelledSet:
    """Frames with known labels (aligned = 1), and the synthetic truth where there is one."""

    root: Path
    paths: list[Path]
    labels: np.ndarray
    meta: list[dict[str, Any] | None] = field(default_factory=list)


def labelled_folder(data_dir: str | Path) -> LabelledSet:
    """Frames in the `aligned/` and `not_aligned/` layout under `data_dir` (`data.labels`).

    A synthetic data set's root is accepted too (its `example_set/` is used). An empty or
    one-class folder is accepted here; metrics then say what they can (see `binary_metrics`).
    """
    if not Path(data_dir).is_dir():
        raise BarsalignError(f"{data_dir} is not a folder")
    root = layout_root(data_dir)
    if root is None:
        raise BarsalignError(f"{data_dir} has neither an aligned/ nor a not_aligned/ subfolder")
    pairs = read_folder_labels(root)
    paths = [p for p, _ in pairs]
    labels = [lab for _, lab in pairs]
    if not paths:
        raise BarsalignError(f"{root}/aligned and {root}/not_aligned hold no images")
    meta: list[dict[str, Any] | None] = [None] * len(paths)
    # the renderer's truth: beside the layout (a look's split) or one level up (a data set)
    for synth_root in (root, root.parent):
        if (synth_root / "metadata.jsonl").is_file():
            from barsalign.synth import load_metadata

            by_file = {m["file"]: m for m in load_metadata(synth_root)}
            meta = [by_file.get(p.relative_to(synth_root).as_posix()) for p in paths]
            break
    return LabelledSet(root, paths, np.asarray(labels, dtype=int), meta)


load_scorer = load_predictor
"""`inference.load_predictor` under the name notebook 05 and the benchmarks call it by."""


def read_frames(paths: Sequence[Path]) -> tuple[list[np.ndarray | None], list[tuple[str, str]]]:
    """BGR frames in order (None where unreadable) and the list of (path, why) unreadable."""
    frames: list[np.ndarray | None] = []
    bad: list[tuple[str, str]] = []
    for p in paths:
        try:
            frames.append(read_image(p))
        except BarsalignError as err:
            frames.append(None)
            bad.append((str(p), str(err)))
    return frames, bad


def score_paths(
    scorer: Predictor | EdgeBaseline, paths: Sequence[Path], batch_size: int = 16
) -> tuple[np.ndarray, list[tuple[str, str]], float]:
    """P(aligned) per path (NaN where unreadable), the unreadable list, and ms per frame."""
    scorer = as_predictor(scorer)
    scores = np.full(len(paths), np.nan)
    bad: list[tuple[str, str]] = []
    started = time.perf_counter()
    for i in range(0, len(paths), batch_size):
        frames, unreadable = read_frames(paths[i : i + batch_size])
        bad += unreadable
        ok, batch = [], []
        for k, frame in enumerate(frames):
            if frame is None:
                continue
            try:
                batch.append(scorer.prepare(frame, str(paths[i + k])))
            except BarsalignError as err:
                bad.append((str(paths[i + k]), str(err)))
                continue
            ok.append(k)
        if ok:
            got = sigmoid(scorer.logits(np.stack(batch)))
            for k, s in zip(ok, got, strict=True):
                if np.isfinite(s):
                    scores[i + k] = s
                else:
                    bad.append((str(paths[i + k]), f"{paths[i + k]}: the model gave no score"))
    read = len(paths) - len(bad)
    ms = (time.perf_counter() - started) * 1000.0 / max(read, 1)
    return scores, bad, ms


def latency_ms(scorer: Predictor | EdgeBaseline, paths: Sequence[Path], frames: int = 20) -> float:
    """Median CPU milliseconds for one frame, file read and preprocessing included (batch 1)."""
    times = []
    for p in list(paths)[: max(frames, 1) + 2]:
        t = time.perf_counter()
        score_paths(scorer, [p], batch_size=1)
        times.append((time.perf_counter() - t) * 1000.0)
    return float(np.median(times[2:] if len(times) > 2 else times))  # first calls warm up


def evaluate_scores(
    y: np.ndarray, scores: np.ndarray, threshold: float = 0.5, precision_target: float = 0.99
) -> dict[str, Any]:
    """Metrics at `threshold` plus the two operating thresholds (max F0.5; precision target)."""
    m = binary_metrics(y, scores, threshold)
    m["threshold_f05"], m["f05_at_best"] = threshold_max_fbeta(y, scores, beta=0.5)
    m["threshold_precision"] = threshold_for_precision(y, scores, precision_target)
    m["precision_target"] = precision_target
    return m


def evaluate_scorer(
    scorer: Predictor | EdgeBaseline,
    data: LabelledSet,
    threshold: float = 0.5,
    precision_target: float = 0.99,
    batch_size: int = 16,
    latency_frames: int = 20,
    tracking: bool = True,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One row of the comparison table and the per-frame scores (with synthetic truth);
    with `tracking`, also an MLflow run (`track_evaluation`)."""
    scorer = as_predictor(scorer)
    if tracking:  # a tracker that does not answer fails before the frames are scored
        from barsalign import tracking as tracker

        tracker.client()
    scores, bad, _ = score_paths(scorer, data.paths, batch_size)
    ok = ~np.isnan(scores)
    if not ok.any():
        raise BarsalignError(f"no readable frames in {data.root} ({len(bad)} unreadable)")
    m = evaluate_scores(data.labels[ok], scores[ok], threshold, precision_target)
    ckpt_mb = scorer.source.stat().st_size / 2**20
    row = {
        "model": scorer.name,
        "backbone": scorer.backbone,
        "image_side": scorer.image_size,
        "weights_source": scorer.weights_source,
        **m,
        "parameters": scorer.parameters,
        "checkpoint_mb": round(ckpt_mb, 2),
        "latency_ms": latency_ms(scorer, data.paths, latency_frames),
        "unreadable": len(bad),
    }
    frames = per_frame_table(data, scores, threshold)
    if tracking:
        track_evaluation(scorer, data, scores, row, "given")
    return row, frames


def track_evaluation(
    scorer: Predictor,
    data: LabelledSet,
    scores: np.ndarray,
    metrics: dict[str, Any],
    threshold_source: str,
    files: Sequence[Path] = (),
) -> dict[str, Any]:
    """Log one evaluation to MLflow (`tracking.log_evaluation`: linked to the training run it
    scores), with its figure (`panel.png`: confusion, precision-recall, scores per class,
    reliability) and per-frame scores (`frames.csv`) as artefacts besides `files`."""
    import tempfile

    import matplotlib.pyplot as plt

    from barsalign import tracking
    from barsalign.viz.plots import model_panel

    ok = ~np.isnan(scores)
    threshold = float(metrics["threshold"])
    marks = {"max F0.5": metrics.get("threshold_f05")}
    if "precision_target" in metrics:
        marks[f"precision {metrics['precision_target']:g}"] = metrics.get("threshold_precision")
    with tempfile.TemporaryDirectory(prefix="barsalign-eval-") as tmp:
        panel, table = Path(tmp) / "panel.png", Path(tmp) / "frames.csv"
        fig = model_panel(data.labels[ok], scores[ok], threshold, scorer.name, marks)
        fig.savefig(panel, dpi=90)
        plt.close(fig)
        per_frame_table(data, scores, threshold).to_csv(table, index=False)
        return tracking.log_evaluation(
            scorer.source,
            data.root,
            list(zip(data.paths, data.labels, strict=True)),
            metrics,
            threshold_source,
            [*files, panel, table],
            name=scorer.name,
        )


def per_frame_table(data: LabelledSet, scores: np.ndarray, threshold: float) -> pd.DataFrame:
    """Path, truth, score, prediction, outcome and the synthetic truth columns per frame."""
    rows = []
    for path, y, s, meta in zip(data.paths, data.labels, scores, data.meta, strict=True):
        pred = None if np.isnan(s) else int(s >= threshold)
        outcome = (
            "unreadable"
            if pred is None
            else {(1, 1): "TP", (0, 1): "FP", (1, 0): "FN", (0, 0): "TN"}[(int(y), pred)]
        )
        row = {
            "path": str(path),
            "label": int(y),
            "score": float(s),
            "pred": pred,
            "outcome": outcome,
        }
        if meta:
            row.update(
                scene=meta["scene"],
                lighting=meta["lighting"],
                kind=meta["kind"],
                max_gap_px=meta["max_gap_px"],
                n_bars=meta["n_bars"],
            )
        rows.append(row)
    return pd.DataFrame(rows)


GAP_BINS = (0.0, 1.0, 3.0, 3.5, 4.0, 5.0, 8.0, 16.0, 32.0, 64.0, 1e9)
"""Largest-gap bins (px): fine across the renderer's hard cases (3-8 px), where a model's
detection limit lies (the CPU profile's misses are mostly 3.1-3.5 px gaps at night)."""


def error_rates(frames: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Error rate by scene type, lighting and largest gap (pixels), from synthetic truth."""
    if "scene" not in frames:
        return {}
    f = frames[frames["outcome"] != "unreadable"].copy()
    f["error"] = f["outcome"].isin(["FP", "FN"])
    gap = f["max_gap_px"].fillna(-1.0)
    labels = [
        f"{a:g}-{b:g}px" if b < 1e9 else f">{a:g}px"
        for a, b in zip(GAP_BINS[:-1], GAP_BINS[1:], strict=True)
    ]
    f["gap_px"] = pd.cut(gap, bins=GAP_BINS, labels=labels, include_lowest=True)
    f["gap_px"] = f["gap_px"].cat.add_categories(["no bars"]).fillna("no bars")
    out = {}
    for col in ("scene", "lighting", "gap_px"):
        t = f.groupby(col, observed=True).agg(frames=("error", "size"), errors=("error", "sum"))
        t["error_rate"] = t["errors"] / t["frames"]
        out[col] = t.reset_index()
    return out


def find_runs(runs_dir: Path = RUNS_DIR, names: Sequence[str] | None = None) -> list[Path]:
    """Best checkpoints of training runs under `runs_dir` (or of the named runs)."""
    runs = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    if names:
        missing = [n for n in names if not (runs_dir / n).is_dir()]
        if missing:
            raise BarsalignError(f"no run(s) {missing} under {runs_dir}")
        runs = [runs_dir / n for n in names]
    found = [
        r / "checkpoints" / "best.ckpt" for r in runs if (r / "checkpoints" / "best.ckpt").is_file()
    ]
    return found


def write_json(path: Path, data: Any) -> Path:
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if hasattr(o, "__dataclass_fields__"):
            return asdict(o)
        return str(o)

    return atomic_write_text(path, json.dumps(data, indent=2, default=default) + "\n")


def error_cases(
    scorer: Predictor, frames: pd.DataFrame, outcome: str, n: int, side: int = 256
) -> list[dict[str, Any]]:
    """Up to `n` frames with this outcome ("FP" most confident first, others least), each
    with the square the model saw (RGB at `side` px: region of interest, squared, resized),
    its Grad-CAM map on that square toward the predicted class (torch models) and a caption."""
    import cv2

    from barsalign.evaluation.gradcam import model_view

    cases = frames[frames["outcome"] == outcome].sort_values("score", ascending=outcome != "FP")
    items = []
    for _, case in cases.head(n).iterrows():
        img = read_image(case["path"])
        seen, cam = model_view(scorer, img, toward_aligned=outcome in ("TP", "FP"))
        extra = ""
        if "scene" in case and isinstance(case["scene"], str):
            extra = f"\n{case['scene']}, {case['lighting']}, gap {case['max_gap_px'] or 0:.1f}px"
        items.append(
            {
                "image": cv2.resize(seen, (side, side), interpolation=cv2.INTER_AREA),
                "cam": cam,
                "caption": f"{Path(case['path']).name}: score {case['score']:.3f}{extra}",
            }
        )
    return items
