"""Exploratory data analysis of a folder of frames: inventory, balance, brightness, examples.

Works on the synthetic default (with its metadata: scene, lighting, gaps) and on any user
folder (labels from the folder layout, `data.labels.folder_label`; else "unlabelled").
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from barsalign.config import IMAGE_SUFFIXES
from barsalign.data.labels import NAMES, folder_label
from barsalign.errors import BarsalignError
from barsalign.preprocess import PreprocessConfig, list_images

DARK_THRESHOLD = PreprocessConfig.dark_threshold
"""Grayscale mean below which a frame counts as dark; preprocessing brightens those differently."""


def require_images(data_dir: str | Path) -> list[Path]:
    """`preprocess.list_images` of `data_dir`, where a missing or image-less folder is an error."""
    root = Path(data_dir)
    if not root.is_dir():
        raise BarsalignError(f"{root} is not a folder")
    files = list_images(root)
    if not files:
        raise BarsalignError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _label_name(rel: str | Path) -> str:
    """The label of a frame at `rel` below the data folder in the folder layout's rule."""
    lab = folder_label(rel)
    return NAMES[lab] if lab is not None else "unlabelled"


def inventory(data_dir: str | Path) -> pd.DataFrame:
    """One row per image: path, label, size, grayscale mean, plus synthetic truth when present.

    Unreadable files stay in the table with `error` set, so they are counted, not dropped.
    """
    root = Path(data_dir)
    meta: dict[str, dict] = {}
    if (root / "metadata.jsonl").is_file():
        from barsalign.synth import load_metadata

        meta = {m["file"]: m for m in load_metadata(root) if m["subset"] != "clips"}
    rows = []
    for path in require_images(root):
        rel = path.relative_to(root).as_posix()
        row = {"file": rel, "label": _label_name(rel), "subset": path.parts[-2]}
        img = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_4)
        if img is None:
            row["error"] = "unreadable"
        else:
            with Image.open(path) as header:  # the size from the header, no second decode
                width, height = header.size
            row.update(height=height, width=width, gray_mean=float(img.mean()))
        m = meta.get(rel)
        if m:
            row.update(
                label=m["label"],
                subset=m["subset"],
                scene=m["scene"],
                lighting=m["lighting"],
                kind=m["kind"],
                n_bars=m["n_bars"],
                max_gap_px=m["max_gap_px"],
                camera=m["camera"],
                clip_id=m["clip_id"],
            )
        rows.append(row)
    df = pd.DataFrame(rows)
    if "error" not in df:
        df["error"] = None
    df["dark"] = df.get("gray_mean", pd.Series(np.nan, index=df.index)) < DARK_THRESHOLD
    return df


def balance(df: pd.DataFrame, by: str = "label") -> pd.DataFrame:
    """Frames and share of each value of `by`, one column pair per subset (and in all)."""
    counts = df.groupby([by, "subset"], dropna=False).size().unstack("subset", fill_value=0)
    counts["all"] = counts.sum(axis=1)
    shares = counts / counts.sum(axis=0)
    table = pd.concat({"frames": counts, "share": shares}, axis=1).swaplevel(axis=1)
    return table[[c for s in counts.columns for c in ((s, "frames"), (s, "share"))]]


def plot_brightness(df: pd.DataFrame, threshold: float = DARK_THRESHOLD):
    """Histogram of grayscale means per label, with the dark-frame threshold marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    bins = np.linspace(0, 255, 52)
    for label, part in df.dropna(subset=["gray_mean"]).groupby("label"):
        ax.hist(part["gray_mean"], bins=bins, alpha=0.6, label=f"{label} ({len(part)})")
    ax.axvline(threshold, color="k", ls="--", lw=1.2)
    ax.text(threshold + 2, ax.get_ylim()[1] * 0.92, f"dark < {threshold:g}", fontsize=9)
    ax.set_xlabel("grayscale mean of the frame")
    ax.set_ylabel("frames")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def _tile(path: Path, size: tuple[int, int], text: str, heads: list | None, gaps: list | None):
    img = cv2.imread(str(path))
    if img is None:
        img = np.zeros((size[1], size[0], 3), np.uint8)
        text = f"UNREADABLE {path.name}"
    sx, sy = size[0] / img.shape[1], size[1] / img.shape[0]
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    if heads and gaps:
        for (x, y), gap in zip(heads, gaps, strict=True):
            if gap > 0:  # ring each short bar's head so a reader sees the gap
                c = (int(x * sx), int(y * sy))
                cv2.circle(img, c, max(6, int(18 * sx)), (0, 0, 255), 2, cv2.LINE_AA)
    if text:
        cv2.rectangle(img, (0, size[1] - 22), (size[0], size[1]), (0, 0, 0), -1)
        cv2.putText(img, text, (6, size[1] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return img


def contact_sheet(
    data_dir: str | Path,
    files: list[str],
    cols: int = 4,
    tile: tuple[int, int] = (384, 288),
    captions: bool = True,
) -> np.ndarray:
    """A grid of frames (RGB uint8) with label, lighting and gap captions; short heads ringed."""
    root = Path(data_dir)
    meta: dict[str, dict] = {}
    if (root / "metadata.jsonl").is_file():
        from barsalign.synth import load_metadata

        meta = {m["file"]: m for m in load_metadata(root)}
    tiles = []
    for rel in files:
        m = meta.get(rel, {})
        text = ""
        if captions:
            gap = m.get("max_gap_px")
            gap_text = f" gap {gap:.1f}px" if gap else ""
            parts = [m.get("label", _label_name(rel)), m.get("lighting", "")]
            text = " ".join(p for p in parts if p) + gap_text
        heads = m.get("heads_px") if captions else None  # rings belong to the annotated grids
        tiles.append(_tile(root / rel, tile, text, heads, m.get("gaps_px")))
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    return cv2.cvtColor(np.vstack(rows), cv2.COLOR_BGR2RGB)


def pick_examples(df: pd.DataFrame, per_group: int, by: str = "label", seed: int = 0) -> list[str]:
    """Up to `per_group` readable files of each value of `by`, chosen reproducibly."""
    ok = df[df["error"].isna()]
    picks = []
    for _, part in ok.groupby(by, sort=True):
        picks += part.sample(min(per_group, len(part)), random_state=seed)["file"].tolist()
    return picks


def show_image(img: np.ndarray, title: str = "", width: float = 14.0):
    """Show an RGB array as one matplotlib figure without axes; returns the figure."""
    import matplotlib.pyplot as plt

    h, w = img.shape[:2]
    fig, ax = plt.subplots(figsize=(width, width * h / w))
    ax.imshow(img)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
