"""`Predictor`: a model with its preprocessing; BGR frames in, P(aligned) out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.errors import BarsalignError
from barsalign.evaluation.metrics import check_threshold
from barsalign.preprocess import PreprocessConfig, normalise, preprocess, scoring_problem


@dataclass
class Predictor:
    """A model with the preprocessing it was trained with: BGR frames in, P(aligned) out.

    Args:
        logits_fn: a prepared batch (see `prepare`) → one logit per frame.
        kind: "checkpoint", "onnx", "torchscript" or "baseline".
        threshold: the card's operating threshold; None where none was chosen (checkpoints,
            the baseline), and `decision_threshold` is then 0.5.
        features: the baseline's own input from a frame; None for networks, whose input is
            `preprocess` then `normalise` with `data_config`.
        torch_model: the LightningModule of a checkpoint (Grad-CAM, export), else None.
    """

    name: str
    backbone: str
    image_size: int
    preprocess_cfg: PreprocessConfig
    logits_fn: Callable[[np.ndarray], np.ndarray]
    source: Path
    kind: str = "checkpoint"
    data_config: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None
    card: dict[str, Any] = field(default_factory=dict)
    weights_source: str = ""
    parameters: int = 0
    torch_model: Any = None
    features: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def decision_threshold(self) -> float:
        """The threshold `predict` uses: the card's, else 0.5."""
        return 0.5 if self.threshold is None else self.threshold

    def prepare(self, image_bgr: np.ndarray, name: str | None = "frame") -> np.ndarray:
        """One frame as the model's input; a BarsalignError (prefixed with `name` when given)
        when the frame is far below the model's input size (`preprocess.scoring_problem`)."""
        problem = scoring_problem(image_bgr, self.preprocess_cfg)
        if problem:
            raise BarsalignError(f"{name}: {problem}" if name else problem)
        if self.features is not None:
            return self.features(image_bgr)
        return normalise(preprocess(image_bgr, self.preprocess_cfg), self.data_config)

    def tensors(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Frames as the model's input batch ([B, 3, S, S] normalised for networks)."""
        return np.stack([self.prepare(img) for img in images_bgr])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits [B] of a prepared batch, as float64."""
        return np.asarray(self.logits_fn(batch), dtype=np.float64).reshape(len(batch))

    def scores(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """P(aligned) per frame."""
        return sigmoid(self.logits(self.tensors(images_bgr)))

    def predict(self, images_bgr: Sequence[np.ndarray], threshold: float | None = None) -> Any:
        """1 (aligned) or 0 per frame, at `threshold` or the model's `decision_threshold`."""
        thr = self.decision_threshold if threshold is None else check_threshold(threshold)
        return (self.scores(images_bgr) >= thr).astype(int)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """P(aligned) from logits."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
