"""Runtimes of exported files: ONNX Runtime sessions and TorchScript modules, batch → logits."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.errors import BarsalignError


def physical_cores() -> int:
    """Physical cores this process may run on (a core's hyper-threads counted once); the
    number of usable CPUs where Linux's topology files cannot be read."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpus = cpus or list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text(), (topo / "core_id").read_text()))
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def onnx_session(path: str | Path, threads: int | None = None, optimize: bool = True) -> Any:
    """An ONNX Runtime CPU session: all graph optimisations (or none), sequential execution,
    `threads` intra-op threads (None: one per physical core, `physical_cores`)."""
    import onnxruntime as ort  # a second or so to import; only exported models need it

    opts = ort.SessionOptions()
    level = "ORT_ENABLE_ALL" if optimize else "ORT_DISABLE_ALL"
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - any ORT failure means an unusable file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BarsalignError(f"{path} is not a loadable ONNX model: {first}") from None


def session_logits(session: Any) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX Runtime session as batch [B,3,S,S] float32 → logits [B]."""
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: np.ascontiguousarray(batch)})[0]


def format_logits(
    fmt: str, path: Path, threads: int | None = None, optimize: bool = True
) -> Callable[[np.ndarray], np.ndarray]:
    """A function batch [B,3,S,S] float32 → logits [B] for an exported file (no card check)."""
    if fmt == "onnx":
        return session_logits(onnx_session(path, threads, optimize))
    if fmt == "torchscript":
        import torch

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as err:  # noqa: BLE001
            raise BarsalignError(f"{path} is not a loadable TorchScript model: {err}") from None

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

        return run
    raise BarsalignError(f"cannot run {fmt} models on this machine")
