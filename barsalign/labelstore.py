"""Label storage that never loses a label: an fsynced, file-locked JSON-lines journal is the truth.

Beside the journal sit the seed's class files (`class_aligned.txt`, `class_not_aligned.txt`,
`class_skipped.txt`, one path a line) rebuilt from it, plus `class_unreadable.txt`. Class files
found without a journal (the plant's own, or lines the journal never saw) are imported into it
under the annotator "import" before anything is rebuilt, so opening a store never empties them.
A folder that cannot be written opens read-only: its labels can be read, not changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from barsalign.config import IMAGE_SUFFIXES
from barsalign.errors import BarsalignError
from barsalign.outputs import atomic_write_text, os_error

CLASSES: tuple[str, ...] = ("aligned", "not_aligned", "skipped")
ALL_CLASSES: tuple[str, ...] = CLASSES + ("unreadable",)
JOURNAL = "journal.jsonl"
IMPORT_ANNOTATOR = "import"
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


def _fsync_append(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _journal_problem(e: Any) -> str | None:
    """Why a parsed journal line is not a label or undo entry (None when it is one)."""
    if not isinstance(e, dict):
        return "not a JSON object"
    kinds = {"annotator": str, "path": str, "action": str, "cls": str, "seq": int}
    wrong = [k for k, t in kinds.items() if not isinstance(e.get(k), t)]
    if wrong:
        return f"lacks {', '.join(wrong)} (or of the wrong type)"
    if e["action"] not in ("label", "undo"):
        return f"unknown action {e['action']!r}"
    if e["cls"] not in ALL_CLASSES:
        return f"unknown class {e['cls']!r}"
    return None


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
        self._lock = FileLock(str(self.folder / ".labels.lock"))
        self._entries: list[dict] = []
        self._lines = 0  # journal lines read (entries may also hold read-only imports)
        self._offset = 0
        with self._locked():
            self._repair_tail()
            self._refresh()
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

    # -- journal --------------------------------------------------------------------------
    def _repair_tail(self) -> None:
        """Drop a half-written last line (a process killed mid-write); earlier lines stay."""
        if self.read_only or not self.journal.exists():
            return  # a reader skips a half-written line without cutting it
        data = self.journal.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.journal, "r+b") as f:
                f.truncate(cut)
                os.fsync(f.fileno())

    def _refresh(self) -> None:
        """Read journal lines appended since the last read (by us or another process)."""
        if not self.journal.exists():
            return
        with open(self.journal, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        for k, line in enumerate(data[:end].splitlines(), self._lines + 1):
            try:
                e = json.loads(line)
            except ValueError:
                raise BarsalignError(f"{self.journal}:{k}: malformed journal line") from None
            why = _journal_problem(e)
            if why:
                raise BarsalignError(f"{self.journal}:{k}: malformed journal line: {why}")
            self._entries.append(e)
            self._lines += 1
        self._offset += end

    def _import_class_files(self) -> None:
        """Class-file lines whose path the journal never mentions become journal entries of
        the annotator "import" (kept in memory only when the folder is read-only)."""
        mentioned = {e["path"] for e in self._entries}
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
        now = time.time()
        new = [
            {
                "t": now,
                "seq": len(self._entries) + i,
                "annotator": IMPORT_ANNOTATOR,
                "path": p,
                "action": "label",
                "cls": c,
            }
            for i, (p, c) in enumerate(found.items())
        ]
        if self.read_only:
            self._entries += new
            return
        _fsync_append(self.journal, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in new))
        self._entries += new
        self._lines += len(new)
        self._offset = self.journal.stat().st_size

    def _append(self, entry: dict) -> None:
        _fsync_append(self.journal, json.dumps(entry, ensure_ascii=False) + "\n")
        self._entries.append(entry)
        self._lines += 1
        self._offset = self.journal.stat().st_size

    def _state(self) -> tuple[dict[str, str], list[dict]]:
        """Replay: the live label per server path and the list of conflicts."""
        stacks: dict[str, list[dict]] = {}
        for e in self._entries:
            st = stacks.setdefault(e["annotator"], [])
            if e["action"] == "label":
                st.append(e)
            elif st:
                st.pop()
        by_path: dict[str, list[dict]] = {}
        for st in stacks.values():
            for e in st:
                by_path.setdefault(e["path"], []).append(e)
        state, conflicts = {}, []
        for p, es in by_path.items():
            es.sort(key=lambda e: e["seq"])
            state[p] = es[-1]["cls"]
            classes = {e["cls"] for e in es}
            if len(classes) > 1:
                conflicts.append({"path": p, "labels": [(e["annotator"], e["cls"]) for e in es]})
        return state, conflicts

    def _rebuild_class_files(self) -> None:
        """Class files rewritten from the journal where they differ from it."""
        if self.read_only:
            return
        state, _ = self._state()
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

    # -- public API -----------------------------------------------------------------------
    def label(self, path: str | Path, cls: str) -> None:
        """Record `cls` for `path`; flushed and fsynced before it returns."""
        sp = self._checked(path, cls, ALL_CLASSES)
        self._writable()
        with self._locked():
            self._repair_tail()
            self._refresh()
            before, _ = self._state()
            entry = {
                "t": time.time(),
                "seq": len(self._entries),
                "annotator": self.annotator,
                "path": sp,
                "action": "label",
                "cls": cls,
            }
            self._append(entry)
            if sp in before:
                self._rebuild_class_files()
            else:
                _fsync_append(class_file(self.folder, cls), sp + "\n")

    def undo(self) -> str | None:
        """Undo this annotator's last label, also one made before a restart; returns its path."""
        self._writable()
        with self._locked():
            self._repair_tail()
            self._refresh()
            st = self._stack(self.annotator)
            if not st:
                return None
            last = st[-1]
            self._append(
                {
                    "t": time.time(),
                    "seq": len(self._entries),
                    "annotator": self.annotator,
                    "path": last["path"],
                    "action": "undo",
                    "cls": last["cls"],
                }
            )
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
            self._repair_tail()
            self._refresh()
            live, _ = self._state()
            now, new = time.time(), []
            for sp, cls, extra in todo:
                if sp in live:
                    continue
                live[sp] = cls
                new.append(
                    {
                        **extra,
                        "t": now,
                        "seq": len(self._entries) + len(new),
                        "annotator": self.annotator,
                        "path": sp,
                        "action": "label",
                        "cls": cls,
                        "batch": batch,
                    }
                )
            if new:
                text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in new)
                _fsync_append(self.journal, text)
                self._entries += new
                self._lines += len(new)
                self._offset = self.journal.stat().st_size
                self._rebuild_class_files()
        return [self.to_local(e["path"]) for e in new]

    def undo_batch(self, batch: str | None = None) -> list[str]:
        """Undo, in one step, this annotator's live labels of `batch` (its last batch when
        "last", all of them when None), also labels made before a restart; returns their paths.
        Labels of other annotators stay as they are."""
        self._writable()
        with self._locked():
            self._repair_tail()
            self._refresh()
            st = self._stack(self.annotator)
            if batch == "last":
                batch = st[-1].get("batch") if st else None
                if batch is None:
                    return []
            undone = []
            while st and (batch is None or st[-1].get("batch") == batch):
                undone.append(st.pop())
            if not undone:
                return []
            now = time.time()
            new = [
                {
                    "t": now,
                    "seq": len(self._entries) + i,
                    "annotator": self.annotator,
                    "path": e["path"],
                    "action": "undo",
                    "cls": e["cls"],
                }
                for i, e in enumerate(undone)
            ]
            _fsync_append(self.journal, "".join(json.dumps(e) + "\n" for e in new))
            self._entries += new
            self._lines += len(new)
            self._offset = self.journal.stat().st_size
            self._rebuild_class_files()
        return [self.to_local(e["path"]) for e in undone]

    def _stack(self, annotator: str) -> list[dict]:
        """The live label entries of one annotator, oldest first (its undos replayed)."""
        st: list[dict] = []
        for e in self._entries:
            if e["annotator"] != annotator:
                continue
            if e["action"] == "label":
                st.append(e)
            elif st:
                st.pop()
        return st

    def labeled(self) -> dict[str, str]:
        """Local path -> class for every labelled frame (latest label wins)."""
        with self._locked():
            self._refresh()
            state, _ = self._state()
        return {self.to_local(p): c for p, c in state.items()}

    def conflicts(self) -> list[dict]:
        """Frames given different classes (by different annotators or a relabel)."""
        with self._locked():
            self._refresh()
            return self._state()[1]

    def pending(self, paths: Iterable[str | Path]) -> list[str]:
        """The paths not yet labelled, in the order given."""
        done = self.labeled()
        return [str(p) for p in paths if str(p) not in done]

    def entries(self) -> list[dict]:
        with self._locked():
            self._refresh()
            return list(self._entries)


def cohen_kappa(a: dict[str, str], b: dict[str, str]) -> tuple[float, list[tuple[str, str, str]]]:
    """Cohen's kappa of two annotators over the frames both labelled, and their disagreements."""
    common = sorted(set(a) & set(b))
    if not common:
        raise BarsalignError("the two annotators share no labelled frames")
    # scikit-learn takes a second to import: only the kappa needs it, not the labeler
    from sklearn.metrics import cohen_kappa_score

    first, second = [a[p] for p in common], [b[p] for p in common]
    if len({*first, *second}) == 1:  # one class for every frame: full agreement (sklearn warns)
        return 1.0, []
    kappa = cohen_kappa_score(first, second)
    return float(kappa), [(p, a[p], b[p]) for p in common if a[p] != b[p]]


def by_annotator(store: LabelStore) -> dict[str, dict[str, str]]:
    """Each annotator's live labels (local path -> class)."""
    stacks: dict[str, list[dict]] = {}
    for e in store.entries():
        st = stacks.setdefault(e["annotator"], [])
        if e["action"] == "label":
            st.append(e)
        elif st:
            st.pop()
    return {a: {store.to_local(e["path"]): e["cls"] for e in st} for a, st in stacks.items()}
