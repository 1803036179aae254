"""The preprocessed-frame cache on disk: bounded, least recently used first out.

Training reads every frame once and keeps its preprocessed array here, keyed by the file's
content hash and the preprocessing settings, so a second run (or epoch) skips decoding and
resizing. Kept apart from `barsalign.data` so that `barsalign cache` needs no torch.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from barsalign.config import DATA_DIR
from barsalign.errors import BarsalignError

DEFAULT_CACHE = DATA_DIR / "cache" / "preprocessed"
DEFAULT_CACHE_GB = 8.0  # a few data sets at a few sizes; BARSALIGN_CACHE_GB overrides
GIB = 1024**3


@dataclass(frozen=True)
class CacheUsage:
    """What a cache holds, and what the last prune removed."""

    files: int
    bytes: int
    removed_files: int = 0
    removed_bytes: int = 0


def cache_limit_from_env() -> int | None:
    """`BARSALIGN_CACHE_GB` in bytes (default 8 GiB); 0 or "none" lifts the limit."""
    raw = os.environ.get("BARSALIGN_CACHE_GB", "").strip()
    if not raw:
        return int(DEFAULT_CACHE_GB * GIB)
    if raw.lower() in ("0", "none"):
        return None
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not gb > 0:
        raise BarsalignError(f"BARSALIGN_CACHE_GB={raw!r}: give a size in GiB, or 0 for no limit")
    return int(gb * GIB)


class FrameCache:
    """Preprocessed frames on disk as .npy, keyed by file content hash + config key.

    Bounded: past `max_bytes` the least recently used entries go (a read refreshes an entry's
    modification time), down to 80 % of the limit, so sweeps over sizes and regions of interest
    do not fill the disk. `max_bytes` comes from `BARSALIGN_CACHE_GB` by default; None lifts it.
    """

    PRUNE_TO = 0.8  # a prune leaves this share of the limit, so it does not run on every write
    STALE_TMP_S = 3600.0  # half-written entries older than this are left-overs of killed runs

    def __init__(
        self, root: str | Path | None, max_bytes: int | None | Literal["env"] = "env"
    ) -> None:
        self.root = Path(root) if root is not None else None
        self.max_bytes = cache_limit_from_env() if max_bytes == "env" else max_bytes
        self._written = 0  # bytes written since the last prune

    def path(self, digest: str, cfg_key: str) -> Path | None:
        if self.root is None:
            return None
        k = hashlib.blake2b(f"{digest}|{cfg_key}".encode(), digest_size=16).hexdigest()
        return self.root / k[:2] / f"{k}.npy"

    def get(self, digest: str, cfg_key: str) -> np.ndarray | None:
        p = self.path(digest, cfg_key)
        if p is None or not p.is_file():
            return None
        try:
            arr = np.load(p)
        except (OSError, ValueError):
            return None
        try:
            os.utime(p)  # recently used: the last to be pruned
        except OSError:
            pass  # a read-only cache still serves
        return arr

    def put(self, digest: str, cfg_key: str, arr: np.ndarray) -> None:
        p = self.path(digest, cfg_key)
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr)
        os.replace(tmp, p)
        self._written += arr.nbytes
        if self.max_bytes is not None and self._written > (1 - self.PRUNE_TO) * self.max_bytes:
            self.prune()

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(modification time, size, path) of every entry; stale temporary files removed."""
        out: list[tuple[float, int, Path]] = []
        if self.root is None or not self.root.is_dir():
            return out
        now = time.time()
        for sub in os.scandir(self.root):
            if not sub.is_dir():
                continue
            for e in os.scandir(sub.path):
                try:
                    st = e.stat()
                    if e.name.endswith(".npy"):
                        out.append((st.st_mtime, st.st_size, Path(e.path)))
                    elif e.name.endswith(".tmp") and now - st.st_mtime > self.STALE_TMP_S:
                        os.unlink(e.path)
                except FileNotFoundError:
                    continue  # another process pruned it
        return out

    def usage(self) -> CacheUsage:
        entries = self._entries()
        return CacheUsage(len(entries), sum(size for _, size, _ in entries))

    def prune(self, max_bytes: int | None = None) -> CacheUsage:
        """Remove least recently used entries until the cache is under the limit (80 % of it)."""
        self._written = 0
        limit = self.max_bytes if max_bytes is None else max_bytes
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        removed = removed_bytes = 0
        if limit is not None and total > limit:
            target = int(limit * self.PRUNE_TO)
            for _, size, path in sorted(entries, key=lambda e: e[0]):
                if total - removed_bytes <= target:
                    break
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                removed += 1
                removed_bytes += size
        return CacheUsage(len(entries) - removed, total - removed_bytes, removed, removed_bytes)

    def clear(self) -> CacheUsage:
        """Remove every entry."""
        return self.prune(max_bytes=0)


def _cmd_cache(args: argparse.Namespace) -> int:
    limit = cache_limit_from_env() if args.limit_gb is None else _gib(args.limit_gb)
    cache = FrameCache(args.dir, max_bytes=limit)
    if args.clear:
        done = cache.clear()
    elif args.prune:
        done = cache.prune()
    else:
        done = cache.usage()
    cap = "no limit" if limit is None else f"limit {limit / GIB:.1f} GiB"
    if done.removed_files:
        freed = done.removed_bytes / GIB
        print(f"{args.dir}: removed {done.removed_files} entries ({freed:.2f} GiB)")
    print(f"{args.dir}: {done.files} entries, {done.bytes / GIB:.2f} GiB ({cap})")
    return 0


def _gib(gb: float) -> int | None:
    if gb < 0:
        raise BarsalignError(f"--limit-gb {gb}: give a size in GiB, or 0 for no limit")
    return None if gb == 0 else int(gb * GIB)


def add_commands(subparsers: Any) -> None:
    """`barsalign cache [--prune | --clear] [--limit-gb N] [--dir DIR]`."""
    p = subparsers.add_parser(
        "cache", help="show, prune or clear the preprocessed-frame cache (bounded, 8 GiB)"
    )
    p.add_argument("--dir", type=Path, default=DEFAULT_CACHE, help="the cache folder")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--prune", action="store_true", help="remove the least recently used entries")
    g.add_argument("--clear", action="store_true", help="remove every entry")
    p.add_argument(
        "--limit-gb", type=float, help="the limit for --prune (default: BARSALIGN_CACHE_GB, or 8)"
    )
    p.set_defaults(func=_cmd_cache)
