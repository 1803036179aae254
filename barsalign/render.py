"""Draws one synthetic conveyor frame from a `SceneSpec`: bars on a roller bed, stopper, frame.

Geometry: the bars lie on a flat bed, drawn top-down on a canvas (u along the bars towards the
stopper, v across them) and warped into the oblique camera view by a homography; the stopper
wall, the blue steel frame and the mill behind are drawn in image space. Lighting, glare, dust,
barrel distortion, the burned-in caption, sensor noise and JPEG come after, in camera order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from barsalign.config import NIGHT_MEAN

BED_U = 1200  # canvas length along the bars (units)
BED_V = 720  # canvas width across the bars (units)
STOPPER_U = 1120  # u of the stopper face; bar heads end here when aligned
ROLLER_PITCH = 150


@dataclass(frozen=True)
class Camera:
    """Where a camera sees the bed and how the stopper wall shows in its frame.

    Args:
        quad: where the bed's corners (u=0,v=0), (u=0,v=V), (u=U,v=0), (u=U,v=V) land in a
            frame of `size` pixels, before the session's shift, zoom and roll.
        wall_up: image direction of the stopper wall's height, per bed unit of local scale.
        wall_height: the wall's height in bed units along `wall_up`.
        top_depth: share of the stopper block's 90-unit depth its top face shows.
        face_light: brightness of the wall's face (a top-down camera sees it at a grazing angle).
        side: the stopper block's near end (v = BED_V) faces the camera and is drawn.
        mirror: the frame is flipped left-right after drawing, so the stopper is on the left.
    """

    quad: tuple[tuple[float, float], ...]
    size: tuple[int, int] = (1152, 864)
    wall_up: tuple[float, float] = (0.12, -1.0)
    wall_height: float = 190.0
    top_depth: float = 0.6
    face_light: float = 1.0
    side: bool = False
    mirror: bool = False


# CS1/CS2: bars run from the lower left towards the stopper at the upper right. The stopper face
# lies in the frame's right third, as at the plant: the preprocessing keeps the right square and
# zeroes its left half, which leaves the columns x > 0.625 * width.
CAMERAS = {
    "CS1": Camera(((-700.0, 330.0), (50.0, 1500.0), (840.0, 90.0), (1105.0, 415.0))),
    "CS2": Camera(((-650.0, 420.0), (140.0, 1480.0), (890.0, 130.0), (1135.0, 470.0))),
    # CS3: closer and a little higher than CS1 (the round-bar table)
    "CS3": Camera(((-820.0, 420.0), (-40.0, 1640.0), (800.0, 60.0), (1080.0, 470.0))),
    # TD1/TD2: straight down over the table; bars run left to right, the stopper's top shows
    "TD1": Camera(
        ((-310.0, 52.0), (-330.0, 830.0), (980.0, 72.0), (985.0, 812.0)),
        wall_up=(0.06, 0.0),
        top_depth=1.0,
        face_light=0.55,
    ),
    "TD2": Camera(
        ((-260.0, 20.0), (-250.0, 790.0), (1010.0, 46.0), (1000.0, 780.0)),
        wall_up=(0.07, 0.01),
        top_depth=1.0,
        face_light=0.55,
    ),
    # LS1/LS2: low (a pinhole 430-480 units over the floor), from the other side of the table:
    # drawn as if from this side, then mirrored; the stopper block's near end shows
    "LS1": Camera(
        ((-273.0, 396.0), (-533.0, 666.0), (738.0, 329.0), (1050.0, 500.0)),
        wall_up=(0.02, -1.0),
        top_depth=1.0,
        side=True,
        mirror=True,
    ),
    "LS2": Camera(
        ((-198.0, 383.0), (-439.0, 626.0), (725.0, 330.0), (974.0, 500.0)),
        wall_up=(0.02, -1.0),
        top_depth=1.0,
        side=True,
        mirror=True,
    ),
    # CW1/CW2: a 16:9 camera high over the table (a pinhole 1500-1700 units up): bars climb
    # steeply to the stopper, whose face runs from the frame's middle down to the right
    "CW1": Camera(
        ((267.0, 906.0), (23.0, 495.0), (967.0, 396.0), (671.0, 130.0)),
        size=(1280, 720),
        wall_up=(0.12, -0.7),
    ),
    "CW2": Camera(
        ((216.0, 976.0), (-22.0, 518.0), (976.0, 418.0), (666.0, 142.0)),
        size=(1280, 720),
        wall_up=(0.12, -0.7),
    ),
}
CAMERA_QUADS = {name: cam.quad for name, cam in CAMERAS.items()}
STOPPER_STYLES = ("rust_blue", "steel", "hazard")
"""rust_blue: a rusty block with the blue steel frame beside it (the default); steel: a plain
machined steel block, no frame; hazard: a grey block whose top is painted yellow and black."""
PROFILES = ("round", "channel", "angle")


@dataclass(frozen=True)
class Bar:
    """One bar: its place across the bed, profile, gap to the stopper and motion."""

    v_center: float
    width: float
    profile: str
    gap_units: float  # distance from the head to the stopper face along u (0 = touching)
    skew_deg: float = 0.0  # rotation about the head's nearest corner
    speed: float = 0.0  # motion-blur length along u, in units
    tone: float = 1.0  # per-bar brightness (mill scale, fresh cut, rust)
    rust: float = 0.0


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to draw one frame deterministically (with `seed` for the textures)."""

    seed: int
    width: int
    height: int
    camera: str
    shift: tuple[float, float]  # camera shift between sessions, pixels at 1152x864
    zoom: float
    roll_deg: float
    distortion: float  # barrel coefficient k1 on radius normalised to the half-diagonal
    stopper: bool
    view_offset: tuple[float, float]  # (0, 0) normally; moves the stopper out of view
    bars: tuple[Bar, ...]
    lighting: str  # day | artificial | night
    gain: float
    glare: int  # number of glare spots
    dust: float  # 0..1 haze and specks
    noise_sigma: float
    jpeg_quality: int
    caption: str
    timestamp: str
    stopper_style: str = "rust_blue"  # one of STOPPER_STYLES


def _pad(spec: SceneSpec) -> int:
    """Margin drawn around the frame so the barrel distortion never samples outside it."""
    return int(np.ceil(spec.distortion * np.hypot(spec.width, spec.height) / 2.0)) + 4


def camera_homography(spec: SceneSpec, pad: int = 0) -> np.ndarray:
    """Bed canvas (u, v) -> undistorted image pixels (offset by `pad`) for this camera and view.

    A mirrored camera's frame is flipped after drawing; this maps to the unflipped drawing.
    """
    cam = CAMERAS[spec.camera]
    sx, sy = spec.width / cam.size[0], spec.height / cam.size[1]
    quad = np.array(cam.quad, dtype=np.float64)
    quad += np.array(spec.view_offset)
    centre = np.array(cam.size, dtype=np.float64) / 2.0
    theta = np.deg2rad(spec.roll_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    quad = (quad - centre) @ rot.T * spec.zoom + centre + np.array(spec.shift)
    quad = quad * np.array([sx, sy]) + pad
    src = np.array([[0, 0], [0, BED_V], [BED_U, 0], [BED_U, BED_V]], dtype=np.float32)
    return cv2.getPerspectiveTransform(src, quad.astype(np.float32))


def to_frame(spec: SceneSpec, bed_pts: np.ndarray) -> np.ndarray:
    """Bed points (u, v), an (N, 2) array, -> where they land in the final frame, in pixels."""
    pts = project(camera_homography(spec), np.asarray(bed_pts, dtype=np.float64))
    if CAMERAS[spec.camera].mirror:
        pts[:, 0] = spec.width - 1 - pts[:, 0]
    return distort_points(pts, spec.width, spec.height, spec.distortion)


def project(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply homography `h` to an (N, 2) array of points."""
    return cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), h).reshape(-1, 2)


def distort_points(pts: np.ndarray, width: int, height: int, k: float) -> np.ndarray:
    """Where undistorted pixels land after the barrel distortion applied by `_distortion_maps`."""
    c = np.array([width / 2.0, height / 2.0])
    norm = np.hypot(width / 2.0, height / 2.0)
    p = (pts - c) / norm
    r_u = np.linalg.norm(p, axis=1)
    r_d = r_u.copy()
    for _ in range(20):  # invert r_u = r_d * (1 + k r_d^2) by fixed point
        r_d = r_u / (1.0 + k * r_d**2)
    scale = np.where(r_u > 0, r_d / np.maximum(r_u, 1e-12), 1.0)
    return p * scale[:, None] * norm + c


@lru_cache(maxsize=16)
def _distortion_maps(width: int, height: int, k: float, pad: int) -> tuple[np.ndarray, ...]:
    """remap() maps from the padded undistorted image to the width x height distorted frame."""
    c = np.array([width / 2.0, height / 2.0], dtype=np.float32)
    norm = np.float32(np.hypot(width / 2.0, height / 2.0))
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    dx, dy = (xs - c[0]) / norm, (ys - c[1]) / norm
    f = 1.0 + np.float32(k) * (dx * dx + dy * dy)
    return cv2.convertMaps(dx * f * norm + c[0] + pad, dy * f * norm + c[1] + pad, cv2.CV_16SC2)


def local_scale(h: np.ndarray, u: float, v: float) -> float:
    """Image pixels per bed unit along u at (u, v)."""
    a, b = project(h, np.array([[u - 1.0, v], [u + 1.0, v]]))
    return float(np.linalg.norm(b - a) / 2.0)


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
    pad = _pad(spec)
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


"""Frames whose grayscale mean is below this are dark (night); preprocessing treats them apart."""


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


def gaps_px(spec: SceneSpec) -> list[float]:
    """Each bar's gap to the stopper face in final image pixels (0.0 when touching)."""
    out = []
    for bar in spec.bars:
        if bar.gap_units <= 0:
            out.append(0.0)
            continue
        pts = np.array([[STOPPER_U - bar.gap_units, bar.v_center], [STOPPER_U, bar.v_center]])
        a, b = to_frame(spec, pts)
        out.append(round(float(np.linalg.norm(b - a)), 2))
    return out


def head_points_px(spec: SceneSpec) -> list[list[float]]:
    """Each bar head's centre in final image pixels, [x, y] (where a reader should look)."""
    if not spec.bars:
        return []
    pts = np.array([[STOPPER_U - b.gap_units, b.v_center] for b in spec.bars])
    return [[round(float(x), 1), round(float(y), 1)] for x, y in to_frame(spec, pts)]


def stopper_face_px(spec: SceneSpec) -> list[list[float]] | None:
    """The two ends, [x, y] in final image pixels, of the stopper face's line where bars can
    meet it (across the bed), cut to the part inside the frame; None with no stopper in view."""
    if not spec.stopper:
        return None
    v = np.linspace(0.0, BED_V, 73)
    pts = to_frame(spec, np.stack([np.full_like(v, STOPPER_U), v], axis=1))
    x_in = (pts[:, 0] >= 0) & (pts[:, 0] <= spec.width - 1)
    inside = x_in & (pts[:, 1] >= 0) & (pts[:, 1] <= spec.height - 1)
    if not inside.any():
        return None
    ends = pts[np.flatnonzero(inside)[[0, -1]]]
    return [[round(float(x), 1), round(float(y), 1)] for x, y in ends]


def gap_units_for(spec: SceneSpec, v_center: float, gap_px: float) -> float:
    """Bed units that give `gap_px` image pixels between a head at v_center and the stopper."""
    if gap_px <= 0:
        return 0.0
    h = camera_homography(spec)
    units = gap_px / local_scale(h, STOPPER_U, v_center)
    for _ in range(3):  # correct for the lens distortion near the stopper
        pts = np.array([[STOPPER_U - units, v_center], [STOPPER_U, v_center]])
        a, b = to_frame(spec, pts)
        units *= gap_px / max(float(np.linalg.norm(b - a)), 1e-6)
    return units
