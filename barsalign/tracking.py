"""Experiment tracking with MLflow: every training, evaluation and export leaves a run.

The store is `MLFLOW_TRACKING_URI` when set (a team's `mlflow server`, with no code change),
else a SQLite file in the repo (`mlflow.db`, artefacts in `mlartifacts/`, both git-ignored:
MLflow's own defaults, so `.venv/bin/mlflow ui` from the repo root opens it). The experiment is
`MLFLOW_EXPERIMENT_NAME`, else "barsalign". A training run logs through Lightning's
`MLFlowLogger` beside the CSV and TensorBoard (`barsalign.run_folder`): the resolved
config as params, every logged step's metrics, then the summary and the run folder's files
(`RUN_ARTIFACTS`: config, metrics, summary, curves, the best validation's scores and figure);
its tags say the git commit and whether the tree was dirty, the data set (folder, frame count,
a sha256 of the file list, sizes and labels, and the renderer's look where it has one) and the
weights source. An evaluation (`log_evaluation`) is a run of its own, linked to the training
run it scored; exports live in `barsalign.registry`, and `barsalign runs` (barsalign.runs)
lists and tabulates them all.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from barsalign.config import DATA_DIR, PROJ_ROOT, TRACKING_ARTIFACTS, TRACKING_DB
from barsalign.errors import BarsalignError

DEFAULT_EXPERIMENT = "barsalign"
HELDOUT_KEYS = ("f05", "f1", "accuracy", "precision", "recall", "auroc", "threshold")
"""What an evaluation on unseen frames puts on the training run it scored, as `heldout_*`."""
RUN_ARTIFACTS = (
    "config.yaml",
    "metrics.csv",
    "summary.json",
    "curves.png",
    "val_scores.csv",
    "val_panel.png",
)


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set, else the repo's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{TRACKING_DB}"


def experiment_name(name: str | None = None) -> str:
    """The experiment runs go to: `name`, else `MLFLOW_EXPERIMENT_NAME`, else "barsalign"."""
    return name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps artefacts: beside a local SQLite file (`mlartifacts/`), so
    the working directory never matters; None lets a server or file store decide."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(unquote(urlparse(uri).path))
    if db == TRACKING_DB:
        return TRACKING_ARTIFACTS.as_uri()
    return (db.parent / "mlartifacts").resolve().as_uri()


@contextmanager
def _few_retries() -> Iterator[None]:
    """MLflow retries an unreachable server for minutes; a first contact fails in seconds."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
    saved = {k: os.environ.get(k) for k in keys}
    for k, v in keys.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def client() -> Any:
    """An `MlflowClient` on `tracking_uri()`, checked to answer (else one line naming it)."""
    from mlflow import MlflowClient

    uri = tracking_uri()
    c = MlflowClient(uri)
    try:
        with _few_retries():
            c.search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any store failure: one line, the URI and the way out
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise BarsalignError(
            f"MLflow tracking store {uri} does not answer ({first}); fix MLFLOW_TRACKING_URI "
            "or pass --no-tracking (tracking: false)"
        ) from None
    return c


def experiment_id(c: Any, name: str | None = None) -> str:
    """The experiment's id, created (with `artifact_root`) when it does not exist yet."""
    name = experiment_name(name)
    found = c.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage != "deleted":
        return str(found.experiment_id)
    return str(c.create_experiment(name, artifact_location=artifact_root(tracking_uri())))


def git_state(root: Path = PROJ_ROOT) -> dict[str, str]:
    """The commit the code is at and whether tracked files differ from it ("unknown" outside
    a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit.strip() if commit else "unknown",
        "git_dirty": "unknown" if status is None else str(bool(status.strip())).lower(),
    }


def data_hash(root: Path, items: Sequence[tuple[Path, int]]) -> str:
    """sha256 of the sorted lines "relative path, size in bytes, label" of a labelled set."""
    lines = []
    for path, label in items:
        rel = os.path.relpath(Path(path).resolve(), root.resolve())
        size = Path(path).stat().st_size if Path(path).is_file() else -1
        lines.append(f"{Path(rel).as_posix()}\t{size}\t{int(label)}\n")
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode("utf-8"))
    return h.hexdigest()


def data_identity(source: str | Path | None, prefix: str = "data") -> dict[str, str]:
    """Tags naming a labelled set: its folder (or CSV), frame count and `data_hash`."""
    if source is None:
        return {}
    from barsalign.data import load_labels

    source = Path(source)
    root = source if source.is_dir() else source.parent
    items = [(it.path, it.label) for it in load_labels(source)]
    return {
        f"{prefix}_dir": str(source.resolve()),
        f"{prefix}_frames": str(len(items)),
        f"{prefix}_sha256": data_hash(root, items),
    }


def look_of(source: str | Path | None) -> str | None:
    """The renderer's look a labelled set was rendered with (its set's `look.json` or
    `synth_config.json`, one or two folders up), None for frames of your own."""
    if source is None:
        return None
    source = Path(source)
    folder = source if source.is_dir() else source.parent
    for d in (folder, folder.parent):
        for name in ("look.json", "synth_config.json"):
            try:
                found = json.loads((d / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            return str(found.get("look") or "default") if isinstance(found, dict) else None
    return None


def data_label(path: str) -> str:
    """A data folder as the runs table shows it: relative to `data/` when inside it."""
    p = Path(path)
    try:
        return p.relative_to(DATA_DIR.resolve()).as_posix()
    except ValueError:
        return "/".join(p.parts[-2:])


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config values as MLflow params: {"plan": {"steps": 9}} → {"plan.steps": "9"}."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


def log_params(c: Any, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow takes 100 params a batch
        c.log_batch(run_id, params=items[i : i + 100])


def log_metrics(c: Any, run_id: str, values: dict[str, Any], step: int = 0) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, step)
        for k, v in values.items()
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v  # NaN: none
    ]
    if items:
        c.log_batch(run_id, metrics=items)


def start_training(cfg: Any, run_dir: Path) -> Any:
    """The `MLFlowLogger` for a training run (None when `cfg.tracking` is off), its run made
    now with the config, git and data tags, so a dead store fails before training.

    Lightning logs the model's own hyperparameters through it as `model.*` params.
    """
    if not cfg.tracking:
        return None
    from lightning.pytorch.loggers import MLFlowLogger

    class _Logger(MLFlowLogger):
        """Lightning's MLflow logger; the module's hparams go in as `model.*` params, apart
        from the resolved config (the two differ where the recipe resolves a value)."""

        def log_hyperparams(self, params: Any) -> None:
            from lightning.fabric.utilities.logger import _convert_params, _flatten_dict

            flat = _flatten_dict(_convert_params(params))
            log_params(
                self.experiment, self.run_id, {f"model.{k}": str(v) for k, v in flat.items()}
            )

    from lightning.fabric.utilities.rank_zero import _get_rank

    if _get_rank() not in (None, 0):  # DDP's other ranks: Lightning makes it a no-op there
        return _Logger(experiment_name=experiment_name(), tracking_uri=tracking_uri())
    c = client()
    experiment_id(c)
    tags = {
        "kind": "train",
        "run_dir": str(run_dir.resolve()),
        **git_state(),
        **data_identity(cfg.data_dir),
        **data_identity(cfg.val_data_dir, "val_data"),
    }
    look = look_of(cfg.data_dir)
    if look:  # the renderer's look of the training frames: `barsalign runs --group look`
        tags["look"] = look
    logger = _Logger(
        experiment_name=experiment_name(),
        run_name=run_dir.name,  # as the summary's "run" and the reports name it
        tracking_uri=tracking_uri(),
        tags=tags,
    )
    log_params(logger.experiment, logger.run_id, flatten(cfg.to_dict()))
    return logger


def finish_training(logger: Any, run_dir: Path, summary: dict[str, Any]) -> None:
    """Log a finished run's resolved config, summary and files to its MLflow run."""
    if logger is None:
        return
    import yaml

    c, run_id = logger.experiment, logger.run_id
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    log_params(c, run_id, flatten(resolved))
    c.set_tag(run_id, "weights_source", str(resolved.get("weights_source", "")))
    log_metrics(c, run_id, {f"summary.{k}": v for k, v in summary.items()})
    for name in RUN_ARTIFACTS:
        if (run_dir / name).is_file():
            c.log_artifact(run_id, str(run_dir / name))


def find_training_run(c: Any, run_dir: Path) -> Any:
    """The newest tracked training run that wrote `run_dir`, or None."""
    runs = c.search_runs(
        [experiment_id(c)],
        filter_string=f"tags.kind = 'train' and tags.run_dir = '{run_dir.resolve()}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def log_to_training_run(run_dir: Path, values: dict[str, Any]) -> str | None:
    """Add metrics to the tracked training run that wrote `run_dir`; its id, None if none."""
    c = client()
    run = find_training_run(c, run_dir)
    if run is None:
        return None
    log_metrics(c, run.info.run_id, values)
    return str(run.info.run_id)


def log_run(
    kind: str,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    tags: dict[str, str] | None = None,
    files: Sequence[Path] = (),
) -> str:
    """A finished run of its own for a measurement that trains no network (a benchmark such
    as benchmarks/label_noise.py): tag `kind`, git state, params, metrics, files; its id.
    `barsalign runs --kind KIND` tabulates such runs."""
    c = client()
    run = c.create_run(
        experiment_id(c), run_name=run_name, tags={"kind": kind, **git_state(), **(tags or {})}
    )
    run_id = str(run.info.run_id)
    log_params(c, run_id, flatten(params))
    log_metrics(c, run_id, metrics)
    log_files(c, run_id, files, None)
    c.set_terminated(run_id)
    return run_id


def checkpoint_run_dir(model: Path) -> Path | None:
    """The training run folder a checkpoint (or an export, through its card) came from."""
    if not model.name:
        return None
    if model.suffix != ".ckpt":
        from barsalign.inference import card_path

        cpath = card_path(model)
        try:
            ckpt = json.loads(cpath.read_text(encoding="utf-8")).get("checkpoint")
        except (OSError, ValueError):
            return None
        if not ckpt:
            return None
        model = Path(ckpt)
    return model.parent.parent if model.parent.name == "checkpoints" else model.parent


def log_files(c: Any, run_id: str, files: Sequence[Path], artifact_path: str | None) -> None:
    for f in files:
        if f.is_dir():  # a CoreML package
            c.log_artifacts(
                run_id, str(f), f"{artifact_path}/{f.name}" if artifact_path else f.name
            )
        elif f.is_file():
            c.log_artifact(run_id, str(f), artifact_path)


def log_evaluation(
    model: Path,
    data_root: Path,
    items: Sequence[tuple[Path, int]],
    metrics: dict[str, Any],
    threshold_source: str,
    files: Sequence[Path] = (),
    name: str | None = None,
) -> dict[str, Any]:
    """An MLflow run for one evaluation (`barsalign evaluate`, 05): its metrics, threshold,
    data and files; the training run it scores gets `heldout_*` metrics unless the frames are
    its own training or validation set. Returns the run id and the training run's id (or None).

    Args:
        items: the (path, label) pairs scored, for the data set's `data_hash`.
        files: logged as artefacts (figures, per-frame scores, an export's model card).
        name: the model's name in the run's name (default: its run folder or file).
    """
    c = client()
    eid = experiment_id(c)
    run_dir = checkpoint_run_dir(model)
    trained = find_training_run(c, run_dir) if run_dir is not None else None
    data_tags = {
        "data_dir": str(data_root.resolve()),
        "data_frames": str(len(items)),
        "data_sha256": data_hash(data_root, items),
    }
    look = look_of(data_root)
    if look:
        data_tags["look"] = look
    tags = {"kind": "evaluate", "model": str(model.resolve()), **git_state(), **data_tags}
    if trained is not None:
        tags["trained_run_id"] = trained.info.run_id
    label = run_dir.name if run_dir else (name or model.stem)
    run_name = f"evaluate {label} on {data_label(str(data_root))}"
    run = c.create_run(eid, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    log_params(
        c,
        run_id,
        {
            "model": str(model),
            "threshold": str(metrics.get("threshold")),
            "threshold_source": threshold_source,
            "precision_target": str(metrics.get("precision_target")),
        },
    )
    log_metrics(c, run_id, metrics)
    log_files(c, run_id, files, None)
    c.set_terminated(run_id)
    heldout = trained is not None and data_tags["data_sha256"] not in (
        trained.data.tags.get("data_sha256"),
        trained.data.tags.get("val_data_sha256"),
    )
    if heldout:
        held = {f"heldout_{k}": metrics.get(k) for k in HELDOUT_KEYS}
        log_metrics(c, trained.info.run_id, held)
        c.set_tag(trained.info.run_id, "heldout_data", data_tags["data_dir"])
        c.set_tag(trained.info.run_id, "heldout_run_id", run_id)
    return {"run_id": run_id, "trained_run_id": trained.info.run_id if heldout else None}


__all__ = [
    "HELDOUT_KEYS",
    "client",
    "data_hash",
    "find_training_run",
    "finish_training",
    "log_evaluation",
    "log_run",
    "log_to_training_run",
    "start_training",
    "tracking_uri",
]
