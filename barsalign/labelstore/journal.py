"""The journal: an append-only, fsynced JSON-lines file of label and undo entries, and its replay.

Each entry says who (`annotator`) gave which class (`cls`) to which path, or took back that
annotator's last live label (`action` "undo"); `seq` orders them. `Journal` reads the file on
from where it stopped, repairs a torn last line and appends whole lines; `live_stacks` and
`replay` turn the entries into each annotator's live labels and each path's label.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from barsalign.errors import BarsalignError
from barsalign.labelstore.classfiles import ALL_CLASSES

JOURNAL = "journal.jsonl"
IMPORT_ANNOTATOR = "import"


def fsync_append(path: Path, text: str) -> None:
    """Append `text` to `path` (created if missing), fsynced before it returns."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def entry(seq: int, annotator: str, path: str, action: str, cls: str, t: float) -> dict:
    """One journal entry (a label, or an undo of `annotator`'s last live label)."""
    return {"t": t, "seq": seq, "annotator": annotator, "path": path, "action": action, "cls": cls}


def journal_problem(e: Any) -> str | None:
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


class Journal:
    """The journal file and the entries read from it so far; each read goes on from the last."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict] = []
        self._lines = 0  # journal lines read (entries may also hold read-only imports)
        self._offset = 0

    def repair_tail(self) -> None:
        """Drop a half-written last line (a process killed mid-write); earlier lines stay."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                os.fsync(f.fileno())

    def refresh(self) -> None:
        """Read lines appended since the last read (by us or another process); a reader skips
        a half-written last line without cutting it."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        for k, line in enumerate(data[:end].splitlines(), self._lines + 1):
            try:
                e = json.loads(line)
            except ValueError:
                raise BarsalignError(f"{self.path}:{k}: malformed journal line") from None
            why = journal_problem(e)
            if why:
                raise BarsalignError(f"{self.path}:{k}: malformed journal line: {why}")
            self.entries.append(e)
            self._lines += 1
        self._offset += end

    def append(self, new: list[dict]) -> None:
        """Append entries as whole lines, under one fsync."""
        fsync_append(self.path, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in new))
        self.entries += new
        self._lines += len(new)
        self._offset = self.path.stat().st_size

    def entries_of(
        self, annotator: str, rows: Iterable[tuple[str, str, str]], t: float | None = None
    ) -> list[dict]:
        """New entries of `annotator` for (path, action, cls) rows, numbered after the last."""
        t = time.time() if t is None else t
        return [
            entry(len(self.entries) + i, annotator, path, action, cls, t)
            for i, (path, action, cls) in enumerate(rows)
        ]


def live_stacks(entries: Iterable[dict]) -> dict[str, list[dict]]:
    """Each annotator's live label entries, oldest first: an undo takes back its last one."""
    stacks: dict[str, list[dict]] = {}
    for e in entries:
        st = stacks.setdefault(e["annotator"], [])
        if e["action"] == "label":
            st.append(e)
        elif st:
            st.pop()
    return stacks


def replay(entries: Iterable[dict]) -> tuple[dict[str, str], list[dict]]:
    """The live label per path (the latest live one wins) and the conflicts: paths whose live
    labels, of different annotators, name different classes."""
    by_path: dict[str, list[dict]] = {}
    for st in live_stacks(entries).values():
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
