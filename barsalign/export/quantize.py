"""Static int8 quantization of an exported ONNX model, calibrated on real frames.

`quantize_model` takes an fp32 export (`barsalign export`, its card checked by
`inference.load_predictor`) and writes `model.int8.onnx` beside it with ONNX Runtime:
`quant_pre_process` (shape inference, BatchNorm folded into the convolutions), then
`quantize_static` in QDQ format with per-channel int8 weights, its activation ranges calibrated
on frames of a folder (training or validation frames) passed through the model's own
preprocessing (`Predictor.prepare`). The int8 file gets a card of its own: the fp32 card's
scoring fields (so the same Predictor loads it, with the same preprocessing and threshold), the
variant, the calibration (method, folder, frame count and which frames) and how far its logits
lie from the fp32 model's on frames of the folder that calibration did not see.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.errors import BarsalignError
from barsalign.export.checks import parity
from barsalign.inference import (
    EMBEDDED_KEY,
    Predictor,
    card_path,
    load_predictor,
    onnx_session,
    scoring_json,
    session_logits,
    sha256,
)
from barsalign.outputs import atomic_path, atomic_write_text, check_output_file
from barsalign.preprocess import list_images, read_image

METHODS = ("MinMax", "Entropy", "Percentile")
"""ONNX Runtime's calibration methods (`CalibrationMethod` names)."""
VARIANT = "int8"


@dataclass(frozen=True)
class QuantizeConfig:
    """One quantization.

    Args:
        model: an fp32 `.onnx` export with its card.
        calib: a folder of frames (searched recursively; a synthetic data set's root uses its
            `example_set/`) for calibration and the check against fp32.
        out: the int8 file; None means `<model>.int8.onnx` beside the model.
        frames: how many frames calibrate (spread evenly over the folder).
        check_frames: how many other frames of the folder compare int8 with fp32.
        method: the calibration method (`METHODS`).
        max_label_share: refuse (no card) when more than this share of the check frames
            change label against fp32 at the card's threshold.
    """

    model: str
    calib: str
    out: str | None = None
    frames: int = 64
    check_frames: int = 32
    method: str = "MinMax"
    max_label_share: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BarsalignError(f"--method must be one of {METHODS}, not {self.method!r}")
        if self.frames < 1 or self.check_frames < 1:
            raise BarsalignError("--frames and --check-frames must be >= 1")
        if not 0.0 <= self.max_label_share <= 1.0:
            raise BarsalignError(f"max_label_share must lie in [0, 1], not {self.max_label_share}")

    @property
    def out_path(self) -> Path:
        model = Path(self.model)
        return Path(self.out) if self.out else model.with_name(f"{model.stem}.{VARIANT}.onnx")


def calibration_split(folder: str | Path, frames: int, check: int) -> tuple[list[Path], list[Path]]:
    """Frames of `folder` for calibration and, disjoint from them, for the fp32 check.

    Both spread evenly over the sorted file list (so both classes of an `aligned/
    not_aligned/` folder are in); every chosen frame must be readable.
    """
    root = Path(folder)
    if not root.is_dir():
        raise BarsalignError(f"--calib {root} is not a folder (frames to calibrate on)")
    if (root / "example_set").is_dir():
        root = root / "example_set"
    paths = list_images(root)
    if len(paths) < 2:
        raise BarsalignError(
            f"--calib {root} holds {len(paths)} images; calibration needs 2 or more frames"
        )
    n_cal = min(frames, len(paths) - 1)
    cal_idx = {int(i) for i in np.linspace(0, len(paths) - 1, n_cal)}
    rest = [p for i, p in enumerate(paths) if i not in cal_idx]
    pick = np.linspace(0, len(rest) - 1, min(check, len(rest))).astype(int)
    return [paths[i] for i in sorted(cal_idx)], [rest[int(i)] for i in sorted(set(pick))]


def prepared(predictor: Predictor, paths: list[Path]) -> np.ndarray:
    """The frames as the model's input batch; one error naming a frame it cannot read."""
    out = []
    for p in paths:
        try:
            out.append(predictor.prepare(read_image(p), str(p)))
        except BarsalignError as err:
            raise BarsalignError(f"{err} (a calibration frame)") from None
    return np.stack(out).astype(np.float32)


SHAPE_INPUTS = {"Pad": (1,), "Reshape": (1,), "Slice": (1, 2, 3, 4), "Expand": (1,), "Tile": (1,)}
"""Inputs that are sizes, not pixels: which input of each op (by position) holds them."""


def shape_nodes(graph: Any) -> list[str]:
    """Names of the nodes that only compute sizes (the "same" padding of tf_ backbones: Shape,
    Sub, Mul, Concat... feeding a Pad's `pads`). Quantizing them rounds padding amounts, which
    shifts every feature map after them; they stay float."""
    producer = {out: node for node in graph.node for out in node.output}
    sizes = {
        node.input[i]
        for node in graph.node
        for i in SHAPE_INPUTS.get(node.op_type, ())
        if i < len(node.input) and node.input[i]
    }
    found: dict[str, Any] = {}
    todo = [producer[name] for name in sizes if name in producer]
    while todo:
        node = todo.pop()
        if node.name in found:
            continue
        found[node.name] = node
        if node.op_type != "Shape":  # a Shape reads a feature map's size, not its pixels
            todo += [producer[name] for name in node.input if name in producer]
    return sorted(found)


def _reader(name: str, batch: np.ndarray) -> Any:
    """An ONNX Runtime `CalibrationDataReader` over prepared frames, one at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class FrameReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._next = iter(range(len(batch)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            i = next(self._next, None)
            return None if i is None else {name: batch[i : i + 1]}

        def rewind(self) -> None:
            self._next = iter(range(len(batch)))

    return FrameReader()


def quantize_model(cfg: QuantizeConfig) -> dict[str, Any]:
    """Quantize, compare with fp32 on unseen frames, write the card; return the card."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # 1. the fp32 model (its card checked), the output and the frames
    model = Path(cfg.model)
    fp32 = load_predictor(model)
    if fp32.kind != "onnx" or fp32.card.get("variant", "fp32") != "fp32":
        raise BarsalignError(f"--model {model}: quantize needs an fp32 ONNX export")
    out = check_output_file(cfg.out_path, [model, card_path(model)], "--out")
    cal_paths, check_paths = calibration_split(cfg.calib, cfg.frames, cfg.check_frames)
    cal, check = prepared(fp32, cal_paths), prepared(fp32, check_paths)
    input_name = fp32.card["input"]["name"]

    # 2. pre-processing (shape inference, BatchNorm folded), then static QDQ quantization
    started = time.perf_counter()
    card_path(out).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="barsalign-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(model), str(pre))
        sizes = shape_nodes(onnx.load(str(pre)).graph)
        with atomic_path(out, ".onnx") as tmp_out:
            quantize_static(
                str(pre),
                str(tmp_out),
                _reader(input_name, cal),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, cfg.method),
                nodes_to_exclude=sizes,
            )
            proto = onnx.load(str(tmp_out))
            onnx.helper.set_model_props(proto, {EMBEDDED_KEY: scoring_json(fp32.card)})
            onnx.save(proto, str(tmp_out))
    seconds = time.perf_counter() - started

    # 3. the int8 file against fp32 on frames calibration did not see
    ref = fp32.logits(check)
    got = np.asarray(session_logits(onnx_session(out))(check), np.float64).ravel()
    versus = parity(ref, got, fp32.decision_threshold)
    versus["mean_abs_logit_diff"] = float(np.abs(ref - got).mean())
    versus["logit_correlation"] = float(np.corrcoef(ref, got)[0, 1]) if len(ref) > 1 else 1.0
    versus["fp32_logit_std"] = float(ref.std())
    versus["max_label_share"] = cfg.max_label_share
    if versus["labels_differ"] > cfg.max_label_share * versus["frames"]:
        out.unlink(missing_ok=True)
        raise BarsalignError(
            f"{out}: the int8 model changes the label of {versus['labels_differ']} of "
            f"{versus['frames']} frames against {model.name} (allowed "
            f"{cfg.max_label_share:.0%}); calibrate on other frames or another --method"
        )

    # 4. the card: the fp32 card's scoring fields, the variant, the calibration
    card = {k: v for k, v in fp32.card.items() if not k.startswith("_")}
    card.update(
        model_file=out.name,
        model_sha256=sha256(out),
        variant=VARIANT,
        source_model={"file": model.name, "sha256": fp32.card["model_sha256"]},
        quantization={
            "tool": f"onnxruntime {onnxruntime.__version__} quantize_static",
            "format": "QDQ",
            "per_channel": True,
            "weights": "int8",
            "activations": "uint8",
            "pre_process": "quant_pre_process (shape inference, ORT graph optimisation)",
            "method": cfg.method,
            "float_nodes": f"{len(sizes)} size computations (shape_nodes)",
            "calibration": {
                "folder": str(Path(cfg.calib)),
                "frames": len(cal_paths),
                "files": [str(p) for p in cal_paths],
            },
            "seconds": round(seconds, 1),
        },
        parity={**versus, "against": f"{model.name} (fp32)", "frames_from": str(cfg.calib)},
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    atomic_write_text(card_path(out), json.dumps(card, indent=2) + "\n")
    return card


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """`barsalign quantize --model model.onnx --calib DIR [--out model.int8.onnx]`."""
    p = subparsers.add_parser(
        "quantize",
        help="int8 static quantization of an ONNX export, calibrated on real frames",
        description="Quantize an fp32 ONNX export to int8 (ONNX Runtime, QDQ, per-channel), "
        "calibrated on frames of a folder through the model's own preprocessing, and write "
        "its model card.",
    )
    p.add_argument("--model", required=True, help="an fp32 .onnx export with its card")
    p.add_argument("--calib", required=True, help="folder of frames (training or validation)")
    p.add_argument("--out", help="the int8 model (default: MODEL.int8.onnx beside it)")
    p.add_argument("--frames", type=int, default=QuantizeConfig.frames)
    p.add_argument("--check-frames", type=int, default=QuantizeConfig.check_frames)
    p.add_argument("--method", choices=METHODS, default=QuantizeConfig.method)
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(QuantizeConfig)}
    cfg = QuantizeConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    card = quantize_model(cfg)
    v = card["parity"]
    print(
        f"{cfg.out_path} ({cfg.out_path.stat().st_size / 2**20:.1f} MB, int8): calibrated on "
        f"{card['quantization']['calibration']['frames']} frames of {cfg.calib}; against fp32 "
        f"on {v['frames']} other frames: max |logit diff| {v['max_abs_logit_diff']:.3f}, "
        f"labels differ on {v['labels_differ']}"
    )
    return 0
