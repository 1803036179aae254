"""The probe's input: frozen pretrained features of each frame's stopper region, cached.

Every frame's region (the region training would crop: given, or proposed from the labels by
`barsalign.roi`) goes once through the frozen pretrained backbone; the pooled blocks it gives
(`FEATURE_BLOCKS`) are kept in the frame cache, so a second look at the same frames costs no
network pass. `SuspectConfig` says how the features and the out-of-fold probe are made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from barsalign.data.cache import DEFAULT_CACHE, FrameCache
from barsalign.errors import BarsalignError
from barsalign.preprocess import PreprocessConfig, decode_image, parse_roi, preprocess, to_tensor

if TYPE_CHECKING:
    from barsalign.data import Item

FEATURE_BLOCKS = {
    "head": "mean and max over the backbone's last feature map",
    "head_grid": "the last feature map averaged over a 2x2 grid (where in the region)",
    "stage4": "mean and max over timm's feature stage 4 (stride 32, before any head conv)",
    "stage3": "mean and max over timm's feature stage 3 (stride 16)",
    "stage2": "mean and max over timm's feature stage 2 (stride 8)",
}
"""The pooled blocks `region_features` can give; one network pass makes all that are asked."""


@dataclass(frozen=True)
class SuspectConfig:
    """How the out-of-fold scores are made.

    Args:
        folds: K of the grouped K-fold; each frame is scored by a probe fitted without its fold.
        roi: the region the features are taken from: "auto" proposes it from the labels (as
            training does), None is the whole frame, or (x0, y0, x1, y1) frame fractions.
        image_size: side of the region's square fed to the backbone.
        C: inverse L2 strength of the logistic regression (features standardised); strong
            regularisation gave the best out-of-fold AUROC on the flipped labels themselves
            (docs/experiments.md, 2026-11-30).
        features: which pooled feature blocks the probe sees, concatenated (`FEATURE_BLOCKS`).
    """

    folds: int = 5
    backbone: str = "tf_efficientnet_lite0"
    image_size: int = 320
    roi: Any = "auto"
    C: float = 0.001
    features: tuple[str, ...] = ("head",)
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.roi != "auto":
            object.__setattr__(self, "roi", parse_roi(self.roi))
        object.__setattr__(self, "features", tuple(self.features))
        unknown = [f for f in self.features if f not in FEATURE_BLOCKS]
        checks = [
            (bool(self.features), "features: name at least one feature block"),
            (
                not unknown,
                f"features: no block {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(FEATURE_BLOCKS)}",
            ),
            (self.folds >= 2, f"folds must be >= 2, not {self.folds}"),
            (self.image_size >= 32, f"image_size must be >= 32, not {self.image_size}"),
            (self.C > 0, f"C must be > 0, not {self.C}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, not {self.batch_size}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BarsalignError(msg)


def region_features(
    items: Sequence[Item], cfg: SuspectConfig, cache_dir: str | Path | None = DEFAULT_CACHE
) -> tuple[np.ndarray, Any, str]:
    """Frozen-backbone features of every frame's region [N, D]: the `cfg.features` blocks
    (`FEATURE_BLOCKS`) concatenated, the region used and why. Each frame's blocks are kept in
    the frame cache (`barsalign.data.cache`) by content hash, backbone, block and preprocessing, so
    a second look at the same frames costs no network pass, and a block asked before is reused
    by a later choice of blocks."""
    import torch

    from barsalign.modeling.model import create_backbone, data_config

    roi, why = cfg.roi, "given" if cfg.roi is not None else "whole frame"
    if roi == "auto":
        from barsalign.roi import propose_roi

        proposal = propose_roi([(it.path, it.label) for it in items], seed=cfg.seed)
        roi, why = proposal.roi, f"proposed: {proposal.reason}"
    pcfg = PreprocessConfig(target_size=cfg.image_size, mode="none", roi=roi, mask_left=False)
    keys = {
        b: f"features:{cfg.backbone}:{pcfg.key()}"  # the first block's key, as cached before
        if b == "head"
        else f"features:{cfg.backbone}:{b}:{pcfg.key()}"
        for b in cfg.features
    }
    cache = FrameCache(cache_dir)
    digests = [hashlib.blake2b(_read(it.path), digest_size=20).hexdigest() for it in items]
    blocks = [{b: cache.get(d, k) for b, k in keys.items()} for d in digests]
    todo = [i for i, got in enumerate(blocks) if any(v is None for v in got.values())]
    if todo:
        model, _ = create_backbone(cfg.backbone, weights="imagenet")  # cached by backbone name
        model.eval()
        dc = data_config(model, cfg.image_size)
        with torch.inference_mode():
            for start in range(0, len(todo), cfg.batch_size):
                batch = todo[start : start + cfg.batch_size]
                frames = [decode_image(_read(items[i].path), str(items[i].path)) for i in batch]
                x = torch.stack([to_tensor(preprocess(f, pcfg), dc) for f in frames])
                pooled = _pooled_blocks(model, x, cfg.features)
                for j, i in enumerate(batch):
                    for b, k in keys.items():
                        if blocks[i][b] is None:
                            blocks[i][b] = pooled[b][j]
                            cache.put(digests[i], k, pooled[b][j])
    feats = [np.concatenate([got[b] for b in cfg.features]) for got in blocks]
    return np.stack(feats), roi, why


def _pooled_blocks(model: Any, x: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The asked `FEATURE_BLOCKS` of a batch, from one pass through the backbone."""
    import torch

    def mean_max(f: torch.Tensor) -> np.ndarray:
        return torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1).numpy()

    stages = sorted(int(n[-1]) for n in names if n.startswith("stage"))
    if stages:
        final, inter = model.forward_intermediates(x, indices=stages)
        by_stage = dict(zip(stages, inter, strict=True))
    else:
        final, by_stage = model.forward_features(x), {}
    out = {f"stage{k}": mean_max(f) for k, f in by_stage.items()}
    out["head"] = mean_max(final)
    out["head_grid"] = torch.nn.functional.adaptive_avg_pool2d(final, 2).flatten(1).numpy()
    return {n: out[n] for n in names}


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise BarsalignError(f"{path}: cannot read ({err.strerror or err})") from None
