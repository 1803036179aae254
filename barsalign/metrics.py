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
    b2 = beta * beta
    denom = b2 * precision + recall
    return float((1 + b2) * precision * recall / denom) if denom > 0 else 0.0


def binary_metrics(y_true: Any, scores: Any, threshold: float = 0.5) -> dict[str, Any]:
    """F0.5, F1, accuracy, precision, recall, AUROC and the confusion counts at `threshold`.

    AUROC is None when the set holds one class only (it is undefined there, not NaN).
    """
    y, s = _check(y_true, scores)
    pred = s >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    tn = int((~pred & (y == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    auroc = None
    if 0 < y.sum() < len(y):
        from sklearn.metrics import roc_auc_score

        auroc = float(roc_auc_score(y, s))
    return {
        "f05": fbeta(precision, recall, 0.5),
        "f1": fbeta(precision, recall, 1.0),
        "accuracy": (tp + tn) / len(y),
        "precision": precision,
        "recall": recall,
        "auroc": auroc,
        "threshold": float(threshold),
        "n": len(y),
        "n_aligned": int(y.sum()),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def _candidates(s: np.ndarray) -> np.ndarray:
    """Every distinct score is a threshold where a prediction changes (ascending)."""
    return np.unique(s)


def threshold_max_fbeta(y_true: Any, scores: Any, beta: float = 0.5) -> tuple[float, float]:
    """The threshold that maximises F-beta (the highest such one on ties) and that F-beta."""
    y, s = _check(y_true, scores)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(1 - y_sorted)
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # end of each run of equal scores
    tp, fp, thr = tp[last], fp[last], s_sorted[last]
    positives = y.sum()
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / positives if positives else np.zeros_like(tp, dtype=float)
    b2 = beta * beta
    denom = b2 * precision + recall
    f = np.where(denom > 0, (1 + b2) * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    best = int(np.argmax(f))  # first max = highest threshold among ties
    return float(thr[best]), float(f[best])


def threshold_for_precision(y_true: Any, scores: Any, target: float = 0.99) -> float | None:
    """The lowest threshold whose precision for "aligned" reaches `target`; None if none does."""
    if not 0.0 < target <= 1.0:
        raise BarsalignError(f"target precision must lie in (0, 1], got {target}")
    y, s = _check(y_true, scores)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(1 - y_sorted)
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    precision = tp[last] / (tp[last] + fp[last])
    ok = np.nonzero((precision >= target) & (tp[last] > 0))[0]
    return float(s_sorted[last][ok[-1]]) if len(ok) else None


def reliability_table(y_true: Any, scores: Any, bins: int = 10) -> pd.DataFrame:
    """Calibration: per score bin, the mean score, the observed share aligned and the count."""
    y, s = _check(y_true, scores)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append(
                {
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "mean_score": float(s[m].mean()),
                    "share_aligned": float(y[m].mean()),
                    "frames": int(m.sum()),
                }
            )
    return pd.DataFrame(rows)


def expected_calibration_error(y_true: Any, scores: Any, bins: int = 10) -> float:
    table = reliability_table(y_true, scores, bins)
    weights = table["frames"] / table["frames"].sum()
    return float((weights * (table["mean_score"] - table["share_aligned"]).abs()).sum())
