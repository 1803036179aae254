"""The default recipe: its step budget and schedule, the region proposal, and its refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest

from barsalign.cli import main
from barsalign.errors import BarsalignError
from barsalign.modeling.model import AlignmentClassifier
from barsalign.modeling.recipe import SAMPLES, auto_steps, plan_training
from barsalign.modeling.train_config import FinetuneConfig
from barsalign.preprocess import roi_box
from barsalign.roi import (
    _probe_map,
    box_from_map,
    draw_per_class,
    local_map,
    propose_roi,
    square_box,
)
from barsalign.synth import render_look_sets
from tests.test_train import TensorData


@pytest.fixture(scope="module")
def looks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two looks with the stopper on opposite sides, rendered once: 300 training frames, a
    plant's first labelling (the region proposal is not reliable from far fewer)."""
    root = tmp_path_factory.mktemp("recipe_looks")
    return {
        name: render_look_sets(name, root / name, n_train=300, n_val=24, n_test=4, workers=2)
        for name in ("left_low", "top_down")
    }


@pytest.mark.parametrize(
    ("frames", "steps"),
    [(50, 375), (300, 375), (600, 450), (2400, 450), (10_000, 450)],
)
def test_the_automatic_budget_is_sized_to_the_set(frames: int, steps: int) -> None:
    got, why = auto_steps(frames, 16)
    assert got == steps and str(frames) in why
    # a small set is seen 20 times, a large one within the sample bounds
    samples = got * 16
    assert SAMPLES[0] <= samples < SAMPLES[1] + 16
    assert samples >= min(20 * frames, SAMPLES[1])


def test_the_schedule_warms_up_then_decays_over_the_real_steps(tmp_path: Path) -> None:
    model = AlignmentClassifier(
        backbone="resnet18",
        image_size=64,
        weights="random",
        lr=1e-2,
        schedule="cosine",
        warmup_fraction=0.25,
    )
    seen: list[float] = []

    class Lr(pl.Callback):
        def on_train_batch_start(self, trainer, *_):  # noqa: ANN001
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = pl.Trainer(
        max_steps=20,
        max_epochs=-1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Lr()],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, datamodule=TensorData(n=16, batch_size=4))  # 4 steps per epoch
    assert len(seen) == 20
    warm = seen[:5]
    assert warm == sorted(warm) and warm[0] == pytest.approx(1e-2 / 5)
    assert seen[5] == pytest.approx(1e-2)  # warm-up ends at 5 of 20 steps
    cos = [0.5 * (1 + math.cos(math.pi * (s - 5) / 15)) * 1e-2 for s in range(5, 20)]
    assert np.allclose(seen[5:], cos)  # cosine over the 15 steps left, not over epochs


@pytest.mark.slow
def test_a_plan_reads_the_labels_and_rounds_to_whole_validations(looks: dict[str, Path]) -> None:
    sets = looks["left_low"]
    cfg = FinetuneConfig(data_dir=str(sets / "train"), val_data_dir=str(sets / "val"))
    resolved, plan = plan_training(cfg)
    assert sum(plan.n_train.values()) == 300 and sum(plan.n_val.values()) == 24
    assert plan.n_train["aligned"] and plan.n_train["not_aligned"]
    assert plan.val_every == 19 and plan.steps == 380  # 375 rounded to 20 passes of 19 steps
    assert plan.warmup_steps == round(0.05 * 380) and plan.balance == "shuffle"
    assert resolved.roi == plan.roi and isinstance(plan.roi, tuple)
    assert resolved.preprocess_config().roi == plan.roi
    text = "\n".join(plan.lines(resolved))
    for word in ("steps: 380", "320 px", "region: proposed", "aligned", "with weights auto"):
        assert word in text
    assert "augmentation: rotation ±5° (p 0.5), brightness ±20% (p 0.5)" in text
    source = "looks:lite0_looks.safetensors"  # once the backbone is built, where it came from
    assert f"with weights {source}," in "\n".join(plan.lines(resolved, source))
    given = FinetuneConfig(**{**cfg.to_dict(), "max_steps": 30, "roi": "0.1,0.1,0.6,0.9"})
    _, fixed = plan_training(given)
    assert fixed.steps == 38 and fixed.roi == (0.1, 0.1, 0.6, 0.9)  # 30 -> 2 validations of 19
    _, epochs = plan_training(
        FinetuneConfig(**{**given.to_dict(), "max_steps": None, "epochs": 3})
    )  # the region given, so no second proposal
    assert epochs.steps == 57


def test_a_square_grows_around_its_box_and_centres_on_the_focus_where_it_cannot_hold_it() -> None:
    frame = (1000, 500)
    # a small box grows to the least side around its centre, shifted (not cut) at the border
    assert square_box((900, 100, 960, 160), frame, 200) == (0.8, 0.06, 1.0, 0.46)
    # wider than the frame is tall: the square keeps the box's centre without a focus...
    assert square_box((0, 0, 900, 400), frame, 0) == (0.2, 0.0, 0.7, 1.0)
    # ...and the focus with one, along the side it cannot hold (not along the other)
    assert square_box((0, 0, 900, 400), frame, 0, focus=(800, 10)) == (0.5, 0.0, 1.0, 1.0)
    assert square_box((100, 100, 300, 300), frame, 0, focus=(900, 400)) == (0.1, 0.2, 0.3, 0.6)


def test_a_flat_evidence_map_gives_the_square_around_its_best_cell() -> None:
    # evidence over the whole width, best at the right: the square sits at the right, where the
    # best cell is, not in the middle of the evidence
    score = np.full((4, 8), 5.0)
    score[1, 6] = 6.0
    assert box_from_map(score, (800, 400), keep=0.8, margin=0.0, min_side=0.5) == (
        0.5,
        0.0,
        1.0,
        1.0,
    )
    # a core that fits: the square is centred on the core
    score = np.zeros((4, 8))
    score[1:3, 2:4] = 6.0
    assert box_from_map(score, (800, 400), keep=0.8, margin=0.0, min_side=0.5) == (
        0.25,
        0.25,
        0.5,
        0.75,
    )


def _inside(box: tuple[int, int, int, int], pts: list[list[float]]) -> bool:
    return all(box[0] <= x <= box[2] and box[1] <= y <= box[3] for x, y in pts)


@pytest.mark.slow
@pytest.mark.parametrize("look", ["left_low", "top_down"])
def test_the_roi_command_proposes_a_region_that_holds_every_bar_head_and_the_stopper_face(
    looks: dict[str, Path], look: str, tmp_path: Path, capsys
) -> None:
    import cv2

    train = looks[look] / "train"
    out = tmp_path / "roi.png"
    assert main(["roi", "--data", str(train), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith("roi ") and not said.startswith("roi none") and str(out) in said, said
    assert cv2.imread(str(out)) is not None
    roi = tuple(float(v) for v in said.split()[1].split(","))
    frame = cv2.imread(str(next(iter(sorted((train / "aligned").iterdir())))))
    h, w = frame.shape[:2]
    box = roi_box((h, w), roi)
    meta = [json.loads(line) for line in (train / "metadata.jsonl").read_text().splitlines()]
    heads = [p for m in meta if m["label"] == "aligned" for p in m["heads_px"]]
    faces = [p for m in meta if m.get("stopper_face_px") for p in m["stopper_face_px"]]
    assert heads and faces
    assert _inside(box, heads), (said, box)
    assert _inside(box, faces), (said, box)
    # the region is a real crop, not the whole frame: it gives the gaps more pixels
    assert (box[2] - box[0]) * (box[3] - box[1]) < 0.8 * w * h


def test_each_rule_scores_highest_the_cell_whose_features_tell_the_classes_apart() -> None:
    # 60 frames of 16-channel 4x6 maps, all noise but one cell, whose features shift with the
    # class; a second cell holds a large shared nuisance that does not
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 30)
    maps = rng.normal(size=(60, 16, 4, 6))
    maps[:, :4, 2, 4] += 1.5 * labels[:, None]
    maps[:, :, 0, 1] += 5 * rng.normal(size=(60, 1))
    for rule in (_probe_map, local_map):
        score = rule(maps, labels)
        assert score.shape == (4, 6)
        assert np.unravel_index(int(np.argmax(score)), score.shape) == (2, 4), rule.__name__
    assert local_map(maps, labels)[2, 4] > 3 * max(np.delete(local_map(maps, labels), 16).max(), 1)


def test_bad_regions_and_one_class_sets_are_one_line(tmp_path: Path, capsys) -> None:
    for bad in ("0.5,0.5", "0.9,0,0.1,1", "a,b,c,d"):
        assert main(["train", "--roi", bad, "--data", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("barsalign train: error: ") and "\n" not in err and "roi" in err
    assert main(["roi", "--data", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("barsalign roi: error: ") and "\n" not in err
    one = tmp_path / "one"
    (one / "aligned").mkdir(parents=True)
    import cv2

    for i in range(6):
        cv2.imwrite(str(one / "aligned" / f"f{i}.png"), np.full((40, 40, 3), i * 9, np.uint8))
    cfg = FinetuneConfig(data_dir=str(one), val_data_dir=str(one))
    with pytest.raises(BarsalignError, match="needs frames of both classes, it has 6 aligned"):
        plan_training(cfg)
    with pytest.raises(BarsalignError, match="both classes"):
        propose_roi([(p, 1) for p in (one / "aligned").iterdir()])
    with pytest.raises(BarsalignError, match="roi_rule must be one of local, probe, not 'cam'"):
        FinetuneConfig(roi_rule="cam")
    with pytest.raises(SystemExit, match="2"):
        main(["roi", "--data", str(one), "--rule", "cam"])
    assert "invalid choice: 'cam'" in capsys.readouterr().err


def test_the_frames_a_proposal_reads_are_a_seeded_draw_of_each_class() -> None:
    frames = [(Path(f"a{i}.jpg"), 1) for i in range(7)] + [(Path(f"n{i}.jpg"), 0) for i in range(3)]
    first = draw_per_class(frames, 5, seed=3)
    assert len(first[1]) == 5 and sorted(first[0]) == [Path(f"n{i}.jpg") for i in range(3)]
    assert set(first[1]) <= {p for p, label in frames if label == 1}
    assert draw_per_class(frames, 5, seed=3) == first
    assert any(draw_per_class(frames, 5, seed=s)[1] != first[1] for s in range(4, 9))
