"""Labelled frames → Lightning batches `(x float32[B,3,S,S], y float32[B])`, aligned = 1.0.

Sources: whatever `barsalign.data.labels.load_labels` reads (the `aligned/ not_aligned/` folder
layout, the labeler's class files with server → local prefix mapping, or a CSV `path,label`).
Splits: a separate validation set (`val_dir`), or a stratified split grouped by clip id
(metadata.jsonl's `clip_id`, else a `<clip>_f<digits>` file name, else the file itself), so
one clip never straddles the split.
Every file is read once up front: unreadable ones are reported before training, and the
preprocessed frames go to a disk cache keyed by file content hash + preprocessing config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, WeightedRandomSampler

from barsalign.augment import AugmentConfig, augment
from barsalign.data.cache import DEFAULT_CACHE, GIB, FrameCache
from barsalign.data.labels import Item, load_labels
from barsalign.errors import BarsalignError
from barsalign.preprocess import (
    PreprocessConfig,
    crop_resize,
    decode_image,
    finish,
    preprocess,
    to_tensor,
)


def grouped_split(
    items: list[Item], val_fraction: float, seed: int
) -> tuple[list[Item], list[Item]]:
    """Stratified train/val split that keeps every clip group on one side."""
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0.0 < val_fraction < 1.0:
        raise BarsalignError(f"val_fraction must lie in (0, 1), not {val_fraction}")
    groups = [it.group for it in items]
    n_splits = max(2, round(1.0 / val_fraction))
    if len(set(groups)) < n_splits:
        raise BarsalignError(
            f"only {len(set(groups))} clip groups: too few for a {val_fraction:.0%} grouped split; "
            "pass a separate validation set"
        )
    y = [it.label for it in items]
    skf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    tr, va = next(skf.split(np.zeros(len(items)), y, groups))
    return [items[i] for i in tr], [items[i] for i in va]


def split_labels(
    data_dir: str | Path,
    val_dir: str | Path | None,
    val_fraction: float,
    seed: int,
    path_map: Sequence[tuple[str, str]] = (),
) -> tuple[list[Item], list[Item]]:
    """Training and validation frames: `val_dir` when given, else `data_dir` split by clip."""
    items = load_labels(data_dir, path_map)
    if val_dir is not None:
        return items, load_labels(val_dir, path_map)
    return grouped_split(items, val_fraction, seed)


def class_counts(items: Sequence[Item]) -> dict[str, int]:
    """{"aligned": n, "not_aligned": n} of labelled frames."""
    aligned = sum(it.label for it in items)
    return {"aligned": aligned, "not_aligned": len(items) - aligned}


def check_both_classes(counts: dict[str, int], what: str, source: object) -> None:
    """A set without both classes cannot train or validate a classifier: one line naming it."""
    if not counts["aligned"] or not counts["not_aligned"]:
        raise BarsalignError(
            f"{source}: the {what} set needs frames of both classes, it has "
            f"{counts['aligned']} aligned and {counts['not_aligned']} not aligned"
        )


class FrameDataset(Dataset):
    """Labelled frames as normalised tensors; augmented (seeded through torch's RNG) if asked."""

    def __init__(
        self,
        items: list[Item],
        digests: list[str],
        pcfg: PreprocessConfig,
        data_config: dict[str, Any],
        cache: FrameCache,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.items, self.digests, self.pcfg = items, digests, pcfg
        self.data_config, self.cache, self.augment_cfg, self.seed = (
            data_config,
            cache,
            augment_cfg,
            seed,
        )

    def __len__(self) -> int:
        return len(self.items)

    def stage_key(self) -> str:
        """Augmented training caches the resized square (steps 1-2), else the finished frame."""
        return self.pcfg.square_key() if self.augment_cfg is not None else self.pcfg.key()

    def processed(self, i: int) -> np.ndarray:
        key = self.stage_key()
        arr = self.cache.get(self.digests[i], key)
        if arr is None:
            item = self.items[i]
            img = decode_image(item.path.read_bytes(), str(item.path))
            if self.augment_cfg is not None:
                arr = crop_resize(img, self.pcfg)
            else:
                arr = preprocess(img, self.pcfg)
            self.cache.put(self.digests[i], key, arr)
        if self.augment_cfg is not None:
            # torch's RNG: seeded by seed_everything, re-drawn per epoch and per loader worker
            draw = int(torch.randint(0, 2**31 - 1, (1,)).item())
            rng = np.random.default_rng([self.seed, i, draw])
            arr = finish(augment(arr, self.augment_cfg, rng), self.pcfg)
        return arr

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_tensor(self.processed(i), self.data_config)
        return x, torch.tensor(float(self.items[i].label))


class AlignmentDataModule(pl.LightningDataModule):
    """Labelled frames for fine-tuning; see the module docstring for sources and splits.

    Args:
        data_dir: training labels: folder layout, class-file folder, or CSV `path,label`.
        val_dir: a separate labelled validation set; None splits `data_dir` by clip groups.
        data_config: the backbone's timm data config (mean, std, input_size).
        preprocess: the preprocessing config; None takes the defaults at the data config's size.
        balance: "pos_weight" (plain loader; use `pos_weight` in the loss) or "sampler"
            (class-weighted sampling of the training set).
        augment: training augmentation; None for none.
        path_map: (server prefix, local prefix) pairs for class files and CSVs.
        cache_dir: preprocessed-frame cache; None disables it. Its size limit comes from
            `BARSALIGN_CACHE_GB` (default 8 GiB; see `FrameCache`).
        on_unreadable: "raise" (default: one error listing them) or "skip" (train without them).
        extra_dir: labelled frames drawn beside the training set (e.g. `barsalign.synth.gap_pairs`),
            already cropped to their region: read whole, never masked; not validated on.
        extra_share: the share of training draws that come from `extra_dir`.
    """

    def __init__(
        self,
        data_dir: str | Path,
        data_config: dict[str, Any],
        val_dir: str | Path | None = None,
        preprocess: PreprocessConfig | None = None,
        batch_size: int = 16,
        val_fraction: float = 0.2,
        num_workers: int = 0,
        seed: int = 0,
        balance: str = "pos_weight",
        augment: AugmentConfig | None = AugmentConfig(),  # noqa: B008 (frozen)
        path_map: Sequence[tuple[str, str]] = (),
        cache_dir: str | Path | None = DEFAULT_CACHE,
        on_unreadable: str = "raise",
        extra_dir: str | Path | None = None,
        extra_share: float = 0.5,
    ) -> None:
        super().__init__()
        if balance not in ("pos_weight", "sampler"):
            raise BarsalignError(f"balance must be 'pos_weight' or 'sampler', not {balance!r}")
        if on_unreadable not in ("raise", "skip"):
            raise BarsalignError(f"on_unreadable must be 'raise' or 'skip', not {on_unreadable!r}")
        size = int(data_config.get("input_size", (3, 384, 384))[-1])
        self.preprocess_cfg = preprocess or PreprocessConfig(target_size=size)
        self.data_dir, self.val_dir, self.data_config = data_dir, val_dir, dict(data_config)
        self.batch_size, self.val_fraction, self.num_workers = batch_size, val_fraction, num_workers
        self.seed, self.balance, self.augment_cfg = seed, balance, augment
        self.path_map, self.on_unreadable = tuple(path_map), on_unreadable
        if not 0.0 <= extra_share < 1.0:
            raise BarsalignError(f"extra_share must lie in [0, 1), not {extra_share}")
        self.extra_dir, self.extra_share = extra_dir, extra_share
        self.extra_cfg = dataclasses.replace(self.preprocess_cfg, roi=None, mask_left=False)
        self.extra_set: FrameDataset | None = None
        self.cache = FrameCache(cache_dir)
        self.unreadable: list[tuple[str, str]] = []
        self.train_set: FrameDataset | None = None
        self.val_set: FrameDataset | None = None

    def _check(
        self, items: list[Item], pcfg: PreprocessConfig | None = None
    ) -> tuple[list[Item], list[str]]:
        """Read every file once: content digests, the finished frame cached, bad files listed."""
        good, digests = [], []
        pcfg = pcfg or self.preprocess_cfg
        key = pcfg.key()
        for it in items:
            try:
                data = it.path.read_bytes()
            except OSError as err:
                self.unreadable.append((str(it.path), f"{it.path}: cannot read ({err.strerror})"))
                continue
            digest = hashlib.blake2b(data, digest_size=20).hexdigest()
            if self.cache.root is None or self.cache.get(digest, key) is None:
                try:
                    img = decode_image(data, str(it.path))
                except BarsalignError as err:
                    self.unreadable.append((str(it.path), str(err)))
                    continue
                self.cache.put(digest, key, preprocess(img, pcfg))
            good.append(it)
            digests.append(digest)
        return good, digests

    def _warn_if_cache_too_small(self, n_train: int, n_val: int) -> None:
        """Warn when this run's frames (a finished frame each, a square per training frame)
        outgrow the cache's limit: they would then be preprocessed again every epoch."""
        limit = self.cache.max_bytes
        if self.cache.root is None or limit is None:
            return
        side = self.preprocess_cfg.target_size
        needed = (2 * n_train + n_val) * side * side * 3  # uint8 colour, the largest entry
        if needed > self.cache.PRUNE_TO * limit:
            warnings.warn(
                f"{self.cache.root}: this run's preprocessed frames need about "
                f"{needed / GIB:.1f} GiB, more than the cache keeps ({limit / GIB:.1f} GiB); "
                "set BARSALIGN_CACHE_GB higher, or frames are preprocessed again every epoch",
                stacklevel=2,
            )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.unreadable = []
        train, val = split_labels(
            self.data_dir, self.val_dir, self.val_fraction, self.seed, self.path_map
        )
        self.cache.prune()  # an earlier run may have left it over the limit
        train, tr_dig = self._check(train)
        val, va_dig = self._check(val)
        extra, ex_dig = (
            self._check(load_labels(self.extra_dir), self.extra_cfg)
            if (self.extra_dir is not None)
            else ([], [])
        )
        self._warn_if_cache_too_small(len(train), len(val))
        if self.unreadable and self.on_unreadable == "raise":
            listed = "; ".join(why for _, why in self.unreadable[:5])
            more = f" (+{len(self.unreadable) - 5} more)" if len(self.unreadable) > 5 else ""
            raise BarsalignError(f"{len(self.unreadable)} unreadable frame(s): {listed}{more}")
        if not train or not val:
            raise BarsalignError(
                f"{self.data_dir}: empty training or validation set after the split"
            )
        for what, part in (("training", train), ("validation", val)):
            check_both_classes(
                class_counts(part),
                what,
                self.val_dir if what == "validation" and self.val_dir else self.data_dir,
            )
        pcfg, dc = self.preprocess_cfg, self.data_config
        self.train_set = FrameDataset(
            train, tr_dig, pcfg, dc, self.cache, self.augment_cfg, self.seed
        )
        self.val_set = FrameDataset(val, va_dig, pcfg, dc, self.cache, None, self.seed)
        if extra:
            self.extra_set = FrameDataset(
                extra, ex_dig, self.extra_cfg, dc, self.cache, self.augment_cfg, self.seed + 1
            )

    @property
    def n_train(self) -> int:
        return len(self.train_set) if self.train_set is not None else 0

    @property
    def class_counts(self) -> dict[str, dict[str, int]]:
        """Aligned / not aligned counts of the train and val sets."""
        sets = (("train", self.train_set), ("val", self.val_set))
        return {name: class_counts(ds.items if ds is not None else []) for name, ds in sets}

    @property
    def pos_weight(self) -> float:
        """Negatives per positive in the training set (BCE pos_weight)."""
        self.setup("fit")
        c = self.class_counts["train"]
        return c["not_aligned"] / max(1, c["aligned"])

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        ds = self.train_set
        g = torch.Generator().manual_seed(self.seed)
        kw: dict[str, Any] = {"batch_size": self.batch_size, "num_workers": self.num_workers}
        if self.num_workers > 0:
            kw["persistent_workers"] = False
        if self.extra_set is not None:  # one epoch: as many draws as the training set has
            w = self._draw_weights(ds.items, self.balance == "sampler") * (1 - self.extra_share)
            w_extra = self._draw_weights(self.extra_set.items, True) * self.extra_share
            both = ConcatDataset([ds, self.extra_set])
            weights = np.concatenate([w, w_extra]).tolist()
            sampler = WeightedRandomSampler(weights, len(ds), replacement=True, generator=g)
            return DataLoader(both, sampler=sampler, **kw)
        if self.balance == "sampler":
            w = self._draw_weights(ds.items, True)
            sampler = WeightedRandomSampler(w.tolist(), len(ds), replacement=True, generator=g)
            return DataLoader(ds, sampler=sampler, **kw)
        return DataLoader(ds, shuffle=True, generator=g, **kw)

    @staticmethod
    def _draw_weights(items: list[Item], balanced: bool) -> np.ndarray:
        """Per-frame draw probabilities summing to 1: equal per class when `balanced`."""
        labels = np.array([it.label for it in items])
        if not balanced:
            return np.full(len(items), 1.0 / len(items))
        freq = np.bincount(labels, minlength=2).astype(float)
        w = 1.0 / np.maximum(freq[labels], 1.0)
        return w / w.sum()

    def val_dataloader(self) -> DataLoader:
        self.setup("fit")
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)
