"""A classical baseline with no deep learning: logistic regression on the downsampled edge image.

If a fine-tuned network cannot beat this, the report says so. It sees exactly the preprocessed
frame the networks see (same `PreprocessConfig`), shrunk to `side` x `side` pixels.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def features(images_bgr: Sequence[np.ndarray], pcfg: Any, side: int = 32) -> np.ndarray:
    """Preprocess each frame, shrink to side x side (area), flatten to [0, 1] floats."""
    from barsalign.preprocess import preprocess

    out = np.empty((len(images_bgr), side * side * 1), np.float32)
    for i, img in enumerate(images_bgr):
        p = preprocess(img, pcfg)
        if p.ndim == 3:
            p = cv2.cvtColor(p, cv2.COLOR_BGR2GRAY)
        out[i] = cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA).ravel() / 255.0
    return out


@dataclass
class EdgeBaseline:
    """Standardised pixels → logistic regression (class-balanced); `inference.baseline_predictor`
    scores with it like with any other model."""

    preprocess_cfg: Any
    side: int = 32
    C: float = 0.05
    name: str = "baseline_logreg_edges"
    backbone: str = "logistic regression"
    weights_source: str = "none (trained here)"
    source: Path = Path()
    parameters: int = 0
    model: Any = field(default=None, repr=False)

    @property
    def image_size(self) -> int:
        return self.side

    def fit(self, images_bgr: Sequence[np.ndarray], labels: Sequence[int]) -> EdgeBaseline:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = features(images_bgr, self.preprocess_cfg, self.side)
        self.model = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000),
        ).fit(x, np.asarray(labels, dtype=int))
        self.parameters = int(x.shape[1] + 1)
        return self

    def prepare(self, image_bgr: np.ndarray, name: str = "frame") -> np.ndarray:
        """One frame's feature vector (what a Predictor batches for `logits_fn`)."""
        return features([image_bgr], self.preprocess_cfg, self.side)[0]

    def logits_fn(self, batch: np.ndarray) -> np.ndarray:
        """Log-odds of aligned for a batch of feature vectors."""
        return self.model.decision_function(batch)

    def scores(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.predict_proba(features(images_bgr, self.preprocess_cfg, self.side))[:, 1]

    def save(self, path: str | Path) -> Path:
        """Pickle the fitted pipeline (scikit-learn's own format), so its size is reported."""
        self.source = Path(path)
        self.source.write_bytes(pickle.dumps(self.model))
        return self.source
