"""Frame preprocessing: keep the stopper square, shrink it, reduce it to the edges near the stopper.

The pipeline (plant-proven defaults, every step a field of `PreprocessConfig`):
0. optionally crop the frame to a region of interest around the stopper (`roi`, off by
   default): steps 1-6 then run on that crop;
1. crop a square of side = height, keeping the right side (drop the leftmost columns);
   a portrait frame keeps its bottom square of side = width;
2. resize to `target_size` (INTER_AREA; a smaller frame is upscaled, with a warning);
3. grayscale;
4. brightness/contrast: `convertScaleAbs` with the dark pair if the mean < `dark_threshold`,
   else the light pair;
5. edges = adjusted - GaussianBlur(adjusted, blur_kernel) (saturating);
6. zero the left `mask_fraction` of the columns.
Mode "none" stops after step 2 (colour kept), "grayscale" after step 3, "edges" runs all.
`to_tensor` is the one place a processed frame becomes a normalised float tensor.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from barsalign.config import IMAGE_SUFFIXES, NIGHT_MEAN
from barsalign.errors import BarsalignError
from barsalign.outputs import atomic_write_bytes, check_output_dir, os_error, refuse_inside

MODES = ("none", "grayscale", "edges")
MAX_TARGET_SIZE = 4096  # a 4096 px square is 16 M pixels a frame; beyond, memory runs out
MAX_BLUR_KERNEL = 255
MIN_SCORING_SCALE = 0.5
"""A frame is scored only when its stopper square is at least this share of the model's input
side: a smaller one would be upscaled more than twice, into pixels the model never saw."""


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


def crop_roi(image: np.ndarray, roi: tuple[float, float, float, float] | None) -> np.ndarray:
    """Step 0: the frame's region of interest (a view; the whole frame when `roi` is None)."""
    if roi is None:
        return image
    x0, y0, x1, y1 = roi_box(image.shape, roi)
    return image[y0:y1, x0:x1]


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
    cannot be proven exact (see `_masked_fast`).
    """
    cfg = cfg or PreprocessConfig()
    img = to_bgr8(image_bgr)
    fast = _masked_fast(crop_roi(img, cfg.roi), cfg)
    return fast if fast is not None else finish(crop_resize(img, cfg), cfg)


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


def _masked_fast(img: np.ndarray, cfg: PreprocessConfig) -> np.ndarray | None:
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


def list_images(folder: str | Path) -> list[Path]:
    """Image files under a folder (recursive), sorted."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def preprocess_folder(in_dir: str | Path, out_dir: str | Path, cfg: PreprocessConfig) -> dict:
    """Write every frame of `in_dir` processed (PNG, same relative path) to `out_dir`.

    Checked before the first frame is read: `out_dir` is not `in_dir` nor inside it, it can
    be written, and no two inputs map to one output (`a.jpg` and `a.png` both to `a.png`).
    Each PNG is written atomically; a failed write fails the command, naming the file.
    """
    src, dst = Path(in_dir), Path(out_dir)
    if not src.is_dir():
        raise BarsalignError(f"{src}: not a folder")
    files = list_images(src)
    if not files:
        raise BarsalignError(f"{src}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    # 1. one output per input, none of them an input
    refuse_inside(dst, [src], "output folder")
    inputs = {f.resolve() for f in files}
    targets: dict[Path, Path] = {}
    for f in files:
        target = (dst / f.relative_to(src)).with_suffix(".png")
        if target in targets:
            raise BarsalignError(
                f"{targets[target]} and {f} would both be written as {target}: "
                "rename one of them (or preprocess them from separate folders)"
            )
        if target.resolve() in inputs:
            raise BarsalignError(f"{target} is an input frame: choose another output folder")
        targets[target] = f
    check_output_dir(dst, [src])
    # 2. read, preprocess, write
    bad: list[str] = []
    for target, f in targets.items():
        try:
            out = preprocess(read_image(f), cfg)
        except BarsalignError as err:
            bad.append(str(err))
            continue
        ok, buf = cv2.imencode(".png", out)
        if not ok:
            raise BarsalignError(f"{target}: OpenCV could not encode the processed frame as PNG")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise os_error(target.parent, err, "make") from None
        atomic_write_bytes(target, buf.tobytes(), fsync=False)
    return {"written": len(files) - len(bad), "unreadable": bad}


def _cmd_preprocess(args: argparse.Namespace) -> int:
    mask = False if args.no_mask else None
    cfg = PreprocessConfig(target_size=args.size, mode=args.mode, mask_left=mask, roi=args.roi)
    res = preprocess_folder(args.in_dir, args.out_dir, cfg)
    print(f"wrote {res['written']} frames to {args.out_dir}")
    for line in res["unreadable"]:
        print(f"unreadable: {line}")
    if res["unreadable"]:
        raise BarsalignError(f"{len(res['unreadable'])} unreadable file(s) in {args.in_dir}")
    return 0


def add_commands(subparsers: Any) -> None:
    """`barsalign preprocess IN_DIR OUT_DIR --size 384 --mode edges`."""
    p = subparsers.add_parser("preprocess", help="write preprocessed frames for a visual check")
    p.add_argument("in_dir", help="folder of frames (searched recursively)")
    p.add_argument("out_dir", help="where the processed PNGs go (same relative paths)")
    p.add_argument("--size", type=int, default=PreprocessConfig.target_size)
    p.add_argument("--mode", choices=MODES, default=PreprocessConfig.mode)
    p.add_argument("--no-mask", action="store_true", help="keep the left half")
    p.add_argument(
        "--roi", help="crop the region x0,y0,x1,y1 (frame fractions) first; implies --no-mask"
    )
    p.set_defaults(func=_cmd_preprocess)
