"""Where things are in a synthetic frame: the bed, the cameras, the bars, the stopper face.

The bars lie on a flat bed, a canvas in units (u along the bars towards the stopper, v across
them), seen by a camera through a homography and a barrel distortion. `SceneSpec` says
everything a frame shows; the functions here answer where its bar heads, gaps and stopper face
land in the final frame's pixels (the renderer's truth), without drawing anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

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


def frame_pad(spec: SceneSpec) -> int:
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


def local_scale(h: np.ndarray, u: float, v: float) -> float:
    """Image pixels per bed unit along u at (u, v)."""
    a, b = project(h, np.array([[u - 1.0, v], [u + 1.0, v]]))
    return float(np.linalg.norm(b - a) / 2.0)


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


STOPPER_ROI = (0.6111, 0.0752, 1.0, 0.5938)
"""The synthetic cameras' stopper region (x0, y0, x1, y1 frame fractions; 704..1152 x 65..513
at 1152x864): every bar head at the stopper, over all sessions' camera shifts and zoom, lies
inside it with a margin (a test checks). A plant engineer draws the same box once per camera."""
