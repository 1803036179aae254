"""The class files beside the journal (`class_aligned.txt`, ..., one image path a line) and the
paths they may hold."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from barsalign.config import IMAGE_SUFFIXES
from barsalign.errors import BarsalignError

CLASSES: tuple[str, ...] = ("aligned", "not_aligned", "skipped")
ALL_CLASSES: tuple[str, ...] = CLASSES + ("unreadable",)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INDEX_RE = re.compile(r"(\d+)(?=\.[A-Za-z]+$)")


def class_file(folder: Path, cls: str) -> Path:
    return Path(folder) / f"class_{cls}.txt"


def frame_index(path: str | Path) -> int | None:
    """The number in a name like `img_00001.jpg`, or None."""
    m = _INDEX_RE.search(Path(path).name)
    return int(m.group(1)) if m else None


def in_range(paths: Iterable[str | Path], start: int | None, end: int | None) -> list[str]:
    """Paths whose frame number lies in [start, end] (None = open end)."""
    out = []
    for p in paths:
        i = frame_index(p)
        if i is None:
            raise BarsalignError(f"{p}: no frame number in the name (expected like img_00001.jpg)")
        if (start is None or i >= start) and (end is None or i <= end):
            out.append(str(p))
    return out


def path_problem(path: str) -> str | None:
    """Why `path` cannot be one line of a class file (None when it can)."""
    if _CONTROL.search(path):
        return "a line break, tab or other control character in the path"
    if path != path.strip() or not path:
        return "empty, or blanks at the start or end of the path"
    if path.startswith("{") or not path.lower().endswith(IMAGE_SUFFIXES):
        return f"not an image path ({', '.join(IMAGE_SUFFIXES)})"
    return None


def read_text_file(path: str | Path) -> str:
    """A UTF-8 text file's content; unreadable or not UTF-8 is a BarsalignError naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise BarsalignError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise BarsalignError(f"{path}:{line}: not UTF-8 text (byte {err.start})") from None


def read_class_file(path: Path) -> list[str]:
    """Paths listed in one class file; a malformed line is an error naming file and line."""
    out = []
    for n, line in enumerate(read_text_file(path).splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if path_problem(s):
            raise BarsalignError(f"{path}:{n}: not an image path: {s[:80]!r}")
        out.append(s)
    return out
