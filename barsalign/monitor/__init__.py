"""The live monitor: a video source in, a glowing green / red / amber frame around it out.

`run_monitor` (`stream`) reads frames with OpenCV (`source`: a file, a camera index or an
RTSP/HTTP URL), preprocesses each exactly as the model's card says, scores it with the model
(`inference.load_predictor`: an export run by ONNX Runtime, its card checked), smooths the
decision over time (`smoother`, pure and separately tested) and draws the border with the
label, the score and the latency (`overlay`). `stats` counts what happened; `operator` judges
the states shown against per-frame truth as an operator would (time to green, false greens,
flicker) and sweeps the smoothing; `cli` is `barsalign monitor`. `serve` is the same screen in a
browser (`barsalign serve`), scored by `scorer`'s one thread.
"""

from barsalign.monitor import operator
from barsalign.monitor.overlay import Overlay, frame_strip, score_timeline
from barsalign.monitor.smoother import ALIGNED, NOT_ALIGNED, UNCERTAIN, Smoother
from barsalign.monitor.source import frame_problem, open_capture, parse_source
from barsalign.monitor.stats import MonitorStats, format_stats
from barsalign.monitor.stream import MonitorConfig, MonitorResult, VideoOut, clip_truth, run_monitor

__all__ = [
    "ALIGNED",
    "NOT_ALIGNED",
    "UNCERTAIN",
    "MonitorConfig",
    "MonitorResult",
    "MonitorStats",
    "Overlay",
    "Smoother",
    "VideoOut",
    "clip_truth",
    "format_stats",
    "frame_problem",
    "frame_strip",
    "operator",
    "open_capture",
    "parse_source",
    "run_monitor",
    "score_timeline",
]
