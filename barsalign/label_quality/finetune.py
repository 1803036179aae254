"""Out-of-fold scores from K fine-tunings, for `suspects.suspects_of` (`--scores finetune`).

The frozen probe (`features`, `suspects`) costs one pass over the frames but does not see a gap of a
few pixels. `FinetuneScores` trains the default recipe once per fold, on the other folds' labels
(validation split from those by clip, as `barsalign train` does), and scores the fold's frames
with that run's best checkpoint: K trainings, so minutes per fold on a CPU, but the scores come
from a network that looked at the stopper region the way the final model will.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from barsalign.errors import BarsalignError
from barsalign.label_quality.noise import write_labels_csv
from barsalign.preprocess import read_image

if TYPE_CHECKING:
    from barsalign.data import Item

RESERVED = ("data_dir", "val_data_dir", "roi", "run_name", "run_dir", "overwrite")
"""FinetuneConfig fields the folds set themselves."""


@dataclass
class FinetuneScores:
    """Callable (items, labels, fold, roi) → out-of-fold P(aligned), one training per fold.

    Args:
        work_dir: each fold's labels CSV and run folder go under it (`fold0/`, `fold1/`, ...).
        settings: `train_config.FinetuneConfig` fields for every fold (e.g. max_steps); the
            data, the region and the run folder are the fold's own.
        batch: frames scored at once.
    """

    work_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)
    batch: int = 16

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir)
        taken = [k for k in RESERVED if k in self.settings]
        if taken:
            raise BarsalignError(
                f"fine-tune settings: {', '.join(taken)} are set per fold, not by the caller"
            )

    def __call__(
        self, items: Sequence[Item], labels: np.ndarray, fold: np.ndarray, roi: Any
    ) -> np.ndarray:
        from barsalign.inference import load_predictor
        from barsalign.modeling.train import run_training
        from barsalign.modeling.train_config import FinetuneConfig

        scores = np.full(len(items), np.nan)
        for k in np.unique(fold):
            train = [it for it, f in zip(items, fold, strict=True) if f != k]
            if len({it.label for it in train}) < 2:
                raise BarsalignError(f"fold {k}: the other folds hold one class only; label more")
            here = self.work_dir / f"fold{k}"
            here.mkdir(parents=True, exist_ok=True)
            csv = write_labels_csv(train, here / "labels.csv")
            cfg = FinetuneConfig(
                **{
                    "tracking": False,
                    **self.settings,
                    "data_dir": str(csv),
                    "val_data_dir": None,
                    "roi": list(roi) if roi is not None else None,
                    "run_name": f"fold{k}",
                    "run_dir": str(here / "run"),
                    "overwrite": True,
                }
            )
            run_training(cfg)
            predictor = load_predictor(here / "run" / "checkpoints" / "best.ckpt")
            todo = np.flatnonzero(fold == k)
            for start in range(0, len(todo), self.batch):
                idx = todo[start : start + self.batch]
                frames = [read_image(items[i].path) for i in idx]
                scores[idx] = predictor.scores(frames)
        return scores
