"""Export: ONNX and TorchScript match PyTorch on real frames, and the model card is checked."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from barsalign import cli, export, inference
from barsalign.errors import BarsalignError
from barsalign.inference import load_predictor

SIZE = 64  # tiny input: the tests check the plumbing, not the model's skill


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, synth_small: Path) -> dict:
    pytest.importorskip("barsalign.preprocess", reason="barsalign.preprocess has not landed yet")
    run = tmp_path_factory.mktemp("runs") / "tiny_run"
    ckpt = export.untrained_checkpoint(run / "checkpoints" / "best.ckpt", image_size=SIZE)
    cfg = export.ExportConfig(
        checkpoint=str(ckpt),
        out_dir=str(run / "export"),
        parity_data=str(synth_small),
        parity_frames=12,
        threshold=0.5,
    )
    return export.export_checkpoint(cfg)


def test_onnx_and_torchscript_match_pytorch_on_real_frames(exported: dict) -> None:
    for fmt in ("onnx", "torchscript"):
        r = exported["formats"][fmt]
        assert r["status"] == "exported"
        assert r["frames"] == 12
        assert r["max_abs_logit_diff"] <= 1e-4, fmt
        assert r["batch1_max_abs_logit_diff"] <= 1e-4, fmt
        assert r["same_labels"] and r["labels_differ"] == 0
        assert Path(r["path"]).is_file() and r["size_mb"] > 0.1


def test_onnx_keeps_batchnorm_and_checks_the_optimised_session(exported: dict) -> None:
    r = exported["formats"]["onnx"]
    proto = onnx.load(r["path"])
    assert any(n.op_type == "BatchNormalization" for n in proto.graph.node)
    assert r["deployed_max_abs_logit_diff"] <= r["deployed_allowed"]
    assert r["deployed_labels_differ"] == 0 and r["fp32_spread"] >= 0.0


def test_onnx_has_dynamic_batch_and_opset_17(exported: dict, synth_small: Path) -> None:
    path = Path(exported["formats"]["onnx"]["path"])
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    model = load_predictor(path)
    frames, _ = export.parity_frames(synth_small, 5)
    scorer = load_predictor(exported["checkpoint"])
    batch = scorer.tensors(frames).astype(np.float32)
    assert model.logits_fn(batch).shape == (5,)
    one = np.concatenate([model.logits_fn(batch[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(one, model.logits_fn(batch), atol=1e-4)


def test_coreml_is_exported_or_clearly_skipped(exported: dict) -> None:
    r = exported["formats"]["coreml"]
    if importlib.util.find_spec("coremltools") is None:
        assert r["status"] == "skipped" and "coremltools is not installed" in r["reason"]
    else:
        assert r["status"] in ("exported", "failed") and (r.get("reason") or r.get("path"))
    assert "coreml" in export.format_summary(exported)


def test_card_describes_model_preprocessing_and_source(exported: dict) -> None:
    from barsalign.preprocess import PreprocessConfig

    path = Path(exported["formats"]["onnx"]["path"])
    card = json.loads(inference.card_path(path).read_text())
    assert card["backbone"] == "tf_efficientnet_lite0" and card["image_size"] == SIZE
    assert card["variant"] == "fp32"
    assert card["preprocess"] == json.loads(
        json.dumps(dataclasses.asdict(PreprocessConfig(target_size=SIZE)))
    )
    assert card["threshold"] == 0.5 and card["threshold_source"] == "given"
    assert card["checkpoint_sha256"] == inference.sha256(exported["checkpoint"])
    assert card["model_sha256"] == inference.sha256(path)
    assert card["parity"]["max_abs_logit_diff"] <= 1e-4
    assert card["data_config"]["input_size"] == [3, SIZE, SIZE]
    assert card["opset"] >= 17


def _copy(exported: dict, fmt: str, tmp_path: Path) -> Path:
    src = Path(exported["formats"][fmt]["path"])
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copy(inference.card_path(src), inference.card_path(dst))
    return dst


def _edit_card(model: Path, **changes) -> None:
    card = json.loads(inference.card_path(model).read_text())
    card.update(changes)
    inference.card_path(model).write_text(json.dumps(card))


def test_loader_refuses_a_model_without_a_card(exported: dict, tmp_path: Path) -> None:
    model = _copy(exported, "onnx", tmp_path)
    inference.card_path(model).unlink()
    with pytest.raises(BarsalignError, match="has no model card"):
        load_predictor(model)


def test_loader_refuses_a_changed_model_file(exported: dict, tmp_path: Path) -> None:
    model = _copy(exported, "torchscript", tmp_path)
    with open(model, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BarsalignError, match="sha256 differs"):
        load_predictor(model)


def test_loader_refuses_a_card_of_another_file(exported: dict, tmp_path: Path) -> None:
    model = _copy(exported, "onnx", tmp_path)
    _edit_card(model, model_file="other.onnx")
    with pytest.raises(BarsalignError, match="describes other.onnx"):
        load_predictor(model)


def test_loader_refuses_unknown_or_other_preprocessing(exported: dict, tmp_path: Path) -> None:
    from barsalign.preprocess import PreprocessConfig

    model = _copy(exported, "onnx", tmp_path)
    card = json.loads(inference.card_path(model).read_text())
    _edit_card(model, preprocess={**card["preprocess"], "sharpen_twice": True})
    with pytest.raises(BarsalignError, match="does not match this code's PreprocessConfig"):
        load_predictor(model)
    _edit_card(model, preprocess=card["preprocess"])
    plain = PreprocessConfig()
    field = next(f for f in dataclasses.fields(plain) if isinstance(getattr(plain, f.name), bool))
    other = dataclasses.replace(
        PreprocessConfig(), **{field.name: not getattr(PreprocessConfig(), field.name)}
    )
    with pytest.raises(BarsalignError, match="other preprocessing than requested"):
        load_predictor(model, expect_preprocess=other)
    assert (
        load_predictor(model, expect_preprocess=PreprocessConfig(target_size=SIZE)).threshold == 0.5
    )


def test_loader_refuses_a_wrong_input_size(exported: dict, tmp_path: Path) -> None:
    model = _copy(exported, "onnx", tmp_path)
    _edit_card(model, image_size=SIZE * 2)
    with pytest.raises(BarsalignError, match=f"image_size {SIZE * 2} is not"):
        load_predictor(model)


def test_loader_refuses_a_broken_card(exported: dict, tmp_path: Path) -> None:
    model = _copy(exported, "onnx", tmp_path)
    inference.card_path(model).write_text("{not json")
    with pytest.raises(BarsalignError, match="not valid JSON"):
        load_predictor(model)


def test_onnx_predictor_scores_like_the_checkpoint(exported: dict, synth_small: Path) -> None:
    frames, _ = export.parity_frames(synth_small, 6)
    onnx_scorer = load_predictor(exported["formats"]["onnx"]["path"])
    ckpt_scorer = load_predictor(exported["checkpoint"])
    np.testing.assert_allclose(onnx_scorer.scores(frames), ckpt_scorer.scores(frames), atol=1e-5)
    assert onnx_scorer.threshold == 0.5


def test_parity_counts_label_flips() -> None:
    ref = np.array([-2.0, 0.5, 3.0])
    assert export.parity(ref, ref + 1e-6, 0.5)["same_labels"]
    flipped = export.parity(ref, np.array([-2.0, -0.1, 3.0]), 0.5)
    assert flipped["labels_differ"] == 1 and not flipped["same_labels"]
    # at a threshold of 0.9 (logit 2.197) the cut falls between 0.5 and 3.0
    assert export.parity(ref, np.array([-2.0, 2.5, 3.0]), 0.9)["labels_differ"] == 1


def test_operating_threshold_comes_from_the_evaluation(tmp_path: Path) -> None:
    table = tmp_path / "comparison.csv"
    table.write_text(
        "model,f05,threshold_f05,threshold_precision\nrun_a,0.9,0.61,0.83\nrun_b,0.8,0.42,\n"
    )
    assert export.operating_point("run_a", None, table)[:2] == (
        0.83,
        f"evaluation (precision target): {table}",
    )
    thr, source, metrics = export.operating_point("run_b", None, table)
    assert (thr, metrics["f05"]) == (0.42, 0.8) and "F0.5" in source
    assert export.operating_point("run_a", 0.7, table)[:2] == (0.7, "given")
    thr, source, _ = export.operating_point("run_c", None, table, runs_dir=tmp_path)
    assert thr == 0.5 and source.startswith("default 0.5")


def test_export_refuses_bad_settings() -> None:
    with pytest.raises(BarsalignError, match="opset must be 17"):
        export.ExportConfig(opset=13)
    with pytest.raises(BarsalignError, match="formats must be"):
        export.ExportConfig(formats=("tflite",))


def test_cli_export_and_a_missing_checkpoint(
    exported: dict, synth_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rc = cli.main(
        [
            "export",
            "--checkpoint",
            exported["checkpoint"],
            "--out",
            str(tmp_path / "e"),
            "--formats",
            "onnx",
            "--data",
            str(synth_small),
            "--parity-frames",
            "4",
            "--threshold",
            "0.4",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "max |logit diff|" in out and (tmp_path / "e" / "model.onnx").is_file()
    assert json.loads((tmp_path / "e" / "model.onnx.card.json").read_text())["threshold"] == 0.4
    rc = cli.main(["export", "--checkpoint", str(tmp_path / "none.ckpt")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "does not exist" in err


@pytest.mark.slow
def test_06_export_notebook_exports_and_monitors_a_clip(
    exported: dict, synth_small: Path, run_notebook, tmp_path: Path
) -> None:
    from barsalign.synth.shift import ShiftConfig, render_shift

    clip = next((synth_small / "clips").glob("*.mp4"))
    small = ShiftConfig(minutes=0.4, width=192, height=144, idle_s=(2, 4), hold_s=(2, 4))
    shift = render_shift(tmp_path / "shift", small, workers=1)
    run = tmp_path / "run"
    out = run_notebook(
        "06_export",
        run,
        checkpoint=exported["checkpoint"],
        parity_data_dir=str(synth_small),
        eval_data_dir=str(synth_small / "example_set"),
        parity_frames=6,
        latency_repeats=3,
        clip=str(clip),
        strip_frames=4,
        shift_dir=str(shift),
    )
    summary = json.loads((run / "summary.json").read_text())
    # the shift's operator numbers: the card's smoothing (if one was chosen) and the default
    table = (run / "shift_metrics.csv").read_text().splitlines()
    assert table[0].startswith("setting,k,n,margin,") and len(table) in (2, 3)
    assert table[-1].startswith("default,3,4,0.5,")
    assert summary["shift_video_s"] == pytest.approx(0.4 * 60)
    assert summary["shift_false_green_per_hour"] >= 0
    assert summary["onnx_max_logit_diff"] <= 1e-4 and summary["monitor_fps"] > 0
    for name in ("model.onnx.card.json", "model.torchscript.pt.card.json", "latency.csv"):
        assert (run / name).is_file(), name
    assert (run / "annotated.mp4").stat().st_size > 0
    plant = json.loads((run / "plant_summary.json").read_text())
    assert plant["held_out_frames"] == len(list((synth_small / "example_set").glob("*/*.jpg")))
    assert all((run / e["file"]).is_file() for e in plant["errors"])
    text = out.read_text()
    assert "data:video/mp4;base64," in text, "the annotated video is embedded in the report"
