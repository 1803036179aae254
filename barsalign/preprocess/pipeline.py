"""The pipeline from a BGR frame to the network's input: the region, the stopper square, its
size, the edges near the stopper (`preprocess`), then the backbone's normalisation."""

from __future__ import annotations

import warnings
from typing import Any

import cv2
import numpy as np

from barsalign.errors import BarsalignError
from barsalign.preprocess.config import PreprocessConfig, roi_box
from barsalign.preprocess.frames import to_bgr8
from barsalign.preprocess.masked import masked_fast

MIN_SCORING_SCALE = 0.5
"""A frame is scored only when its stopper square is at least this share of the model's input
side: a smaller one would be upscaled more than twice, into pixels the model never saw."""


def crop_roi(image: np.ndarray, roi: tuple[float, float, float, float] | None) -> np.ndarray:
    """Step 0: the frame's region of interest (a view; the whole frame when `roi` is None)."""
    if roi is None:
        return image
    x0, y0, x1, y1 = roi_box(image.shape, roi)
    return image[y0:y1, x0:x1]


def scoring_problem(image: np.ndarray, cfg: PreprocessConfig) -> str | None:
    """Why a frame cannot be scored by a model whose input side is `cfg.target_size` (None
    when it can): its stopper square (inside the region of interest) is below
    `MIN_SCORING_SCALE` of that side, so it would be blown up from a few pixels."""
    h, w = crop_roi(np.asarray(image), cfg.roi).shape[:2]
    side, size = min(h, w), int(cfg.target_size)
    if side < MIN_SCORING_SCALE * size:
        region = " (in its region of interest)" if cfg.roi else ""
        return (
            f"frame {w}x{h}{region} is far below the model's input size {size}x{size}: "
            f"a square of {side} px would be upscaled {size / max(side, 1):.0f}x"
        )
    return None


def crop_resize(image_bgr: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Steps 0-2: the stopper square (right side; bottom for portrait), resized, colour kept."""
    img = crop_roi(to_bgr8(image_bgr), cfg.roi)
    h, w = img.shape[:2]
    if w >= h:
        square = img[:, w - h :]
    else:
        square = img[h - w :, :]
    side = square.shape[0]
    size = int(cfg.target_size)
    if side < size:
        warnings.warn(f"frame {w}x{h} is smaller than target_size {size}: upscaled", stacklevel=3)
    if side == size:
        return np.ascontiguousarray(square)
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def finish(resized_bgr: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Steps 3-6 on a crop_resize output (so augmentation can sit between 2 and 3)."""
    if cfg.mode == "none":
        out = resized_bgr.copy()
    else:
        gray = cv2.cvtColor(resized_bgr, cv2.COLOR_BGR2GRAY)
        if cfg.mode == "grayscale":
            out = gray
        else:
            if float(gray.mean()) < cfg.dark_threshold:
                adjusted = cv2.convertScaleAbs(gray, alpha=cfg.dark_alpha, beta=cfg.dark_beta)
            else:
                adjusted = cv2.convertScaleAbs(gray, alpha=cfg.light_alpha, beta=cfg.light_beta)
            k = int(cfg.blur_kernel)
            blurred = cv2.GaussianBlur(adjusted, (k, k), 0)
            out = cv2.subtract(adjusted, blurred)
    if cfg.mask_left:
        out[:, : int(out.shape[1] * cfg.mask_fraction)] = 0
    return out


def preprocess(image_bgr: np.ndarray, cfg: PreprocessConfig | None = None) -> np.ndarray:
    """The full pipeline: uint8 (S, S) for grayscale/edges, (S, S, 3) BGR for mode none.

    With the left mask on, only the columns the mask keeps (plus the blur's reach) are
    resized and filtered; the result is identical, pixel for pixel, to running the steps
    literally (`finish(crop_resize(...))`), which is what happens whenever that shortcut
    cannot be proven exact (see `masked_fast`).
    """
    cfg = cfg or PreprocessConfig()
    img = to_bgr8(image_bgr)
    fast = masked_fast(crop_roi(img, cfg.roi), cfg)
    return fast if fast is not None else finish(crop_resize(img, cfg), cfg)


def normalise(processed: np.ndarray, data_config: dict[str, Any]) -> np.ndarray:
    """A processed uint8 frame → float32 array [3, S, S] normalised by the backbone's config.

    Grayscale/edges frames are repeated over 3 channels; colour (mode none) goes BGR → RGB.
    `data_config` is timm's `resolve_model_data_config` dict (its "mean" and "std"). Each
    output channel is computed from one contiguous plane, `(x - mean) / std` in float32: the
    same arithmetic, bit for bit, as on the whole tensor, without a strided float copy.
    """
    try:
        mean = [np.float32(v * 255.0) for v in np.asarray(data_config["mean"], np.float32)]
        std = [np.float32(v * 255.0) for v in np.asarray(data_config["std"], np.float32)]
    except (KeyError, TypeError, ValueError):
        raise BarsalignError("to_tensor: data_config needs 3-value 'mean' and 'std'") from None
    if len(mean) != 3 or len(std) != 3:
        raise BarsalignError("to_tensor: data_config needs 3-value 'mean' and 'std'")
    if processed.ndim == 2:
        planes = [processed] * 3
    elif processed.ndim == 3 and processed.shape[2] == 3:
        planes = cv2.split(np.ascontiguousarray(processed))[::-1]  # B, G, R → R, G, B
    else:
        raise BarsalignError(f"to_tensor: expected (S, S) or (S, S, 3), got {processed.shape}")
    out = np.empty((3, *processed.shape[:2]), np.float32)
    for c, plane in enumerate(planes):
        np.subtract(plane, mean[c], out=out[c], dtype=np.float32)
        np.divide(out[c], std[c], out=out[c])
    return out


def to_tensor(processed: np.ndarray, data_config: dict[str, Any]) -> Any:
    """`normalise` as a torch tensor [3, S, S] (what the data pipeline feeds training)."""
    import torch

    return torch.from_numpy(normalise(processed, data_config))
