"""Draws one synthetic conveyor frame from a `SceneSpec`: bars on a roller bed, stopper, frame.

The bars lie on a flat bed, drawn top-down on a canvas (u along the bars towards the stopper,
v across them; `barsalign.synth.geometry`) and warped into the oblique camera view by a
homography; the stopper
wall, the blue steel frame and the mill behind are drawn in image space. Lighting, glare, dust,
barrel distortion, the burned-in caption, sensor noise and JPEG come after, in camera order.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from barsalign.config import NIGHT_MEAN
from barsalign.synth.geometry import (
    BED_U,
    BED_V,
    CAMERAS,
    ROLLER_PITCH,
    STOPPER_U,
    SceneSpec,
    camera_homography,
    frame_pad,
    local_scale,
    project,
)


@lru_cache(maxsize=16)
def _distortion_maps(width: int, height: int, k: float, pad: int) -> tuple[np.ndarray, ...]:
    """remap() maps from the padded undistorted image to the width x height distorted frame."""
    c = np.array([width / 2.0, height / 2.0], dtype=np.float32)
    norm = np.float32(np.hypot(width / 2.0, height / 2.0))
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    dx, dy = (xs - c[0]) / norm, (ys - c[1]) / norm
    f = 1.0 + np.float32(k) * (dx * dx + dy * dy)
    return cv2.convertMaps(dx * f * norm + c[0] + pad, dy * f * norm + c[1] + pad, cv2.CV_16SC2)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: tuple[int, int]):
    """Low-frequency noise in [0, 1]: random cells upsampled (cell = (rows, cols) per sample)."""
    small = rng.random((max(2, shape[0] // cell[0]), max(2, shape[1] // cell[1])), np.float32)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _profile_shade(profile: str, t: np.ndarray) -> np.ndarray:
    """Brightness across a bar for t in [-0.5, 0.5] (light from above the camera)."""
    n = np.clip(t * 2.0, -1.0, 1.0)
    if profile == "round":
        body = 0.25 + 0.75 * np.sqrt(np.clip(1.0 - n * n, 0.0, 1.0))
        return body + 0.55 * np.exp(-(((n + 0.35) / 0.13) ** 2))
    if profile == "channel":
        flange = (np.abs(n) > 0.78).astype(np.float32)
        web = 0.32 + 0.18 * (n + 1.0) / 2.0
        return (
            flange * (0.95 + 0.25 * np.exp(-(((np.abs(n) - 0.9) / 0.05) ** 2))) + (1 - flange) * web
        )
    # angle: one lit leg, a bright ridge, one leg in shade
    lit = np.where(n < 0.1, 0.85 - 0.15 * (n + 1.0), 0.38)
    return lit + 0.5 * np.exp(-(((n - 0.1) / 0.05) ** 2))


def _draw_bed(spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """The roller bed and the bars on it, top-down, float32 BGR in [0, ~1.3]."""
    u = np.arange(BED_U, dtype=np.float32)[None, :]
    v = np.arange(BED_V, dtype=np.float32)[:, None]
    grime = _smooth_noise(rng, (BED_V, BED_U), (24, 24))
    floor = 0.10 + 0.08 * grime
    phase = (u % ROLLER_PITCH) / ROLLER_PITCH
    roller = np.clip(1.0 - np.abs(phase - 0.5) / 0.2, 0.0, 1.0)
    roller_shade = 0.18 + 0.35 * np.sqrt(roller) * (phase < 0.7)
    bed = np.where(roller > 0, roller_shade, floor) * (0.8 + 0.4 * grime)
    bed = (bed[..., None] * np.array([0.95, 1.0, 1.08], np.float32)).astype(np.float32)
    bed[:, STOPPER_U:] *= 0.4
    rail = 0.30 + 0.25 * np.sin(np.linspace(0.0, np.pi, 14, dtype=np.float32))[:, None]
    bed[:14] = rail[..., None] * np.array([0.9, 0.95, 1.0], np.float32)
    bed[-14:] = rail[::-1, :, None] * np.array([0.9, 0.95, 1.0], np.float32)

    streaks = _smooth_noise(rng, (BED_V, BED_U), (2, 90))
    rust_tex = _smooth_noise(rng, (BED_V, BED_U), (18, 40))
    steel = np.array([0.60, 0.60, 0.62], np.float32)
    rust_col = np.array([0.22, 0.36, 0.62], np.float32)
    moving = np.zeros_like(bed)
    moving_alpha = np.zeros((BED_V, BED_U), np.float32)
    for bar in spec.bars:
        tan = np.tan(np.deg2rad(bar.skew_deg))
        reach = bar.width / 2.0 + abs(tan) * STOPPER_U + 2.0
        r0 = int(max(0, np.floor(bar.v_center - reach)))
        r1 = int(min(BED_V, np.ceil(bar.v_center + reach)))
        if r1 <= r0:
            continue
        rows = slice(r0, r1)
        vv = v[rows]
        head_u = STOPPER_U - bar.gap_units
        # skew pivots on the head corner nearest the stopper, so a touching bar still touches
        pivot_v = bar.v_center + np.sign(tan) * bar.width / 2.0
        centre = bar.v_center + np.clip(head_u - u, 0.0, None) * tan
        t = (vv - centre) / bar.width
        head_edge = head_u - np.abs(vv - pivot_v) * abs(tan)
        inside = (np.abs(t) <= 0.5) & (u <= head_edge)
        shade = _profile_shade(bar.profile, t) * (0.75 + 0.35 * streaks[rows]) * bar.tone
        shade *= 0.45 + 0.55 * np.clip((head_edge - u) / 5.0, 0.0, 1.0)  # chamfered cut end
        rust = np.clip(bar.rust * (rust_tex[rows] - 0.35) * 3.0, 0.0, 1.0)[..., None]
        colour = shade[..., None] * (steel * (1 - rust) + rust_col * rust)
        if bar.speed > 0:
            moving[rows][inside] = colour[inside]
            moving_alpha[rows][inside] = 1.0
        else:
            bed[rows][inside] = colour[inside]
        # the bar's shadow on the floor just in front of its head
        shadow = (np.abs(t) <= 0.5) & (u > head_edge) & (u < head_edge + 6) & (u < STOPPER_U)
        bed[rows][shadow] *= 0.5
    if moving_alpha.any():
        k = max(3, int(max(b.speed for b in spec.bars)) | 1)
        moving = cv2.blur(moving, (k, 1))
        moving_alpha = cv2.blur(moving_alpha, (k, 1))[..., None]
        bed = bed * (1 - moving_alpha) + moving
    return bed.astype(np.float32)


def _draw_background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The mill hall's far wall: corrugated cladding, columns, grime."""
    w, h = size
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    period = rng.uniform(14.0, 26.0)
    ribs = 0.5 + 0.5 * np.sin(2 * np.pi * xs / period)
    grime = _smooth_noise(rng, (h, w), (50, 50))
    base = (0.16 + 0.06 * ribs + 0.08 * ys) * (0.75 + 0.4 * grime)
    img = base[..., None] * np.array([1.0, 0.96, 0.9], np.float32)
    for _ in range(int(rng.integers(2, 5))):  # building columns
        x = int(rng.uniform(0.0, w))
        img[:, x : x + int(rng.uniform(0.02, 0.05) * w)] *= rng.uniform(0.45, 0.75)
    return img.astype(np.float32)


def _draw_floor(img: np.ndarray, h: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The concrete floor around the roller bed, on the same plane, with joints and oil stains."""
    step, u0, v0, nu, nv = 4.0, -300.0, -1100.0, 575, 750  # u up to 2000, v up to 1900
    grime = _smooth_noise(rng, (nv, nu), (10, 10))
    stains = np.clip(_smooth_noise(rng, (nv, nu), (35, 35)) - 0.55, 0.0, 1.0) * 2.0
    uu = u0 + step * np.arange(nu, dtype=np.float32)[None, :]
    vv = v0 + step * np.arange(nv, dtype=np.float32)[:, None]
    joints = ((uu % 500.0) < 8.0) | ((vv % 500.0) < 8.0)
    floor = (0.24 + 0.10 * grime) * (1.0 - 0.6 * stains) * np.where(joints, 0.55, 1.0)
    floor = floor[..., None] * np.array([0.92, 0.96, 1.0], np.float32)
    to_bed = np.array([[step, 0, u0], [0, step, v0], [0, 0, 1]], dtype=np.float64)
    return cv2.warpPerspective(
        floor.astype(np.float32),
        h @ to_bed,
        (img.shape[1], img.shape[0]),
        dst=img,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_TRANSPARENT,
    )


def _draw_stopper(img: np.ndarray, spec: SceneSpec, h: np.ndarray, rng: np.random.Generator):
    """The stopper block at u = STOPPER_U in its style; with rust_blue the blue steel frame."""
    cam = CAMERAS[spec.camera]
    a, b = project(h, np.array([[STOPPER_U, -40.0], [STOPPER_U, BED_V + 30.0]]))
    back_a, back_b = project(h, np.array([[STOPPER_U + 90, -40.0], [STOPPER_U + 90, BED_V + 30.0]]))
    scale_a, scale_b = local_scale(h, STOPPER_U, 0.0), local_scale(h, STOPPER_U, BED_V)
    up = np.array(cam.wall_up)
    top_a = a + up * cam.wall_height * scale_a
    top_b = b + up * cam.wall_height * scale_b
    face = np.array([a, b, top_b, top_a], np.float32)
    top = np.array(
        [top_a, top_b, top_b + (back_b - b) * cam.top_depth, top_a + (back_a - a) * cam.top_depth]
    )
    surfaces = [(top, 1.25, "top"), (face, cam.face_light, "face")]
    if cam.side:  # the block's near end: base b .. back_b, as high as the face
        back_top = back_b + up * cam.wall_height * local_scale(h, STOPPER_U + 90, BED_V)
        surfaces.insert(0, (np.array([b, back_b, back_top, top_b], np.float32), 0.7, "side"))
    hh, ww = img.shape[:2]
    for poly, light, part in surfaces:
        x0, y0 = np.maximum(np.floor(poly.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(poly.max(axis=0)).astype(int), [ww, hh])
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.round(poly - [x0, y0]).astype(np.int32)], 255, cv2.LINE_AA)
        tex = _stopper_texture(spec.stopper_style, part, mask.shape, light, rng)
        if spec.stopper_style == "hazard" and part == "top":
            tex = _hazard_paint(tex, (x0, y0), a, b, scale_a)
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        region = img[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = region * (1 - alpha) + tex * alpha
    # the dark line where bar heads meet the face, and bolts in two rows
    cv2.line(
        img,
        tuple(np.round(a).astype(int)),
        tuple(np.round(b).astype(int)),
        (0.04, 0.05, 0.07),
        max(1, int(round(1.5 * scale_a))),
        cv2.LINE_AA,
    )
    if spec.stopper_style != "rust_blue":
        if spec.stopper_style == "steel":
            _bolts(img, face, scale_a, scale_b, (0.30, 0.31, 0.33))
        return
    for row in (0.35, 0.8):
        for s in np.linspace(0.1, 0.9, 6):
            p = a + (b - a) * s + (top_a - a + (top_b - top_a - top_a + a) * s) * row
            r = max(2, int(5 * (scale_a + (scale_b - scale_a) * s)))
            cv2.circle(img, tuple(np.round(p).astype(int)), r, (0.06, 0.09, 0.14), -1, cv2.LINE_AA)
    _draw_blue_frame(img, b, top_b, scale_b)


def _stopper_texture(
    style: str, part: str, shape: tuple[int, int], light: float, rng: np.random.Generator
) -> np.ndarray:
    """One face of the stopper block, float32 BGR: rust, brushed steel or painted steel."""
    mottle = _smooth_noise(rng, shape, (5, 5)) * 0.45 + _smooth_noise(rng, shape, (28, 28))
    if style == "rust_blue":
        streak = _smooth_noise(rng, shape, (45, 3))
        rust = np.array([0.14, 0.27, 0.50], np.float32) * light
        return rust * (0.5 + 0.5 * mottle + 0.3 * streak)[..., None]
    brushed = _smooth_noise(rng, shape, (2, 60))
    if style == "steel":
        steel = np.array([0.47, 0.49, 0.52], np.float32) * light
        return steel * (0.55 + 0.25 * mottle + 0.3 * brushed)[..., None]
    base = np.array([0.26, 0.27, 0.29] if part == "face" else [0.5, 0.5, 0.5], np.float32)
    return base * light * (0.6 + 0.3 * mottle + 0.15 * brushed)[..., None]


def _hazard_paint(
    tex: np.ndarray, origin: tuple[int, int], a: np.ndarray, b: np.ndarray, scale: float
) -> np.ndarray:
    """Yellow and black diagonal stripes over `tex` (its top-left pixel at `origin`), worn."""
    ys, xs = np.mgrid[0 : tex.shape[0], 0 : tex.shape[1]].astype(np.float32)
    d = (b - a) / max(float(np.linalg.norm(b - a)), 1e-6)
    rel_x, rel_y = xs + origin[0] - a[0], ys + origin[1] - a[1]
    t = (rel_x * (d[0] - d[1]) + rel_y * (d[1] + d[0])) / (45.0 * max(scale, 0.05))
    yellow = (np.floor(t) % 2 == 0)[..., None]
    paint = np.where(yellow, np.array([0.06, 0.62, 0.88], np.float32), 0.05)
    wear = np.clip(tex.mean(axis=2, keepdims=True) * 1.6, 0.0, 1.0)
    return (paint * (0.45 + 0.55 * wear) + tex * 0.25).astype(np.float32)


def _bolts(img: np.ndarray, face: np.ndarray, scale_a: float, scale_b: float, colour) -> None:
    """Two rows of bolt heads on the quadrilateral `face` (a, b, top_b, top_a)."""
    a, b, top_b, top_a = face.astype(np.float64)
    for row in (0.3, 0.75):
        for s in np.linspace(0.12, 0.88, 5):
            p = (a + (b - a) * s) * (1 - row) + (top_a + (top_b - top_a) * s) * row
            r = max(2, int(4 * (scale_a + (scale_b - scale_a) * s)))
            cv2.circle(img, tuple(np.round(p).astype(int)), r, colour, -1, cv2.LINE_AA)
            cv2.circle(img, tuple(np.round(p).astype(int)), r, (0.1, 0.1, 0.11), 1, cv2.LINE_AA)


def _draw_blue_frame(img: np.ndarray, b: np.ndarray, top_b: np.ndarray, scale_b: float) -> None:
    """The blue steel frame at the stopper's near end: a beam over it and two columns."""
    hh, ww = img.shape[:2]
    blue = np.array([0.50, 0.30, 0.10], np.float32)
    cw = 70.0 * scale_b
    base = b + np.array([10.0, 12.0])
    polys = [
        np.array(
            [
                top_b + [0, -20],
                top_b + [ww, -140],
                top_b + [ww, -140 - cw * 0.7],
                top_b + [0, -20 - cw * 0.7],
            ]
        ),
        np.array(
            [
                base + [cw * 2.2, -30],
                base + [cw * 3.0, -34],
                base + [cw * 3.3, -hh],
                base + [cw * 2.5, -hh],
            ]
        ),
        np.array([base, base + [cw, -4], base + [cw * 1.25, -hh], base + [cw * 0.25, -hh]]),
    ]
    for poly, shade in zip(polys, (0.75, 0.85, 1.0), strict=True):
        pts = np.round(poly).astype(np.int32)
        cv2.fillPoly(img, [pts], tuple(float(c) for c in blue * shade), cv2.LINE_AA)
        edge = pts[[0, 3]] if len(pts) == 4 else pts
        cv2.polylines(img, [edge], False, tuple(float(c) for c in blue * 1.6), 2, cv2.LINE_AA)
        cv2.polylines(
            img, [pts[[1, 2]]], False, tuple(float(c) for c in blue * 0.4), 3, cv2.LINE_AA
        )


def _apply_light(img: np.ndarray, spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    hh, ww = img.shape[:2]
    tint = {
        "day": np.array([1.05, 1.0, 0.97], np.float32),
        "artificial": np.array([0.72, 0.92, 1.18], np.float32),
        "night": np.array([0.95, 0.95, 1.05], np.float32),
    }[spec.lighting]
    img = img * tint * spec.gain
    ys, xs = np.mgrid[0:hh, 0:ww].astype(np.float32)
    # uneven illumination: one broad light pool (a lamp over the table at night)
    cx, cy = rng.uniform(0.3, 0.9) * ww, rng.uniform(0.1, 0.7) * hh
    radius = rng.uniform(0.3, 0.6) * ww
    pool = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius**2))
    strength = 1.6 if spec.lighting == "night" else 0.35
    img = img * (1.0 + strength * pool[..., None])
    for _ in range(spec.glare):
        gx, gy = rng.uniform(0.2, 1.0) * ww, rng.uniform(0.0, 0.8) * hh
        gr = rng.uniform(0.02, 0.08) * ww
        blob = np.exp(-((xs - gx) ** 2 + ((ys - gy) * 1.8) ** 2) / (2 * gr**2))
        img = img + rng.uniform(0.25, 0.8) * blob[..., None]
    if spec.dust > 0:
        haze = _smooth_noise(rng, (hh, ww), (90, 90))[..., None]
        img = img * (1 - 0.35 * spec.dust) + 0.35 * spec.dust * (0.3 + 0.4 * haze) * spec.gain
    return img


def render(spec: SceneSpec) -> np.ndarray:
    """Draw the frame described by `spec` as BGR uint8 (before JPEG; see `encode_jpeg`)."""
    rng = np.random.default_rng(spec.seed)
    pad = frame_pad(spec)
    h = camera_homography(spec, pad)
    size = (spec.width + 2 * pad, spec.height + 2 * pad)
    img = _draw_floor(_draw_background(size, rng), h, rng)
    bed = _draw_bed(spec, rng)
    img = cv2.warpPerspective(
        bed, h, size, dst=img, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT
    )
    if spec.stopper:
        _draw_stopper(img, spec, h, rng)
    if CAMERAS[spec.camera].mirror:  # seen from the other side of the table
        img = np.ascontiguousarray(img[:, ::-1])
    img = _apply_light(img, spec, rng)
    img = _settle_exposure(img, spec, pad)
    img8 = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    map1, map2 = _distortion_maps(spec.width, spec.height, spec.distortion, pad)
    img8 = cv2.remap(img8, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    _burn_caption(img8, spec)
    noise = rng.normal(0.0, spec.noise_sigma, img8.shape).astype(np.float32)
    return np.clip(img8.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _settle_exposure(img: np.ndarray, spec: SceneSpec, pad: int) -> np.ndarray:
    """Keep night frames below the dark threshold and lit ones above it, as auto-exposure would."""
    view = img[pad : img.shape[0] - pad, pad : img.shape[1] - pad]
    mean = float(np.clip(view, 0, 1).mean()) * 255.0 * 0.98
    target = (12.0, NIGHT_MEAN - 4.0) if spec.lighting == "night" else (NIGHT_MEAN + 4.0, 170.0)
    if mean <= 0:
        return img
    if mean < target[0] or mean > target[1]:
        img = img * (float(np.clip(mean, *target)) / mean)
    return img


def _burn_caption(img: np.ndarray, spec: SceneSpec) -> None:
    s = spec.height / 864.0
    font = cv2.FONT_HERSHEY_SIMPLEX
    for text, org in (
        (spec.caption, (int(18 * s), int(42 * s))),
        (spec.timestamp, (int(spec.width - 330 * s), int(42 * s))),
    ):
        cv2.putText(img, text, org, font, 1.0 * s, (0, 0, 0), int(max(1, 5 * s)), cv2.LINE_AA)
        cv2.putText(img, text, org, font, 1.0 * s, (235, 235, 235), int(max(1, 2 * s)), cv2.LINE_AA)


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 only fails here on invalid arrays
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
