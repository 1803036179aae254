"""A cluster view of the frames: their embeddings on a 2-D map, and the frames under a click or a
lasso.

`ClusterMap` projects the frozen Lite0 embeddings of `active.embed` (cached by file content) to
two dimensions (PCA, or t-SNE of their first principal components), colours the points by any
column of the frame table (label, scene, session, ...) and answers `select(polygon)` (the
frames inside a lasso, in map coordinates) and `select_near(x, y)` (the frame nearest a click).
Odd sessions show up as islands, mislabelled frames as a point of one colour inside a cluster
of the other.

`ClusterWidget` is the same map in a live kernel: the map is an `ipywidgets.Image` whose mouse
events come through ipyevents (both are dependencies already; the matplotlib LassoSelector
would need an interactive backend such as ipympl, which is not installed). A click lists the
nearest frame, a drag draws a lasso and lists every frame inside it, each with its path, label
and colouring columns, and a contact sheet of their thumbnails (`eda.contact_sheet`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from barsalign.errors import BarsalignError

METHODS = ("pca", "tsne")
FIGSIZE = (7.0, 5.2)  # inches of the map; at `DPI` its PNG is 700 x 520 pixels
DPI = 100
CLICK_PX = 4.0  # a drag shorter than this (image pixels) is a click
MARKERS = {"aligned": "C2", "not_aligned": "C3", "unlabelled": "0.6"}


def project(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """The embeddings [N, D] on a 2-D map [N, 2]: PCA of the standardised features, or t-SNE of
    their first 50 principal components (perplexity below the number of frames)."""
    from barsalign.active import reduce

    if method not in METHODS:
        raise BarsalignError(f"unknown map method {method!r}; use one of {', '.join(METHODS)}")
    if len(features) < 3:
        raise BarsalignError(f"a cluster map needs at least 3 frames, not {len(features)}")
    if method == "pca":
        return reduce(features, dims=2, seed=seed)
    from sklearn.manifold import TSNE

    space = reduce(features, dims=50, seed=seed)
    perplexity = float(min(30.0, max(1.0, (len(space) - 1) / 3)))
    return TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(space)


def with_metadata(root: Path, frames: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`frames` with the renderer's `columns` (e.g. "session") from `root/metadata.jsonl` added
    where missing (no metadata: left as they are)."""
    missing = [c for c in columns if c not in frames]
    if not missing or not (root / "metadata.jsonl").is_file():
        return frames
    from barsalign.synth import load_metadata

    meta = {m["file"]: m for m in load_metadata(root)}
    out = frames.copy()
    for c in missing:
        out[c] = [meta.get(f, {}).get(c) for f in out["file"]]
    return out


@dataclass
class ClusterMap:
    """Frames of one folder on a 2-D map of their embeddings.

    Args:
        root: the folder the frames' `file` column is relative to.
        frames: one row per point (`eda.inventory`'s rows: file, label, scene, ...).
        xy: the map coordinates [N, 2], in the order of `frames`.
        method: how the map was made ("pca" or "tsne"), for its title.
    """

    root: Path
    frames: pd.DataFrame
    xy: np.ndarray
    method: str = "pca"
    _to_data: Any = field(default=None, repr=False)  # image pixels -> map, set by `render`

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.frames = self.frames.reset_index(drop=True)
        self.xy = np.asarray(self.xy, dtype=float)
        if self.xy.shape != (len(self.frames), 2):
            raise BarsalignError(
                f"{len(self.frames)} frames but map coordinates of shape {self.xy.shape}"
            )

    @classmethod
    def build(
        cls,
        root: str | Path,
        frames: pd.DataFrame,
        roi: Any = None,
        method: str = "pca",
        image_size: int = 320,
        seed: int = 0,
        **embed_kw: Any,
    ) -> ClusterMap:
        """Embed the `frames` of `root` (`active.embed`: cached) and project them; the session
        is added from the renderer's metadata where the table lacks it."""
        from barsalign.active import embed

        root = Path(root)
        frames = with_metadata(root, frames, ("session",))
        x = embed([root / f for f in frames["file"]], roi, image_size, **embed_kw)
        return cls(root, frames, project(x, method, seed), method)

    def colour_columns(self) -> list[str]:
        """The columns worth colouring by: label, scene, session and the like (few values)."""
        wanted = ("label", "scene", "session", "lighting", "kind", "camera", "subset")
        return [c for c in wanted if c in self.frames and self.frames[c].nunique() <= 20]

    def select(self, polygon: Sequence[Sequence[float]]) -> pd.DataFrame:
        """The frames inside a lasso (a polygon of at least 3 map points, closed implicitly),
        with their `x`, `y` and `path`."""
        from matplotlib.path import Path as Polygon

        poly = np.asarray(polygon, dtype=float)
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
            raise BarsalignError(f"a lasso needs at least 3 (x, y) points, not {poly.shape}")
        inside = Polygon(poly).contains_points(self.xy)
        return self._rows(np.flatnonzero(inside))

    def select_near(self, x: float, y: float, k: int = 1) -> pd.DataFrame:
        """The `k` frames nearest (x, y) on the map, nearest first."""
        d = np.hypot(self.xy[:, 0] - x, self.xy[:, 1] - y)
        return self._rows(np.argsort(d, kind="stable")[: max(1, k)])

    def farthest(self, k: int = 4) -> pd.DataFrame:
        """The `k` frames farthest from the map's centre, farthest first: odd frames to look at
        when no one is there to lasso."""
        d = np.hypot(*(self.xy - np.median(self.xy, axis=0)).T)
        return self._rows(np.argsort(-d, kind="stable")[: max(1, k)])

    def _rows(self, idx: np.ndarray) -> pd.DataFrame:
        rows = self.frames.iloc[idx].copy()
        rows.insert(0, "path", [str(self.root / f) for f in rows["file"]])
        rows["x"], rows["y"] = self.xy[idx, 0], self.xy[idx, 1]
        return rows

    def figure(
        self,
        by: str = "label",
        selected: Sequence[int] = (),
        lasso: Sequence[Sequence[float]] = (),
        ax: Any = None,
    ) -> Any:
        """The map coloured by column `by` (a legend per value), the `selected` row positions
        ringed and the `lasso` drawn; returns the figure."""
        import matplotlib.pyplot as plt

        if by not in self.frames:
            raise BarsalignError(
                f"no column {by!r} to colour by; the frames have {self.colour_columns()}"
            )
        fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI) if ax is None else (ax.figure, ax)
        values = self.frames[by].fillna("–").astype(str)
        for k, v in enumerate(sorted(values.unique())):
            m = (values == v).to_numpy()
            colour = MARKERS.get(v, f"C{k % 10}") if by == "label" else f"C{k % 10}"
            ax.scatter(*self.xy[m].T, s=14, color=colour, alpha=0.75, label=f"{v} ({m.sum()})")
        if len(selected):
            pts = self.xy[np.asarray(selected, dtype=int)]
            ax.scatter(*pts.T, s=70, facecolors="none", edgecolors="k", linewidths=1.2)
        if len(lasso):
            poly = np.asarray(lasso, dtype=float)
            ax.plot(*np.vstack([poly, poly[:1]]).T, "k--", lw=1)
        ax.set_title(
            f"{len(self.frames)} frames, {self.method.upper()} of Lite0 embeddings, by {by}"
        )
        lo, hi = self.xy.min(axis=0), self.xy.max(axis=0)
        pad = 0.05 * np.maximum(hi - lo, 1e-9)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])  # fixed, so a lasso never moves the map
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=1.2, loc="best", framealpha=0.8)
        return fig

    def render(self, by: str = "label", selected: Sequence[int] = (), lasso: Any = ()) -> bytes:
        """The map as PNG bytes of exactly `FIGSIZE` × `DPI` pixels; remembers how its pixels
        map back to map coordinates (`to_map`)."""
        import matplotlib.pyplot as plt

        fig = self.figure(by, selected, lasso)
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.93)
        fig.canvas.draw()
        ax, height = fig.axes[0], fig.bbox.height
        self._to_data = (ax.transData.inverted(), ax.transData, height)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
        plt.close(fig)
        return buf.getvalue()

    def to_map(self, pixels: Sequence[Sequence[float]]) -> np.ndarray:
        """Image pixels of the last `render` (x right, y down) as map coordinates."""
        if self._to_data is None:
            self.render()
        inverse, _, height = self._to_data
        px = np.asarray(pixels, dtype=float).reshape(-1, 2)
        return inverse.transform(np.column_stack([px[:, 0], height - px[:, 1]]))

    def to_pixels(self, points: Sequence[Sequence[float]]) -> np.ndarray:
        """Map coordinates as image pixels of the last `render` (the inverse of `to_map`)."""
        if self._to_data is None:
            self.render()
        _, forward, height = self._to_data
        disp = forward.transform(np.asarray(points, dtype=float).reshape(-1, 2))
        return np.column_stack([disp[:, 0], height - disp[:, 1]])


class ClusterWidget:
    """The map in a live kernel: click for the nearest frame, drag a lasso for every frame
    inside; the frames are listed with their thumbnails.

    Args:
        cmap: the map.
        by: the column the points are coloured by first (a dropdown changes it).
        max_thumbs: thumbnails shown of a selection (the list shows every frame).
    """

    def __init__(self, cmap: ClusterMap, by: str = "label", max_thumbs: int = 12) -> None:
        import ipywidgets as w
        from ipyevents import Event

        self.cmap, self.by, self.max_thumbs = cmap, by, max_thumbs
        self.selection = cmap.frames.iloc[:0]
        self._lasso: list[tuple[float, float]] = []  # the last lasso, in map coordinates
        self._lasso_px: list[tuple[float, float]] = []  # the one being drawn, in pixels
        self._drawing = False
        self.image = w.Image(format="png", layout=w.Layout(width=f"{FIGSIZE[0] * DPI:.0f}px"))
        options = cmap.colour_columns() or [by]
        self.colour = w.Dropdown(options=options, value=by if by in options else options[0])
        self.colour.observe(lambda _: self._redraw(), names="value")
        self.info = w.HTML("Click a point for its frame, or drag a lasso around points.")
        self.table = w.HTML()
        self.thumbs = w.Image(format="png")
        self._buttons = Event(
            source=self.image, watched_events=["mousedown", "mouseup"], prevent_default_action=True
        )
        self._moves = Event(
            source=self.image,
            watched_events=["mousemove"],
            wait=40,
            throttle_or_debounce="throttle",
            prevent_default_action=True,
        )
        self._buttons.on_dom_event(self.handle)
        self._moves.on_dom_event(self.handle)
        self.box = w.VBox(
            [
                w.HBox([w.Label("colour by"), self.colour]),
                self.image,
                self.info,
                self.table,
                self.thumbs,
            ]
        )
        self._redraw()

    def _redraw(self) -> None:
        self.by = self.colour.value
        picked = self.selection.index.to_numpy()
        self.image.value = self.cmap.render(self.by, picked, self._lasso)

    def handle(self, event: dict[str, Any]) -> None:
        """One ipyevents mouse event (`dataX`, `dataY`: pixels of the map's image)."""
        kind, pt = event.get("type"), (float(event.get("dataX", 0)), float(event.get("dataY", 0)))
        if kind == "mousedown":
            self._drawing, self._lasso_px = True, [pt]
        elif kind == "mousemove" and self._drawing:
            self._lasso_px.append(pt)
        elif kind == "mouseup" and self._drawing:
            self._drawing = False
            self._lasso_px.append(pt)
            px = np.asarray(self._lasso_px)
            if len(px) < 3 or np.ptp(px, axis=0).max() < CLICK_PX:
                x, y = self.cmap.to_map([pt])[0]
                self.show(self.cmap.select_near(x, y), [])
            else:
                lasso = self.cmap.to_map(px)
                self.show(self.cmap.select(lasso), [tuple(p) for p in lasso])

    def show(self, rows: pd.DataFrame, lasso: list[tuple[float, float]]) -> None:
        """List the frames of a selection, ring them on the map and show their thumbnails."""
        import cv2

        from barsalign.viz.eda import contact_sheet

        self.selection, self._lasso = rows, lasso
        self._redraw()
        cols = ["path", "label", *[c for c in ("scene", "session", "lighting") if c in rows]]
        self.info.value = f"<b>{len(rows)} frame{'s' if len(rows) != 1 else ''}</b> selected"
        self.table.value = (
            rows[cols].to_html(index=False, border=0, escape=True) if len(rows) else ""
        )
        if not len(rows):
            self.thumbs.value = b""
            return
        files = rows["file"].tolist()[: self.max_thumbs]
        sheet = contact_sheet(self.cmap.root, files, cols=4, tile=(192, 144))
        ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        if not ok:
            raise BarsalignError(f"could not encode the thumbnails of {files[0]} ...")
        self.thumbs.value = png.tobytes()


__all__ = ["ClusterMap", "ClusterWidget", "METHODS", "project", "with_metadata"]
