"""The parity check: an export's logits against PyTorch's on real preprocessed frames.

The strict check runs the arithmetic PyTorch runs with oneDNN off: ONNX Runtime without graph
optimisations against PyTorch's native convolutions. A trained net can be ill-conditioned in fp32
(BatchNorm channels with near-zero running variance scale rounding errors by 100x and more), so
the optimised session that deployment uses is checked against a bound of `NOISE_FACTOR` times
how far PyTorch's own two CPU convolution paths (oneDNN, native) disagree on the same frames.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.config import IMAGE_SUFFIXES, SYNTH_DIR
from barsalign.errors import BarsalignError
from barsalign.inference import format_logits
from barsalign.preprocess import read_image

NOISE_FACTOR = 10.0
"""Allowed drift of the optimised ONNX Runtime session, in units of PyTorch's own fp32 spread."""


def default_parity_data(render: bool = True) -> Path:
    """The synthetic default set, for a parity check given no frames; said on stderr.

    With `render` False (the command) a missing set is an error asking for --data: 300 frames
    rendered into the repo's data folder unasked would be a surprise. The Python API renders
    it (saying so), as the notebooks' `data_dir = None` promises.
    """
    from barsalign.synth import SynthConfig, ensure_default
    from barsalign.synth.dataset import stamp_matches

    if stamp_matches(SYNTH_DIR / "synth_config.json", SynthConfig()):
        print(f"export: parity frames from the synthetic default set {SYNTH_DIR}", file=sys.stderr)
        return SYNTH_DIR
    if not render:
        raise BarsalignError(
            f"no --data given, and the synthetic default set is not rendered in {SYNTH_DIR}: "
            "pass --data FOLDER (frames for the parity check) or render it with barsalign synth"
        )
    print(
        f"export: no parity frames given: rendering the synthetic default set into {SYNTH_DIR}",
        file=sys.stderr,
        flush=True,
    )
    return ensure_default()


def parity_frames(data: str | Path | None, n: int) -> tuple[list[np.ndarray], list[str]]:
    """`n` real frames (BGR) spread over a folder (both classes where it has them)."""
    if data is None:
        data = default_parity_data()
    root = Path(data)
    if not root.is_dir():
        raise BarsalignError(f"--data {root} is not a folder (frames for the parity check)")
    if (root / "example_set").is_dir():
        root = root / "example_set"
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < 2:
        raise BarsalignError(f"{root} holds {len(paths)} images; the parity check needs 2 or more")
    pick = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, min(n, len(paths)))]
    frames = []
    for p in pick:
        try:
            frames.append(read_image(p))
        except BarsalignError as err:
            raise BarsalignError(f"{err} (needed for the parity check)") from None
    return frames, [str(p) for p in pick]


def parity(reference: np.ndarray, other: np.ndarray, threshold: float) -> dict[str, Any]:
    """Max |logit difference| and whether every frame gets the same label at `threshold`."""
    reference = np.asarray(reference, dtype=np.float64).ravel()
    other = np.asarray(other, dtype=np.float64).ravel()
    if reference.shape != other.shape:
        raise BarsalignError(f"{len(other)} logits against {len(reference)} from PyTorch")
    cut = math.log(threshold / (1.0 - threshold))  # sigmoid(logit) >= t  <=>  logit >= cut
    differ = int(((reference >= cut) != (other >= cut)).sum())
    return {
        "frames": int(len(reference)),
        "max_abs_logit_diff": float(np.abs(reference - other).max()),
        "labels_differ": differ,
        "same_labels": differ == 0,
    }


def check_deployed(
    out: Path,
    batch: np.ndarray,
    reference: np.ndarray,
    threshold: float,
    fp32_spread: float,
    tolerance: float,
    check: dict[str, Any],
) -> None:
    """Check the optimised ONNX session against PyTorch's forward; add its numbers to `check`."""
    deployed = parity(reference, format_logits("onnx", out)(batch), threshold)
    allowed = max(tolerance, NOISE_FACTOR * fp32_spread)
    check.update(
        strict_reference="PyTorch, oneDNN off; ONNX Runtime, graph optimisations off",
        deployed_max_abs_logit_diff=deployed["max_abs_logit_diff"],
        deployed_labels_differ=deployed["labels_differ"],
        fp32_spread=fp32_spread,
        deployed_allowed=allowed,
    )
    if deployed["max_abs_logit_diff"] > allowed or not deployed["same_labels"]:
        raise BarsalignError(
            f"{out}: the optimised ONNX Runtime session drifts from PyTorch on {len(batch)} "
            f"frames: max |logit diff| {deployed['max_abs_logit_diff']:.2e} "
            f"(allowed {allowed:.2e}, "
            f"{NOISE_FACTOR:g}x PyTorch's own fp32 spread {fp32_spread:.2e}), "
            f"{deployed['labels_differ']} labels differ; no card written"
        )
