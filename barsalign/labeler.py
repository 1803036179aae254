"""The keyboard-driven labeler widget (ipywidgets + ipyevents), notebook 02's config and its
simulated annotator; converting labels between formats is `barsalign.data.labels`' job.

Keys: → aligned, ← not aligned, ↓ skip / unsure, u undo, Esc stop. The next frames are read and
resized in a background thread, so a key press only swaps in bytes that are already encoded.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from barsalign.errors import BarsalignError
from barsalign.labelstore import CLASSES, LabelStore, frame_index, in_range

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
