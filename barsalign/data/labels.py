"""The one reader and writer of every label format, and the `labels` command converting them.

Formats, 1 = aligned:
- the folder layout: frames under `aligned/` and `not_aligned/` (subfolders fine; a frame's label
  is its nearest folder of a class name). A synthetic data set's root stands for its
  `example_set/`.
- a CSV with a header `path,label` (label aligned/not_aligned or 1/0; relative paths from the
  CSV's folder; other columns are ignored).
- the labeler's older class files (`class_aligned.txt`, `class_not_aligned.txt`,
  `class_skipped.txt`: one path a line, relative to their folder), read line by line by
  `labelstore.read_class_file` and written only by the `LabelStore` that rebuilds them.
- the label journal: `labelstore.LabelStore`'s. `import_labels` records a folder layout or a CSV
  into it; `export_labels` writes its class files out as a folder layout or a CSV.

`load_labels` reads the first three as `Item`s with the clip each frame belongs to. A malformed
file is a one-line `BarsalignError` naming the file (and the line); nothing is skipped silently.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import io
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from barsalign.errors import BarsalignError
from barsalign.labelstore import (
    ALL_CLASSES,
    JOURNAL,
    LabelStore,
    class_file,
    path_problem,
    read_class_file,
    read_text_file,
)
from barsalign.outputs import (
    atomic_path,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    is_within,
    os_error,
)
from barsalign.preprocess import list_images

NAMES = {1: "aligned", 0: "not_aligned"}
"""Each label's name: the layout's folder, the class file's and the CSV's spelling."""
LABELS = {"aligned": 1, "not_aligned": 0, "1": 1, "0": 0, "true": 1, "false": 0}
"""Every spelling of a label a CSV may use (lower case)."""
SKIPPED = "skipped"
CLIP_RE = re.compile(r"^(?P<clip>.+?)[_-](?:f|frame)\d+$", re.IGNORECASE)

Pairs = list[tuple[Path, int]]


@dataclass(frozen=True)
class Item:
    """One labelled frame: path, label (1 aligned) and group (clip id)."""

    path: Path
    label: int
    group: str


def _map_prefix(line: str, path_map: Sequence[tuple[str, str]]) -> str:
    for server, local in path_map:
        if line.startswith(server):
            return local + line[len(server) :]
    return line


# -- the folder layout ------------------------------------------------------------------------
def folder_path(label: int | str, name: str) -> str:
    """Where the folder layout keeps a frame of `label` (1/0 or its name) called `name`,
    relative to the layout's root: `aligned/NAME` or `not_aligned/NAME`."""
    return f"{NAMES[LABELS[str(label)]]}/{name}"


def folder_label(path: str | Path) -> int | None:
    """A frame's label in the folder layout: its nearest folder named aligned or not_aligned."""
    for part in reversed(Path(path).parts[:-1]):
        if part in NAMES.values():
            return LABELS[part]
    return None


def is_layout(folder: str | Path) -> bool:
    """Whether `folder` has an `aligned/` or a `not_aligned/` subfolder."""
    return any((Path(folder) / name).is_dir() for name in NAMES.values())


def layout_root(folder: str | Path) -> Path | None:
    """The folder holding the layout: `folder`, else a synthetic set's `example_set/`; or None."""
    root = Path(folder)
    for cand in (root, root / "example_set"):
        if is_layout(cand):
            return cand
    return None


def read_folder_labels(folder: str | Path) -> Pairs:
    """Frames under `folder/aligned` and `folder/not_aligned` (each labelled by `folder_label`,
    so `not_aligned/x/aligned/f.jpg` is aligned), aligned ones first."""
    folder = Path(folder)
    found = {p for name in NAMES.values() for p in list_images(folder / name)}
    pairs = [(p, folder_label(p.relative_to(folder))) for p in found]
    return sorted(((p, lab) for p, lab in pairs if lab is not None), key=lambda x: (-x[1], x[0]))


def write_folder_labels(
    pairs: Sequence[tuple[Path, int]],
    to: str | Path,
    copy: bool = False,
    inputs: Sequence[Path] = (),
    what: str = "--to",
) -> int:
    """Frames into `to/aligned/` and `to/not_aligned/` as links (or copies); returns the count.

    Everything is checked before anything is written: each frame exists, `to` holds none of
    them and is none of `inputs`, no two frames share a name within a class, and no file other
    than an earlier export's link (or identical copy) would be replaced. Each link or copy is
    written atomically.
    """
    to = Path(to)
    plan: dict[Path, Path] = {}  # 1. the plan, checked in full before the first write
    for src, lab in pairs:
        src = Path(src)
        if not src.exists():
            raise BarsalignError(f"{src} does not exist")
        if is_within(src.parent, to):
            raise BarsalignError(
                f"{what} {to} holds the labelled frame {src}: export into another folder, "
                "never among the frames themselves"
            )
        dst = to / folder_path(lab, src.name)
        if dst in plan:
            raise BarsalignError(
                f"{plan[dst]} and {src} would both be exported as {NAMES[lab]}/{src.name}: "
                "export to a .csv (--to labels.csv) instead"
            )
        plan[dst] = src
    for dst, src in plan.items():
        if dst.is_symlink() or not dst.exists():
            continue  # an earlier export's link, or nothing: replaced
        if not (copy and dst.is_file() and filecmp.cmp(dst, src, shallow=False)):
            raise BarsalignError(
                f"{dst} exists and is not a link to {src}: it would be overwritten; "
                "export into an empty folder"
            )
    check_output_dir(to, inputs, what)
    for dst, src in plan.items():  # 2. links (or copies), each through a temporary name
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise os_error(dst.parent, err, "make") from None
        with atomic_path(dst) as tmp:
            shutil.copy2(src, tmp) if copy else os.symlink(os.path.abspath(src), tmp)
    return len(plan)


# -- the CSV ----------------------------------------------------------------------------------
def read_csv_labels(path: Path, path_map: Sequence[tuple[str, str]] = ()) -> Pairs:
    """A CSV with a header `path,label` (label aligned/not_aligned or 1/0)."""
    path = Path(path)
    out: Pairs = []
    reader = csv.DictReader(io.StringIO(read_text_file(path), newline=""))
    if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
        raise BarsalignError(f"{path}: needs a header with columns 'path,label'")
    end = reader.line_num
    for row in reader:
        n, end = end + 1, reader.line_num  # the row's first line (a quoted break spans two)
        raw_path, raw_label = row.get("path"), row.get("label")
        if raw_path is None or raw_label is None:
            raise BarsalignError(f"{path}:{n}: expected 'path,label', got {len(row)} field(s)")
        lab = LABELS.get(str(raw_label).strip().lower())
        if lab is None:
            raise BarsalignError(f"{path}:{n}: label {raw_label!r} is not aligned/not_aligned")
        why = path_problem(raw_path.strip())
        if why:
            raise BarsalignError(f"{path}:{n}: {raw_path[:80]!r}: {why}")
        p = Path(_map_prefix(raw_path.strip(), path_map))
        out.append((p if p.is_absolute() else path.parent / p, lab))
    return out


def write_csv_labels(
    pairs: Sequence[tuple[Path | str, int]],
    path: str | Path,
    relative: bool = False,
    inputs: Sequence[Path] = (),
    what: str = "labels CSV",
) -> Path:
    """`pairs` as a CSV `path,label` that `read_csv_labels` reads back: paths as given, or
    relative to the CSV's folder. Checked first (no path `read_csv_labels` would refuse, the
    file none of `inputs`); written atomically, and only when its content changes."""
    path = check_output_file(path, inputs, what)
    rows = []
    for p, lab in pairs:
        text = os.path.relpath(p, path.parent) if relative else str(p)
        why = path_problem(text)
        if why:
            raise BarsalignError(f"{path}: cannot write {text[:80]!r}: {why}")
        rows.append((text, NAMES[lab]))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([("path", "label"), *rows])
    text = buf.getvalue()
    try:
        same = path.read_bytes() == text.encode("utf-8")
    except OSError:
        same = False
    if not same:
        atomic_write_text(path, text)
    return path


# -- the class files --------------------------------------------------------------------------
def read_class_files(folder: Path, path_map: Sequence[tuple[str, str]] = ()) -> Pairs:
    """The labeler's class files in `folder` as (local path, label); skipped frames left out."""
    folder = Path(folder)
    out: Pairs = []
    skipped: set[str] = set()
    if class_file(folder, SKIPPED).is_file():
        skipped = set(read_class_file(class_file(folder, SKIPPED)))
    for lab, name in NAMES.items():
        f = class_file(folder, name)
        if not f.is_file():
            continue
        for line in read_class_file(f):  # UTF-8, one image path a line, else a named error
            if line in skipped:
                continue
            p = Path(_map_prefix(line, path_map))
            out.append((p if p.is_absolute() else folder / p, lab))
    return out


def has_class_files(folder: str | Path) -> bool:
    return any(class_file(Path(folder), name).is_file() for name in NAMES.values())


# -- any of them, with clip groups ------------------------------------------------------------
def metadata_rows(paths: list[Path]) -> dict[Path, dict[str, Any]]:
    """Each frame's row (resolved path → dict) from the nearest metadata.jsonl above it."""
    out: dict[Path, dict[str, Any]] = {}
    seen: set[Path] = set()
    for p in paths:
        for parent in list(p.resolve().parents)[:3]:
            meta = parent / "metadata.jsonl"
            if parent in seen or not meta.is_file():
                continue
            seen.add(parent)
            for line in meta.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "file" in row:
                    out[(parent / row["file"]).resolve()] = row
    return out


def clip_group(path: Path, clips: dict[Path, str]) -> str:
    """The clip a frame belongs to: metadata, else `<clip>_f<digits>` name, else the file."""
    cid = clips.get(path.resolve())
    if cid is not None:
        return cid
    m = CLIP_RE.match(path.stem)
    return f"{path.parent}/{m.group('clip')}" if m else str(path)


def read_labels(source: str | Path, path_map: Sequence[tuple[str, str]] = ()) -> Pairs:
    """(path, label) from a CSV, a folder of class files, or a folder layout, in that order."""
    src = Path(source)
    root = layout_root(src) if src.is_dir() else None
    if src.is_file() and src.suffix.lower() == ".csv":
        pairs = read_csv_labels(src, path_map)
    elif src.is_dir() and has_class_files(src):
        pairs = read_class_files(src, path_map)
    elif root is not None:
        pairs = read_folder_labels(root)
    else:
        raise BarsalignError(
            f"{src}: no labelled frames (expected aligned/ and not_aligned/ folders, "
            f"{' / '.join(class_file(src, n).name for n in NAMES.values())}, or a CSV path,label)"
        )
    if not pairs:
        raise BarsalignError(f"{src}: no labelled frames found")
    return pairs


def load_labels(source: str | Path, path_map: Sequence[tuple[str, str]] = ()) -> list[Item]:
    """Labelled frames from a folder layout, the labeler's class files or a CSV, with clips."""
    pairs = read_labels(source, path_map)
    rows = metadata_rows([p for p, _ in pairs])
    clips = {p: str(r["clip_id"]) for p, r in rows.items() if r.get("clip_id") is not None}
    return [Item(p, lab, clip_group(p, clips)) for p, lab in pairs]


# -- conversions through the journal, and the `labels` command --------------------------------
def export_labels(labels_dir: Path, to: Path, form: str = "folders", copy: bool = False) -> int:
    """The class files of `labels_dir` -> a folder layout (links or copies) or a CSV; the count.

    A CSV never replaces one of the store's files; a folder never lies in `labels_dir`.
    """
    labels_dir, to = Path(labels_dir), Path(to)
    pairs = read_class_files(labels_dir)
    if form == "csv":
        store_files = [class_file(labels_dir, c) for c in ALL_CLASSES] + [labels_dir / JOURNAL]
        write_csv_labels(pairs, to, inputs=store_files, what="--to")
        return len(pairs)
    return write_folder_labels(pairs, to, copy, inputs=[labels_dir])


def import_labels(src: Path, labels_dir: Path, annotator: str = "import") -> int:
    """A folder layout or a CSV (path,label) -> the label store, as absolute paths.

    Every frame is checked before the first label is recorded.
    """
    src = Path(src)
    if src.is_file():
        pairs = read_csv_labels(src)
    elif src.is_dir():
        root = layout_root(src)
        pairs = read_folder_labels(root) if root is not None else []
        if not pairs:
            raise BarsalignError(f"{src}: no aligned/ or not_aligned/ frames found")
    else:
        raise BarsalignError(f"{src}: no such file or folder")
    rows = [(str(p.absolute()), NAMES[lab]) for p, lab in pairs]
    for p, _ in rows:
        why = path_problem(p)
        if why:
            raise BarsalignError(f"{p[:120]!r}: {why}")
    store = LabelStore(labels_dir, annotator=annotator)
    done = store.labeled()
    for p, c in rows:
        if done.get(p) != c:
            store.label(p, c)
    return len(rows)


def _cmd_export(a: argparse.Namespace) -> int:
    n = export_labels(
        Path(a.labels_dir), Path(a.to), "csv" if a.to.endswith(".csv") else "folders", a.copy
    )
    print(f"exported {n} labels to {a.to}")
    return 0


def _cmd_import(a: argparse.Namespace) -> int:
    print(f"imported {import_labels(Path(a.src), Path(a.labels_dir), a.annotator)} labels")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("labels", help="convert labels between class files, folders and CSV")
    s = p.add_subparsers(dest="labels_cmd", required=True)
    e = s.add_parser("export", help="class files -> aligned/ not_aligned/ folders or a .csv")
    e.add_argument("labels_dir")
    e.add_argument("--to", required=True, help="a folder, or a file ending in .csv")
    e.add_argument("--copy", action="store_true", help="copy frames instead of linking")
    e.set_defaults(func=_cmd_export)
    i = s.add_parser("import", help="aligned/ not_aligned/ folders or a .csv -> class files")
    i.add_argument("src")
    i.add_argument("--to", dest="labels_dir", required=True)
    i.add_argument("--annotator", default="import")
    i.set_defaults(func=_cmd_import)
