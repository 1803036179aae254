"""One value per idea where two modules still name it: they must not drift apart."""

from __future__ import annotations

from barsalign import config, preprocess
from barsalign.labelstore import path_problem
from barsalign.preprocess import PreprocessConfig
from barsalign.synth import render
from barsalign.viz import eda


def test_the_renderers_night_is_what_preprocessing_and_eda_call_dark() -> None:
    """Night frames are rendered below the grayscale mean that preprocessing treats as dark,
    and EDA counts the same frames as dark: one definition, `config.NIGHT_MEAN`."""
    assert render.NIGHT_MEAN == PreprocessConfig().dark_threshold == eda.DARK_THRESHOLD
    assert config.NIGHT_MEAN == render.NIGHT_MEAN


def test_every_reader_takes_the_same_image_files() -> None:
    """Every reader takes config's suffixes; the label store accepts exactly those."""
    assert preprocess.IMAGE_SUFFIXES == config.IMAGE_SUFFIXES
    for suffix in config.IMAGE_SUFFIXES:
        assert path_problem(f"/frames/img_00001{suffix.upper()}") is None
    assert path_problem("/frames/img_00001.gif") is not None
