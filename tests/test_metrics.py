"""Metrics against scikit-learn on random inputs, with aligned (1) as the positive class."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    fbeta_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

from barsalign.errors import BarsalignError
from barsalign.evaluation.metrics import (
    binary_metrics,
    check_precision_target,
    check_threshold,
    expected_calibration_error,
    fbeta,
    reliability_table,
    threshold_for_precision,
    threshold_max_fbeta,
)


@pytest.mark.parametrize("seed", range(8))
def test_binary_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    y = (rng.random(n) < rng.uniform(0.1, 0.6)).astype(int)
    s = np.clip(0.5 * y + rng.normal(0.25, 0.3, n), 0, 1).round(int(rng.integers(1, 4)))
    t = float(rng.uniform(0.2, 0.8))
    pred = (s >= t).astype(int)
    m = binary_metrics(y, s, t)
    assert m["f05"] == pytest.approx(fbeta_score(y, pred, beta=0.5, zero_division=0))
    assert m["f1"] == pytest.approx(f1_score(y, pred, zero_division=0))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(recall_score(y, pred, zero_division=0))
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert m["tp"] + m["fp"] + m["tn"] + m["fn"] == n


def test_aligned_is_the_positive_class() -> None:
    y = [1, 1, 0, 0, 0]
    s = [0.9, 0.8, 0.7, 0.1, 0.2]  # one false "aligned" at 0.5
    m = binary_metrics(y, s, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 0, 2)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_threshold_max_f05_is_the_best_over_sklearns_curve(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = 200
    y = (rng.random(n) < 0.35).astype(int)
    s = np.clip(0.4 * y + rng.normal(0.3, 0.25, n), 0, 1).round(2)
    thr, f = threshold_max_fbeta(y, s, beta=0.5)
    best = max(
        fbeta_score(y, (s >= t).astype(int), beta=0.5, zero_division=0) for t in np.unique(s)
    )
    assert f == pytest.approx(best)
    assert fbeta_score(y, (s >= thr).astype(int), beta=0.5) == pytest.approx(best)


@pytest.mark.parametrize("seed", range(6))
def test_threshold_for_precision_is_the_lowest_reaching_the_target(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    y = (rng.random(300) < 0.4).astype(int)
    s = np.clip(0.5 * y + rng.normal(0.25, 0.2, 300), 0, 1)
    target = 0.95
    thr = threshold_for_precision(y, s, target)
    precision, _, thresholds = precision_recall_curve(y, s)
    reaching = [t for p, t in zip(precision[:-1], thresholds, strict=True) if p >= target]
    if not reaching:
        assert thr is None
    else:
        assert thr == pytest.approx(min(reaching))
        assert precision_score(y, (s >= thr).astype(int)) >= target


def test_precision_target_out_of_reach_is_none() -> None:
    assert threshold_for_precision([1, 0, 1, 0], [0.9, 0.95, 0.5, 0.6], 0.99) is None


def test_one_class_and_empty_sets_give_clear_answers_not_nan() -> None:
    m = binary_metrics([0, 0, 0], [0.1, 0.7, 0.2])
    assert m["auroc"] is None and m["precision"] == 0.0 and m["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(BarsalignError, match="empty"):
        binary_metrics([], [])
    with pytest.raises(BarsalignError, match="NaN"):
        binary_metrics([0, 1], [0.2, float("nan")])


def test_reliability_of_a_calibrated_scorer_is_close_to_the_diagonal() -> None:
    rng = np.random.default_rng(7)
    s = rng.random(20000)
    y = (rng.random(20000) < s).astype(int)
    table = reliability_table(y, s, bins=10)
    assert (table["mean_score"] - table["share_aligned"]).abs().max() < 0.03
    assert expected_calibration_error(y, s) < 0.02
    assert expected_calibration_error(y, np.clip(s * 0.3, 0, 1)) > 0.2


def test_thresholds_on_a_set_without_aligned_frames() -> None:
    """No aligned frame: no threshold has a true positive, every F-beta is 0 (no warning)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert threshold_max_fbeta([0, 0, 0], [0.2, 0.9, 0.4]) == (0.9, 0.0)
        assert threshold_for_precision([0, 0, 0], [0.2, 0.9, 0.4], 0.5) is None


def test_ties_take_the_highest_threshold() -> None:
    # F0.5 is 5/6 at 0.8 (P 1, R 1/2) and at 0.5 (P 4/5, R 1): the higher one is kept
    thr, f = threshold_max_fbeta([1, 1, 0, 1, 1], [0.9, 0.8, 0.7, 0.6, 0.5], beta=0.5)
    assert (thr, f) == (0.8, pytest.approx(5 / 6))


def test_thresholds_and_precision_targets_are_checked_in_one_named_line() -> None:
    assert check_threshold(0.3) == 0.3 and check_threshold(np.float32(0.5)) == 0.5
    for bad in (0, 0.0, 1, 1.0, 1.5, -0.1, float("nan"), True, "0.5", None):
        with pytest.raises(BarsalignError, match=r"^threshold must"):
            check_threshold(bad)
    with pytest.raises(BarsalignError, match=r"^--threshold must lie in \(0, 1\), not 1.5$"):
        check_threshold(1.5, "--threshold")
    assert check_precision_target(1.0) == 1.0 and check_precision_target(0.9) == 0.9
    for bad in (0, 0.0, 1.01, 2, float("nan"), False, "x"):
        with pytest.raises(BarsalignError, match=r"^precision target must"):
            check_precision_target(bad)


def test_binary_metrics_at_the_threshold_without_predictions_and_with_one_class() -> None:
    # a score equal to the threshold is aligned; the counts, size and threshold come back
    m = binary_metrics([1, 0, 1, 0], [0.4, 0.4, 0.9, 0.1], 0.4)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 0, 1)
    assert (m["threshold"], m["n"], m["n_aligned"]) == (0.4, 4, 2)
    # nothing predicted aligned: precision and the F-scores are 0, not NaN nor 1
    m = binary_metrics([1, 0, 0], [0.1, 0.2, 0.3], 0.5)
    assert (m["precision"], m["recall"], m["f05"], m["f1"]) == (0.0, 0.0, 0.0, 0.0)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (0, 0, 1, 2)
    assert binary_metrics([1, 0, 0], [0.9, 0.2, 0.3])["auroc"] == 1.0  # one aligned frame is enough
    # one class only: AUROC is undefined (None) and the confusion keeps its four cells
    m = binary_metrics([0, 0], [0.1, 0.7], 0.5)
    assert m["auroc"] is None and (m["tp"], m["fp"], m["fn"], m["tn"]) == (0, 1, 0, 1)
    assert binary_metrics([1, 1], [0.8, 0.9])["auroc"] is None


def test_f_beta_defaults_to_f05() -> None:
    assert fbeta(0.5, 1.0) == pytest.approx(1.25 * 0.5 / (0.25 * 0.5 + 1.0))
    assert fbeta(0.0, 0.0) == 0.0
    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.3).astype(int)
    s = np.clip(0.3 * y + rng.normal(0.35, 0.2, 200), 0, 1)
    assert threshold_max_fbeta(y, s) == threshold_max_fbeta(y, s, beta=0.5)
    assert threshold_max_fbeta(y, s, beta=0.5) != threshold_max_fbeta(y, s, beta=1.5)
