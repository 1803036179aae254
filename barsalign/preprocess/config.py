"""The preprocessing settings: `PreprocessConfig` and the region of interest it may carry."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from barsalign.config import NIGHT_MEAN
from barsalign.errors import BarsalignError

MODES = ("none", "grayscale", "edges")
MAX_TARGET_SIZE = 4096  # a 4096 px square is 16 M pixels a frame; beyond, memory runs out
MAX_BLUR_KERNEL = 255


@dataclass(frozen=True)
class PreprocessConfig:
    """Every parameter of the preprocessing pipeline (defaults: the plant's values)."""

    target_size: int = 384
    mode: str = "edges"  # "none" | "grayscale" | "edges"
    mask_left: bool | None = None  # None: on for the whole frame, off with a roi
    mask_fraction: float = 0.5  # share of columns zeroed from the left
    dark_threshold: float = NIGHT_MEAN  # grayscale mean below which a frame is dark
    dark_alpha: float = 1.5
    dark_beta: float = 155.0
    light_alpha: float = 1.35
    light_beta: float = 75.0
    blur_kernel: int = 31  # odd Gaussian kernel side
    roi: tuple[float, float, float, float] | None = None  # (x0, y0, x1, y1), frame fractions

    def __post_init__(self) -> None:
        if self.roi is not None:
            object.__setattr__(self, "roi", parse_roi(self.roi))
        if self.mask_left is None:  # the region already leaves the bar bodies out
            object.__setattr__(self, "mask_left", self.roi is None)
        numbers = ("mask_fraction", "dark_threshold", "dark_alpha", "dark_beta")
        numbers += ("light_alpha", "light_beta")
        for name in numbers:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise BarsalignError(f"PreprocessConfig: {name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise BarsalignError(f"PreprocessConfig: {name} must be finite, not {value}")
        for name in ("target_size", "blur_kernel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise BarsalignError(
                    f"PreprocessConfig: {name} must be a whole number, not {value!r}"
                )
        checks = [
            (
                isinstance(self.mode, str) and self.mode in MODES,
                f"mode must be one of {MODES}, not {self.mode!r}",
            ),
            (
                isinstance(self.mask_left, bool),
                f"mask_left must be true, false or null, not {self.mask_left!r}",
            ),
            (
                8 <= self.target_size <= MAX_TARGET_SIZE,
                f"target_size must lie in 8..{MAX_TARGET_SIZE}, not {self.target_size}",
            ),
            (
                1 <= self.blur_kernel <= MAX_BLUR_KERNEL and self.blur_kernel % 2 == 1,
                f"blur_kernel must be odd, in 1..{MAX_BLUR_KERNEL}, not {self.blur_kernel}",
            ),
            (0.0 <= self.mask_fraction <= 1.0, "mask_fraction must lie in [0, 1]"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BarsalignError(f"PreprocessConfig: {msg}")

    @property
    def channels(self) -> int:
        """1 for grayscale/edges output, 3 for mode none."""
        return 3 if self.mode == "none" else 1

    def key(self) -> str:
        """A stable text form of the config, for cache keys."""
        return repr(sorted(dataclasses.asdict(self).items()))

    def square_key(self) -> str:
        """The cache key of `crop_resize`'s output: only the region and the size shape it."""
        roi = f":roi={list(self.roi)}" if self.roi else ""
        return f"square:{self.target_size}{roi}"


def parse_roi(value: Any) -> tuple[float, float, float, float] | None:
    """A region of interest as (x0, y0, x1, y1) fractions of the frame's width and height.

    Takes 4 numbers or their text "x0,y0,x1,y1"; None, "" or "none" mean the whole frame.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        parts = value.split(",") if isinstance(value, str) else list(value)
        roi = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        raise BarsalignError(f"roi {value!r}: expected 4 numbers x0,y0,x1,y1") from None
    if len(roi) != 4:
        raise BarsalignError(f"roi {value!r}: expected 4 numbers x0,y0,x1,y1, got {len(roi)}")
    x0, y0, x1, y1 = roi
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise BarsalignError(f"roi {value!r}: need 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    return (x0, y0, x1, y1)


def roi_box(
    shape: tuple[int, ...], roi: tuple[float, float, float, float]
) -> tuple[int, int, int, int]:
    """The region's pixel bounds (x0, y0, x1, y1; end-exclusive, never empty) in a frame."""
    h, w = shape[:2]
    x0, y0 = round(roi[0] * w), round(roi[1] * h)
    return x0, y0, max(round(roi[2] * w), x0 + 1), max(round(roi[3] * h), y0 + 1)
