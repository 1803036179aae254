"""int8 quantization: loads through the same Predictor, scores close to fp32 on real frames,
its card says what it is and what calibrated it, and bad calibration folders fail in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import export_untrained

from barsalign import cli
from barsalign.errors import BarsalignError
from barsalign.export.quantize import QuantizeConfig, calibration_split, quantize_model, shape_nodes
from barsalign.inference import load_predictor, onnx_session, physical_cores, sha256
from barsalign.preprocess import list_images, read_image

SIZE = 96  # small, but the "same" padding's size arithmetic still runs in the graph


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, synth_small: Path) -> dict:
    """An untrained Lite0 exported to ONNX, and its int8 quantization on the tiny set."""
    import torch

    torch.manual_seed(0)
    _, fp32 = export_untrained(tmp_path_factory, synth_small, "tiny_run", SIZE, tracking=False)
    card = quantize_model(QuantizeConfig(str(fp32), str(synth_small), frames=16, check_frames=8))
    return {"fp32": fp32, "int8": fp32.with_name("model.int8.onnx"), "card": card}


def held_frames(synth_small: Path) -> list[np.ndarray]:
    """Frames no calibration saw: the pool (calibration reads the example set)."""
    return [read_image(p) for p in list_images(synth_small / "train_set")]


def close_to(reference: np.ndarray, other: np.ndarray) -> bool:
    """The bound a working int8 model meets: logits that rank frames as fp32 does
    (correlation >= 0.8) within half of fp32's spread across frames on average. (Measured
    here: 0.94 and a quarter; the broken quantizations below: correlation below 0.)"""
    spread = float(reference.std())
    corr = float(np.corrcoef(reference, other)[0, 1])
    return corr >= 0.8 and float(np.abs(reference - other).mean()) <= 0.5 * spread


def test_int8_loads_through_the_predictor_and_scores_like_fp32(
    models: dict, synth_small: Path
) -> None:
    fp32, int8 = load_predictor(models["fp32"]), load_predictor(models["int8"])
    assert int8.kind == "onnx" and int8.card["variant"] == "int8"
    assert int8.preprocess_cfg == fp32.preprocess_cfg and int8.threshold == fp32.threshold
    frames = held_frames(synth_small)
    batch = fp32.tensors(frames)
    assert np.array_equal(batch, int8.tensors(frames))  # the same input, prepared once
    ref, got = fp32.logits(batch), int8.logits(batch)
    assert ref.std() > 0.03  # the frames do tell the untrained net something apart
    assert close_to(ref, got)
    assert np.mean((ref >= 0) == (got >= 0)) >= 0.9
    assert not np.array_equal(ref, got)  # it is another model, not the fp32 file again
    # the weights are int8: the file is a third of the fp32 one or less
    assert models["int8"].stat().st_size < 0.4 * models["fp32"].stat().st_size


def test_broken_quantizations_fail_the_bound(
    models: dict, synth_small: Path, tmp_path: Path
) -> None:
    """Two ways to get it wrong, each caught by the bound above: calibrating on blank inputs
    (not real frames through the model's preprocessing), and quantizing the "same" padding's
    size arithmetic too (the default of `quantize_static`, which shifts the feature maps)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from barsalign.export.quantize import _reader, prepared

    fp32 = load_predictor(models["fp32"])
    batch = fp32.tensors(held_frames(synth_small))
    reference = fp32.logits(batch)
    blank = np.zeros((1, 3, SIZE, SIZE), np.float32)

    class Blank(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = 4

        def get_next(self) -> dict | None:
            self.left -= 1
            return {"input": blank} if self.left >= 0 else None

    pre = tmp_path / "pre.onnx"
    quant_pre_process(str(models["fp32"]), str(pre))
    calibration = prepared(fp32, calibration_split(synth_small, 16, 8)[0])
    for name, reader in (("blank", Blank()), ("sizes", _reader("input", calibration))):
        bad = tmp_path / f"{name}.int8.onnx"
        quantize_static(str(pre), str(bad), reader, quant_format=QuantFormat.QDQ, per_channel=True)
        got = np.asarray(onnx_session(bad).run(None, {"input": batch})[0], np.float64).ravel()
        assert not close_to(reference, got), name


def test_card_says_int8_and_what_calibrated_it(models: dict, synth_small: Path) -> None:
    card = json.loads((models["int8"].parent / "model.int8.onnx.card.json").read_text())
    fp32_card = json.loads((models["fp32"].parent / "model.onnx.card.json").read_text())
    assert card == {k: v for k, v in models["card"].items()}
    assert card["variant"] == "int8" and card["format"] == "onnx"
    assert card["model_file"] == "model.int8.onnx" and card["model_sha256"] == sha256(
        models["int8"]
    )
    assert card["source_model"] == {"file": "model.onnx", "sha256": sha256(models["fp32"])}
    for key in ("backbone", "image_size", "preprocess", "data_config", "threshold"):
        assert card[key] == fp32_card[key], key
    q = card["quantization"]
    assert q["format"] == "QDQ" and q["per_channel"] and q["weights"] == "int8"
    cal = q["calibration"]
    example = sorted(map(str, list_images(synth_small / "example_set")))
    assert cal["frames"] == 16 == len(cal["files"]) and set(cal["files"]) <= set(example)
    assert card["parity"]["frames"] == 8 and not set(card["parity"]) & {"files"}
    proto = onnx.load(str(models["int8"]))
    assert any(n.op_type == "DequantizeLinear" for n in proto.graph.node)


def test_size_arithmetic_stays_float(models: dict) -> None:
    """The nodes computing the "same" padding are left out of quantization, the convolutions
    are not: every Pad's `pads` comes from a float node."""
    graph = onnx.load(str(models["fp32"])).graph
    sizes = set(shape_nodes(graph))
    by_output = {o: n for n in graph.node for o in n.output}
    pads = [by_output[n.input[1]] for n in graph.node if n.op_type == "Pad"]
    assert pads and all(p.name in sizes for p in pads)
    convs = [n.name for n in graph.node if n.op_type in ("Conv", "Gemm")]
    assert convs and not sizes & set(convs)
    int8 = onnx.load(str(models["int8"])).graph
    quantized = {i for n in int8.node if n.op_type == "DequantizeLinear" for i in n.output}
    pads8 = [n for n in int8.node if n.op_type == "Pad"]
    assert pads8 and all(n.input[1] not in quantized for n in pads8)


def test_calibration_and_check_frames_are_disjoint(synth_small: Path) -> None:
    cal, check = calibration_split(synth_small, 10, 6)
    assert len(cal) == 10 and len(check) == 6 and not set(cal) & set(check)
    labels = {p.parent.name for p in cal}
    assert labels == {"aligned", "not_aligned"}


def test_bad_calibration_folder_is_one_line(
    models: dict, tmp_path: Path, synth_small: Path, capsys
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in list_images(synth_small / "example_set")[:3]:
        (broken / p.name).write_bytes(p.read_bytes())
    (broken / "a_truncated.jpg").write_bytes(b"\xff\xd8\xff" + b"0" * 50)
    for calib, says in (
        (tmp_path / "missing", "is not a folder"),
        (empty, "holds 0 images"),
        (broken, "a_truncated.jpg"),
    ):
        rc = cli.main(["quantize", "--model", str(models["fp32"]), "--calib", str(calib)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and says in err, err
        assert "--calib" in err or "calibration" in err
    with pytest.raises(BarsalignError, match="needs an fp32 ONNX export"):
        quantize_model(QuantizeConfig(str(models["int8"]), str(synth_small)))
    with pytest.raises(BarsalignError, match="--method"):
        QuantizeConfig(str(models["fp32"]), str(synth_small), method="Magic")


def test_sessions_use_one_thread_per_physical_core(models: dict) -> None:
    import onnxruntime as ort

    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
    opts = onnx_session(models["fp32"]).get_session_options()
    assert opts.intra_op_num_threads == physical_cores()
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert onnx_session(models["fp32"], threads=1).get_session_options().intra_op_num_threads == 1
