"""Figures and widgets for 03_preprocess: every pipeline step side by side, augmented variants."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from barsalign.augment import AugmentConfig, augmented_variants
from barsalign.preprocess import (
    PreprocessConfig,
    crop_resize,
    finish,
    read_image,
    roi_box,
    to_bgr8,
)


def pipeline_steps(image_bgr: np.ndarray, cfg: PreprocessConfig) -> list[tuple[str, np.ndarray]]:
    """(title, image) for the original and each step, computed as `preprocess` does."""
    img = to_bgr8(image_bgr)
    square = crop_resize(img, cfg)
    gray = cv2.cvtColor(square, cv2.COLOR_BGR2GRAY)
    mean = float(gray.mean())
    dark = mean < cfg.dark_threshold
    alpha, beta = (cfg.dark_alpha, cfg.dark_beta) if dark else (cfg.light_alpha, cfg.light_beta)
    adjusted = cv2.convertScaleAbs(gray, alpha=alpha, beta=beta)
    k = int(cfg.blur_kernel)
    blurred = cv2.GaussianBlur(adjusted, (k, k), 0)
    edges = cv2.subtract(adjusted, blurred)
    masked = edges.copy()
    if cfg.mask_left:
        masked[:, : int(masked.shape[1] * cfg.mask_fraction)] = 0
    shown = img
    if cfg.roi is not None:  # step 0: the region of interest, drawn on the original
        x0, y0, x1, y1 = roi_box(img.shape, cfg.roi)
        shown = img.copy()
        cv2.rectangle(shown, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 255), max(2, img.shape[1] // 200))
    steps = [
        (f"original {img.shape[1]}x{img.shape[0]}" + (" + roi" if cfg.roi else ""), shown),
        (f"crop + resize {cfg.target_size}", square),
        (f"gray (mean {mean:.0f}: {'dark' if dark else 'light'})", gray),
        (f"x{alpha:g} +{beta:g}", adjusted),
        (f"blur {k}x{k}", blurred),
        ("adjusted - blur", edges),
        (f"mask left {cfg.mask_fraction:.0%}" if cfg.mask_left else "no mask", masked),
    ]
    if cfg.mode != "edges":  # colour and grayscale stop after steps 2 and 3 (then the mask)
        kept = steps[: 2 if cfg.mode == "none" else 3]
        if cfg.mask_left:  # the pipeline's own last steps on the resized square
            kept.append((f"mask left {cfg.mask_fraction:.0%}", finish(square, cfg)))
        return kept
    return steps


def _show(ax: Any, img: np.ndarray, title: str) -> None:
    if img.ndim == 3:
        ax.imshow(img[:, :, ::-1])
    else:
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def plot_steps(image_bgr: np.ndarray, cfg: PreprocessConfig, title: str = "") -> Any:
    """One row: the original and each preprocessing step."""
    import matplotlib.pyplot as plt

    steps = pipeline_steps(image_bgr, cfg)
    fig, axes = plt.subplots(1, len(steps), figsize=(2.3 * len(steps), 2.6))
    for ax, (name, img) in zip(axes, steps, strict=True):
        _show(ax, img, name)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_variants(
    image_bgr: np.ndarray,
    n: int,
    pcfg: PreprocessConfig,
    acfg: AugmentConfig | None = None,
    seed: int = 0,
    cols: int = 4,
) -> Any:
    """A grid of N augmented, preprocessed variants of one frame (first: no augmentation)."""
    import matplotlib.pyplot as plt

    variants = augmented_variants(image_bgr, n, pcfg, acfg, seed)
    rows = (len(variants) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < len(variants):
            _show(ax, variants[k], "plain" if k == 0 else f"variant {k}")
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig


def interactive(paths: Sequence[str | Path], cfg: PreprocessConfig | None = None) -> Any:
    """ipywidgets: sliders for every parameter, a frame dropdown, the steps redrawn live."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    cfg = cfg or PreprocessConfig()
    frame = w.Dropdown(options=[(Path(p).name, str(p)) for p in paths], description="frame")
    sliders = {
        "dark_threshold": w.FloatSlider(value=cfg.dark_threshold, min=0, max=255, step=1),
        "dark_alpha": w.FloatSlider(value=cfg.dark_alpha, min=0.5, max=3, step=0.05),
        "dark_beta": w.FloatSlider(value=cfg.dark_beta, min=-100, max=255, step=5),
        "light_alpha": w.FloatSlider(value=cfg.light_alpha, min=0.5, max=3, step=0.05),
        "light_beta": w.FloatSlider(value=cfg.light_beta, min=-100, max=255, step=5),
        "blur_kernel": w.IntSlider(value=cfg.blur_kernel, min=1, max=101, step=2),
        "mask_fraction": w.FloatSlider(value=cfg.mask_fraction, min=0, max=1, step=0.05),
        "target_size": w.IntSlider(value=cfg.target_size, min=64, max=768, step=32),
    }
    for name, s in sliders.items():
        s.description = name
        s.continuous_update = False
    out = w.Output()
    state: dict[str, Any] = {}  # the config and figure last drawn (box.state)

    def redraw(_: Any = None) -> None:
        c = dataclasses.replace(cfg, **{k: s.value for k, s in sliders.items()})
        with out:
            out.clear_output(wait=True)
            state["cfg"], state["frame"] = c, frame.value
            state["fig"] = plot_steps(read_image(frame.value), c, Path(frame.value).name)
            plt.show()

    for s in [frame, *sliders.values()]:
        s.observe(redraw, names="value")
    redraw()
    box = w.VBox(
        [
            frame,
            w.HBox([w.VBox(list(sliders.values())[:4]), w.VBox(list(sliders.values())[4:])]),
            out,
        ]
    )
    box.state = state
    display(box)
    return box
