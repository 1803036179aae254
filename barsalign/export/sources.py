"""What an export starts from: the checkpoint (the best run's by default) and the threshold."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.config import RUNS_DIR
from barsalign.errors import BarsalignError
from barsalign.inference import SUFFIXES
from barsalign.preprocess import PreprocessConfig


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def best_checkpoint(runs_dir: str | Path = RUNS_DIR) -> Path:
    """The best.ckpt of the run with the highest validation F0.5 (summary.json)."""
    runs_dir = Path(runs_dir)
    found = []
    for ckpt in sorted(runs_dir.glob("*/checkpoints/best.ckpt")):
        summary = ckpt.parent.parent / "summary.json"
        score = json.loads(summary.read_text()).get("best_f05") if summary.is_file() else None
        found.append((score if isinstance(score, int | float) else -1.0, ckpt))
    if not found:
        raise BarsalignError(
            f"no trained run under {runs_dir} (no */checkpoints/best.ckpt): train one first "
            "(barsalign train) or pass a checkpoint"
        )
    return max(found, key=lambda t: t[0])[1]


def untrained_checkpoint(
    path: str | Path, backbone: str | None = None, image_size: int = 224, preprocess: Any = None
) -> Path:
    """A checkpoint of an untrained (random-weight) classifier, in the layout `load_checkpoint`
    reads: for latency benchmarks and tests, where what matters is the network, not its skill."""
    import torch

    from barsalign.modeling.model import DEFAULT_BACKBONE, AlignmentClassifier

    pcfg = preprocess if preprocess is not None else PreprocessConfig(target_size=image_size)
    model = AlignmentClassifier(
        backbone=backbone or DEFAULT_BACKBONE,
        image_size=image_size,
        weights="random",
        preprocess=dataclasses.asdict(pcfg),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def operating_point(
    run: str, threshold: float | None = None, evaluation: str | Path | None = None, runs_dir=None
) -> tuple[float, str, dict[str, Any]]:
    """The threshold for the operator's screen, where it came from, and the metrics behind it.

    An explicit `threshold` wins. Otherwise the row of `run` in 05_evaluate's comparison.csv
    (the given one, else the newest under `runs_dir`): its threshold for the precision target
    where reached, else its max-F0.5 threshold. Without an evaluation: 0.5, said so.
    """
    import pandas as pd

    runs_dir = Path(runs_dir or RUNS_DIR)
    tables = (
        [Path(evaluation)]
        if evaluation
        else sorted(runs_dir.glob("*/comparison.csv"), key=lambda p: p.stat().st_mtime)[::-1]
    )
    if evaluation and not tables[0].is_file():
        raise BarsalignError(f"evaluation table {evaluation} does not exist")
    for table in tables:
        df = pd.read_csv(table)
        if "model" not in df or run not in set(df["model"].astype(str)):
            continue
        row = {k: jsonable(v) for k, v in df[df["model"].astype(str) == run].iloc[0].items()}
        row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        metrics = {"source": str(table), **row}
        if threshold is not None:
            return float(threshold), "given", metrics
        for key, why in (("threshold_precision", "precision target"), ("threshold_f05", "F0.5")):
            if row.get(key) is not None:
                return float(row[key]), f"evaluation ({why}): {table}", metrics
    summary = runs_dir / run / "summary.json"
    metrics = {"source": "no evaluation found"}
    if summary.is_file():
        metrics = {"source": f"validation split of the training run ({summary})"}
        metrics.update(json.loads(summary.read_text()))
    if threshold is not None:
        return float(threshold), "given", metrics
    return 0.5, "default 0.5 (no evaluation of this run found)", metrics


def check_checkpoint(ckpt: Path) -> Path:
    """A checkpoint export can read: a .ckpt (not an export) that exists."""
    if ckpt.suffix != ".ckpt":
        already = any(ckpt.name.endswith(x) for x in SUFFIXES.values())
        raise BarsalignError(
            f"--checkpoint {ckpt}: export needs a .ckpt checkpoint (barsalign train writes "
            f"them){'; this file is already an export' if already else ''}"
        )
    if not ckpt.is_file():
        raise BarsalignError(f"checkpoint {ckpt} does not exist")
    return ckpt
