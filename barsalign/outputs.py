"""Output files, checked before any work and written atomically, never over an input.

Every command that writes goes through here: `check_output_file` / `check_output_dir` run
before the command reads or scores anything (the folder exists or is made, can be written,
and the output is none of the inputs), and `atomic_write_bytes` / `atomic_path` write a
temporary file in the same folder and `os.replace` it into place, so a reader sees the old
file or the new one, never half of one. A failed write is a `BarsalignError` naming the file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from barsalign.errors import BarsalignError


def os_error(path: str | Path, err: OSError, doing: str = "write") -> BarsalignError:
    """A one-line error for an OSError: which file, what failed and the system's reason."""
    return BarsalignError(f"cannot {doing} {path}: {err.strerror or err}")


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when `a` and `b` name the same file (links and `..` resolved; False if either is
    missing and their resolved paths differ)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def is_within(path: str | Path, folder: str | Path) -> bool:
    """True when `path` is `folder` or lies under it (both resolved)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def _tmp_name(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")


def _check_writable(folder: Path, what: Path) -> None:
    """Make `folder` (and its parents) and prove a file can be created in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = _tmp_name(folder / "probe")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise os_error(what, err) from None


def check_output_file(
    path: str | Path, inputs: Iterable[str | Path] = (), what: str = "output"
) -> Path:
    """The output file, checked before any work: not a folder, none of `inputs`, and its
    folder exists (made if missing) and can be written. Returns it as a Path."""
    p = Path(path)
    if p.is_dir():
        raise BarsalignError(f"{what} {p} is a folder; give a file name")
    for src in inputs:
        if same_file(p, src):
            raise BarsalignError(
                f"{what} {p} is the input {src}: barsalign never writes over an input; "
                "choose another output path"
            )
    _check_writable(p.absolute().parent, p)
    return p


def refuse_inside(path: str | Path, inputs: Iterable[str | Path], what: str) -> None:
    """A BarsalignError when the output folder `path` is one of the input folders or lies
    inside one (its outputs would mix with, or become, inputs)."""
    for src in inputs:
        if is_within(path, src):
            where = "is" if same_file(path, src) else "lies inside"
            raise BarsalignError(
                f"{what} {path} {where} the input folder {src}: barsalign never writes among "
                "its inputs; choose another folder"
            )


def check_output_dir(
    path: str | Path, inputs: Iterable[str | Path] = (), what: str = "output folder"
) -> Path:
    """The output folder, checked before any work: not an input folder nor inside one, not a
    file, made if missing and writable. Returns it as a Path."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise BarsalignError(f"{what} {p} is a file, not a folder")
    refuse_inside(p, inputs, what)
    _check_writable(p.absolute(), p)
    return p


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` to write to; moved onto `path` when the block ends
    without an error, removed when it raises. `suffix` keeps an extension writers need."""
    path = Path(path)
    tmp = _tmp_name(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise os_error(path, err) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write `data` to `path` through a temporary file and a rename (fsynced by default)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    return path


def atomic_write_text(path: str | Path, text: str, fsync: bool = True) -> Path:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync)
