"""AlignmentDataModule on real rendered frames: splits, imbalance, cache, bad files (the label
formats it reads: tests/test_labels.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from barsalign.data import (
    AlignmentDataModule,
    CacheUsage,
    FrameCache,
    cache_limit_from_env,
    load_labels,
)
from barsalign.errors import BarsalignError
from barsalign.preprocess import PreprocessConfig, preprocess, read_image, to_tensor

DC = {"mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3), "input_size": (3, 48, 48)}


def _dm(src, tmp_path: Path, **kw) -> AlignmentDataModule:
    kw.setdefault("cache_dir", tmp_path / "cache")
    kw.setdefault("batch_size", 8)
    return AlignmentDataModule(src, DC, **kw)


def test_batches_labels_and_grouped_stratified_split(synth_small: Path, tmp_path: Path) -> None:
    dm = _dm(synth_small / "example_set", tmp_path, augment=None, val_fraction=0.25)
    dm.setup("fit")
    assert dm.preprocess_cfg.target_size == 48 and dm.unreadable == []
    x, y = next(iter(dm.train_dataloader()))
    assert (
        x.dtype == torch.float32 and tuple(x.shape[1:]) == (3, 48, 48) and y.dtype == torch.float32
    )
    item = dm.val_set.items[0]
    xv, yv = dm.val_set[0]
    assert yv.item() == (1.0 if item.path.parent.name == "aligned" else 0.0)
    want = to_tensor(preprocess(read_image(item.path), dm.preprocess_cfg), DC)
    assert torch.equal(xv, want)
    train_groups = {it.group for it in dm.train_set.items}
    val_groups = {it.group for it in dm.val_set.items}
    assert train_groups.isdisjoint(val_groups) and len(val_groups) > 1
    assert all(g.startswith("ex_seq") for g in train_groups), "clip ids come from metadata.jsonl"
    counts = dm.class_counts
    assert counts["val"]["aligned"] > 0 and counts["val"]["not_aligned"] > 0
    n = dm.n_train + len(dm.val_set)
    assert n == len(list((synth_small / "example_set").rglob("*.jpg")))
    c = counts["train"]
    assert dm.pos_weight == pytest.approx(c["not_aligned"] / c["aligned"])


def test_file_name_clip_groups_and_separate_validation_set(synth_small: Path, tmp_path: Path):
    root = tmp_path / "named"
    for label in ("aligned", "not_aligned"):
        files = sorted((synth_small / "example_set" / label).glob("*.jpg"))
        (root / label).mkdir(parents=True)
        for k, f in enumerate(files):
            shutil.copy(f, root / label / f"{label}cam_{k // 3}_f{k % 3:04d}.jpg")
    items = load_labels(root)
    assert len({it.group for it in items}) < len(items)
    dm = _dm(root, tmp_path, val_fraction=0.3)
    dm.setup("fit")
    assert {it.group for it in dm.train_set.items}.isdisjoint({it.group for it in dm.val_set.items})
    sep = _dm(root, tmp_path, val_dir=synth_small / "example_set")
    sep.setup("fit")
    assert sep.n_train == len(items) and all("named" not in str(i.path) for i in sep.val_set.items)


def test_unreadable_files_are_reported_up_front(synth_small: Path, tmp_path: Path) -> None:
    root = tmp_path / "set"
    shutil.copytree(synth_small / "example_set", root)
    victim = sorted((root / "aligned").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:500])
    (root / "not_aligned" / "zero.jpg").write_bytes(b"")
    with pytest.raises(BarsalignError, match="2 unreadable") as err:
        _dm(root, tmp_path).setup("fit")
    assert victim.name in str(err.value) and "zero.jpg" in str(err.value)
    dm = _dm(root, tmp_path, on_unreadable="skip")
    dm.setup("fit")
    assert sorted(Path(p).name for p, _ in dm.unreadable) == sorted([victim.name, "zero.jpg"])
    assert all(it.path != victim for it in dm.train_set.items + dm.val_set.items)


def test_cache_is_keyed_by_content_and_config(synth_small: Path, tmp_path: Path) -> None:
    root = tmp_path / "set"
    shutil.copytree(synth_small / "example_set", root)
    cache = tmp_path / "cache"
    dm = _dm(root, tmp_path, augment=None, cache_dir=cache)
    dm.setup("fit")
    n = dm.n_train + len(dm.val_set)
    files = list(cache.rglob("*.npy"))
    assert len(files) == n
    i = 0
    arr = dm.val_set.cache.get(dm.val_set.digests[i], dm.preprocess_cfg.key())
    np.testing.assert_array_equal(
        arr, preprocess(read_image(dm.val_set.items[i].path), dm.preprocess_cfg)
    )
    again = _dm(root, tmp_path, augment=None, cache_dir=cache)
    again.setup("fit")
    assert len(list(cache.rglob("*.npy"))) == n, "second run hits the cache"
    other = _dm(
        root,
        tmp_path,
        augment=None,
        cache_dir=cache,
        preprocess=PreprocessConfig(target_size=48, mode="grayscale"),
    )
    other.setup("fit")
    assert len(list(cache.rglob("*.npy"))) == 2 * n, "another config is another key"
    f = sorted((root / "aligned").glob("*.jpg"))[0]
    f.write_bytes(read_bytes_flipped(sorted((root / "not_aligned").glob("*.jpg"))[0]))
    _dm(root, tmp_path, augment=None, cache_dir=cache).setup("fit")
    assert len(list(cache.rglob("*.npy"))) == 2 * n + 1, "new content, new entry"


def test_cached_training_squares_follow_the_region_of_interest(synth_small: Path, tmp_path: Path):
    """Training caches resized squares; one cut to another roi must never be served."""
    from barsalign.augment import AugmentConfig

    still = AugmentConfig(p_hflip=0, p_vflip=0, p_shift=0, p_rotate=0, p_brightness=0, p_blur=0)
    for roi in (None, (0.5, 0.1, 1.0, 0.7), (0.4, 0.0, 1.0, 0.9)):  # one cache for all
        pcfg = PreprocessConfig(target_size=48, mode="none", mask_left=False, roi=roi)
        dm = _dm(synth_small / "example_set", tmp_path, augment=still, preprocess=pcfg)
        dm.setup("fit")
        item = dm.train_set.items[0]
        np.testing.assert_array_equal(
            dm.train_set.processed(0), preprocess(read_image(item.path), pcfg)
        )


def read_bytes_flipped(path: Path) -> bytes:
    """Another valid JPEG: `path` re-encoded mirrored."""
    import cv2

    return cv2.imencode(".jpg", read_image(path)[:, ::-1])[1].tobytes()


def test_weighted_sampler_balances_classes(synth_small: Path, tmp_path: Path) -> None:
    dm = _dm(synth_small / "example_set", tmp_path, balance="sampler", augment=None)
    dm.setup("fit")
    c = dm.class_counts["train"]
    assert c["aligned"] != c["not_aligned"]
    ys = torch.cat([y for _ in range(20) for _, y in dm.train_dataloader()])
    assert abs(ys.mean().item() - 0.5) < 0.1
    with pytest.raises(BarsalignError, match="balance"):
        _dm(synth_small, tmp_path, balance="oversample")


def test_training_augmentation_varies_and_validation_does_not(synth_small: Path, tmp_path: Path):
    from barsalign.augment import AugmentConfig

    aug = AugmentConfig(p_rotate=1.0, p_brightness=1.0, p_blur=1.0)
    dm = _dm(synth_small / "example_set", tmp_path, augment=aug)
    dm.setup("fit")
    a, b = dm.train_set[0][0], dm.train_set[0][0]
    assert not torch.equal(a, b)
    assert torch.equal(dm.val_set[0][0], dm.val_set[0][0])
    torch.manual_seed(5)
    c = dm.train_set[1][0]
    torch.manual_seed(5)
    assert torch.equal(c, dm.train_set[1][0]), "seeded through torch's RNG"


def _aged_cache(root: Path, n: int, max_bytes: int | None) -> tuple[FrameCache, list[Path]]:
    """A cache of n 1000-byte entries whose modification times run oldest to newest."""
    cache = FrameCache(root, max_bytes=None)
    paths = []
    for i in range(n):
        cache.put(f"d{i}", "k", np.full(1000, i, dtype=np.uint8))
        p = cache.path(f"d{i}", "k")
        os.utime(p, (1_000_000 + i, 1_000_000 + i))
        paths.append(p)
    cache.max_bytes = max_bytes
    return cache, paths


def test_cache_prunes_least_recently_used_down_to_80_percent(tmp_path: Path) -> None:
    entry = FrameCache(tmp_path / "one", None)
    entry.put("x", "k", np.zeros(1000, np.uint8))
    size = entry.path("x", "k").stat().st_size  # 1000 bytes + the .npy header
    cache, paths = _aged_cache(tmp_path / "c", 10, max_bytes=10 * size - 1)
    assert cache.get("d0", "k")[0] == 0  # a read makes the oldest entry the newest
    done = cache.prune()
    # 10 entries over a limit of 10: down to 80 % of it, 7 entries, the read one kept
    assert (done.files, done.removed_files) == (7, 3)
    assert [p.exists() for p in paths] == [True, False, False, False] + [True] * 6
    assert cache.usage() == CacheUsage(7, 7 * size)
    assert cache.prune().removed_files == 0, "under the limit: nothing more goes"
    stale = paths[5].parent / "killed.tmp"
    stale.write_bytes(b"half")
    os.utime(stale, (1_000_000, 1_000_000))
    cache.prune()
    assert not stale.exists(), "a killed run's half-written entry goes too"
    assert cache.clear().files == 0 and not any(p.exists() for p in paths)


def test_cache_stays_under_its_limit_while_written(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path / "c", max_bytes=20_000)
    for i in range(100):
        cache.put(f"d{i}", "k", np.full(1000, i % 251, dtype=np.uint8))
    assert cache.usage().bytes <= 20_000
    assert cache.get("d99", "k")[0] == 99 % 251, "the newest entries stay"
    assert cache.get("d0", "k") is None, "the oldest went"


def test_cache_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BARSALIGN_CACHE_GB", raising=False)
    assert cache_limit_from_env() == 8 * 1024**3
    monkeypatch.setenv("BARSALIGN_CACHE_GB", "0.5")
    assert FrameCache("x").max_bytes == 512 * 1024**2
    monkeypatch.setenv("BARSALIGN_CACHE_GB", "none")
    assert FrameCache("x").max_bytes is None
    monkeypatch.setenv("BARSALIGN_CACHE_GB", "lots")
    with pytest.raises(BarsalignError, match="BARSALIGN_CACHE_GB='lots'"):
        FrameCache("x")


def test_a_run_larger_than_the_cache_is_warned_and_stays_bounded(
    synth_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 40_000  # a handful of 48 px frames
    monkeypatch.setenv("BARSALIGN_CACHE_GB", str(limit / 1024**3))
    dm = _dm(synth_small / "example_set", tmp_path)
    with pytest.warns(UserWarning, match="BARSALIGN_CACHE_GB higher"):
        dm.setup("fit")
    for _ in dm.train_dataloader():
        pass
    assert dm.cache.usage().bytes <= limit
    x, _ = dm.val_set[0]  # pruned entries are preprocessed again, the same
    want = preprocess(read_image(dm.val_set.items[0].path), dm.preprocess_cfg)
    assert torch.equal(x, to_tensor(want, DC))


def test_cache_command_shows_prunes_and_clears(tmp_path: Path, capsys) -> None:
    from barsalign.cli import main

    cache, _ = _aged_cache(tmp_path / "c", 10, max_bytes=None)
    d = str(tmp_path / "c")
    assert main(["cache", "--dir", d]) == 0
    assert "10 entries" in capsys.readouterr().out
    assert main(["cache", "--dir", d, "--prune", "--limit-gb", str(5000 / 1024**3)]) == 0
    out = capsys.readouterr().out
    assert "removed" in out and cache.usage().bytes <= 5000
    assert main(["cache", "--dir", d, "--clear"]) == 0
    assert "0 entries" in capsys.readouterr().out and cache.usage().files == 0
    assert main(["cache", "--dir", d, "--prune", "--limit-gb", "-1"]) == 2
    assert "--limit-gb -1.0" in capsys.readouterr().err
