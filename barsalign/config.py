"""Project paths from one place, so the working directory never matters."""

from __future__ import annotations

import os
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("BARSALIGN_DATA_DIR", PROJ_ROOT / "data"))
REPORTS_DIR = Path(os.environ.get("BARSALIGN_REPORTS_DIR", PROJ_ROOT / "reports"))
RUNS_DIR = REPORTS_DIR / "runs"
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
CONF_DIR = PROJ_ROOT / "conf"
SYNTH_DIR = DATA_DIR / "synthetic"
"""Where the default synthetic data set is rendered (`barsalign synth` with no --out)."""
SYNTH_TWINS_DIR = DATA_DIR / "synthetic_twins"
"""Where the CPU profile's short-bar scenes and their twins are rendered (`synthetic_twins`)."""
LOOKS_DIR = DATA_DIR / "looks"
"""Where `barsalign synth --look NAME` renders a look's small labelled sets (`LOOKS_DIR/NAME`)."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
"""What counts as an image file, in every folder the package reads (lower case)."""
TRACKING_DB = PROJ_ROOT / "mlflow.db"
"""The default MLflow store (git-ignored; MLflow's own default, so `mlflow ui` from the repo root
opens it); `MLFLOW_TRACKING_URI` overrides it (barsalign.tracking)."""
TRACKING_ARTIFACTS = PROJ_ROOT / "mlartifacts"
"""Where the default store's run artefacts go (git-ignored)."""
KERNEL_NAME = "barsalign"
"""The Jupyter kernel registered inside `.venv` by `make setup`."""
NIGHT_MEAN = 55.0
"""Grayscale mean below which a frame is a night frame: the renderer keeps night scenes under
it, preprocessing brightens frames under it, and EDA counts them as dark."""
