"""Shared fixtures: a tiny rendered data set and a papermill runner for the notebooks."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# every run a test trains, evaluates or exports is tracked in a store of this session's own,
# never the repo's mlflow.db nor a team's server (notebook kernels and DDP ranks inherit it)
_TRACKING = Path(tempfile.mkdtemp(prefix="barsalign-mlflow-"))
atexit.register(shutil.rmtree, _TRACKING, ignore_errors=True)
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_TRACKING / 'mlflow.db'}"
os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)

from barsalign.reports import execute_notebook  # noqa: E402
from barsalign.synth import SynthConfig, ensure_default, render_dataset  # noqa: E402

SMALL = SynthConfig(
    seed=3,
    width=384,
    height=288,
    n_example=32,
    n_pool=24,
    n_clips=1,
    clip_frames=12,
    sequence_length=(1, 2),
)
"""A data set small enough for every test: 384x288 frames, 56 stills, one 12-frame clip."""


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny data set rendered once per test session (same layout as the default).

    With BARSALIGN_TEST_DATA set (mutation testing starts hundreds of sessions), it is rendered
    once into that folder and each session gets a fresh copy.
    """
    out = tmp_path_factory.mktemp("synth") / "small"
    kept = os.environ.get("BARSALIGN_TEST_DATA")
    if kept:
        return Path(shutil.copytree(ensure_default(SMALL, Path(kept) / "small"), out))
    return render_dataset(out, SMALL, workers=2)


def export_untrained(
    tmp_path_factory: pytest.TempPathFactory,
    synth_small: Path,
    name: str,
    image_size: int,
    threshold: float = 0.5,
    preprocess: Any = None,
    tracking: bool = True,
) -> tuple[Path, Path]:
    """An untrained checkpoint (trained with `preprocess`, so it says) and its ONNX export,
    checked on four frames of the tiny set: (checkpoint, model.onnx)."""
    from barsalign import export

    run = tmp_path_factory.mktemp("runs") / name
    ckpt = export.untrained_checkpoint(
        run / "checkpoints" / "best.ckpt", image_size=image_size, preprocess=preprocess
    )
    cfg = export.ExportConfig(
        checkpoint=str(ckpt),
        out_dir=str(run / "export"),
        formats=("onnx",),
        parity_data=str(synth_small),
        parity_frames=4,
        threshold=threshold,
        tracking=tracking,
    )
    return ckpt, Path(export.export_checkpoint(cfg)["formats"]["onnx"]["path"])


@pytest.fixture(scope="session")
def run_notebook():
    """Execute `notebooks/<name>.ipynb` with papermill: run_notebook(name, out_dir, **params)."""

    def run(name: str, out_dir: Path, **params: Any) -> Path:
        return execute_notebook(name, out_dir, params, timeout=900)

    return run


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-notebook-refs",
        nargs="?",
        const="all",
        default=None,
        metavar="NAMES",
        help="execute the notebooks (all, or those named, comma-separated) with papermill and "
        "rewrite their references in tests/notebook_refs/ (make notebook-refs [NB=02_label])",
    )


def wait_for(check, timeout: float, every: float = 0.02):  # noqa: ANN001, ANN201
    """check()'s first truthy value within `timeout` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    return None
