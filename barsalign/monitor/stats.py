"""What a monitor run counts: frames read, scored, dropped, unreadable, and the latency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class MonitorStats:
    """What happened: frames read, scored, dropped and unreadable, and the timings."""

    source: str
    live: bool
    frames_read: int = 0
    frames_scored: int = 0
    frames_dropped: int = 0
    unreadable: list[str] = field(default_factory=list)
    reconnects: int = 0
    source_fps: float = 0.0
    frame_size: tuple[int, int] = (0, 0)  # width, height
    interrupted: bool = False
    latency_ms: list[float] = field(default_factory=list)  # preprocess + inference per frame
    frame_ms: list[float] = field(default_factory=list)  # + decode wait + draw (+ write)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latency_ms or [np.nan])
        tot = np.asarray(self.frame_ms or [np.nan])
        return {
            "source": self.source,
            "mode": "live" if self.live else "every frame",
            "frames_read": self.frames_read,
            "frames_scored": self.frames_scored,
            "frames_dropped": self.frames_dropped,
            "frames_unreadable": len(self.unreadable),
            "reconnects": self.reconnects,
            "source_fps": round(self.source_fps, 2),
            "frame_size": f"{self.frame_size[0]}x{self.frame_size[1]}",
            "fps": round(self.frames_scored / self.wall_s, 2) if self.wall_s else 0.0,
            **{f"latency_ms_p{q}": round(float(np.nanpercentile(lat, q)), 2) for q in (50, 90, 99)},
            **{f"frame_ms_p{q}": round(float(np.nanpercentile(tot, q)), 2) for q in (50, 90, 99)},
        }


def format_stats(stats: MonitorStats) -> str:
    s = stats.summary()
    lines = [
        f"{s['frames_scored']} frames scored of {s['frames_read']} read in {stats.wall_s:.1f} s: "
        f"{s['fps']:.1f} frames/s ({s['mode']}, source {s['source_fps']:.1f} fps)",
        f"dropped {s['frames_dropped']} (inference slower than the source), unreadable "
        f"{s['frames_unreadable']}, reconnects {s['reconnects']}",
        f"latency (preprocess + inference) ms: p50 {s['latency_ms_p50']:.1f}  "
        f"p90 {s['latency_ms_p90']:.1f}  p99 {s['latency_ms_p99']:.1f}",
        f"whole frame ms: p50 {s['frame_ms_p50']:.1f}  p90 {s['frame_ms_p90']:.1f}  "
        f"p99 {s['frame_ms_p99']:.1f}",
    ]
    lines += [f"unreadable: {u}" for u in stats.unreadable[:10]]
    if stats.interrupted:
        lines.insert(0, "stopped by the user (Ctrl+C)")
    return "\n".join(lines)
