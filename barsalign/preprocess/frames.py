"""Frame files and arrays as uint8 BGR: decoding with one clear error per bad file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from barsalign.config import IMAGE_SUFFIXES
from barsalign.errors import BarsalignError


def to_bgr8(image: np.ndarray, name: str = "frame") -> np.ndarray:
    """Any 2-D/3-D uint8/uint16/float image as 3-channel uint8 BGR (explicit conversions)."""
    img = np.asarray(image)
    if img.size == 0:
        raise BarsalignError(f"{name}: empty image (shape {img.shape})")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        if img.size and float(np.nanmax(img)) <= 1.0:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise BarsalignError(f"{name}: unsupported pixel type {img.dtype} (uint8, uint16, float)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise BarsalignError(f"{name}: unsupported image shape {img.shape}")


def _truncated(data: bytes) -> bool:
    """True when a JPEG lacks its end marker or a PNG its IEND chunk."""
    tail = data[-64:].rstrip(b"\x00\r\n ")
    if data[:3] == b"\xff\xd8\xff":
        return not tail.endswith(b"\xff\xd9")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in tail
    return False


def decode_image(data: bytes, name: str = "frame") -> np.ndarray:
    """Encoded file bytes → uint8 BGR; BarsalignError naming `name` if empty, truncated or bad."""
    if not data:
        raise BarsalignError(f"{name}: empty file")
    if _truncated(data):
        raise BarsalignError(f"{name}: truncated image file (no end marker)")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None  # OpenCV raises on some malformed headers (a size beyond its limit)
    if img is None or img.size == 0:
        raise BarsalignError(f"{name}: not a readable image")
    return to_bgr8(img, name)


def read_image(path: str | Path) -> np.ndarray:
    """A frame file as uint8 BGR; one BarsalignError naming the file if it cannot be read."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as err:
        raise BarsalignError(f"{p}: cannot read ({err.strerror or err})") from None
    return decode_image(data, str(p))


def list_images(folder: str | Path) -> list[Path]:
    """Image files under a folder (recursive), sorted."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
