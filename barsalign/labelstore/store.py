"""`LabelStore`: labels that are never lost, recorded in the journal, mirrored in class files.

The journal (`journal`) is the truth; the seed's class files (`classfiles`) are rebuilt from it.
Class files found without a journal (the plant's own, or lines the journal never saw) are
imported into it under the annotator "import" before anything is rebuilt, so opening a store
never empties them. Every write holds a file lock, so two labelers on one folder never lose
each other's labels. A folder that cannot be written opens read-only: its labels can be read,
not changed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from barsalign.errors import BarsalignError
from barsalign.labelstore.classfiles import (
    ALL_CLASSES,
    CLASSES,
    class_file,
    path_problem,
    read_class_file,
    read_text_file,
)
from barsalign.labelstore.journal import (
    IMPORT_ANNOTATOR,
    JOURNAL,
    Journal,
    entry,
    fsync_append,
    live_stacks,
    replay,
)
from barsalign.outputs import atomic_write_text, os_error


class LabelStore:
    """Labels in `folder`; paths are read under `local_prefix` and stored under `server_prefix`."""

    def __init__(
        self,
        folder: str | Path,
        local_prefix: str | None = None,
        server_prefix: str | None = None,
        annotator: str = "anon",
    ) -> None:
        self.folder = Path(folder)
        if (local_prefix is None) != (server_prefix is None):
            raise BarsalignError("give both local_prefix and server_prefix, or neither")
        if self.folder.exists() and not self.folder.is_dir():
            raise BarsalignError(f"labels folder {self.folder} is a file, not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise os_error(self.folder, err, "make the labels folder") from None
        self.read_only = not os.access(self.folder, os.W_OK)
        self.local_prefix, self.server_prefix = local_prefix, server_prefix
        self.annotator = annotator
        self.journal = self.folder / JOURNAL
        self._journal = Journal(self.journal)
        self._lock = FileLock(str(self.folder / ".labels.lock"))
        with self._locked():
            self._read()
            self._import_class_files()
            self._rebuild_class_files()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The store's file lock; none in a read-only folder (nothing is written there)."""
        if self.read_only:
            yield
            return
        try:
            self._lock.acquire()
        except OSError as err:
            raise BarsalignError(f"cannot lock {self.folder}: {err.strerror or err}") from None
        try:
            yield
        finally:
            self._lock.release()

    def _writable(self) -> None:
        if self.read_only:
            raise BarsalignError(
                f"labels folder {self.folder} is read-only: labels can be read, not recorded"
            )

    # -- prefix rewrite -------------------------------------------------------------------
    def to_server(self, path: str | Path) -> str:
        p = str(path)
        if self.local_prefix is None:
            return p
        if not p.startswith(self.local_prefix):
            raise BarsalignError(f"{p}: not under the local prefix {self.local_prefix}")
        return self.server_prefix + p[len(self.local_prefix) :]

    def to_local(self, path: str) -> str:
        if self.server_prefix is None:
            return path
        if not path.startswith(self.server_prefix):
            raise BarsalignError(
                f"{self.folder}: {path} is not under the server prefix {self.server_prefix}"
            )
        return self.local_prefix + path[len(self.server_prefix) :]

    # -- journal ----------------------------------------------------------------------------
    def _read(self) -> None:
        """Catch up with the journal, first cutting a torn last line (never in a read-only
        folder, whose reader skips that line without cutting it)."""
        if not self.read_only:
            self._journal.repair_tail()
        self._journal.refresh()

    # -- class files ------------------------------------------------------------------------
    def _import_class_files(self) -> None:
        """Class-file lines whose path the journal never mentions become journal entries of
        the annotator "import" (kept in memory only when the folder is read-only)."""
        mentioned = {e["path"] for e in self._journal.entries}
        found: dict[str, str] = {}
        for cls in ALL_CLASSES:
            f = class_file(self.folder, cls)
            if not f.is_file():
                continue
            for p in read_class_file(f):
                if p in mentioned:
                    continue
                if found.get(p, cls) != cls:
                    raise BarsalignError(
                        f"{f}: {p} is also in {class_file(self.folder, found[p]).name}; "
                        "keep it in one class file"
                    )
                found[p] = cls
        if not found:
            return
        rows = [(p, "label", c) for p, c in found.items()]
        new = self._journal.entries_of(IMPORT_ANNOTATOR, rows)
        if self.read_only:
            self._journal.entries += new
        else:
            self._journal.append(new)

    def _rebuild_class_files(self) -> None:
        """Class files rewritten from the journal where they differ from it."""
        if self.read_only:
            return
        state, _ = replay(self._journal.entries)
        for cls in ALL_CLASSES:
            lines = [p for p, c in state.items() if c == cls]
            f = class_file(self.folder, cls)
            if lines or f.exists() or cls in CLASSES:
                text = "".join(p + "\n" for p in lines)
                if not f.is_file() or read_text_file(f) != text:
                    atomic_write_text(f, text)

    def _checked(self, path: str | Path, cls: str, classes: Sequence[str]) -> str:
        """The path as the store keeps it, after refusing an unknown class or a bad path."""
        if cls not in classes:
            raise BarsalignError(f"unknown class {cls!r}; use one of {', '.join(classes)}")
        sp = self.to_server(path)
        why = path_problem(sp)
        if why:
            raise BarsalignError(f"cannot label {sp[:120]!r}: {why}")
        return sp

    def _stack(self) -> list[dict]:
        """This annotator's live label entries, oldest first (its undos replayed)."""
        return live_stacks(self._journal.entries).get(self.annotator, [])

    # -- public API -----------------------------------------------------------------------
    def label(self, path: str | Path, cls: str) -> None:
        """Record `cls` for `path`; flushed and fsynced before it returns."""
        sp = self._checked(path, cls, ALL_CLASSES)
        self._writable()
        with self._locked():
            self._read()
            before, _ = replay(self._journal.entries)
            self._journal.append(self._journal.entries_of(self.annotator, [(sp, "label", cls)]))
            if sp in before:
                self._rebuild_class_files()
            else:
                fsync_append(class_file(self.folder, cls), sp + "\n")

    def undo(self) -> str | None:
        """Undo this annotator's last label, also one made before a restart; returns its path."""
        self._writable()
        with self._locked():
            self._read()
            st = self._stack()
            if not st:
                return None
            last = st[-1]
            rows = [(last["path"], "undo", last["cls"])]
            self._journal.append(self._journal.entries_of(self.annotator, rows))
            self._rebuild_class_files()
            return self.to_local(last["path"])

    def label_batch(
        self, rows: Iterable[tuple[str | Path, str, dict[str, Any]]], batch: str
    ) -> list[str]:
        """Record many labels under one lock and one fsync, each entry carrying `batch` and its
        own extra fields (e.g. a confidence). A path that already has a live label, of any
        annotator, is left out: a batch never overwrites a label. Returns the paths recorded."""
        self._writable()
        todo = []
        for path, cls, extra in rows:
            todo.append((self._checked(path, cls, CLASSES), cls, extra))
        with self._locked():
            self._read()
            live, _ = replay(self._journal.entries)
            now, new = time.time(), []
            for sp, cls, extra in todo:
                if sp in live:
                    continue
                live[sp] = cls
                seq = len(self._journal.entries) + len(new)
                new.append(
                    {**extra, **entry(seq, self.annotator, sp, "label", cls, now), "batch": batch}
                )
            if new:
                self._journal.append(new)
                self._rebuild_class_files()
        return [self.to_local(e["path"]) for e in new]

    def undo_batch(self, batch: str | None = None) -> list[str]:
        """Undo, in one step, this annotator's live labels of `batch` (its last batch when
        "last", all of them when None), also labels made before a restart; returns their paths.
        Labels of other annotators stay as they are."""
        self._writable()
        with self._locked():
            self._read()
            st = self._stack()
            if batch == "last":
                batch = st[-1].get("batch") if st else None
                if batch is None:
                    return []
            undone = []
            while st and (batch is None or st[-1].get("batch") == batch):
                undone.append(st.pop())
            if not undone:
                return []
            rows = [(e["path"], "undo", e["cls"]) for e in undone]
            self._journal.append(self._journal.entries_of(self.annotator, rows))
            self._rebuild_class_files()
        return [self.to_local(e["path"]) for e in undone]

    def labeled(self) -> dict[str, str]:
        """Local path -> class for every labelled frame (latest label wins)."""
        with self._locked():
            self._journal.refresh()
            state, _ = replay(self._journal.entries)
        return {self.to_local(p): c for p, c in state.items()}

    def conflicts(self) -> list[dict]:
        """Frames given different classes (by different annotators or a relabel)."""
        with self._locked():
            self._journal.refresh()
            return replay(self._journal.entries)[1]

    def pending(self, paths: Iterable[str | Path]) -> list[str]:
        """The paths not yet labelled, in the order given."""
        done = self.labeled()
        return [str(p) for p in paths if str(p) not in done]

    def entries(self) -> list[dict]:
        """Every journal entry read so far, in order (imports of a read-only folder included)."""
        with self._locked():
            self._journal.refresh()
            return list(self._journal.entries)
