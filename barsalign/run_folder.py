"""What a training run writes into its folder beside the checkpoints, and the Lightning
callbacks that gather it: `metrics.csv` (one row per epoch, `epoch_table`), `curves.png`
(`plot_curves`), the seconds since the fit began (`epoch_clock`), the best validation's
`val_scores.csv` and `val_panel.png` (`best_validation_scores`, `write_validation`) and the
TensorBoard event files in `tb/` (`tensorboard_logger`). `check_run_dir` guards an earlier run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from barsalign.errors import BarsalignError

TENSORBOARD_DIR = "tb"
"""A run folder's TensorBoard event files (`tensorboard --logdir reports/runs` shows them all)."""


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """A run folder must be new, empty, or replaced on purpose (`overwrite`): an earlier run's
    checkpoints are never deleted by a run that then fails on its data."""
    if run_dir.exists() and not run_dir.is_dir():
        raise BarsalignError(f"run folder {run_dir} is a file")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise BarsalignError(
            f"run folder {run_dir} already holds a run: pass --overwrite to replace it, "
            "or choose another --out"
        )


def tensorboard_logger(run_dir: Path) -> Any:
    """Lightning's TensorBoard logger: the same per-step metrics as the CSV and MLflow, as
    event files in `run_dir/tb/`, for those who read curves in TensorBoard."""
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(
        str(run_dir), name="", version=TENSORBOARD_DIR, default_hp_metric=False
    )


def epoch_clock() -> Any:
    import lightning.pytorch as pl

    class EpochClock(pl.Callback):
        """Logs `elapsed_s`, seconds since the fit began, with each epoch's validation."""

        def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.started = time.perf_counter()

        def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                pl_module.log("elapsed_s", time.perf_counter() - self.started, sync_dist=True)

    return EpochClock()


def epoch_table(raw_csv: Path) -> Any:
    """Lightning's CSV log (train and val rows apart) as one row per epoch."""
    import pandas as pd

    df = pd.read_csv(raw_csv)
    df = df.drop(columns=[c for c in ("step",) if c in df]).groupby("epoch").first()
    return df.reset_index()


def plot_curves(table: Any, out: Path) -> Path:
    """Loss and validation metrics per epoch, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for col in ("train_loss", "val_loss"):
        if col in table:
            a.plot(table["epoch"], table[col], marker="o", label=col)
    a.set(xlabel="epoch", ylabel="BCE loss", title="loss")
    a.legend()
    for col in ("val_f05", "val_accuracy", "val_auroc", "val_precision", "val_recall"):
        if col in table:
            b.plot(table["epoch"], table[col], marker=".", label=col[4:])
    b.set(xlabel="epoch", ylim=(0, 1.02), title="validation (aligned = positive)")
    b.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


TARGET_F05 = 0.95
"""The plant's bar: validation F0.5 the summary times the run to (`minutes_to_f05_0.95`)."""


def minutes_to(table: Any, target: float) -> float | None:
    """Training minutes until validation F0.5 first reached `target`; None if it never did."""
    if "val_f05" not in table or "elapsed_s" not in table:
        return None
    hit = table[table["val_f05"] >= target]
    return None if hit.empty else round(float(hit["elapsed_s"].iloc[0]) / 60, 2)


def best_validation_scores() -> Any:
    """A callback keeping the labels and scores of the best validation so far (highest
    `val_f05`, as the best checkpoint is chosen); `write_validation` draws them. One process
    only: under DDP each rank sees a shard, and nothing is kept."""
    import lightning.pytorch as pl
    import numpy as np
    import torch

    class BestValidationScores(pl.Callback):
        def __init__(self) -> None:
            self.best = -np.inf
            self.labels: np.ndarray | None = None
            self.scores: np.ndarray | None = None
            self._batches: list[tuple[torch.Tensor, torch.Tensor]] = []

        def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
            self._batches = []

        def on_validation_batch_end(
            self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, *_: Any
        ) -> None:
            if trainer.world_size == 1 and isinstance(outputs, torch.Tensor):
                self._batches.append((batch[1].detach().cpu(), outputs.detach().float().cpu()))

        def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
            f05 = trainer.callback_metrics.get("val_f05")
            if trainer.sanity_checking or f05 is None or not self._batches:
                return
            if float(f05) > self.best:  # strictly better, as ModelCheckpoint keeps "best"
                self.best = float(f05)
                self.labels = torch.cat([y for y, _ in self._batches]).numpy().astype(int)
                self.scores = torch.cat([s for _, s in self._batches]).numpy().reshape(-1)

    return BestValidationScores()


def write_validation(kept: Any, run_dir: Path, title: str) -> list[Path]:
    """The best validation's scores (`val_scores.csv`: label, score) and its figure
    (`val_panel.png`: confusion at 0.5, precision-recall, scores, reliability) in the run
    folder; nothing when no validation was kept."""
    if kept.scores is None:
        return []
    import matplotlib.pyplot as plt
    import pandas as pd

    from barsalign.evaluation.metrics import threshold_max_fbeta
    from barsalign.viz.plots import model_panel

    table = run_dir / "val_scores.csv"
    pd.DataFrame({"label": kept.labels, "score": kept.scores}).to_csv(table, index=False)
    best_t = threshold_max_fbeta(kept.labels, kept.scores, beta=0.5)[0]
    fig = model_panel(
        kept.labels, kept.scores, 0.5, f"{title}: best validation", {"max F0.5": best_t}
    )
    fig.savefig(run_dir / "val_panel.png", dpi=90)
    plt.close(fig)
    return [table, run_dir / "val_panel.png"]


__all__ = [
    "TARGET_F05",
    "best_validation_scores",
    "check_run_dir",
    "epoch_clock",
    "epoch_table",
    "minutes_to",
    "plot_curves",
    "tensorboard_logger",
    "write_validation",
]
