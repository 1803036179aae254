"""The one inference layer: a checkpoint, its ONNX export and the monitor score frames alike,
and like an independent forward pass with the preprocessing the model was trained with."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import timm
import torch
from conftest import export_untrained

from barsalign import export
from barsalign.errors import BarsalignError
from barsalign.inference import as_predictor, load_predictor
from barsalign.modeling.baseline import EdgeBaseline
from barsalign.modeling.model import AlignmentClassifier
from barsalign.monitor import MonitorConfig, run_monitor
from barsalign.preprocess import PreprocessConfig, preprocess, to_tensor

SIZE = 64
ROI = (0.45, 0.1, 0.95, 0.9)  # the right part of the frame, around the stopper
TRAINED_WITH = PreprocessConfig(target_size=SIZE, roi=ROI)
"""The preprocessing the test's model is trained with, stated here, not read back from it."""


@pytest.fixture(scope="module")
def roi_model(tmp_path_factory: pytest.TempPathFactory, synth_small: Path) -> dict[str, Path]:
    """An untrained checkpoint trained (so it says) on a region of interest, and its ONNX."""
    torch.manual_seed(0)
    ckpt, onnx = export_untrained(
        tmp_path_factory, synth_small, "roi_run", SIZE, threshold=0.4, preprocess=TRAINED_WITH
    )
    return {"ckpt": ckpt, "onnx": onnx}


@pytest.fixture(scope="module")
def frames(synth_small: Path) -> list[np.ndarray]:
    """Six real rendered frames of both classes, read with OpenCV."""
    paths = sorted((synth_small / "example_set").rglob("*.jpg"))
    return [cv2.imread(str(p)) for p in paths[:: max(1, len(paths) // 6)][:6]]


def independent_scores(ckpt: Path, images: list[np.ndarray], pcfg: PreprocessConfig) -> np.ndarray:
    """P(aligned) by hand: the checkpoint's tensors into a fresh network, timm's normalisation,
    `preprocess` + `to_tensor` with the given config, one plain forward pass."""
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    hp = saved["hyper_parameters"]
    net = AlignmentClassifier(hp["backbone"], image_size=hp["image_size"], weights="random")
    net.load_state_dict(saved["state_dict"])
    net.eval()
    norm = timm.data.resolve_model_data_config(net.backbone)
    x = torch.stack([to_tensor(preprocess(img, pcfg), norm) for img in images])
    with torch.inference_mode():
        return torch.sigmoid(net(x)).double().numpy()


def test_checkpoint_and_onnx_score_like_an_independent_forward_pass(
    roi_model: dict[str, Path], frames: list[np.ndarray]
) -> None:
    expected = independent_scores(roi_model["ckpt"], frames, TRAINED_WITH)
    # the test has power: the same frames without the region score otherwise
    whole_frame = independent_scores(roi_model["ckpt"], frames, PreprocessConfig(target_size=SIZE))
    assert np.abs(whole_frame - expected).max() > 1e-3
    ckpt, onnx = load_predictor(roi_model["ckpt"]), load_predictor(roi_model["onnx"])
    assert (ckpt.kind, onnx.kind) == ("checkpoint", "onnx")
    np.testing.assert_allclose(ckpt.scores(frames), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx.scores(frames), expected, atol=1e-4, rtol=0)


def by_hand(image: np.ndarray, roi: list[float], size: int, mean, std) -> np.ndarray:
    """A frame as a colour model's input, with numpy and OpenCV only: the region's pixels,
    their right (landscape) or bottom (portrait) square, resized, RGB, normalised [3, S, S]."""
    h, w = image.shape[:2]
    crop = image[round(roi[1] * h) : round(roi[3] * h), round(roi[0] * w) : round(roi[2] * w)]
    side = min(crop.shape[:2])
    square = crop[crop.shape[0] - side :, crop.shape[1] - side :]
    rgb = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)[:, :, ::-1] / 255.0
    return ((rgb - mean) / std).transpose(2, 0, 1)


def test_a_checkpoint_feeds_its_network_the_region_cropped_by_hand(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    trained_with = PreprocessConfig(target_size=SIZE, mode="none", roi=ROI)
    ckpt = export.untrained_checkpoint(
        tmp_path / "best.ckpt", image_size=SIZE, preprocess=trained_with
    )
    hp = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    norm = timm.data.resolve_model_data_config(timm.create_model(hp["backbone"]))
    predictor = load_predictor(ckpt)
    for img in frames:
        expected = by_hand(img, hp["preprocess"]["roi"], hp["image_size"], *norm_of(norm))
        np.testing.assert_allclose(predictor.prepare(img), expected, atol=1e-5, rtol=0)
        whole = by_hand(img, [0.0, 0.0, 1.0, 1.0], hp["image_size"], *norm_of(norm))
        assert np.abs(whole - expected).max() > 0.5, "the region changes what the network sees"


def norm_of(data_config: dict) -> tuple[np.ndarray, np.ndarray]:
    """timm's mean and std as [1, 1, 3] arrays for an (S, S, 3) RGB image in [0, 1]."""
    return (
        np.asarray(data_config["mean"]).reshape(1, 1, 3),
        np.asarray(data_config["std"]).reshape(1, 1, 3),
    )


def test_the_region_of_interest_travels_with_the_model(roi_model: dict[str, Path]) -> None:
    ckpt, onnx = load_predictor(roi_model["ckpt"]), load_predictor(roi_model["onnx"])
    assert ckpt.preprocess_cfg == onnx.preprocess_cfg == TRAINED_WITH
    assert ckpt.preprocess_cfg.roi == ROI and onnx.card["preprocess"]["roi"] == list(ROI)
    assert onnx.threshold == onnx.decision_threshold == 0.4
    assert ckpt.threshold is None and ckpt.decision_threshold == 0.5


def test_the_monitor_scores_video_frames_like_the_independent_pass(
    roi_model: dict[str, Path], synth_small: Path
) -> None:
    clip = next((synth_small / "clips").glob("*.mp4"))
    result = run_monitor(MonitorConfig(str(roi_model["onnx"]), str(clip), max_frames=4))
    cap = cv2.VideoCapture(str(clip))
    decoded = [cap.read()[1] for _ in range(4)]
    cap.release()
    expected = independent_scores(roi_model["ckpt"], decoded, TRAINED_WITH)
    got = np.array([r["score"] for r in result.records])
    assert [r["frame"] for r in result.records] == [0, 1, 2, 3]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_predict_labels_at_the_models_threshold_or_the_given_one(
    roi_model: dict[str, Path], frames: list[np.ndarray]
) -> None:
    onnx = load_predictor(roi_model["onnx"])
    scores = onnx.scores(frames)
    np.testing.assert_array_equal(onnx.predict(frames), (scores >= 0.4).astype(int))
    cut = float(np.median(scores))
    np.testing.assert_array_equal(onnx.predict(frames, cut), (scores >= cut).astype(int))
    with pytest.raises(BarsalignError, match="threshold"):
        onnx.predict(frames, 1.5)


def test_the_baseline_scores_through_the_same_interface(synth_small: Path) -> None:
    paths = sorted((synth_small / "example_set").rglob("*.jpg"))
    images = [cv2.imread(str(p)) for p in paths]
    labels = [int(p.parent.name == "aligned") for p in paths]
    base = EdgeBaseline(PreprocessConfig(target_size=128), side=16).fit(images, labels)
    predictor = as_predictor(base)
    assert predictor.kind == "baseline" and predictor.name == base.name
    # scikit-learn's own probabilities: an independent route to the same numbers
    np.testing.assert_allclose(predictor.scores(images), base.scores(images), atol=1e-9)
    with pytest.raises(BarsalignError, match="fit the baseline"):
        as_predictor(EdgeBaseline(PreprocessConfig()))


def test_a_file_that_is_no_model_is_one_line(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    with pytest.raises(BarsalignError, match=r"notes.txt: expected a \.ckpt checkpoint"):
        load_predictor(notes)
    with pytest.raises(BarsalignError, match=r"model .*gone.onnx does not exist"):
        load_predictor(tmp_path / "gone.onnx")


# --- a checkpoint without its preprocessing: the run's config.yaml beside it ----------------


def run_folder_with(tmp_path: Path, config_text: str, beside: bool = False) -> Path:
    """A checkpoint path `run/checkpoints/best.ckpt` with `config_text` in `run/config.yaml`
    (or in `run/checkpoints/config.yaml` with `beside`)."""
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    (ckpt.parent if beside else ckpt.parent.parent).joinpath("config.yaml").write_text(config_text)
    return ckpt


def test_an_older_checkpoint_takes_its_runs_preprocessing(tmp_path: Path) -> None:
    from barsalign.inference.load import preprocess_from

    ckpt = run_folder_with(
        tmp_path, "preprocess:\n  target_size: 96\n  roi: [0.5, 0.1, 1.0, 0.9]\n"
    )
    got = preprocess_from({"backbone": "x"}, ckpt)
    assert got == PreprocessConfig(target_size=96, roi=(0.5, 0.1, 1.0, 0.9))
    # the config beside the checkpoint wins over the run's
    (ckpt.parent / "config.yaml").write_text("preprocess:\n  target_size: 80\n")
    assert preprocess_from({}, ckpt) == PreprocessConfig(target_size=80)
    # what the checkpoint stores wins over both
    assert preprocess_from({"preprocess": {"target_size": 64}}, ckpt).target_size == 64


@pytest.mark.parametrize(
    ("config_text", "says"),
    [
        (None, "best.ckpt: no preprocessing config stored with it or its run"),
        ("epochs: 3\n", "best.ckpt: no preprocessing config stored with it or its run"),
        ("preprocess: [1, 2]\n", "config.yaml: its preprocessing config is not a mapping"),
        (
            "preprocess: {target_size: 64, colour: 3}\n",
            "config.yaml: preprocessing config rejected",
        ),
        ("preprocess: {target_size: 0}\n", "config.yaml: "),
        ("preprocess: [unclosed\n", "config.yaml: not readable YAML"),
    ],
)
def test_a_checkpoint_without_a_readable_preprocessing_is_one_line(
    tmp_path: Path, config_text: str | None, says: str
) -> None:
    from barsalign.inference.load import preprocess_from

    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    if config_text is None:
        ckpt.parent.mkdir(parents=True)
    else:
        ckpt = run_folder_with(tmp_path, config_text)
    with pytest.raises(BarsalignError) as err:
        preprocess_from({}, ckpt)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert str(ckpt if "best.ckpt" in says else ckpt.parent.parent / "config.yaml") in str(
        err.value
    )


def test_an_export_describes_the_same_model_as_its_checkpoint(roi_model: dict[str, Path]) -> None:
    ckpt, onnx = load_predictor(roi_model["ckpt"]), load_predictor(roi_model["onnx"])
    assert (ckpt.kind, onnx.kind) == ("checkpoint", "onnx")
    assert ckpt.name == onnx.name == "roi_run", "the run's name, from its folder and its card"
    assert onnx.backbone == ckpt.backbone and onnx.image_size == ckpt.image_size == SIZE
    assert onnx.weights_source == ckpt.weights_source == "random"
    assert onnx.parameters == ckpt.parameters > 0
    assert onnx.data_config == ckpt.data_config, "mean, std and input size as tuples in both"
    assert isinstance(onnx.data_config["mean"], tuple)
    assert (ckpt.source, onnx.source) == (roi_model["ckpt"], roi_model["onnx"])
