"""preprocess against an independent step-by-step computation; odd inputs; to_tensor; CLI."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from barsalign.augment import AugmentConfig, augment, augmented_variants, describe
from barsalign.cli import main
from barsalign.errors import BarsalignError
from barsalign.modeling.train_config import load_profile
from barsalign.preprocess import (
    MODES,
    PreprocessConfig,
    crop_resize,
    finish,
    list_images,
    normalise,
    preprocess,
    read_image,
    to_tensor,
)
from barsalign.preprocess.masked import masked_fast

DC = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def reference(img: np.ndarray, size: int = 384) -> tuple[np.ndarray, bool]:
    """The issue's recipe written out literally; returns the frame and whether it was dark."""
    h, w = img.shape[:2]
    crop = img[:, w - h :]
    small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    dark = gray.mean() < 55
    if dark:
        adjusted = cv2.convertScaleAbs(gray, alpha=1.5, beta=155)
    else:
        adjusted = cv2.convertScaleAbs(gray, alpha=1.35, beta=75)
    blurred = cv2.GaussianBlur(adjusted, (31, 31), 0)
    edges = cv2.subtract(adjusted, blurred)
    edges[:, : size // 2] = 0
    return edges, bool(dark)


def _frames(synth: Path) -> dict[str, Path]:
    rows = [json.loads(x) for x in (synth / "metadata.jsonl").read_text().splitlines()]
    stills = [r for r in rows if r.get("subset") == "example_set"]
    night = next(r for r in stills if r["lighting"] == "night")
    day = next(r for r in stills if r["lighting"] == "day")
    return {"night": synth / night["file"], "day": synth / day["file"]}


@pytest.mark.parametrize("size", [384, 128, 96])
def test_matches_the_step_by_step_recipe_on_dark_and_light_frames(synth_small: Path, size) -> None:
    darkness = {}
    for name, path in _frames(synth_small).items():
        img = read_image(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the small set's frames are under 384 px high
            got = preprocess(img, PreprocessConfig(target_size=size))
            want, darkness[name] = reference(img, size)
        assert got.dtype == np.uint8 and got.shape == (size, size)
        np.testing.assert_array_equal(got, want)
        assert got[:, : size // 2].max() == 0 and got[:, size // 2 :].max() > 0
    assert darkness == {"night": True, "day": False}, "both brightness branches were exercised"


@pytest.mark.parametrize("mode", ["edges", "grayscale", "none"])
def test_masked_shortcut_is_pixel_identical_to_the_literal_steps(synth_small: Path, mode) -> None:
    """`preprocess` skips the masked columns; every output must equal the literal pipeline."""
    frames = [read_image(p) for p in list_images(synth_small / "example_set")]
    rng = np.random.default_rng(1)
    frames += [rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)]  # portrait
    frames += [np.full((288, 384, 3), v, np.uint8) for v in (54, 55, 56)]  # on the threshold
    taken = 0
    for size, fraction in [(128, 0.5), (96, 0.5), (64, 0.5), (144, 0.5), (128, 0.7), (72, 0.3)]:
        cfg = PreprocessConfig(target_size=size, mode=mode, mask_fraction=fraction)
        for img in frames:
            np.testing.assert_array_equal(preprocess(img, cfg), finish(crop_resize(img, cfg), cfg))
            taken += masked_fast(img, cfg) is not None
    assert taken > len(frames) * 4, "the shortcut ran on most frames"
    flat = np.full((288, 384, 3), 55, np.uint8)
    if mode == "edges":  # a mean within the rounding bound of the threshold takes the literal path
        assert masked_fast(flat, PreprocessConfig(target_size=128)) is None


def test_modes_and_mask() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    none = preprocess(img, PreprocessConfig(target_size=60, mode="none", mask_left=False))
    want = cv2.resize(img[:, 80:], (60, 60), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(none, want)
    gray = preprocess(img, PreprocessConfig(target_size=60, mode="grayscale", mask_left=False))
    np.testing.assert_array_equal(gray, cv2.cvtColor(want, cv2.COLOR_BGR2GRAY))
    masked = preprocess(img, PreprocessConfig(target_size=60, mode="grayscale", mask_fraction=0.25))
    assert masked[:, :15].max() == 0 and (masked[:, 15:] == gray[:, 15:]).all()
    with pytest.raises(BarsalignError, match="mode"):
        PreprocessConfig(mode="sobel")
    with pytest.raises(BarsalignError, match="blur_kernel"):
        PreprocessConfig(blur_kernel=30)


def test_roi_crops_the_frame_before_every_step(synth_small: Path) -> None:
    """Step 0: with a roi, every mode and mask gives what the plain pipeline gives on the crop."""
    frames = [read_image(p) for p in list_images(synth_small / "example_set")][:8]
    roi = (0.5, 0.1, 1.0, 0.75)
    for mode in MODES:
        for mask in (True, False):
            cfg = PreprocessConfig(target_size=64, mode=mode, mask_left=mask, roi=roi)
            plain = dataclasses.replace(cfg, roi=None)
            for img in frames:
                h, w = img.shape[:2]
                crop = img[round(0.1 * h) : round(0.75 * h), round(0.5 * w) :]
                got = preprocess(img, cfg)
                np.testing.assert_array_equal(got, preprocess(crop, plain))
                np.testing.assert_array_equal(got, finish(crop_resize(img, cfg), cfg))
    assert PreprocessConfig(roi=[0.5, 0, 1, 1]).roi == (0.5, 0.0, 1.0, 1.0)
    assert PreprocessConfig(roi="0.5,0,1,1") == PreprocessConfig(roi=(0.5, 0, 1, 1))
    assert PreprocessConfig(roi="none").roi is None
    assert PreprocessConfig(roi=roi).key() != PreprocessConfig().key()


def test_square_key_follows_what_crop_resize_depends_on() -> None:
    base = PreprocessConfig(target_size=320, roi=(0.5, 0.1, 1.0, 0.75))
    finish_only = dataclasses.replace(base, mode="none", mask_left=True, blur_kernel=5)
    assert finish_only.square_key() == base.square_key() and finish_only.key() != base.key()
    for other in (dataclasses.replace(base, target_size=288), dataclasses.replace(base, roi=None)):
        assert other.square_key() != base.square_key()


@pytest.mark.parametrize(
    "roi, words",
    [
        ("0.5,0,1", "expected 4 numbers"),
        ("a,b,c,d", "expected 4 numbers"),
        ((0.6, 0, 0.4, 1), "x0 < x1"),
    ],
)
def test_a_bad_roi_is_one_clear_error(roi, words: str) -> None:
    with pytest.raises(BarsalignError, match=words):
        PreprocessConfig(roi=roi)


def _scene(h: int = 96, w: int = 128) -> np.ndarray:
    """A frame with structure: bars of different grey levels."""
    img = np.full((h, w, 3), 90, np.uint8)
    for i in range(0, h, 12):
        img[i : i + 5, w // 3 :] = (40 + i % 200, 160, 220 - i % 200)
    return img


def test_grayscale_rgba_and_16_bit_inputs_are_converted_explicitly() -> None:
    cfg = PreprocessConfig(target_size=48)
    bgr = _scene()
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    gray_bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(preprocess(gray, cfg), preprocess(gray_bgr, cfg))
    np.testing.assert_array_equal(preprocess(gray[:, :, None], cfg), preprocess(gray_bgr, cfg))
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    np.testing.assert_array_equal(preprocess(bgra, cfg), preprocess(bgr, cfg))
    wide = bgr.astype(np.uint16) * 257
    np.testing.assert_array_equal(preprocess(wide, cfg), preprocess(bgr, cfg))
    with pytest.raises(BarsalignError, match="pixel type"):
        preprocess(bgr.astype(np.int32), cfg)


def test_portrait_keeps_the_bottom_square_and_small_frames_warn() -> None:
    img = _scene(160, 100)
    cfg = PreprocessConfig(target_size=50, mode="none", mask_left=False)
    want = cv2.resize(img[60:], (50, 50), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(preprocess(img, cfg), want)
    with pytest.warns(UserWarning, match="upscaled"):
        out = preprocess(_scene(40, 60), PreprocessConfig(target_size=64))
    assert out.shape == (64, 64)


def test_unreadable_and_truncated_files_name_the_file(synth_small: Path, tmp_path: Path) -> None:
    good = _frames(synth_small)["day"]
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("cut.jpg", "text.jpg", "empty.png", "missing.jpg"):
        with pytest.raises(BarsalignError, match=name) as err:
            read_image(tmp_path / name)
        assert "\n" not in str(err.value)
    assert read_image(good).shape[2] == 3


def test_to_tensor_normalises_with_the_given_data_config() -> None:
    gray = np.array([[0, 255], [128, 51]], np.uint8)
    x = to_tensor(gray, DC)
    assert tuple(x.shape) == (3, 2, 2) and x.dtype.is_floating_point
    for c in range(3):
        want = (gray / 255.0 - DC["mean"][c]) / DC["std"][c]
        np.testing.assert_allclose(x[c].numpy(), want, rtol=1e-5, atol=1e-5)
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[..., 2] = 255  # red in BGR
    y = to_tensor(colour, {"mean": (0, 0, 0), "std": (1, 1, 1)})
    assert y[0].min() == 1.0 and y[1].max() == 0.0 and y[2].max() == 0.0  # RGB order
    with pytest.raises(BarsalignError, match="mean"):
        to_tensor(gray, {})


def test_normalise_is_the_whole_tensor_formula_bit_for_bit() -> None:
    """The plane-by-plane float32 arithmetic equals `(x - mean) / std` over the whole
    [3, S, S] tensor, bit for bit, for colour and gray frames and per-channel statistics."""
    rng = np.random.default_rng(0)
    dc = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    mean = np.asarray(dc["mean"], np.float32).reshape(3, 1, 1) * 255.0
    std = np.asarray(dc["std"], np.float32).reshape(3, 1, 1) * 255.0
    colour = rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (37, 41), dtype=np.uint8)
    for img, chw in (
        (colour, colour[:, :, ::-1].transpose(2, 0, 1)),
        (gray, np.repeat(gray[None], 3, axis=0)),
    ):
        got = normalise(img, dc)
        want = (chw.astype(np.float32) - mean) / std
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
    with pytest.raises(BarsalignError, match="mean"):
        normalise(gray, {"mean": (0.5, 0.5), "std": (0.5, 0.5, 0.5)})
    with pytest.raises(BarsalignError, match=r"\(S, S\)"):
        normalise(np.zeros((4, 4, 2), np.uint8), dc)


def test_augmentation_is_seeded_and_masked_after() -> None:
    img = _scene(96, 128)
    pcfg = PreprocessConfig(target_size=64)
    a = augmented_variants(img, 5, pcfg, seed=1)
    b = augmented_variants(img, 5, pcfg, seed=1)
    assert len(a) == 5 and all((x == y).all() for x, y in zip(a, b, strict=True))
    np.testing.assert_array_equal(a[0], preprocess(img, pcfg))
    always = AugmentConfig(p_rotate=1.0, p_brightness=1.0, p_blur=1.0)
    c = augmented_variants(img, 4, pcfg, always, seed=2)
    assert all(v[:, :32].max() == 0 for v in c), "mask applied after augmentation"
    assert any(not (v == c[0]).all() for v in c[1:])
    sq = np.full((32, 32, 3), 100, np.uint8)
    out = augment(
        sq,
        AugmentConfig(p_rotate=0, p_blur=0, p_brightness=1, brightness=0.5),
        np.random.default_rng(0),
    )
    assert out.shape == sq.shape and out[0, 0, 0] != 100


def test_photometric_augmentation_keeps_the_default_draws_and_changes_the_square() -> None:
    """Off by default (the default's draws unchanged); each change keeps shape and dtype,
    moves pixel values, and leaves the geometry alone: a dark bar edge stays where it was."""
    sq = np.full((64, 64, 3), 90, np.uint8)
    sq[:, 40:] = 200  # a bright bar head meeting a darker face at column 40
    sq[::7, ::5] = 150  # texture, so contrast and gamma have something to move
    base = AugmentConfig()
    photometric = {"p_contrast": 0.0, "p_gamma": 0.0, "p_colour": 0.0, "p_noise": 0.0}
    assert AugmentConfig(**photometric, p_jpeg=0.0) == base
    for seed in range(5):
        np.testing.assert_array_equal(
            augment(sq, base, np.random.default_rng(seed)),
            augment(sq, AugmentConfig(jpeg_quality=(50, 60)), np.random.default_rng(seed)),
        )
    still = {"p_rotate": 0.0, "p_brightness": 0.0}
    for change in ("p_contrast", "p_gamma", "p_colour", "p_noise", "p_jpeg"):
        cfg = AugmentConfig(**still, **{change: 1.0}, contrast=0.5, gamma=1.0, colour=0.3)
        out = augment(sq, cfg, np.random.default_rng(3))
        assert out.shape == sq.shape and out.dtype == np.uint8, change
        assert not np.array_equal(out, sq), change
        edge = np.diff(out.astype(int).mean(axis=(0, 2)))
        assert int(np.argmax(np.abs(edge))) == 39, f"{change} moved the edge"
    described = describe(AugmentConfig(p_rotate=0, p_noise=0.3, p_jpeg=1, jpeg_quality=(40, 80)))
    assert described == "brightness ±20% (p 0.5), noise sigma 1-6 (p 0.3), JPEG quality 40-80 (p 1)"
    assert describe(None) == "none"
    with pytest.raises(BarsalignError, match="jpeg_quality"):
        AugmentConfig(jpeg_quality=(90, 30))
    with pytest.raises(BarsalignError, match="noise_sigma"):
        AugmentConfig(noise_sigma=0.5)
    with pytest.raises(BarsalignError, match="p_gamma"):
        AugmentConfig(p_gamma=1.5)


def test_cli_writes_processed_frames(synth_small: Path, tmp_path: Path, capsys) -> None:
    src = synth_small / "example_set"
    n = len(list(src.rglob("*.jpg")))
    assert main(["preprocess", str(src), str(tmp_path / "out"), "--size", "64"]) == 0
    outs = sorted((tmp_path / "out").rglob("*.png"))
    assert len(outs) == n and cv2.imread(str(outs[0]), cv2.IMREAD_UNCHANGED).shape == (64, 64)
    assert main(["preprocess", str(tmp_path / "nope"), str(tmp_path / "o2")]) == 2
    assert "nope" in capsys.readouterr().err
    roi = ["--roi", "0.5,0,1,0.8", "--mode", "grayscale"]
    assert main(["preprocess", str(src), str(tmp_path / "o3"), "--size", "64", *roi]) == 0
    first = sorted((tmp_path / "o3").rglob("*.png"))[0]
    want = preprocess(
        read_image(src / first.relative_to(tmp_path / "o3").with_suffix(".jpg")),
        PreprocessConfig(target_size=64, mode="grayscale", mask_left=False, roi=(0.5, 0, 1, 0.8)),
    )
    np.testing.assert_array_equal(cv2.imread(str(first), cv2.IMREAD_UNCHANGED), want)
    assert main(["preprocess", str(src), str(tmp_path / "o4"), "--roi", "1,0,0.5,1"]) == 2
    assert "x0 < x1" in capsys.readouterr().err


@pytest.mark.slow
def test_03_notebook_runs(synth_small: Path, run_notebook, tmp_path: Path) -> None:
    data = str(synth_small / "example_set")
    run_notebook("03_preprocess", tmp_path, data_dir=data, image_size=96, roi="0.5,0,1,0.8")
    assert (tmp_path / "augmentation_grid.png").is_file()
    assert load_profile(tmp_path / "profile_fragment.yaml")["image_size"] == 96
    assert len(list(tmp_path.glob("steps_dark_*.png"))) == 1
    assert len(list(tmp_path.glob("steps_light_*.png"))) == 1
