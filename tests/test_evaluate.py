"""Evaluation: the predict contract, odd folders, the baseline, error rates and reports."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from barsalign.cli import main
from barsalign.evaluation.evaluate import (
    error_rates,
    evaluate_scorer,
    labelled_folder,
    per_frame_table,
    score_paths,
)
from barsalign.inference import load_predictor


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint file (random resnet18 at 64 px) with its preprocessing stored."""
    from barsalign.modeling.model import AlignmentClassifier
    from barsalign.preprocess import PreprocessConfig

    torch.manual_seed(0)
    pcfg = PreprocessConfig(target_size=64)
    model = AlignmentClassifier(
        "resnet18", image_size=64, weights="random", preprocess=dataclasses.asdict(pcfg)
    )
    path = tmp_path_factory.mktemp("run") / "tiny" / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


@pytest.fixture()
def folder(tmp_path: Path, synth_small: Path) -> Path:
    out = tmp_path / "contract"
    shutil.copytree(synth_small / "example_set", out)
    (out / "not_aligned" / "truncated.jpg").write_bytes(
        (synth_small / "example_set" / "aligned").iterdir().__next__().read_bytes()[:300]
    )
    return out


def test_scores_equal_the_model_on_the_documented_preprocessing(
    tiny_checkpoint: Path, synth_small: Path
) -> None:
    from barsalign.preprocess import preprocess, to_tensor

    scorer = load_predictor(tiny_checkpoint)
    paths = sorted((synth_small / "example_set" / "aligned").iterdir())[:3]
    scores, bad, ms = score_paths(scorer, paths, batch_size=2)
    assert not bad and ms > 0
    model = scorer.torch_model
    x = torch.stack(
        [
            to_tensor(preprocess(cv2.imread(str(p)), scorer.preprocess_cfg), scorer.data_config)
            for p in paths
        ]
    )
    with torch.inference_mode():
        expected = torch.sigmoid(model(x)).numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_predict_contract_csv_metrics_and_unreadable(
    tiny_checkpoint: Path, folder: Path, tmp_path: Path, capsys
) -> None:
    out_csv = tmp_path / "pred.csv"
    rc = main(
        ["predict", "--model", str(tiny_checkpoint), "--source", str(folder), "--out", str(out_csv)]
    )
    assert rc == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(out_csv.open()))
    images = sorted(folder.rglob("*.jpg"))
    assert len(rows) == len(images), "one row per frame, the unreadable one included"
    broken = [r for r in rows if r["path"].endswith("truncated.jpg")]
    assert broken and broken[0]["label"] == "unreadable" and broken[0]["score"] == ""
    scored = [r for r in rows if r["label"] != "unreadable"]
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in scored)
    assert all(
        r["label"] == ("aligned" if float(r["score"]) >= 0.5 else "not_aligned") for r in scored
    )
    assert "f05" in captured.out and "ms per frame" in captured.out
    assert "truncated.jpg" in captured.err and "1 unreadable" in captured.err


def test_predict_on_an_unlabelled_folder_writes_only_the_csv(
    tiny_checkpoint: Path, synth_small: Path, tmp_path: Path, capsys
) -> None:
    out_csv = tmp_path / "pool.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(tiny_checkpoint),
                "--source",
                str(synth_small / "train_set"),
                "--out",
                str(out_csv),
            ]
        )
        == 0
    )
    assert "f05" not in capsys.readouterr().out
    assert len(list(csv.DictReader(out_csv.open()))) == len(
        list((synth_small / "train_set").iterdir())
    )


def test_odd_folders_give_one_clear_line(
    tiny_checkpoint: Path, tmp_path: Path, capsys, synth_small: Path
) -> None:
    empty = tmp_path / "empty"
    (empty / "aligned").mkdir(parents=True)
    assert main(["predict", "--model", str(tiny_checkpoint), "--source", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert "hold no images" in err and err.count("\n") == 0
    assert main(["evaluate", "--model", str(tmp_path / "nope.ckpt"), "--data", str(empty)]) == 2
    assert "does not exist" in capsys.readouterr().err
    notes = tmp_path / "model.txt"
    notes.write_text("not a model")
    assert main(["evaluate", "--model", str(notes), "--data", str(empty)]) == 2
    assert "expected a .ckpt" in capsys.readouterr().err

    one_class = tmp_path / "one"
    shutil.copytree(synth_small / "example_set" / "not_aligned", one_class / "not_aligned")
    out_json = tmp_path / "e.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tiny_checkpoint),
                "--data",
                str(one_class),
                "--json",
                str(out_json),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "undefined (one class only)" in out and "nan" not in out.lower()
    data = json.loads(out_json.read_text())
    assert data["auroc"] is None and data["n_aligned"] == 0


def test_evaluate_row_and_error_rates_from_synthetic_truth(
    tiny_checkpoint: Path, synth_small: Path
) -> None:
    data = labelled_folder(synth_small)
    assert data.root.name == "example_set" and all(m is not None for m in data.meta)
    scorer = load_predictor(tiny_checkpoint)  # tracked: tests/test_tracking.py
    row, frames = evaluate_scorer(scorer, data, latency_frames=2, tracking=False)
    assert row["n"] == len(data.paths) and row["checkpoint_mb"] > 0 and row["latency_ms"] > 0
    assert 0.0 <= row["threshold_f05"] <= 1.0
    rates = error_rates(frames)
    assert set(rates) == {"scene", "lighting", "gap_px"}
    for table in rates.values():
        assert table["frames"].sum() == len(frames)
        errors = frames["outcome"].isin(["FP", "FN"]).sum()
        assert table["errors"].sum() == errors


def test_error_rates_bin_the_hard_gaps_finely() -> None:
    outcomes = ["FP", "TN", "TN", "TP", "FN", "TN"]
    gaps = [3.2, 3.75, 6.0, 0.0, 0.5, None]
    frames = pd.DataFrame(
        {
            "outcome": outcomes,
            "max_gap_px": gaps,
            "scene": ["bars_at_stopper"] * 5 + ["background"],
            "lighting": ["night"] * 6,
        }
    )
    table = error_rates(frames)["gap_px"].set_index("gap_px")
    assert table.loc["3-3.5px", "errors"] == 1 and table.loc["3.5-4px", "errors"] == 0
    assert table.loc["5-8px", "frames"] == 1 and table.loc["0-1px", "errors"] == 1
    assert table.loc["no bars", "frames"] == 1 and table["frames"].sum() == len(frames)


def test_per_frame_outcomes_follow_the_threshold(synth_small: Path) -> None:
    data = labelled_folder(synth_small)
    scores = np.where(data.labels == 1, 0.9, 0.1)
    scores[0] = np.nan
    frames = per_frame_table(data, scores, 0.5)
    assert frames.loc[0, "outcome"] == "unreadable"
    assert set(frames["outcome"][1:]) <= {"TP", "TN"}


def test_the_baseline_learns_its_training_set(synth_small: Path) -> None:
    from barsalign.evaluation.evaluate import read_frames
    from barsalign.modeling.baseline import EdgeBaseline
    from barsalign.preprocess import PreprocessConfig

    data = labelled_folder(synth_small)
    frames, bad = read_frames(data.paths)
    assert not bad
    base = EdgeBaseline(PreprocessConfig(target_size=128), side=16).fit(frames, data.labels)
    s = base.scores(frames)
    assert s.shape == (len(frames),) and ((s >= 0) & (s <= 1)).all()
    assert ((s >= 0.5) == data.labels).mean() >= 0.9


@pytest.mark.slow
def test_05_evaluate_notebook_table_thresholds_and_gallery(
    tiny_checkpoint: Path, synth_small: Path, run_notebook, tmp_path: Path
) -> None:
    runs_dir = tiny_checkpoint.parent.parent.parent
    out = run_notebook(
        "05_evaluate",
        tmp_path,
        runs_dir=str(runs_dir),
        eval_data_dir=str(synth_small / "example_set"),
        baseline_train_dir=str(synth_small / "example_set"),
        gallery_size=2,
        latency_frames=2,
        label_noise_dir=str(tmp_path / "no_noise_measured"),
    )
    table = pd.read_csv(tmp_path / "comparison.csv")
    assert list(table["model"]).count("tiny") == 1 and len(table) == 2, "the run and the baseline"
    assert table["f05"].is_monotonic_decreasing, "best first"
    ops = pd.read_csv(tmp_path / "operating_thresholds.csv")
    assert set(ops["model"]) == set(table["model"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["evaluated_runs"] == 1 and summary["held_out_frames"] == len(
        labelled_folder(synth_small).paths
    )
    assert (tmp_path / "panel_tiny.png").is_file()
    assert "error_rate" in out.read_text(), "error rates by scene, lighting and gap"
    suspects = pd.read_csv(tmp_path / "suspects.csv")  # every training label checked, ranked
    assert len(suspects) == len(labelled_folder(synth_small).paths)
    assert list(suspects["rank"]) == list(range(1, len(suspects) + 1))
    assert (suspects["truth_confirms"] == "no").all(), "the labels given are the renderer's truth"
    assert f'suspects_file = \\"{tmp_path / "suspects.csv"}' in out.read_text(), "how to relabel"
    assert "**Not measured**: no `label_noise.json` under" in out.read_text(), "says so"
