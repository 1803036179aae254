"""The keyboard-driven labeler widget (ipywidgets + ipyevents) and the `labels` CLI commands.

Keys: → aligned, ← not aligned, ↓ skip / unsure, u undo, Esc stop. The next frames are read and
resized in a background thread, so a key press only swaps in bytes that are already encoded.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import io
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from barsalign.config import IMAGE_SUFFIXES
from barsalign.errors import BarsalignError
from barsalign.labelstore import (
    ALL_CLASSES,
    CLASSES,
    JOURNAL,
    LabelStore,
    class_file,
    frame_index,
    in_range,
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

if TYPE_CHECKING:
    from barsalign.active import LiveLoop

KEYS = {"ArrowRight": "aligned", "ArrowLeft": "not_aligned", "ArrowDown": "skipped"}
MARKS = {"aligned": "✓", "not_aligned": "✗", "skipped": "↷", "unreadable": "⚠"}


def order_frames(
    paths: Sequence[str],
    order: str = "index",
    seed: int = 0,
    score: Callable[[list[str]], Sequence[float]] | None = None,
    suspects: Sequence[tuple[str, float]] | None = None,
) -> tuple[list[str], dict[str, float]]:
    """Order frames: "index", "index_desc", "random" (seeded), "uncertain" (score near 0.5
    first), "suspect" or "pseudo" (the `suspects` first, in their order, then the rest by index).

    `score` maps paths to P(aligned); `suspects` are (path, out-of-fold P(aligned)) pairs from
    `label_quality.read_suspects`, or for "pseudo" (path, confidence) pairs of the pseudo-labels,
    least confident first (`active.pseudo_labelled`). Returns the ordered paths and the scores
    (empty if unused).
    """
    paths = [str(p) for p in paths]

    def key(p: str) -> tuple[int, str]:
        return (frame_index(p) or 0, Path(p).name)

    if order in ("index", "index_desc"):
        return sorted(paths, key=key, reverse=order == "index_desc"), {}
    if order == "random":
        out = sorted(paths, key=key)
        random.Random(seed).shuffle(out)
        return out, {}
    if order == "uncertain":
        if score is None:
            raise BarsalignError("order 'uncertain' needs a scoring function (a checkpoint)")
        s = dict(zip(paths, (float(x) for x in score(paths)), strict=True))
        return sorted(paths, key=lambda p: abs(s[p] - 0.5)), s
    if order in ("suspect", "pseudo"):
        if suspects is None and order == "pseudo":
            raise BarsalignError("order 'pseudo' needs the pseudo-labels (active.pseudo_labelled)")
        if suspects is None:
            raise BarsalignError(
                "order 'suspect' needs a suspects file (`barsalign suspects --data DIR`)"
            )
        mine = {os.path.realpath(p): p for p in paths}
        first = {
            mine[r]: s for r, s in ((os.path.realpath(p), s) for p, s in suspects) if r in mine
        }
        rest = sorted((p for p in paths if p not in first), key=key)
        return [*first, *rest], first
    raise BarsalignError(
        f"unknown order {order!r}; use index, index_desc, random, uncertain, suspect or pseudo"
    )


def load_view(path: str, width: int = 640) -> bytes | None:
    """The frame resized to `width` and JPEG-encoded, or None when it cannot be read."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    img = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else None


def _unreadable_view(width: int) -> bytes:
    img = np.full((width * 3 // 4, width, 3), 40, np.uint8)
    cv2.putText(img, "UNREADABLE", (20, width // 3), cv2.FONT_HERSHEY_SIMPLEX, 2, (0, 0, 255), 4)
    return cv2.imencode(".jpg", img)[1].tobytes()


class Labeler:
    """Label `images` into `store`; `show()` returns the widget, `press(key)` is what a key does."""

    def __init__(
        self,
        images: Sequence[str],
        store: LabelStore,
        order: str = "index",
        seed: int = 0,
        start: int | None = None,
        end: int | None = None,
        score: Callable[[list[str]], Sequence[float]] | None = None,
        width: int = 640,
        prefetch: int = 4,
        suspects_file: str | Path | None = None,
        loop: LiveLoop | None = None,
    ) -> None:
        """With order "suspect", the suspects in `suspects_file` (`barsalign suspects`) come
        first, labelled already or not, so relabelling one is one key; a suspect labelled in
        `store` after the file was written counts as reviewed and is not queued again.
        With a `loop` (`active.LiveLoop`), its probe is refitted in the background as labels
        come in, and each batch it picks is put first in the queue once it is ready."""
        self.store, self.width, self.prefetch = store, width, prefetch
        self.loop = loop
        images = in_range(images, start, end)
        todo = store.pending(images)
        suspects = None
        if order == "pseudo":
            from barsalign.active import pseudo_labelled

            mine = set(images)
            suspects = [(p, c) for p, c in pseudo_labelled(store) if p in mine]
            todo = [p for p, _ in suspects] + todo
        if order == "suspect" and suspects_file is not None:
            from barsalign.label_quality import read_suspects

            suspects = read_suspects(suspects_file)
            written = Path(suspects_file).stat().st_mtime
            reviewed = {
                os.path.realpath(store.to_local(e["path"]))
                for e in store.entries()
                if e["action"] == "label" and float(e.get("t", 0)) > written
            }
            again = {os.path.realpath(p) for p, _ in suspects} - reviewed
            pending = set(todo)
            todo = [p for p in images if p in pending or os.path.realpath(p) in again]
        self.order = order
        self.queue, self.scores = order_frames(todo, order, seed, score, suspects)
        self.pos = 0
        self.history: list[str] = []
        self.counts = {c: 0 for c in (*CLASSES, "unreadable")}
        for c in store.labeled().values():
            self.counts[c] += 1
        self.t0 = time.monotonic()
        self.n_session = 0
        self.stopped = False
        self._pool = ThreadPoolExecutor(max_workers=2)
        self._cache: dict[str, Future] = {}
        self._w = None
        self._warm()

    # -- prefetch ---------------------------------------------------------------------------
    def _warm(self) -> None:
        for p in self.queue[self.pos : self.pos + self.prefetch + 1]:
            if p not in self._cache:
                self._cache[p] = self._pool.submit(load_view, p, self.width)
        for p in [p for p in self._cache if p not in self.queue[self.pos : self.pos + 8]]:
            self._cache.pop(p)

    @property
    def current(self) -> str | None:
        return self.queue[self.pos] if self.pos < len(self.queue) else None

    def view(self) -> bytes | None:
        """The current frame's encoded bytes; an unreadable frame is recorded and skipped."""
        while self.current is not None:
            p = self.current
            fut = self._cache.get(p) or self._pool.submit(load_view, p, self.width)
            data = fut.result()
            if data is not None:
                return data
            self.store.label(p, "unreadable")
            self.counts["unreadable"] += 1
            self.history.append(p)
            self.pos += 1
            self._warm()
        return None

    # -- actions ----------------------------------------------------------------------------
    def press(self, key: str) -> str | None:
        """Apply one key; returns the class given ("undo"/"stop" for those keys) or None."""
        if self.stopped:
            return None
        if key == "Escape":
            self.stopped = True
            self._render("stopped")
            return "stop"
        if key in ("u", "U"):
            back = self.store.undo()
            if back is None:
                return None
            if back in self.queue[: self.pos]:
                self.queue.remove(back)
                self.pos -= 1
            self.queue.insert(self.pos, back)
            self.counts = {c: 0 for c in self.counts}
            for c in self.store.labeled().values():
                self.counts[c] += 1
            self._warm()
            self._render("↶")
            return "undo"
        cls = KEYS.get(key)
        if cls is None or self.view() is None:
            return None
        self.store.label(self.current, cls)  # fsynced before the next frame shows
        self.counts[cls] += 1
        self.n_session += 1
        self.pos += 1
        n_labels = self.counts["aligned"] + self.counts["not_aligned"]
        if self.loop is not None and self.loop.due(n_labels):  # retrains run in its thread
            self.loop.update(self.store.labeled())
            first = self.loop.next_first(self.queue[self.pos :])
            if first is not None:
                self.queue[self.pos :] = first
        self._warm()
        self.view()  # the next frame is ready (an unreadable one is recorded and passed)
        self._render(MARKS[cls])
        return cls

    def stats(self) -> dict[str, float]:
        mins = max(time.monotonic() - self.t0, 1e-6) / 60
        rate = self.n_session / mins
        left = len(self.queue) - self.pos
        return {
            **self.counts,
            "per_min": rate,
            "left": left,
            "eta_min": left / rate if rate else float("nan"),
        }

    # -- widget -----------------------------------------------------------------------------
    def show(self):
        """Build the widget: image, mark, progress, buttons; key events via ipyevents."""
        import ipywidgets as w
        from ipyevents import Event

        img = w.Image(format="jpeg", layout=w.Layout(width=f"{self.width}px"))
        mark = w.HTML()
        bar = w.IntProgress(min=0, max=max(1, len(self.queue)))
        info, guess = w.HTML(), w.HTML()
        btns = []
        for text, key in [
            ("← not aligned", "ArrowLeft"),
            ("↓ skip", "ArrowDown"),
            ("→ aligned", "ArrowRight"),
            ("u undo", "u"),
            ("Esc stop", "Escape"),
        ]:
            b = w.Button(description=text)
            b.on_click(lambda _b, k=key: self.press(k))
            btns.append(b)
        box = w.VBox([w.HBox([img, w.VBox([mark, guess])]), bar, info, w.HBox(btns)])
        box.add_class("barsalign-labeler")
        ev = Event(source=box, watched_events=["keydown"], prevent_default_action=True)
        ev.on_dom_event(lambda e: self.press(e.get("key", "")))
        self._w = {"img": img, "mark": mark, "bar": bar, "info": info, "guess": guess, "ev": ev}
        self._render("")
        return box

    def _render(self, flash: str) -> None:
        if self._w is None:
            return
        data = self.view()
        if data is None:
            data = _unreadable_view(self.width) if not self.stopped else None
            self._w["info"].value = "<b>done</b>" if not self.stopped else "<b>stopped</b>"
        if data is not None:
            self._w["img"].value = data
        self._w["mark"].value = f"<span style='font-size:96px'>{flash}</span>"
        self._w["bar"].value = self.pos
        s = self.stats()
        p = self.current
        what = "pseudo-label confidence" if self.order == "pseudo" else "model P(aligned)"
        self._w["guess"].value = (
            f"{what} = {self.scores[p]:.2f}" if p is not None and p in self.scores else ""
        )
        if data is not None and not self.stopped:
            self._w["info"].value = (
                f"{p} — ✓ {s['aligned']} ✗ {s['not_aligned']} ↷ {s['skipped']} "
                f"⚠ {s['unreadable']} · {s['per_min']:.0f}/min · {s['left']} left, "
                f"~{s['eta_min']:.1f} min"
                + (f"<br>{self.loop.status()}" if self.loop is not None else "")
            )


# -- conversions and CLI ------------------------------------------------------------------
def export_labels(labels_dir: Path, to: Path, form: str = "folders", copy: bool = False) -> int:
    """Class files -> `to/aligned/`, `to/not_aligned/` (links or copies) or a CSV; returns count.

    Everything is checked before anything is written: `to` holds none of the labelled frames,
    no two frames share a name within a class, and no file other than an earlier export's
    link (or identical copy) would be replaced. Each link or copy is written atomically.
    """
    labels_dir, to = Path(labels_dir), Path(to)
    rows = []
    for c in ("aligned", "not_aligned"):
        f = class_file(labels_dir, c)
        if f.exists():
            rows += [(p, c) for p in read_class_file(f)]
    store_files = [class_file(labels_dir, c) for c in ALL_CLASSES] + [labels_dir / JOURNAL]
    if form == "csv":
        check_output_file(to, store_files, "--to")
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([("path", "label"), *rows])
        atomic_write_text(to, buf.getvalue())
        return len(rows)
    # 1. the plan, checked in full before the first write
    plan: dict[Path, tuple[str, str]] = {}
    for p, c in rows:
        src = Path(p)
        if not src.exists():
            raise BarsalignError(f"{class_file(labels_dir, c)}: {p} does not exist")
        if is_within(src.parent, to):
            raise BarsalignError(
                f"--to {to} holds the labelled frame {p}: export into another folder, "
                "never among the frames themselves"
            )
        dst = to / c / src.name
        if dst in plan:
            raise BarsalignError(
                f"{plan[dst][0]} and {p} would both be exported as {c}/{src.name}: "
                "export to a .csv (--to labels.csv) instead"
            )
        plan[dst] = (p, c)
    for dst, (p, _) in plan.items():
        if dst.is_symlink() or not dst.exists():
            continue  # an earlier export's link, or nothing: replaced
        if not (copy and dst.is_file() and filecmp.cmp(dst, p, shallow=False)):
            raise BarsalignError(
                f"{dst} exists and is not a link to {p}: it would be overwritten; "
                "export into an empty folder"
            )
    check_output_dir(to, [labels_dir], "--to")
    # 2. links (or copies), each through a temporary name and a rename
    for dst, (p, _) in plan.items():
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise os_error(dst.parent, err, "make") from None
        with atomic_path(dst) as tmp:
            shutil.copy2(p, tmp) if copy else os.symlink(os.path.abspath(p), tmp)
    return len(rows)


def _csv_pairs(src: Path) -> list[tuple[str, str]]:
    """(path, label) rows of a CSV, every path checked to be one image path a line."""
    pairs: list[tuple[str, str]] = []
    reader = csv.reader(io.StringIO(read_text_file(src), newline=""))
    end = 0
    for n, row in enumerate(reader, 1):
        line, end = end + 1, reader.line_num  # a quoted line break spans lines: name the first
        if n == 1 and row == ["path", "label"]:
            continue
        if len(row) != 2 or row[1] not in CLASSES:
            raise BarsalignError(f"{src}:{line}: expected 'path,label' with a known label")
        why = path_problem(row[0])
        if why:
            raise BarsalignError(f"{src}:{line}: {row[0][:80]!r}: {why}")
        pairs.append((row[0], row[1]))
    return pairs


def import_labels(src: Path, labels_dir: Path, annotator: str = "import") -> int:
    """A folder layout (`aligned/`, `not_aligned/`) or a CSV (path,label) -> the label store.

    Every row is checked before the first label is recorded.
    """
    src = Path(src)
    pairs: list[tuple[str, str]] = []
    if src.is_file():
        pairs = _csv_pairs(src)
    elif src.is_dir():
        for c in ("aligned", "not_aligned"):
            if (src / c).is_dir():
                pairs += [
                    (str((src / c / n).absolute()), c)
                    for n in sorted(os.listdir(src / c))
                    if n.lower().endswith(IMAGE_SUFFIXES) and (src / c / n).is_file()
                ]
        if not pairs:
            raise BarsalignError(f"{src}: no aligned/ or not_aligned/ frames found")
        bad = [p for p, _ in pairs if path_problem(p)]
        if bad:
            raise BarsalignError(f"{bad[0][:120]!r}: {path_problem(bad[0])}")
    else:
        raise BarsalignError(f"{src}: no such file or folder")
    store = LabelStore(labels_dir, annotator=annotator)
    done = store.labeled()
    for p, c in pairs:
        if done.get(p) != c:
            store.label(p, c)
    return len(pairs)


def _cmd_export(a: argparse.Namespace) -> int:
    n = export_labels(
        Path(a.labels_dir), Path(a.to), "csv" if a.to.endswith(".csv") else "folders", a.copy
    )
    print(f"exported {n} labels to {a.to}")
    return 0


def _cmd_import(a: argparse.Namespace) -> int:
    print(f"imported {import_labels(Path(a.src), Path(a.labels_dir), a.annotator)} labels")
    return 0


def add_commands(sub) -> None:
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


@dataclass(frozen=True)
class LabelConfig:
    """Parameters of notebook 02_label, validated."""

    data_dir: str | None = None
    run_dir: str | None = None
    labels_dir: str | None = None
    interactive: bool = True
    start: int | None = None
    end: int | None = None
    local_prefix: str | None = None
    server_prefix: str | None = None
    order: str = "index"
    suspects_file: str | None = None
    seed: int = 0
    n_frames: int = 40
    error_rate: float = 0.1
    n_undo: int = 3
    min_kappa: float = 0.4

    def __post_init__(self) -> None:
        if not 0 <= self.error_rate <= 1:
            raise BarsalignError(f"error_rate must lie in [0, 1], got {self.error_rate}")
        if self.n_frames < 1 or self.n_undo < 0:
            raise BarsalignError("n_frames must be >= 1 and n_undo >= 0")
        if not -1 <= self.min_kappa <= 1:
            raise BarsalignError(f"min_kappa must lie in [-1, 1], got {self.min_kappa}")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise BarsalignError(f"start {self.start} is after end {self.end}")
        if (self.local_prefix is None) != (self.server_prefix is None):
            raise BarsalignError("give both local_prefix and server_prefix, or neither")
        if self.order == "suspect" and self.suspects_file is None:
            raise BarsalignError(
                'order "suspect" needs suspects_file (written by `barsalign suspects --data DIR`)'
            )


def simulate(lab: Labeler, truth: dict[str, str], n: int, error_rate: float, seed: int = 0) -> int:
    """A simulated annotator: press the key for the true class (wrong with `error_rate`)."""
    from barsalign.active import noisy_answer

    rng = random.Random(seed)
    inv = {v: k for k, v in KEYS.items()}
    done = 0
    while done < n and lab.current is not None:
        right = int(truth[lab.current] == "aligned")
        cls = "aligned" if noisy_answer(right, rng, error_rate) else "not_aligned"
        if lab.press(inv[cls]) in CLASSES:
            done += 1
    return done
