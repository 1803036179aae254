"""Training-time augmentation, seeded: a small rotation and brightness jitter by default;
flips, a small shift, Gaussian blur and the photometric changes (contrast, gamma, tint, sensor
noise, JPEG re-compression) when asked for.

Every change keeps the label: a bar short of the stopper stays short when the region is
mirrored, shifted by a few per cent or rotated by a few degrees. Blur is off by default because
it erases the few-pixel gap the classifier must see; flips and shifts are off by default because
a fixed camera never shows its stopper mirrored or moved, and learning those views costs the
few hundred frames of a small set (docs/experiments.md, 2026-11-30).

Applied to the resized stopper square (after preprocessing steps 1-2, before grayscale), so the
brightness rule, the edges and the left mask are computed on the augmented frame: augment, then
mask, and the mask and crop stay exactly where preprocessing puts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from barsalign.errors import BarsalignError
from barsalign.preprocess import PreprocessConfig, crop_resize, finish


@dataclass(frozen=True)
class AugmentConfig:
    """Each augmentation with its probability; p = 0 turns one off."""

    p_hflip: float = 0.0  # mirror left-right
    p_vflip: float = 0.0  # mirror top-bottom
    shift: float = 0.05  # translation drawn from ±shift of the side, both axes
    p_shift: float = 0.0
    rotate_deg: float = 5.0  # rotation drawn from ±rotate_deg
    p_rotate: float = 0.5
    brightness: float = 0.2  # pixel values scaled by 1 ± brightness
    p_brightness: float = 0.5
    blur_sigma: float = 1.5  # Gaussian sigma drawn from [0.3, blur_sigma]
    p_blur: float = 0.0
    contrast: float = 0.3  # deviations from the square's mean grey scaled by 1 ± contrast
    p_contrast: float = 0.0
    gamma: float = 0.4  # gamma drawn log-uniformly from [1 / (1 + gamma), 1 + gamma]
    p_gamma: float = 0.0
    colour: float = 0.1  # each channel scaled by 1 ± colour (a light's tint)
    p_colour: float = 0.0
    noise_sigma: float = 6.0  # Gaussian sensor noise, sigma in grey levels drawn from [1, this]
    p_noise: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 90)  # JPEG re-compression, quality drawn from this range
    p_jpeg: float = 0.0

    def __post_init__(self) -> None:
        for name in PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise BarsalignError(f"AugmentConfig: {name} must lie in [0, 1]")
        if self.rotate_deg < 0 or self.brightness < 0 or self.blur_sigma < 0.3:
            raise BarsalignError("AugmentConfig: rotate_deg, brightness >= 0; blur_sigma >= 0.3")
        if not 0.0 <= self.shift < 0.5:
            raise BarsalignError("AugmentConfig: shift must lie in [0, 0.5)")
        if min(self.contrast, self.gamma, self.colour) < 0 or self.noise_sigma < 1.0:
            raise BarsalignError("AugmentConfig: contrast, gamma, colour >= 0; noise_sigma >= 1")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise BarsalignError("AugmentConfig: jpeg_quality must be (low, high) within 1..100")


PROBABILITIES = (
    "p_hflip",
    "p_vflip",
    "p_shift",
    "p_rotate",
    "p_brightness",
    "p_blur",
    "p_contrast",
    "p_gamma",
    "p_colour",
    "p_noise",
    "p_jpeg",
)
"""AugmentConfig's probability fields, each in [0, 1]."""


def _photometric(out: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Contrast, gamma, tint, sensor noise and JPEG re-compression, each with its probability.

    A draw is taken only for a change that is on, so the geometric and brightness draws (and
    so the default augmentation) stay as they were before these were added."""
    if cfg.p_contrast and rng.random() < cfg.p_contrast:
        c = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
        mean = float(out.mean())
        out = cv2.convertScaleAbs(out, alpha=c, beta=mean * (1.0 - c))
    if cfg.p_gamma and rng.random() < cfg.p_gamma:
        g = float(np.exp(rng.uniform(-np.log1p(cfg.gamma), np.log1p(cfg.gamma))))
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g + 0.5, 0, 255).astype(np.uint8)
        out = cv2.LUT(out, lut)
    if cfg.p_colour and rng.random() < cfg.p_colour and out.ndim == 3:
        gains = 1.0 + rng.uniform(-cfg.colour, cfg.colour, out.shape[2])
        out = np.clip(out * gains + 0.5, 0, 255).astype(np.uint8)
    if cfg.p_noise and rng.random() < cfg.p_noise:
        sigma = rng.uniform(1.0, cfg.noise_sigma)
        out = np.clip(out + rng.normal(0.0, sigma, out.shape) + 0.5, 0, 255).astype(np.uint8)
    if cfg.p_jpeg and rng.random() < cfg.p_jpeg:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(out), [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            raise BarsalignError(f"augment: JPEG re-compression of a {out.shape} square failed")
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(out.shape)
    return out


def augment(square_bgr: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One random variant of a resized square (uint8 BGR, same shape)."""
    out = square_bgr
    h, w = out.shape[:2]
    if rng.random() < cfg.p_hflip:
        out = out[:, ::-1]
    if rng.random() < cfg.p_vflip:
        out = out[::-1]
    m = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if rng.random() < cfg.p_rotate:
        angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    if rng.random() < cfg.p_shift:
        m[:, 2] += rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
    if not np.array_equal(m, np.eye(2, 3)):  # one resampling for rotation and shift together
        out = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if rng.random() < cfg.p_brightness:
        gain = 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
        out = cv2.convertScaleAbs(out, alpha=gain, beta=0)
    if rng.random() < cfg.p_blur:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, cfg.blur_sigma))
    out = _photometric(out, cfg, rng)
    return np.ascontiguousarray(out) if out is not square_bgr else square_bgr.copy()


def describe(cfg: AugmentConfig | None) -> str:
    """The changes that are on, each with its range and probability, in one line."""
    if cfg is None:
        return "none"
    lo, hi = cfg.jpeg_quality
    parts = [
        (cfg.p_hflip, "left-right flips"),
        (cfg.p_vflip, "top-bottom flips"),
        (cfg.p_rotate, f"rotation ±{cfg.rotate_deg:g}°"),
        (cfg.p_shift, f"shift ±{cfg.shift:.0%}"),
        (cfg.p_brightness, f"brightness ±{cfg.brightness:.0%}"),
        (cfg.p_blur, f"blur sigma 0.3-{cfg.blur_sigma:g}"),
        (cfg.p_contrast, f"contrast ±{cfg.contrast:.0%}"),
        (cfg.p_gamma, f"gamma 1/{1 + cfg.gamma:g}-{1 + cfg.gamma:g}"),
        (cfg.p_colour, f"tint ±{cfg.colour:.0%} per channel"),
        (cfg.p_noise, f"noise sigma 1-{cfg.noise_sigma:g}"),
        (cfg.p_jpeg, f"JPEG quality {lo}-{hi}"),
    ]
    on = [f"{what} (p {p:g})" for p, what in parts if p > 0]
    return ", ".join(on) or "none (every probability is 0)"


def augmented_variants(
    image_bgr: np.ndarray,
    n: int,
    pcfg: PreprocessConfig | None = None,
    acfg: AugmentConfig | None = None,
    seed: int = 0,
) -> list[np.ndarray]:
    """N preprocessed, augmented variants of one frame (the first is the plain one)."""
    pcfg, acfg = pcfg or PreprocessConfig(), acfg or AugmentConfig()
    rng = np.random.default_rng(seed)
    square = crop_resize(image_bgr, pcfg)
    out = [finish(square, pcfg)]
    out += [finish(augment(square, acfg, rng), pcfg) for _ in range(max(0, n - 1))]
    return out
