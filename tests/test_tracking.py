"""MLflow tracking: a tiny training, evaluation and export found through MLflow's own client,
in the session's SQLite store (tests/conftest.py) and on a local `mlflow server`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.metrics import fbeta_score

from barsalign.cli import main
from barsalign.config import PROJ_ROOT
from barsalign.errors import BarsalignError
from barsalign.modeling.train import run_training
from barsalign.modeling.train_config import FinetuneConfig
from tests.test_train import TINY, TensorData


def _client() -> MlflowClient:
    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def _runs_of(client: MlflowClient, run_dir: Path) -> list[Any]:
    exp = client.get_experiment_by_name("barsalign")
    if exp is None:
        return []
    return client.search_runs(
        [exp.experiment_id], filter_string=f"tags.run_dir = '{run_dir.resolve()}'"
    )


def _folder_hash(root: Path) -> str:
    """The data set's sha256 computed here from the folder itself: path, size, label."""
    lines = sorted(
        f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}\t{int(label == 'aligned')}\n"
        for label in ("aligned", "not_aligned")
        for p in (root / label).rglob("*")
        if p.is_file()
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(PROJ_ROOT), *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def tracked_run(synth_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch CLI training on the small set's labelled frames, tracked by default."""
    out = tmp_path_factory.mktemp("tracked") / "run"
    args = ["train", "--data", str(synth_small / "example_set"), "--backbone", "resnet18"]
    args += ["--epochs", "1", "--image-size", "64", "--out", str(out), "--weights", "random"]
    args += ["--roi", "0.4,0,1,0.9", "--no-augment", "--accelerator", "cpu", "--no-progress"]
    assert main(args) == 0
    return out


@pytest.mark.slow
def test_training_params_metrics_and_artifacts_through_the_client(
    tracked_run: Path, synth_small: Path, tmp_path: Path
) -> None:
    client = _client()
    (run,) = _runs_of(client, tracked_run)
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    # the resolved config, as config.yaml has it, nested keys flattened
    resolved = yaml.safe_load((tracked_run / "config.yaml").read_text())
    assert params["backbone"] == "resnet18" and params["image_size"] == "64"
    assert params["preprocess.roi"] == str(resolved["preprocess"]["roi"]) == "[0.4, 0.0, 1.0, 0.9]"
    assert params["plan.steps"] == str(resolved["plan"]["steps"])
    assert params["model.backbone"] == "resnet18", "Lightning's hparams, apart"
    # every step's metrics, as the CSV logger saw them
    table = pd.read_csv(tracked_run / "metrics.csv")
    history = client.get_metric_history(run.info.run_id, "val_f05")
    assert [round(m.value, 6) for m in history] == [round(v, 6) for v in table["val_f05"]]
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [round(m.value, 6) for m in losses] == [round(v, 6) for v in table["train_loss"]]
    summary = json.loads((tracked_run / "summary.json").read_text())
    assert [m.step for m in history][-1] == summary["steps"] - 1
    assert metrics["summary.best_f05"] == summary["best_f05"]
    assert metrics["summary.steps"] == summary["steps"]
    # the files, byte for byte
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names >= {"config.yaml", "metrics.csv", "summary.json", "curves.png"}
    assert names >= {"val_scores.csv", "val_panel.png"}, "the best validation's figure"
    got = client.download_artifacts(run.info.run_id, "val_scores.csv", str(tmp_path))
    val = pd.read_csv(got)
    assert len(val) == resolved["plan"]["val"]["aligned"] + resolved["plan"]["val"]["not_aligned"]
    f05 = fbeta_score(val["label"], val["score"] >= 0.5, beta=0.5, zero_division=0.0)
    assert f05 == pytest.approx(summary["best_f05"], abs=1e-4), "the best epoch's scores"
    png = client.download_artifacts(run.info.run_id, "val_panel.png", str(tmp_path))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    got = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    assert Path(got).read_bytes() == (tracked_run / "config.yaml").read_bytes()
    # where it came from: code, data, weights
    assert tags["git_commit"] == _git("rev-parse", "HEAD").strip()
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no").strip())
    assert tags["git_dirty"] == str(dirty).lower()
    data = synth_small / "example_set"
    assert tags["data_dir"] == str(data.resolve())
    assert tags["data_sha256"] == _folder_hash(data)
    assert tags["data_frames"] == str(sum(1 for p in data.rglob("*.jpg")))
    assert tags["weights_source"] == "random" == params["weights_source"]
    assert tags["look"] == "default", "rendered by the renderer's default look"


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_per_epoch_metrics(tracked_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted((tracked_run / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1, events
    acc = EventAccumulator(str(tracked_run / "tb"))
    acc.Reload()
    table = pd.read_csv(tracked_run / "metrics.csv")
    for name in ("train_loss", "val_loss", "val_f05", "val_auroc"):
        values = [round(e.value, 5) for e in acc.Scalars(name)]
        assert values == [round(v, 5) for v in table[name]], name


@pytest.mark.slow
def test_evaluate_logs_a_run_and_the_held_out_f05_shows_in_runs(
    tracked_run: Path, synth_small: Path, tmp_path: Path, capsys
) -> None:
    client = _client()
    (trained,) = _runs_of(client, tracked_run)
    ckpt = tracked_run / "checkpoints" / "best.ckpt"
    # on its own training frames: an evaluation run, but no held-out number
    own = ["evaluate", "--model", str(ckpt), "--data", str(synth_small / "example_set")]
    assert main([*own, "--json", str(tmp_path / "own.json")]) == 0
    assert "heldout_f05" not in client.get_run(trained.info.run_id).data.metrics
    # on frames it never saw: the held-out F0.5 lands on the training run
    held = tmp_path / "held"
    for label in ("aligned", "not_aligned"):
        (held / label).mkdir(parents=True)
        for p in sorted((synth_small / "example_set" / label).glob("*.jpg"))[:5]:
            shutil.copy(p, held / label / f"x_{p.name}")
    capsys.readouterr()
    args = ["evaluate", "--model", str(ckpt), "--data", str(held), "--threshold", "0.3"]
    assert main([*args, "--json", str(tmp_path / "held.json")]) == 0
    assert "tracked as MLflow run" in capsys.readouterr().out
    result = json.loads((tmp_path / "held.json").read_text())
    run = client.get_run(trained.info.run_id)
    assert run.data.metrics["heldout_f05"] == pytest.approx(result["f05"])
    assert run.data.metrics["heldout_threshold"] == 0.3
    assert run.data.tags["heldout_data"] == str(held.resolve())
    evaluation = client.get_run(run.data.tags["heldout_run_id"])
    assert evaluation.data.tags["kind"] == "evaluate"
    assert evaluation.data.tags["trained_run_id"] == trained.info.run_id
    assert evaluation.data.params["threshold"] == "0.3"
    assert evaluation.data.params["threshold_source"] == "given"
    assert evaluation.data.tags["data_sha256"] == _folder_hash(held)
    assert evaluation.data.metrics["auroc"] == pytest.approx(result["auroc"])
    names = {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    assert names == {"held.json", "panel.png", "frames.csv"}
    frames = pd.read_csv(
        client.download_artifacts(evaluation.info.run_id, "frames.csv", str(tmp_path))
    )
    assert len(frames) == 10
    f05 = fbeta_score(frames["label"], frames["score"] >= 0.3, beta=0.5, zero_division=0.0)
    assert f05 == pytest.approx(result["f05"])
    # barsalign runs: the row of this run, with both F0.5
    summary = json.loads((tracked_run / "summary.json").read_text())
    assert main(["runs", "--last", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["run", "data", "backbone", "steps"]
    (row,) = [line for line in lines if trained.info.run_id in line]
    cells = row.split()
    assert cells[0] == tracked_run.name and "resnet18" in cells
    assert str(summary["steps"]) in cells
    assert f"{summary['best_f05']:.3f}" in cells and f"{result['f05']:.3f}" in cells
    assert main(["runs", "--last", "0"]) == 2
    assert main(["runs", "--experiment", "no such experiment"]) == 2


def _held_out_copy(synth_small: Path, out: Path, n: int = 5) -> Path:
    """`n` frames of each class of the small set copied under new names: a set whose hash is
    neither the run's training nor its validation set's, so the tracker takes it as held out."""
    for label in ("aligned", "not_aligned"):
        (out / label).mkdir(parents=True)
        for p in sorted((synth_small / "example_set" / label).glob("*.jpg"))[-n:]:
            shutil.copy(p, out / label / f"h_{p.name}")
    return out


@pytest.mark.slow
def test_05s_evaluation_is_a_run_linked_to_the_training_run(
    tracked_run: Path, synth_small: Path, tmp_path: Path
) -> None:
    """evaluate.evaluate_scorer, what 05 calls per model: one run each, with its figure."""
    from barsalign.evaluation import evaluate as ev
    from barsalign.modeling.baseline import EdgeBaseline
    from barsalign.preprocess import PreprocessConfig, read_image

    client = _client()
    (trained,) = _runs_of(client, tracked_run)
    held = ev.labelled_folder(_held_out_copy(synth_small, tmp_path / "held"))
    ckpt = tracked_run / "checkpoints" / "best.ckpt"
    row, frames = ev.evaluate_scorer(ev.load_scorer(ckpt), held, 0.5, 0.99, latency_frames=1)
    (evaluation,) = client.search_runs(
        [client.get_experiment_by_name("barsalign").experiment_id],
        filter_string=f"tags.kind = 'evaluate' and tags.data_dir = '{held.root.resolve()}'",
    )
    assert evaluation.data.tags["trained_run_id"] == trained.info.run_id
    assert evaluation.data.tags["model"] == str(ckpt.resolve())
    assert evaluation.data.metrics["f05"] == pytest.approx(row["f05"])
    names = {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    assert names == {"panel.png", "frames.csv"}
    logged = pd.read_csv(
        client.download_artifacts(evaluation.info.run_id, "frames.csv", str(tmp_path))
    )
    assert list(logged["score"].round(6)) == list(frames["score"].round(6))
    f05 = fbeta_score(frames["label"], frames["score"] >= 0.5, beta=0.5, zero_division=0.0)
    assert f05 == pytest.approx(row["f05"])
    metrics = client.get_run(trained.info.run_id).data.metrics
    assert metrics["heldout_f05"] == pytest.approx(f05) and metrics["heldout_threshold"] == 0.5
    # the classical baseline is a model too: its own run, linked to no training run
    base = EdgeBaseline(PreprocessConfig()).fit([read_image(p) for p in held.paths], held.labels)
    base.save(tmp_path / "baseline.pkl")
    ev.evaluate_scorer(base, held, latency_frames=1)
    (run,) = client.search_runs(
        [evaluation.info.experiment_id],
        filter_string=f"tags.model = '{(tmp_path / 'baseline.pkl').resolve()}'",
    )
    assert "trained_run_id" not in run.data.tags
    assert run.data.tags["mlflow.runName"].startswith("evaluate baseline_logreg_edges on ")


@pytest.mark.slow
def test_export_registers_a_version_with_card_threshold_held_out_metrics_and_an_alias(
    tracked_run: Path, synth_small: Path, tmp_path: Path, capsys
) -> None:
    from barsalign import registry
    from barsalign.evaluation.evaluate import evaluate_scorer, labelled_folder, load_scorer
    from barsalign.export import ExportConfig, export_checkpoint
    from barsalign.registry import CHAMPION, REGISTERED_MODEL

    client = _client()
    ckpt = tracked_run / "checkpoints" / "best.ckpt"
    held = labelled_folder(_held_out_copy(synth_small, tmp_path / "held", 4))
    row, _ = evaluate_scorer(load_scorer(ckpt), held, latency_frames=1)  # the held-out numbers
    (trained,) = _runs_of(client, tracked_run)
    cfg = ExportConfig(
        checkpoint=str(ckpt),
        out_dir=str(tmp_path / "export"),
        formats=("onnx",),
        threshold=0.42,
        parity_data=str(synth_small),
        parity_frames=4,
    )
    summary = export_checkpoint(cfg)
    reg = summary["registered"]
    assert reg["model"] == REGISTERED_MODEL == "barsalign-aligned" and reg["aliases"] == []
    version = client.get_model_version(REGISTERED_MODEL, str(reg["version"]))
    card_file = tmp_path / "export" / "model.onnx.card.json"
    card = json.loads(card_file.read_text())
    assert version.tags["threshold"] == "0.42" and card["threshold"] == 0.42
    assert json.loads(version.tags["card"]) == card
    assert version.tags["onnx_sha256"] == card["model_sha256"]
    assert float(version.tags["heldout.f05"]) == pytest.approx(row["f05"])
    assert float(version.tags["heldout.auroc"]) == pytest.approx(row["auroc"])
    assert version.tags["heldout.data"] == str(held.root.resolve())
    assert version.run_id == reg["run_id"]
    export_run = client.get_run(reg["run_id"])
    assert export_run.data.tags["kind"] == "export"
    assert export_run.data.tags["trained_run_id"] == trained.info.run_id
    got = Path(client.download_artifacts(reg["run_id"], "model", str(tmp_path / "dl")))
    assert sorted(p.name for p in got.iterdir()) == ["model.onnx", "model.onnx.card.json"]
    digest = hashlib.sha256((got / "model.onnx").read_bytes()).hexdigest()
    assert digest == card["model_sha256"], "the registered file is the exported one"
    # the next export is the next version; promoted, it is the one on the line
    e2 = {**cfg.__dict__, "out_dir": str(tmp_path / "e2"), "promote": True}
    again = export_checkpoint(ExportConfig(**e2))["registered"]
    assert again["version"] == reg["version"] + 1 and again["aliases"] == [CHAMPION]
    on_line = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    assert str(on_line.version) == str(again["version"]) and on_line.run_id == again["run_id"]
    assert registry.champion()["version"] == again["version"]
    # barsalign runs --registry lists both, the alias on the promoted one; --promote moves it
    assert main(["runs", "--registry"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["version", "alias", "created"]
    by_version = {int(line.split()[0]): line.split() for line in lines[1:]}
    assert by_version[again["version"]][1] == CHAMPION and by_version[reg["version"]][1] == "-"
    assert main(["runs", "--registry", "--promote", str(reg["version"])]) == 0
    on_line = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    assert str(on_line.version) == str(reg["version"])
    assert main(["runs", "--registry", "--promote", "999"]) == 2
    assert "has no version 999" in capsys.readouterr().err
    off = ExportConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "e3"), "tracking": False})
    assert "registered" not in export_checkpoint(off)
    with pytest.raises(BarsalignError, match="promote needs tracking"):
        ExportConfig(**{**off.__dict__, "promote": True})


@pytest.mark.slow
def test_the_looks_benchmark_table_comes_back_from_the_tracker(tmp_path: Path, capsys) -> None:
    """benchmarks/looks.py on a tiny look set, two seeds: `barsalign runs --markdown --group
    look` gives its rows (and a mean row) from MLflow alone."""
    from barsalign.synth import render_look_sets
    from tests.test_benchmarks import _bench_module

    sets = tmp_path / "sets"
    # 16 test frames: the first 14 are aligned (seed 0), AUROC needs both classes
    render_look_sets("default", sets / "default_8", n_train=8, n_val=6, n_test=16, workers=2)
    out = tmp_path / "looks"
    args = ["--looks", "default", "--seeds", "2", "--n-train", "8", "--sets-dir", str(sets)]
    args += ["--out", str(out), "--json", str(tmp_path / "rows.json")]
    tiny = ("backbone=resnet18", "image_size=64", "weights=random", "epochs=1", "batch_size=4")
    for setting in (*tiny, "accelerator=cpu", "roi=[0.4, 0, 1, 0.9]", "augment=false"):
        args += ["--set", setting]
    assert _bench_module("looks").main(args) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    capsys.readouterr()
    query = f"tags.run_dir LIKE '{out.resolve()}/%'"
    assert main(["runs", "--markdown", "--group", "look", "--filter", query]) == 0
    lines = capsys.readouterr().out.splitlines()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    header, body = cells[0], cells[2:]
    assert header[:2] == ["look", "run"] and "look/data" not in header
    assert len(body) == 3, "two seeds and their mean"
    col = {k: header.index(k) for k in header}
    for row, cell in zip(rows, body[:2], strict=True):
        assert cell[col["look"]] == row["look"] == "default"
        assert cell[col["seed"]] == str(row["seed"]) and cell[col["frames"]] == "8"
        assert cell[col["steps"]] == str(row["steps"])
        for key, name in (
            ("val_f05", "val F0.5"),
            ("f05", "held-out F0.5"),
            ("auroc", "held-out AUROC"),
            ("base_f05", "baseline F0.5"),
            ("base_auroc", "baseline AUROC"),
        ):
            assert float(cell[col[name]]) == pytest.approx(row[key], abs=0.0011), name
    mean = body[2]
    assert mean[0] == "**mean default**"
    want = sum(r["f05"] for r in rows) / 2
    assert float(mean[col["held-out F0.5"]].split()[0].strip("*")) == pytest.approx(
        want, abs=0.0011
    )


@pytest.mark.slow
def test_no_tracking_leaves_no_run_and_a_dead_store_fails_before_training(
    tmp_path: Path, monkeypatch
) -> None:
    run = tmp_path / "quiet"
    cfg = FinetuneConfig(
        backbone="resnet18", image_size=TINY, weights="random", epochs=1, run_dir=str(run)
    )
    quiet = FinetuneConfig(**{**cfg.to_dict(), "tracking": False, "overwrite": True})
    run_training(quiet, datamodule=TensorData())
    assert (run / "summary.json").is_file() and not _runs_of(_client(), run)
    first = list((run / "tb").glob("events.out.tfevents.*"))
    run_training(quiet, datamodule=TensorData())  # replaced: TensorBoard shows the new run only
    events = list((run / "tb").glob("events.out.tfevents.*"))
    assert len(first) == len(events) == 1 and events != first
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing answers there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    dead = FinetuneConfig(**{**cfg.to_dict(), "run_dir": str(tmp_path / "dead")})
    started = time.monotonic()
    with pytest.raises(BarsalignError, match=f"127.0.0.1:{port} does not answer.*--no-tracking"):
        run_training(dead, datamodule=TensorData())
    assert time.monotonic() - started < 60
    assert not (tmp_path / "dead" / "summary.json").exists()


@pytest.fixture
def mlflow_server(tmp_path: Path) -> str:
    """A local `mlflow server` on a free port with a SQLite store in tmp_path; its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    cmd += ["--artifacts-destination", str(tmp_path / "server_artifacts")]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # the first start creates the store's tables
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer in 300 s"
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn workers
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_a_local_mlflow_server_gets_the_same_run(
    mlflow_server: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    run_dir = tmp_path / "served"
    cfg = FinetuneConfig(
        backbone="resnet18", image_size=TINY, weights="random", epochs=2, run_dir=str(run_dir)
    )
    summary = run_training(cfg, datamodule=TensorData())
    client = MlflowClient(mlflow_server)
    (run,) = _runs_of(client, run_dir)
    assert run.info.status == "FINISHED"
    assert run.data.params["backbone"] == "resnet18" and run.data.params["epochs"] == "2"
    history = client.get_metric_history(run.info.run_id, "val_f05")
    assert len(history) == 2 and max(m.value for m in history) == pytest.approx(
        summary["best_f05"], abs=1e-4
    )
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names >= {"config.yaml", "metrics.csv", "summary.json", "curves.png"}, "as locally"
    got = client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path / "dl"))
    assert json.loads(Path(got).read_text()) == summary
    got = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / "dl"))
    assert Path(got).read_bytes() == (run_dir / "config.yaml").read_bytes()
    assert run.data.tags["git_commit"] == _git("rev-parse", "HEAD").strip()
    assert run.data.tags["kind"] == "train" and run.data.tags["run_dir"] == str(run_dir.resolve())
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert run.info.run_id in out and run_dir.name in out


def test_several_filters_give_the_runs_matching_any(tmp_path: Path, monkeypatch) -> None:
    """MLflow's filters have no OR: `runs --filter A --filter B` is the union, newest first."""
    from barsalign import tracking
    from barsalign.runs import runs_table

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for seed in (0, 1, 2):
        tracking.log_run("label_noise", f"noise {seed}", {"seed": seed}, {"share_found": seed / 10})
    rows = runs_table(
        last=5, filter_string=["params.seed = '0'", "params.seed = '2'"], kind="label_noise"
    )
    assert [r["seed"] for r in rows] == [2, 0]
    one = runs_table(last=5, filter_string="params.seed = '1'", kind="label_noise")
    assert [r["seed"] for r in one] == [1]
    with pytest.raises(BarsalignError, match="--filter 'params.seed ~ 3'"):
        runs_table(filter_string=["params.seed = '0'", "params.seed ~ 3"], kind="label_noise")
