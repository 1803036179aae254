"""Evaluation figures: confusion matrix, precision-recall, score histograms, reliability,
and the error gallery with Grad-CAM. Each function returns a matplotlib figure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _plt():
    import matplotlib.pyplot as plt

    return plt


def model_panel(
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    title: str,
    thresholds: dict[str, float | None] | None = None,
):
    """Four panels for one model: confusion matrix, PR curve, score histogram, reliability."""
    from sklearn.metrics import precision_recall_curve

    from barsalign.evaluation.metrics import binary_metrics, reliability_table

    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
    m = binary_metrics(y, scores, threshold)
    cm = np.array([[m["tp"], m["fn"]], [m["fp"], m["tn"]]])
    ax = axes[0]
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(
            j,
            i,
            str(v),
            ha="center",
            va="center",
            fontsize=13,
            color="white" if v > cm.max() / 2 else "black",
        )
    ax.set_xticks([0, 1], ["aligned", "not aligned"])
    ax.set_yticks([0, 1], ["aligned", "not aligned"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion at t={threshold:.2f}")

    ax = axes[1]
    if 0 < y.sum() < len(y):
        precision, recall, _ = precision_recall_curve(y, scores)
        ax.plot(recall, precision, lw=1.8)
    for name, t in (thresholds or {}).items():
        if t is not None:
            mt = binary_metrics(y, scores, t)
            ax.plot(mt["recall"], mt["precision"], "o", label=f"{name} (t={t:.3f})")
    ax.set_xlabel("recall (aligned)")
    ax.set_ylabel("precision (aligned)")
    ax.set_ylim(0, 1.02)
    ax.set_title("precision-recall")
    if thresholds:
        ax.legend(fontsize=8, loc="lower left")

    ax = axes[2]
    bins = np.linspace(0, 1, 26)
    ax.hist(scores[y == 1], bins=bins, alpha=0.6, label="aligned")
    ax.hist(scores[y == 0], bins=bins, alpha=0.6, label="not aligned")
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("score P(aligned)")
    ax.set_title("scores per true class")
    ax.legend(fontsize=8)

    ax = axes[3]
    table = reliability_table(y, scores, bins=10)
    ax.plot([0, 1], [0, 1], color="gray", ls=":")
    ax.plot(table["mean_score"], table["share_aligned"], "o-")
    ax.set_xlabel("mean score in bin")
    ax.set_ylabel("share truly aligned")
    ax.set_title("reliability")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def gallery(items: list[dict[str, Any]], cols: int = 4, title: str = ""):
    """A grid of error cases: each item has 'image' (RGB), 'cam' (or None) and 'caption'."""
    plt = _plt()
    if not items:
        fig, ax = plt.subplots(figsize=(6, 0.8))
        ax.text(0.0, 0.5, f"{title}: none", fontsize=12, va="center")
        ax.set_axis_off()
        return fig
    rows = (len(items) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, item in zip(axes.ravel(), items, strict=False):
        img = item["image"]
        if item.get("cam") is not None:
            from barsalign.evaluation.gradcam import overlay

            img = overlay(img, item["cam"])
        ax.imshow(img)
        ax.set_title(item["caption"], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def error_rate_bars(tables: dict[str, pd.DataFrame]):
    """Bar charts of the error rate by scene, lighting and gap size."""
    plt = _plt()
    if not tables:
        return None
    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 3.6), squeeze=False)
    for ax, (col, t) in zip(axes[0], tables.items(), strict=True):
        ax.bar(t[col].astype(str), t["error_rate"], color="#c0392b")
        for i, (rate, n) in enumerate(zip(t["error_rate"], t["frames"], strict=True)):
            ax.text(i, rate, f"{rate:.0%}\nn={n}", ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(0.1, float(t["error_rate"].max()) * 1.35))
        ax.set_title(f"error rate by {col}")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig
