"""The masked fast path: with the left mask on, resize and filter only the columns it keeps.

`pipeline.preprocess` takes this path where it is provably exact, pixel for pixel, and the
literal steps everywhere else; `tests/test_preprocess.py` checks the identity on real frames.
"""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np

from barsalign.preprocess.config import PreprocessConfig

# OpenCV's fixed-point BGR→GRAY weights (of 2**14) for 8-bit images: B, G, R.
_GRAY_WEIGHTS = (1868, 9617, 4899)
# Bound on |gray of an INTER_AREA pixel - the exact area mean of the source's gray|:
# 0.5 from rounding each channel, 0.5 from rounding the gray value, plus float slack.
_GRAY_ROUNDING = 1.01


def _aligned_column(side: int, size: int, before: int) -> int | None:
    """Largest output column <= `before` whose INTER_AREA cell starts on a source column.

    None when the scale `side / size` is not a short binary fraction: when it is, OpenCV
    computes the same cell weights for a strip of columns as for the whole row.
    """
    scale = Fraction(side, size)
    if scale.denominator & (scale.denominator - 1) or scale.denominator > 64:
        return None
    period = scale.denominator  # output columns per whole number of source columns
    col = (before // period) * period
    return col if col > 0 else None


def masked_fast(img: np.ndarray, cfg: PreprocessConfig) -> np.ndarray | None:
    """`preprocess` computing only the kept columns; None when the shortcut does not apply.

    Exact because: INTER_AREA cells are independent across columns, so a strip cut at a
    column where a cell starts resizes to the same pixels; the blur of a strip equals the
    whole image's blur more than one kernel radius inside the strip (the right border is the
    image's own); and the dark/light decision is made from the source's exact sum over the
    skipped columns, which bounds the skipped pixels' gray mean within `_GRAY_ROUNDING` —
    when the frame's mean is closer than that to the threshold, the literal path decides.
    """
    size = int(cfg.target_size)
    h, w = img.shape[:2]
    side = min(h, w)
    if not cfg.mask_left or side <= size:
        return None
    keep = int(size * cfg.mask_fraction)
    if keep >= size:
        return None
    radius = int(cfg.blur_kernel) // 2 if cfg.mode == "edges" else 0
    start = _aligned_column(side, size, keep - radius)
    if start is None:
        return None
    square = img[:, w - h :] if w >= h else img[h - w :, :]
    src_start = start * side // size
    strip = cv2.resize(square[:, src_start:], (size - start, size), interpolation=cv2.INTER_AREA)
    out_shape = (size, size) if cfg.mode != "none" else (size, size, 3)
    out = np.zeros(out_shape, np.uint8)
    if cfg.mode == "none":
        out[:, keep:] = strip[:, keep - start :]
        return out
    gray = cv2.cvtColor(strip, cv2.COLOR_BGR2GRAY)
    if cfg.mode == "grayscale":
        out[:, keep:] = gray[:, keep - start :]
        return out
    skipped = cv2.sumElems(square[:, :src_start])[:3]
    area = (size / side) ** 2  # each source pixel's share of one output pixel
    est = sum(wt * s for wt, s in zip(_GRAY_WEIGHTS, skipped, strict=True)) / 2**14 * area
    mean = (est + float(gray.sum(dtype=np.float64))) / (size * size)
    if abs(mean - cfg.dark_threshold) <= _GRAY_ROUNDING * start / size:
        return None
    if mean < cfg.dark_threshold:
        adjusted = cv2.convertScaleAbs(gray, alpha=cfg.dark_alpha, beta=cfg.dark_beta)
    else:
        adjusted = cv2.convertScaleAbs(gray, alpha=cfg.light_alpha, beta=cfg.light_beta)
    k = int(cfg.blur_kernel)
    # OpenCV blurs few-row images faster than few-column ones; the same kernel runs both
    # ways, and the tests check the result is bit-identical to the untransposed blur.
    blurred = cv2.GaussianBlur(np.ascontiguousarray(adjusted.T), (k, k), 0).T
    out[:, keep:] = cv2.subtract(adjusted[:, keep - start :], blurred[:, keep - start :])
    return out
