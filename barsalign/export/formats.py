"""The exported files: the trained net as ONNX, TorchScript and (where coremltools installs) CoreML.

ONNX goes through the TorchScript-based exporter (`dynamo=False`): the torch.export-based one
needs `onnxscript`, which is not installed here. BatchNorm stays a node of its own (ONNX Runtime
fuses it into the convolution when a session loads the file). What the card says about scoring
(`inference.SCORING_KEYS`) is written into the file itself: ONNX `metadata_props`, a TorchScript
extra file (`inference.EMBEDDED_KEY`).
"""

from __future__ import annotations

import importlib.util
import platform
import warnings
from pathlib import Path
from typing import Any

from barsalign.inference import EMBEDDED_KEY


def inference_net(model: Any) -> Any:
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


def write_onnx(net: Any, example: Any, out: Path, opset: int, scoring: str) -> None:
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


def write_torchscript(net: Any, example: Any, out: Path, scoring: str) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, example, check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={EMBEDDED_KEY: scoring})


def write_coreml(net: Any, example: Any, out: Path) -> dict[str, Any]:
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
