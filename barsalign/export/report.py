"""What an export gives: the summary's lines and each runtime's size and CPU latency."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from barsalign.inference import load_predictor


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
