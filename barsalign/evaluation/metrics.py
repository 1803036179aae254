"""Binary metrics with **aligned as the positive class**, operating thresholds and calibration.

A frame is predicted aligned when its score (probability of aligned) is >= the threshold.
F0.5 is the plant's score: a false "aligned" means a bad cut, so precision weighs more.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from barsalign.errors import BarsalignError


def check_threshold(value: Any, what: str = "threshold") -> float:
    """A decision threshold: a number strictly between 0 and 1 (NaN, 5 or "abc" are errors:
    each would label every frame one way)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise BarsalignError(f"{what} must be a number in (0, 1), not {value!r}")
    t = float(value)
    if not 0.0 < t < 1.0:  # NaN fails this too
        raise BarsalignError(f"{what} must lie in (0, 1), not {value!r}")
    return t


def check_precision_target(value: Any, what: str = "precision target") -> float:
    """A precision to reach: a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise BarsalignError(f"{what} must be a number in (0, 1], not {value!r}")
    t = float(value)
    if not 0.0 < t <= 1.0:
        raise BarsalignError(f"{what} must lie in (0, 1], not {value!r}")
    return t


def _check(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise BarsalignError(f"{len(y)} labels but {len(s)} scores")
    if len(y) == 0:
        raise BarsalignError("no frames to score: the set is empty")
    if not np.isin(y, (0, 1)).all():
        raise BarsalignError("labels must be 0 (not aligned) or 1 (aligned)")
    if not np.isfinite(s).all():
        raise BarsalignError(f"{int((~np.isfinite(s)).sum())} scores are NaN or infinite")
    return y, s


def fbeta(precision: float, recall: float, beta: float = 0.5) -> float:
    """F-beta from a precision and a recall (0 where both are 0)."""
    # scikit-learn computes F-beta from labels only; plots and tables here hold the two numbers
    b2 = beta * beta
    denom = b2 * precision + recall
    return float((1 + b2) * precision * recall / denom) if denom > 0 else 0.0


def binary_metrics(y_true: Any, scores: Any, threshold: float = 0.5) -> dict[str, Any]:
    """F0.5, F1, accuracy, precision, recall, AUROC and the confusion counts at `threshold`.

    AUROC is None when the set holds one class only (it is undefined there, not NaN).
    """
    # scikit-learn takes a second to import: only the commands that compute metrics pay it
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        fbeta_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y, s = _check(y_true, scores)
    pred = (s >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    precision, recall, f05, _ = precision_recall_fscore_support(
        y, pred, beta=0.5, labels=[1], average="binary", pos_label=1, zero_division=0
    )
    f1 = fbeta_score(y, pred, beta=1.0, labels=[1], pos_label=1, zero_division=0)
    auroc = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None
    return {
        "f05": float(f05),
        "f1": float(f1),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision),
        "recall": float(recall),
        "auroc": auroc,
        "threshold": float(threshold),
        "n": len(y),
        "n_aligned": int(y.sum()),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def _pr_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score as threshold (ascending), from
    scikit-learn's `precision_recall_curve` without its closing (precision 1, recall 0) point."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, s, pos_label=1)
    return precision[:-1], recall[:-1], thresholds


def threshold_max_fbeta(y_true: Any, scores: Any, beta: float = 0.5) -> tuple[float, float]:
    """The threshold that maximises F-beta (the highest such one on ties) and that F-beta."""
    y, s = _check(y_true, scores)
    if not y.any():  # scikit-learn warns and calls recall 1 here; every F-beta is 0
        return float(s.max()), 0.0
    precision, recall, thresholds = _pr_curve(y, s)
    f = np.array([fbeta(p, r, beta) for p, r in zip(precision, recall, strict=True)])
    best = len(f) - 1 - int(np.argmax(f[::-1]))  # the highest threshold among ties
    return float(thresholds[best]), float(f[best])


def threshold_for_precision(y_true: Any, scores: Any, target: float = 0.99) -> float | None:
    """The lowest threshold whose precision for "aligned" reaches `target`; None if none does."""
    if not 0.0 < target <= 1.0:
        raise BarsalignError(f"target precision must lie in (0, 1], got {target}")
    y, s = _check(y_true, scores)
    if not y.any():  # no aligned frame: no threshold has a true positive (and sklearn warns)
        return None
    precision, recall, thresholds = _pr_curve(y, s)
    ok = (precision >= target) & (recall > 0)
    return float(thresholds[ok].min()) if ok.any() else None


def reliability_table(y_true: Any, scores: Any, bins: int = 10) -> pd.DataFrame:
    """Calibration: per score bin, the mean score, the observed share aligned and the count."""
    from sklearn.calibration import calibration_curve

    y, s = _check(y_true, scores)
    share, mean = calibration_curve(y, s, n_bins=bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    # calibration_curve gives no count per bin: count with its rule (searchsorted, inner edges)
    counts = np.bincount(np.searchsorted(edges[1:-1], s), minlength=bins)
    used = np.nonzero(counts)[0]
    return pd.DataFrame(
        {
            "bin": [f"{edges[b]:.1f}-{edges[b + 1]:.1f}" for b in used],
            "mean_score": mean.astype(float),
            "share_aligned": share.astype(float),
            "frames": counts[used].astype(int),
        }
    )


def expected_calibration_error(y_true: Any, scores: Any, bins: int = 10) -> float:
    """The frame-weighted mean gap between mean score and share aligned over the bins."""
    table = reliability_table(y_true, scores, bins)
    weights = table["frames"] / table["frames"].sum()
    return float((weights * (table["mean_score"] - table["share_aligned"]).abs()).sum())
