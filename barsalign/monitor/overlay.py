"""What the operator sees: the glowing border with the label, the score and the latency.

Also the two notebook figures of a monitor run: a strip of annotated frames, and the score
over time against the clip's truth.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from barsalign.monitor.smoother import ALIGNED, NOT_ALIGNED, UNCERTAIN

COLORS_BGR = {ALIGNED: (60, 220, 60), NOT_ALIGNED: (40, 40, 235), UNCERTAIN: (0, 190, 255)}


TEXT = {ALIGNED: "ALIGNED", NOT_ALIGNED: "NOT ALIGNED", UNCERTAIN: "UNCERTAIN"}


class Overlay:
    """Draws the glowing border and the caption; the glow's weights are cached per frame size
    and blended with `cv2.blendLinear` on the four border strips only (well under 1 ms)."""

    def __init__(self, glow_fraction: float = 0.045, strength: float = 0.85) -> None:
        self.glow_fraction, self.strength = glow_fraction, strength
        self._cache: dict[tuple[int, int], list[tuple[Any, np.ndarray, np.ndarray]]] = {}
        self._colors: dict[tuple[int, int, str], list[np.ndarray]] = {}

    def glow_width(self, h: int, w: int) -> int:
        return max(4, int(round(min(h, w) * self.glow_fraction)))

    def _strips(self, h: int, w: int) -> list[tuple[Any, np.ndarray, np.ndarray]]:
        """(region, weight of the frame, weight of the colour) for each border strip."""
        if (h, w) not in self._cache:
            g = self.glow_width(h, w)
            ramp = self.strength * (1.0 - np.arange(g, dtype=np.float32) / g) ** 1.6
            ramp[: max(2, g // 8)] = 1.0  # a solid line at the very edge, then the glow
            yy = np.minimum(np.arange(h), np.arange(h)[::-1])
            xx = np.minimum(np.arange(w), np.arange(w)[::-1])
            d = np.minimum(yy[:, None], xx[None, :])
            alpha = np.where(d < g, ramp[np.minimum(d, g - 1)], 0.0).astype(np.float32)
            regions = [
                (slice(0, g), slice(0, w)),
                (slice(h - g, h), slice(0, w)),
                (slice(g, h - g), slice(0, g)),
                (slice(g, h - g), slice(w - g, w)),
            ]
            self._cache[(h, w)] = [
                (r, np.ascontiguousarray(1.0 - alpha[r]), np.ascontiguousarray(alpha[r]))
                for r in regions
            ]
        return self._cache[(h, w)]

    def _color_strips(self, h: int, w: int, state: str) -> list[np.ndarray]:
        if (h, w, state) not in self._colors:
            self._colors[(h, w, state)] = [
                np.full((*a.shape, 3), COLORS_BGR[state], np.uint8)
                for _, _, a in self._strips(h, w)
            ]
        return self._colors[(h, w, state)]

    def draw(
        self, frame: np.ndarray, state: str, score: float | None, latency_ms: float, note: str = ""
    ) -> np.ndarray:
        """The frame (drawn on in place) with the border in the state's colour and a caption."""
        import cv2

        h, w = frame.shape[:2]
        colors = self._color_strips(h, w, state)
        for (region, keep, paint), color in zip(self._strips(h, w), colors, strict=True):
            frame[region] = cv2.blendLinear(frame[region], color, keep, paint)
        score_text = "--" if score is None else f"{score:.3f}"
        text = f"{TEXT[state]}  score {score_text}  {latency_ms:.0f} ms" + (
            f"  {note}" if note else ""
        )
        scale = max(0.45, h / 640.0)
        thick = max(1, int(round(scale * 2)))
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        g = self.glow_width(h, w)  # the caption sits inside the glow, bottom left
        x0, y0 = g + 12, h - g - 12 - base
        cv2.rectangle(frame, (x0 - 8, y0 - th - 8), (x0 + tw + 8, y0 + base + 6), (20, 20, 20), -1)
        cv2.putText(
            frame,
            text,
            (x0, y0),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            COLORS_BGR[state],
            thick,
            cv2.LINE_AA,
        )
        return frame


def frame_strip(frames: list[np.ndarray], captions: list[str], per_row: int = 4) -> Any:
    """Annotated frames (RGB) in rows, each with a caption."""
    import matplotlib.pyplot as plt

    rows = max(1, math.ceil(len(frames) / per_row))
    fig, axes = plt.subplots(rows, per_row, figsize=(3.2 * per_row, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, cap in zip(axes.ravel(), frames, captions, strict=False):
        ax.imshow(img)
        ax.set_title(cap, fontsize=9)
    fig.tight_layout()
    return fig


def score_timeline(
    records: list[dict[str, Any]], threshold: float, truth: list[int] | None, fps: float
) -> Any:
    """P(aligned) per frame, the threshold, the state shown (colour band) and the truth."""
    import matplotlib.pyplot as plt

    t = np.asarray([r["frame"] for r in records], dtype=float) / fps
    scores = np.asarray([r["score"] for r in records])
    fig, ax = plt.subplots(figsize=(10, 3.4))
    rgb = {k: tuple(c / 255 for c in reversed(v)) for k, v in COLORS_BGR.items()}
    half = 0.5 / fps
    for ti, r in zip(t, records, strict=True):
        ax.axvspan(ti - half, ti + half, ymin=0.0, ymax=0.06, color=rgb[r["state"]], lw=0)
    if truth is not None:
        truth_t = np.arange(len(truth)) / fps
        ax.step(truth_t, truth, where="mid", color="black", lw=1.2, label="truth (1 = aligned)")
    ax.plot(t, scores, marker=".", color="#1f5fbf", label="P(aligned)")
    ax.axhline(threshold, ls="--", color="gray", lw=1, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="seconds", ylabel="score", ylim=(-0.02, 1.05))
    ax.set_title("score over time; the band at the bottom is the border colour shown")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    return fig
