"""Experiment tracking with MLflow: every training, evaluation and export leaves a run.

The store is `MLFLOW_TRACKING_URI` when set (a team's `mlflow server`, with no code change),
else a SQLite file in the repo (`mlflow.db`, artefacts in `mlartifacts/`, both git-ignored:
MLflow's own defaults, so `.venv/bin/mlflow ui` from the repo root opens it). The experiment is
`MLFLOW_EXPERIMENT_NAME`, else "barsalign". A training run logs through Lightning's
`MLFlowLogger` beside the CSV: the resolved config as params, every logged step's metrics,
then the summary, `config.yaml`, `metrics.csv`, `summary.json` and `curves.png`; its tags say
the git commit and whether the tree was dirty, the data set (folder, frame count and a sha256 of
the file list, sizes and labels) and the weights source. `barsalign runs` (barsalign.runs) lists
them.
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
REGISTERED_MODEL = "barsalign-aligned"
"""The registry's name for exported aligned / not-aligned models (`barsalign export`)."""
RUN_ARTIFACTS = ("config.yaml", "metrics.csv", "summary.json", "curves.png")


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


def _log_params(c: Any, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow takes 100 params a batch
        c.log_batch(run_id, params=items[i : i + 100])


def _log_metrics(c: Any, run_id: str, values: dict[str, Any], step: int = 0) -> None:
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
            _log_params(
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
    logger = _Logger(
        experiment_name=experiment_name(),
        run_name=run_dir.name,  # as the summary's "run" and the reports name it
        tracking_uri=tracking_uri(),
        tags=tags,
    )
    _log_params(logger.experiment, logger.run_id, flatten(cfg.to_dict()))
    return logger


def finish_training(logger: Any, run_dir: Path, summary: dict[str, Any]) -> None:
    """Log a finished run's resolved config, summary and files to its MLflow run."""
    if logger is None:
        return
    import yaml

    c, run_id = logger.experiment, logger.run_id
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    _log_params(c, run_id, flatten(resolved))
    c.set_tag(run_id, "weights_source", str(resolved.get("weights_source", "")))
    _log_metrics(c, run_id, {f"summary.{k}": v for k, v in summary.items()})
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


def _checkpoint_run_dir(model: Path) -> Path | None:
    """The training run folder a checkpoint (or an export, through its card) came from."""
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


def _log_files(c: Any, run_id: str, files: Sequence[Path], artifact_path: str | None) -> None:
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
) -> dict[str, Any]:
    """An MLflow run for one evaluation (`barsalign evaluate`): its metrics, threshold, data
    and files; the training run it scores gets `heldout_*` metrics unless the frames are its
    own training or validation set. Returns the run id and the training run's id (or None).

    Args:
        items: the (path, label) pairs scored, for the data set's `data_hash`.
        files: logged as artefacts (the evaluation JSON, an export's model card).
    """
    c = client()
    eid = experiment_id(c)
    run_dir = _checkpoint_run_dir(model)
    trained = find_training_run(c, run_dir) if run_dir is not None else None
    data_tags = {
        "data_dir": str(data_root.resolve()),
        "data_frames": str(len(items)),
        "data_sha256": data_hash(data_root, items),
    }
    tags = {"kind": "evaluate", "model": str(model.resolve()), **git_state(), **data_tags}
    if trained is not None:
        tags["trained_run_id"] = trained.info.run_id
    run_name = f"evaluate {run_dir.name if run_dir else model.stem} on {data_label(str(data_root))}"
    run = c.create_run(eid, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    _log_params(
        c,
        run_id,
        {
            "model": str(model),
            "threshold": str(metrics.get("threshold")),
            "threshold_source": threshold_source,
            "precision_target": str(metrics.get("precision_target")),
        },
    )
    _log_metrics(c, run_id, metrics)
    _log_files(c, run_id, files, None)
    c.set_terminated(run_id)
    heldout = trained is not None and data_tags["data_sha256"] not in (
        trained.data.tags.get("data_sha256"),
        trained.data.tags.get("val_data_sha256"),
    )
    if heldout:
        keys = ("f05", "f1", "accuracy", "precision", "recall", "auroc", "threshold")
        _log_metrics(c, trained.info.run_id, {f"heldout_{k}": metrics.get(k) for k in keys})
        c.set_tag(trained.info.run_id, "heldout_data", data_tags["data_dir"])
        c.set_tag(trained.info.run_id, "heldout_run_id", run_id)
    return {"run_id": run_id, "trained_run_id": trained.info.run_id if heldout else None}


def log_export(summary: dict[str, Any]) -> dict[str, Any]:
    """An MLflow run for one export (`barsalign export`) holding the model files and their
    cards, registered as a new version of `REGISTERED_MODEL` with the card, the threshold and
    the metrics behind it as tags. Returns the run id, the model name and the version."""
    exported = {f: r for f, r in summary["formats"].items() if r.get("status") == "exported"}
    if not exported:
        raise BarsalignError("nothing was exported: no model to register")
    cards = {
        f: json.loads(Path(r["card"]).read_text(encoding="utf-8")) for f, r in exported.items()
    }
    card = next(iter(cards.values()))
    c = client()
    eid = experiment_id(c)
    ckpt = Path(summary["checkpoint"])
    run_dir = _checkpoint_run_dir(ckpt)
    trained = find_training_run(c, run_dir) if run_dir is not None else None
    tags = {"kind": "export", "checkpoint": str(ckpt.resolve()), **git_state()}
    if trained is not None:
        tags["trained_run_id"] = trained.info.run_id
    run = c.create_run(eid, run_name=f"export {card.get('run', ckpt.stem)}", tags=tags)
    run_id = run.info.run_id
    source = card.get("metrics", {}).get("source", "")
    params = {
        "checkpoint": str(ckpt),
        "threshold": str(summary["threshold"]),
        "threshold_source": str(summary["threshold_source"]),
        "formats": ",".join(exported),
        "backbone": str(card["backbone"]),
        "image_size": str(card["image_size"]),
        "metrics_source": str(source),
    }
    _log_params(c, run_id, params)
    parity = {
        f"{f}.{k}": v
        for f, r in exported.items()
        for k, v in r.items()
        if k in ("max_abs_logit_diff", "labels_differ", "deployed_max_abs_logit_diff")
    }
    card_metrics = {f"card.{k}": v for k, v in card.get("metrics", {}).items()}
    _log_metrics(c, run_id, {"threshold": summary["threshold"], **parity, **card_metrics})
    files = [Path(r["path"]) for r in exported.values()] + [
        Path(r["card"]) for r in exported.values()
    ]
    _log_files(c, run_id, files, "model")
    c.set_terminated(run_id)

    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(REGISTERED_MODEL)
    except MlflowException:
        c.create_registered_model(
            REGISTERED_MODEL,
            description="Bars aligned / not aligned at the stopper: each version is one "
            "`barsalign export`, its model files and cards under model/.",
        )
    version_tags = {
        "threshold": str(summary["threshold"]),
        "threshold_source": str(summary["threshold_source"]),
        "backbone": str(card["backbone"]),
        "image_size": str(card["image_size"]),
        "metrics_source": str(source),
        **{f"{f}_sha256": str(cd["model_sha256"]) for f, cd in cards.items()},
        **{
            f"metric.{k}": str(v)
            for k, v in card.get("metrics", {}).items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)
        },
    }
    text = json.dumps(card, indent=1)
    if len(text) <= 8000:  # MLflow's longest tag value
        version_tags["card"] = text
    version = c.create_model_version(
        REGISTERED_MODEL,
        source=f"runs:/{run_id}/model",
        run_id=run_id,
        tags=version_tags,
        description=f"{card['backbone']} at {card['image_size']} px from {ckpt}, threshold "
        f"{summary['threshold']:.4f} ({summary['threshold_source']})",
    )
    return {"run_id": run_id, "model": REGISTERED_MODEL, "version": int(version.version)}


__all__ = [
    "REGISTERED_MODEL",
    "client",
    "data_hash",
    "finish_training",
    "log_evaluation",
    "log_export",
    "start_training",
    "tracking_uri",
]
