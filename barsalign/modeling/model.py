"""The classifier: a backbone (`modeling.backbones`), dropout and a one-logit head, trained
with Lightning; `StagedUnfreeze` unfreezes the backbone later, `load_checkpoint` reads one back
safely. Aligned is the positive class (label 1) for every metric.
"""

from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryF1Score,
    BinaryFBetaScore,
    BinaryPrecision,
    BinaryRecall,
)

from barsalign.errors import BarsalignError

# create_backbone and data_config are re-exported: inference and label_quality import them here
from barsalign.modeling.backbones import (
    create_backbone,
    data_config,
    feature_width,
    freeze_early_stages,
)
from barsalign.presets import DEFAULT_BACKBONE, PRESETS, Preset

log = logging.getLogger(__name__)


class AlignmentClassifier(pl.LightningModule):
    """Backbone → dropout → linear → one logit; aligned (1) is the positive class.

    Args:
        pos_weight: BCE weight of positive (aligned) frames; None for unweighted.
        schedule: "constant" or "cosine" learning rate over the run's steps, after a linear
            warm-up over `warmup_fraction` of them (checkpoints written before the step budget
            give `warmup_epochs` instead).
        freeze_backbone: train only the head (see `StagedUnfreeze` for unfreezing later).
        freeze_stages: keep the stem and the first N stages frozen throughout;
            on this CPU, 2 makes a Lite0 step at 288 px 1.6 times faster (`bench_train.py`).
        preprocess: the preprocessing config the data went through, kept in the checkpoint so
            evaluation and export apply the same (not used by the model itself).
        channels_last: NHWC memory layout, about twice as fast for convolutions on a CPU.
        global_pool: how the last feature map becomes one vector ("avg", or with "max" in it
            so that one short bar anywhere in the region can decide; see `backbones.POOLS`).
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        image_size: int = 224,
        dropout: float = 0.3,
        lr: float = 1e-4,
        weight_decay: float = 1e-2,
        schedule: str = "constant",
        warmup_epochs: float = 0.0,
        warmup_fraction: float | None = None,
        pos_weight: float | None = None,
        freeze_backbone: bool = False,
        freeze_stages: int = 0,
        weights: str = "auto",
        pretrained_path: str | None = None,
        preprocess: dict[str, Any] | None = None,
        channels_last: bool = True,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        if schedule not in ("constant", "cosine"):
            raise BarsalignError(f"schedule must be 'constant' or 'cosine', not {schedule!r}")
        if freeze_stages and freeze_backbone:
            raise BarsalignError("freeze_stages and freeze_backbone exclude each other")
        self.backbone, self.weights_source = create_backbone(
            backbone,
            weights=weights,
            pretrained_path=pretrained_path,
            image_size=image_size,
            global_pool=global_pool,
        )
        freeze_early_stages(self.backbone, freeze_stages, backbone)
        self.save_hyperparameters()
        self.hparams["weights_source"] = self.weights_source
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_width(self.backbone), 1))
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        weight = None if pos_weight is None else torch.tensor([float(pos_weight)])
        self.loss = nn.BCEWithLogitsLoss(pos_weight=weight)
        metrics = MetricCollection(
            {
                "f05": BinaryFBetaScore(beta=0.5),
                "f1": BinaryF1Score(),
                "accuracy": BinaryAccuracy(),
                "precision": BinaryPrecision(),
                "recall": BinaryRecall(),
                "auroc": BinaryAUROC(),
            }
        )
        self.val_metrics = metrics.clone(prefix="val_")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape [B]: sigmoid > 0.5 means aligned."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(x)).squeeze(1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self(x), y.float())
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        """Logs the loss and metrics; returns P(aligned) per frame (kept by
        `run_folder.best_validation_scores` for the best validation's figure)."""
        x, y = batch
        logits = self(x)
        self.log("val_loss", self.loss(logits, y.float()), prog_bar=True, sync_dist=True)
        scores = torch.sigmoid(logits)
        self.val_metrics.update(scores, y.long())
        self.log_dict(self.val_metrics, on_step=False, on_epoch=True, prog_bar=False)
        return scores

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        hp = self.hparams
        optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        fraction = hp.get("warmup_fraction")
        if hp.schedule == "constant" and not (fraction or hp.warmup_epochs):
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if fraction is not None:
            warmup = int(round(fraction * total))
        else:  # an epoch-sized run, as checkpoints before the step budget were
            warmup = int(hp.warmup_epochs * total / max(1, self.trainer.max_epochs or 1))
        cosine = hp.schedule == "cosine"

        # one closed-form factor of the step in torch's LambdaLR, not SequentialLR(LinearLR,
        # CosineAnnealingLR): StagedUnfreeze adds the backbone's group mid-run by appending this
        # function, where the chained schedulers' state would each need patching
        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            done = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class StagedUnfreeze(BaseFinetuning):
    """Freeze the backbone before training; unfreeze it at `unfreeze_at_epoch` (None: never).

    The unfrozen backbone joins the optimizer as a new group at `lr * backbone_lr_factor`.
    """

    def __init__(self, unfreeze_at_epoch: int | None = None, backbone_lr_factor: float = 0.1):
        super().__init__()
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.backbone_lr_factor = backbone_lr_factor

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.freeze(pl_module.backbone, train_bn=False)

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.unfreeze_at_epoch is not None and epoch == self.unfreeze_at_epoch:
            lr = optimizer.param_groups[0]["lr"] * self.backbone_lr_factor
            self.unfreeze_and_add_param_group(pl_module.backbone, optimizer, lr=lr, train_bn=True)
            optimizer.param_groups[-1].setdefault("initial_lr", lr)
            for config in pl_module.trainer.lr_scheduler_configs:  # the new group follows it
                sched = config.scheduler
                if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                    sched.lr_lambdas.append(sched.lr_lambdas[0])
                    sched.base_lrs.append(lr)
            log.info("epoch %d: backbone unfrozen at lr %.2e", epoch, lr)


def load_checkpoint(path: str | Path, backbone: str | None = None) -> AlignmentClassifier:
    """A trained classifier from a checkpoint, read with `weights_only=True`.

    A checkpoint of another backbone (when `backbone` is given) or whose tensors do not fit
    the backbone and head it names is a BarsalignError that says so.
    """
    path = Path(path)
    if not path.is_file():
        raise BarsalignError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch's text advises weights_only=False: never repeat it
        raise BarsalignError(
            f"{path} is not a readable checkpoint: not a PyTorch file of tensors and plain values "
            "(barsalign train writes those; other objects are refused, as loading them can run "
            "code)"
        ) from None
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("state_dict"), dict)
        or not isinstance(ckpt.get("hyper_parameters"), dict)
    ):
        raise BarsalignError(f"{path} is not a barsalign checkpoint (no state_dict/hparams)")
    hp = dict(ckpt["hyper_parameters"])
    if backbone is not None and hp.get("backbone") != backbone:
        raise BarsalignError(
            f"{path} is a checkpoint of backbone {hp.get('backbone')!r}, not {backbone!r}"
        )
    hp.pop("weights_source", None)
    size = hp.get("image_size")
    if (
        not isinstance(hp.get("backbone"), str)
        or isinstance(size, bool)
        or not isinstance(size, int)
    ):
        raise BarsalignError(
            f"{path}: its hyperparameters need a backbone name and a whole-number image_size, "
            f"not {hp.get('backbone')!r} and {size!r}"
        )
    known = set(inspect.signature(AlignmentClassifier.__init__).parameters) - {"self"}
    unknown = sorted(str(k) for k in set(hp) - known)
    if unknown:
        raise BarsalignError(
            f"{path}: hyperparameter(s) {unknown} unknown to this version of barsalign "
            "(saved by another version, or edited?); the model cannot be rebuilt from it"
        )
    try:
        model = AlignmentClassifier(**{**hp, "weights": "random", "pretrained_path": None})
    except BarsalignError as err:
        raise BarsalignError(f"{path}: its hyperparameters are refused: {err}") from None
    except Exception as err:  # noqa: BLE001 - timm/torch errors on odd values, one line each
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise BarsalignError(
            f"{path}: its hyperparameters do not build a model ({type(err).__name__}: {first})"
        ) from None
    own = model.state_dict()
    sd = ckpt["state_dict"]
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise BarsalignError(f"{path}: its state_dict holds values that are not tensors")
    wrong = [k for k in own if k in sd and sd[k].shape != own[k].shape]
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if wrong or missing or extra:
        raise BarsalignError(
            f"{path} does not fit {hp.get('backbone')} with a one-logit head: "
            f"{len(wrong)} tensors of another shape {wrong[:2]}, {len(missing)} missing "
            f"{missing[:2]}, {len(extra)} unexpected {extra[:2]}"
        )
    model.load_state_dict(sd)
    model.weights_source = str(ckpt["hyper_parameters"].get("weights_source", "checkpoint"))
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "AlignmentClassifier",
    "DEFAULT_BACKBONE",
    "PRESETS",
    "Preset",
    "StagedUnfreeze",
    "count_parameters",
    "create_backbone",
    "data_config",
    "load_checkpoint",
]
