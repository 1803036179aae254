"""Export a trained checkpoint to ONNX and TorchScript (CoreML where coremltools installs).

Each export is checked against PyTorch on real preprocessed frames (max |logit difference| and
the label on every frame) before a **model card** is written beside it
(`model.onnx` → `model.onnx.card.json`): backbone, input size, the full `PreprocessConfig`, the
normalisation, the operating threshold and where it came from, the metrics, the parity numbers
and the sha256 of both the source checkpoint and the exported file. This module only writes:
`inference.load_predictor` reads, and refuses a model without a card, or whose card belongs to
another file, another input size or another preprocessing, so a model is never fed frames
preprocessed another way. What the card says
about scoring (backbone, input size, preprocessing, normalisation) is also written into the
model file itself (ONNX `metadata_props`, a TorchScript extra file), which the card's sha256
covers: a card edited by hand no longer matches its model and is refused.

ONNX goes through the TorchScript-based exporter (`dynamo=False`): the torch.export-based one
needs `onnxscript`, which is not installed here. BatchNorm stays a node of its own (ONNX Runtime
fuses it into the convolution when a session loads the file), so the file's strict check runs the
arithmetic PyTorch runs with oneDNN off: ONNX Runtime without graph optimisations against PyTorch's
native convolutions. A trained net can be ill-conditioned in fp32 (BatchNorm channels with
near-zero running variance scale rounding errors by 100x and more), so the optimised session that
deployment uses is checked against a bound of `NOISE_FACTOR` times how far PyTorch's own two CPU
convolution paths (oneDNN, native) disagree on the same frames.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.config import IMAGE_SUFFIXES, RUNS_DIR, SYNTH_DIR
from barsalign.errors import BarsalignError
from barsalign.inference import (
    CARD_VERSION,
    EMBEDDED_KEY,
    SUFFIXES,
    card_path,
    format_logits,
    load_predictor,
    scoring_json,
    sha256,
)
from barsalign.outputs import atomic_path, atomic_write_text, check_output_dir
from barsalign.preprocess import PreprocessConfig, read_image

NOISE_FACTOR = 10.0
"""Allowed drift of the optimised ONNX Runtime session, in units of PyTorch's own fp32 spread."""
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


def _inference_net(model: Any) -> Any:
    """A plain `nn.Module` (backbone → head → logits [B]) that tracing and export accept.

    Tracing the LightningModule itself fails (`trainer` is looked up and raises outside fit).
    """
    import torch
    from torch import nn

    class _Net(nn.Module):
        def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
            super().__init__()
            self.backbone = backbone
            self.head = head

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone(x)).squeeze(1)

    return _Net(model.backbone, model.head).eval()


def size_mb(path: str | Path) -> float:
    path = Path(path)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(f.stat().st_size for f in files) / 2**20


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
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

    from barsalign.model import DEFAULT_BACKBONE, AlignmentClassifier

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
        row = {k: _jsonable(v) for k, v in df[df["model"].astype(str) == run].iloc[0].items()}
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


def _export_onnx(net: Any, example: Any, out: Path, opset: int, scoring: str) -> None:
    import onnx
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(out),
            input_names=["input"],
            output_names=["logit"],
            dynamic_axes={"input": {0: "batch"}, "logit": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
            training=torch.onnx.TrainingMode.PRESERVE,  # eval BatchNorm, not folded into Conv
        )
    model = onnx.load(str(out))
    onnx.helper.set_model_props(model, {EMBEDDED_KEY: scoring})
    onnx.save(model, str(out))


def _export_torchscript(net: Any, example: Any, out: Path, scoring: str) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, example, check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={EMBEDDED_KEY: scoring})


def _export_coreml(net: Any, example: Any, out: Path) -> dict[str, Any]:
    """CoreML ML Program through coremltools, or why not (skipped / failed)."""
    if importlib.util.find_spec("coremltools") is None:
        return {
            "status": "skipped",
            "reason": "coremltools is not installed (optional extra: pip install coremltools)",
        }
    import torch

    try:
        import coremltools as ct

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(net, example, check_trace=False)
            ml = ct.convert(
                traced,
                inputs=[ct.TensorType(name="input", shape=tuple(example.shape))],
                convert_to="mlprogram",
            )
            ml.save(str(out))
    except Exception as err:  # noqa: BLE001 - report the converter's failure, do not crash
        line = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        return {"status": "failed", "reason": f"coremltools {ct.__version__}: {line}"}
    return {
        "status": "exported",
        "parity": "not checked: CoreML models run on macOS only"
        if platform.system() != "Darwin"
        else "not checked",
    }


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
    net = _inference_net(scorer.torch_model)
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
        "data_config": _jsonable(scorer.data_config),
        "threshold": threshold,
        "threshold_source": threshold_source,
        "metrics": _jsonable(metrics),
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
            results[fmt] = _export_coreml(net, example, out)
            if results[fmt]["status"] != "exported":
                continue
            check: dict[str, Any] = {"note": results[fmt]["parity"]}
        else:
            with atomic_path(out, SUFFIXES[fmt]) as tmp:  # the model file appears whole
                (
                    _export_onnx(net, example, tmp, cfg.opset, scoring)
                    if fmt == "onnx"
                    else _export_torchscript(net, example, tmp, scoring)
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
                _check_deployed(out, batch, reference, threshold, fp32_spread, cfg.tolerance, check)
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
    from barsalign.inference import read_card
    from barsalign.monitor.smoother import resolve_smoothing

    read_card(model_path)  # the card belongs to this model
    path = card_path(model_path)
    card = json.loads(path.read_text(encoding="utf-8"))
    card["smoothing"] = _jsonable(smoothing)
    resolve_smoothing(card)  # k, n and margin are usable
    atomic_write_text(path, json.dumps(card, indent=2) + "\n")
    return card


def _check_deployed(
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


def latency_table(
    summary: dict[str, Any], frames: Sequence[np.ndarray], repeats: int = 20, threads: int = 2
) -> Any:
    """Size (MB) and CPU latency per frame (batch 1, model only) for PyTorch and each export."""
    import pandas as pd
    import torch

    checkpoint = load_predictor(summary["checkpoint"])
    x = checkpoint.tensors(list(frames[:1])).astype(np.float32)
    torch.set_num_threads(threads)
    runners = [("PyTorch (checkpoint)", checkpoint.logits_fn, summary["checkpoint_mb"], None)]
    for fmt, r in summary["formats"].items():
        if r.get("status") == "exported" and fmt != "coreml":
            label = {"onnx": "ONNX Runtime", "torchscript": "TorchScript"}[fmt]
            fn = load_predictor(r["path"], threads=threads).logits_fn
            diff = r.get("deployed_max_abs_logit_diff", r.get("max_abs_logit_diff"))
            runners.append((label, fn, r["size_mb"], diff))
    rows = []
    for label, fn, mb, diff in runners:
        for _ in range(3):
            fn(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t) * 1000.0)
        rows.append(
            {
                "runtime": label,
                "size_mb": round(mb, 2),
                "latency_ms_median": float(np.median(times)),
                "latency_ms_p90": float(np.percentile(times, 90)),
                "max_abs_logit_diff_vs_pytorch": diff,
            }
        )
    return pd.DataFrame(rows)


def format_summary(summary: dict[str, Any]) -> str:
    """The export summary as text lines (what the command prints)."""
    lines = [
        f"checkpoint   {summary['checkpoint']} ({summary['checkpoint_mb']:.1f} MB)",
        f"threshold    {summary['threshold']:.4f} ({summary['threshold_source']})",
    ]
    for fmt, r in summary["formats"].items():
        if r["status"] == "exported" and "max_abs_logit_diff" in r:
            lines.append(
                f"{fmt:<12} {r['path']} ({r['size_mb']:.1f} MB): max |logit diff| "
                f"{r['max_abs_logit_diff']:.2e} on {r['frames']} frames, labels differ on "
                f"{r['labels_differ']}"
            )
            if "deployed_max_abs_logit_diff" in r:
                lines.append(
                    f"{'':<12} optimised session: {r['deployed_max_abs_logit_diff']:.2e} "
                    f"(allowed {r['deployed_allowed']:.2e}; PyTorch's fp32 spread "
                    f"{r['fp32_spread']:.2e})"
                )
        elif r["status"] == "exported":
            lines.append(f"{fmt:<12} {r['path']} ({r['size_mb']:.1f} MB): {r['parity']}")
        else:
            lines.append(f"{fmt:<12} {r['status']}: {r['reason']}")
    if "registered" in summary:
        reg = summary["registered"]
        alias = f", alias {', '.join(reg['aliases'])}" if reg.get("aliases") else ""
        lines.append(
            f"registered   {reg['model']} version {reg['version']}{alias} "
            f"(MLflow run {reg['run_id']})"
        )
    return "\n".join(lines)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX/TorchScript (CoreML if installed) with model cards",
        description="Export a trained checkpoint (default: the best run) to ONNX and "
        "TorchScript, check each against PyTorch on real frames, and write a model card "
        "beside each. CoreML is exported where coremltools is installed, else skipped.",
    )
    p.add_argument("--checkpoint", help="a .ckpt (default: the best run's best.ckpt)")
    p.add_argument("--runs-dir", help="where runs live (default reports/runs)")
    p.add_argument("--out", dest="out_dir", help="output folder (default <run>/export)")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--threshold", type=float, help="operating threshold (default: evaluation's)")
    p.add_argument("--evaluation", help="05_evaluate's comparison.csv to take the threshold from")
    p.add_argument("--data", dest="parity_data", help="frames for the parity check")
    p.add_argument("--parity-frames", type=int, default=32)
    p.add_argument(
        "--no-tracking", dest="tracking", action="store_false", default=None, help="no MLflow run"
    )
    p.add_argument(
        "--promote",
        action="store_true",
        default=None,
        help="make this export the model on the line (registry alias 'champion')",
    )
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(ExportConfig)}
    params = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    ExportConfig(**params)  # the settings first, then where the parity frames come from
    if args.checkpoint:
        check_checkpoint(Path(args.checkpoint))
    if args.parity_data is None:
        params["parity_data"] = str(default_parity_data(render=False))
    summary = export_checkpoint(ExportConfig(**params))
    print(format_summary(summary))
    return 0


__all__ = [
    "ExportConfig",
    "best_checkpoint",
    "card_path",
    "export_checkpoint",
    "latency_table",
    "operating_point",
    "parity",
    "parity_frames",
    "sha256",
    "untrained_checkpoint",
    "write_smoothing",
]
