"""Looks of the synthetic conveyor: other cameras, bars, stoppers, frame sizes and compression.

A look is what one plant's camera makes of the same question: where it sits (a `Camera` in
`barsalign.synth.geometry`), what the bars and stopper look like, the frame size, how hard the JPEG
squeezes, the lighting mix, and how many pixels a short bar's gap spans. A recipe that holds
up on every look is not fitted to one. `default` is the project's own data set, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from barsalign.errors import BarsalignError
from barsalign.synth.geometry import CAMERAS, STOPPER_STYLES


@dataclass(frozen=True)
class Look:
    """One camera's look: `config` overrides SynthConfig fields, the rest shapes each scene.

    Args:
        summary: one line saying what the look shows.
        config: SynthConfig fields the look sets (frame size, bar counts, hard gaps in pixels,
            lighting mix, JPEG quality, shares of glare, dust and motion blur).
        cameras: camera names (`barsalign.synth.geometry.CAMERAS`), one per recording session
            in turn.
        profile_weights: weights of round, channel and angle bars.
        mixed_fraction: share of scenes with a mix of profiles on the table.
        bar_width, bar_spacing: bed units (the bed is 720 units across).
        shift_px, zoom, roll_deg, distortion: how much the camera moves between sessions
            (shift in pixels of the camera's own frame size; roll in +-degrees).
        no_stopper_offset: (x, y) ranges, pixels, the view moves when no stopper is in view.
        noise_scale: factor on the sensor noise of each lighting.
        caption: the burned-in caption, `{camera}` replaced by the camera's name.
    """

    summary: str
    config: dict[str, Any] = field(default_factory=dict)
    cameras: tuple[str, ...] = ("CS1", "CS2")
    stopper_style: str = "rust_blue"
    profile_weights: tuple[float, float, float] = (0.5, 0.25, 0.25)
    mixed_fraction: float = 0.15
    bar_width: tuple[float, float] = (34.0, 50.0)
    bar_spacing: tuple[float, float] = (2.0, 10.0)
    shift_px: tuple[float, float] = (30.0, 25.0)
    zoom: tuple[float, float] = (0.94, 1.06)
    roll_deg: float = 1.5
    distortion: tuple[float, float] = (0.08, 0.16)
    no_stopper_offset: tuple[tuple[float, float], tuple[float, float]] = (
        (380.0, 520.0),
        (-360.0, -260.0),
    )
    noise_scale: float = 1.0
    caption: str = "{camera} Stopper"

    def __post_init__(self) -> None:
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if not self.cameras or unknown:
            raise BarsalignError(f"look cameras {unknown or '()'} are not in render.CAMERAS")
        if self.stopper_style not in STOPPER_STYLES:
            raise BarsalignError(f"stopper_style must be one of {', '.join(STOPPER_STYLES)}")


LOOKS: dict[str, Look] = {
    "default": Look(
        "oblique camera, stopper in the right third with a blue steel frame, 1152x864, "
        "mixed profiles, JPEG 45-92"
    ),
    "top_down": Look(
        "camera straight over the roller table, bars run left to right to a grey stopper "
        "painted yellow and black; fewer, wider bars; about 1 px per bed unit at the stopper "
        "(the default: 0.4); hard gaps 4-10 px; more sodium light; little lens distortion",
        config={
            "min_bars": 4,
            "max_bars": 9,
            "hard_gap_px": (4.0, 10.0),
            "lighting_mix": (0.25, 0.55, 0.20),
            "jpeg_quality": (50, 90),
        },
        cameras=("TD1", "TD2"),
        stopper_style="hazard",
        profile_weights=(0.4, 0.3, 0.3),
        bar_width=(48.0, 72.0),
        bar_spacing=(4.0, 24.0),
        shift_px=(25.0, 20.0),
        zoom=(0.95, 1.05),
        roll_deg=2.5,
        distortion=(0.02, 0.06),
        no_stopper_offset=((330.0, 450.0), (-40.0, 40.0)),
        caption="{camera} Roller table",
    ),
    "left_low": Look(
        "low camera from the other side of the table: the stopper (rusty, blue frame) on the "
        "left, the bed seen at a grazing angle; more channels and angles; stronger lens "
        "distortion; darker light mix",
        config={
            "min_bars": 5,
            "max_bars": 12,
            "hard_gap_px": (3.0, 8.0),
            "lighting_mix": (0.30, 0.45, 0.25),
        },
        cameras=("LS1", "LS2"),
        profile_weights=(0.3, 0.35, 0.35),
        mixed_fraction=0.3,
        distortion=(0.12, 0.22),
        roll_deg=2.0,
        no_stopper_offset=((600.0, 720.0), (-40.0, 40.0)),
        caption="{camera} Stopper West",
    ),
    "round_bars": Look(
        "round bars only, thinner and more of them (8-16), a closer camera (CS3) beside CS1; "
        "hard gaps 3-7 px; more night frames",
        config={
            "min_bars": 8,
            "max_bars": 16,
            "hard_gap_px": (3.0, 7.0),
            "lighting_mix": (0.35, 0.35, 0.30),
        },
        cameras=("CS3", "CS1"),
        profile_weights=(1.0, 0.0, 0.0),
        mixed_fraction=0.0,
        bar_width=(26.0, 40.0),
        caption="{camera} Rounds",
    ),
    "plain_stopper": Look(
        "a plain machined steel stopper with bolts and no blue frame; cameras moved more "
        "between sessions; fewer, wider bars; mostly daylight",
        config={
            "min_bars": 5,
            "max_bars": 12,
            "lighting_mix": (0.60, 0.30, 0.10),
            "jpeg_quality": (55, 95),
        },
        stopper_style="steel",
        bar_width=(40.0, 56.0),
        shift_px=(45.0, 35.0),
        zoom=(0.9, 1.1),
        roll_deg=2.5,
        caption="{camera} Stop plate",
    ),
    "wide_720": Look(
        "1280x720 camera high over the table: bars climb steeply to a stopper in mid-frame; "
        "more, thinner bars (8-16); stronger barrel distortion; hard gaps 3-7 px",
        config={
            "width": 1280,
            "height": 720,
            "min_bars": 8,
            "max_bars": 16,
            "hard_gap_px": (3.0, 7.0),
            "lighting_mix": (0.40, 0.40, 0.20),
            "jpeg_quality": (40, 85),
        },
        cameras=("CW1", "CW2"),
        bar_width=(30.0, 44.0),
        distortion=(0.14, 0.24),
        no_stopper_offset=((-40.0, 40.0), (-560.0, -480.0)),
        caption="{camera} Stopper HD",
    ),
    "heavy_jpeg": Look(
        "JPEG quality 10-35 at 960x720, more sensor noise, dust, glare and motion blur; "
        "hard gaps 4-9 px",
        config={
            "width": 960,
            "height": 720,
            "hard_gap_px": (4.0, 9.0),
            "jpeg_quality": (10, 35),
            "dust_fraction": 0.5,
            "glare_fraction": 0.3,
            "motion_blur_fraction": 0.45,
            "lighting_mix": (0.35, 0.35, 0.30),
        },
        noise_scale=1.5,
    ),
}
"""The looks by name; `barsalign.synth.look_config(name)` makes a SynthConfig of one."""


def get_look(name: str) -> Look:
    """The look called `name`, or a one-line error naming the known ones."""
    try:
        return LOOKS[name]
    except (KeyError, TypeError):
        raise BarsalignError(f"unknown look {name!r}; known: {', '.join(LOOKS)}") from None
