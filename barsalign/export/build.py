"""`export_checkpoint`: export each format, check it against PyTorch, then write its model card.

Each export is checked on real preprocessed frames (`checks`: max |logit difference| and the
label on every frame) before a **model card** is written beside it (`model.onnx` →
`model.onnx.card.json`): backbone, input size, the full `PreprocessConfig`, the normalisation,
the operating threshold and where it came from, the metrics, the parity numbers and the sha256
of both the source checkpoint and the exported file. `inference.load_predictor` reads the card
and refuses a model without one, or whose card belongs to another file, another input size or
another preprocessing; the card's sha256 covers the scoring fields written into the model file,
so a card edited by hand no longer matches its model and is refused.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.config import RUNS_DIR
from barsalign.errors import BarsalignError
from barsalign.export.checks import check_deployed, default_parity_data, parity, parity_frames
from barsalign.export.formats import inference_net, write_coreml, write_onnx, write_torchscript
from barsalign.export.sources import best_checkpoint, check_checkpoint, jsonable, operating_point
from barsalign.inference import (
    CARD_VERSION,
    SUFFIXES,
    card_path,
    format_logits,
    load_predictor,
    read_card,
    scoring_json,
    sha256,
)
from barsalign.outputs import atomic_path, atomic_write_text, check_output_dir

FORMATS = tuple(SUFFIXES)


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how to check it.

    Args:
        checkpoint: a `.ckpt`; None takes the best run under `runs_dir` (by validation F0.5).
        out_dir: where models and cards go; None means `<run>/export/`.
        threshold: the operating threshold; None takes evaluation's (see `operating_point`),
            else 0.5.
        evaluation: a `comparison.csv` from 05_evaluate; None looks for the newest under
            `runs_dir`.
        parity_data: a folder of frames (or a synthetic data set) for the parity check; None
            means the synthetic default's labelled set.
        tolerance: the largest allowed |logit difference| against PyTorch.
        tracking: log the export to MLflow and register it as a new version of
            `barsalign.registry.REGISTERED_MODEL`; False: files only.
        promote: make the new version the one on the line (the registry's alias
            `champion`); an export alone does not.
    """

    checkpoint: str | None = None
    runs_dir: str | None = None
    out_dir: str | None = None
    formats: tuple[str, ...] = ("onnx", "torchscript", "coreml")
    opset: int = 17
    threshold: float | None = None
    evaluation: str | None = None
    parity_data: str | None = None
    parity_frames: int = 32
    tolerance: float = 1e-4
    name: str = "model"
    tracking: bool = True
    promote: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise BarsalignError(f"formats must be some of {FORMATS}, not {list(self.formats)}")
        if self.opset < 17:
            raise BarsalignError(f"opset must be 17 or newer, not {self.opset}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise BarsalignError(f"threshold must lie in (0, 1), not {self.threshold}")
        if self.promote and not self.tracking:
            raise BarsalignError("promote needs tracking: the alias lives in the MLflow registry")
        if self.parity_frames < 2:
            raise BarsalignError(f"parity_frames must be >= 2, not {self.parity_frames}")


def size_mb(path: str | Path) -> float:
    path = Path(path)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(f.stat().st_size for f in files) / 2**20


def export_checkpoint(cfg: ExportConfig) -> dict[str, Any]:
    """Export, check against PyTorch and write the cards; return a summary per format.

    A format whose parity check fails raises BarsalignError (and gets no card); CoreML is
    reported as skipped or failed instead where coremltools is missing or cannot convert.
    """
    import torch

    # 1. the checkpoint, the output folder, the preprocessing and the operating point
    ckpt = Path(cfg.checkpoint) if cfg.checkpoint else best_checkpoint(cfg.runs_dir or RUNS_DIR)
    check_checkpoint(ckpt)
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    out_dir = check_output_dir(cfg.out_dir if cfg.out_dir else run_dir / "export", what="--out")
    parity_data = cfg.parity_data if cfg.parity_data is not None else default_parity_data()
    if cfg.tracking:  # a tracker that does not answer fails before the export
        from barsalign import tracking

        tracking.client()
    scorer = load_predictor(ckpt)
    threshold, threshold_source, metrics = operating_point(
        scorer.name, cfg.threshold, cfg.evaluation, cfg.runs_dir or run_dir.parent
    )

    # 2. real frames, preprocessed the way the model was trained, and PyTorch's logits
    frames, frame_paths = parity_frames(parity_data, cfg.parity_frames)
    batch = scorer.tensors(frames).astype(np.float32)
    net = inference_net(scorer.torch_model)
    with torch.inference_mode():  # the reference is the trained module's own forward
        reference = scorer.torch_model(torch.from_numpy(batch)).numpy()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore", UserWarning)  # mkldnn.flags warns about Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False):
            native = net(torch.from_numpy(batch)).numpy()  # im2col + GEMM, as ORT unoptimised
    fp32_spread = float(np.abs(native - reference).max())
    example = torch.from_numpy(batch[:1])
    side = int(batch.shape[-1])
    base_card = {
        "card_version": CARD_VERSION,
        "run": scorer.name,
        "variant": "fp32",  # barsalign quantize writes "int8"
        "backbone": scorer.backbone,
        "image_size": side,  # what preprocessing gives and the export takes
        "trained_image_size": scorer.image_size,
        "input": {"name": "input", "shape": ["batch", 3, side, side]},
        "output": "logit per frame; sigmoid(logit) = P(aligned); aligned when >= threshold",
        "preprocess": dataclasses.asdict(scorer.preprocess_cfg),
        "data_config": jsonable(scorer.data_config),
        "threshold": threshold,
        "threshold_source": threshold_source,
        "metrics": jsonable(metrics),
        "parameters": scorer.parameters,
        "weights_source": scorer.weights_source,
        "checkpoint": str(ckpt),
        "checkpoint_sha256": sha256(ckpt),
        "exported_with": {
            "torch": torch.__version__,
            "exporter": "torch.onnx (dynamo=False, BatchNorm unfolded)",
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    scoring = scoring_json(base_card)

    # 3. each format: export, check, card
    results: dict[str, Any] = {}
    for fmt in cfg.formats:
        out = out_dir / f"{cfg.name}{SUFFIXES[fmt]}"
        card_path(out).unlink(missing_ok=True)
        if fmt == "coreml":
            results[fmt] = write_coreml(net, example, out)
            if results[fmt]["status"] != "exported":
                continue
            check: dict[str, Any] = {"note": results[fmt]["parity"]}
        else:
            with atomic_path(out, SUFFIXES[fmt]) as tmp:  # the model file appears whole
                (
                    write_onnx(net, example, tmp, cfg.opset, scoring)
                    if fmt == "onnx"
                    else write_torchscript(net, example, tmp, scoring)
                )
            strict = format_logits(fmt, out, optimize=False)
            like = native if fmt == "onnx" else reference  # same arithmetic on both sides
            logits_b1 = np.concatenate([strict(batch[i : i + 1]) for i in (0, 1)])
            check = parity(like, strict(batch), threshold)
            check["batch1_max_abs_logit_diff"] = float(np.abs(logits_b1 - like[:2]).max())
            check["tolerance"] = cfg.tolerance
            worst = max(check["max_abs_logit_diff"], check["batch1_max_abs_logit_diff"])
            if worst > cfg.tolerance or not check["same_labels"]:
                raise BarsalignError(
                    f"{out} does not match PyTorch on {len(frames)} frames: max |logit diff| "
                    f"{worst:.2e} (allowed {cfg.tolerance:g}), {check['labels_differ']} labels "
                    "differ; no card written, so nothing will load it"
                )
            if fmt == "onnx":
                check_deployed(out, batch, reference, threshold, fp32_spread, cfg.tolerance, check)
            results[fmt] = {"status": "exported"}
        card = {
            **base_card,
            "format": fmt,
            "model_file": out.name,
            "model_sha256": sha256(out),
            "parity": {**check, "frames_from": str(Path(frame_paths[0]).parent.parent)},
        }
        if fmt == "onnx":
            card["opset"] = cfg.opset
        atomic_write_text(card_path(out), json.dumps(card, indent=2) + "\n")
        results[fmt].update(path=str(out), card=str(card_path(out)), size_mb=size_mb(out), **check)
    summary = {
        "checkpoint": str(ckpt),
        "checkpoint_mb": size_mb(ckpt),
        "out_dir": str(out_dir),
        "threshold": threshold,
        "threshold_source": threshold_source,
        "formats": results,
    }
    # 4. the MLflow run and a new version in the model registry
    if cfg.tracking:
        from barsalign import registry

        summary["registered"] = registry.log_export(summary, cfg.promote)
    return summary


def write_smoothing(model_path: str | Path, smoothing: dict[str, Any]) -> dict[str, Any]:
    """Put the operator's smoothing (k of n, margin, and where they were chosen) into the model's
    card, so the monitor shows what was tuned. Not a scoring field: the model file is unchanged
    and its card still matches it."""
    from barsalign.monitor.smoother import resolve_smoothing

    read_card(model_path)  # the card belongs to this model
    path = card_path(model_path)
    card = json.loads(path.read_text(encoding="utf-8"))
    card["smoothing"] = jsonable(smoothing)
    resolve_smoothing(card)  # k, n and margin are usable
    atomic_write_text(path, json.dumps(card, indent=2) + "\n")
    return card
