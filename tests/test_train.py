"""Training: a few steps per preset, the run folder, checkpoints, freezing, the CLI and DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from barsalign.augment import AugmentConfig
from barsalign.cli import main
from barsalign.config import PROJ_ROOT
from barsalign.errors import BarsalignError
from barsalign.evaluation.evaluate import load_scorer
from barsalign.modeling.model import PRESETS, AlignmentClassifier, load_checkpoint
from barsalign.modeling.train import make_datamodule, run_training
from barsalign.modeling.train_config import FinetuneConfig, load_profile
from barsalign.preprocess import PreprocessConfig

TINY = 64


@dataclass(frozen=True)
class Prep:
    """Stands in for the data module's preprocessing config: any frozen dataclass."""

    target_size: int = TINY
    crop: tuple[float, float] = (0.25, 1.0)


class TensorData(pl.LightningDataModule):
    """Separable tensors (aligned images are brighter): enough to see a fit move, no files."""

    def __init__(self, n: int = 16, size: int = TINY, batch_size: int = 8) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.y = (torch.arange(n) % 2).float()
        self.x = torch.randn(n, 3, size, size, generator=gen) * 0.5 + self.y[:, None, None, None]
        self.batch_size = batch_size
        self.n_train = n
        self.pos_weight = 1.0
        self.preprocess_cfg = Prep()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)


def _quiet_trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


@pytest.mark.slow
@pytest.mark.parametrize("backbone", list(PRESETS))
def test_each_preset_fits_a_few_steps_from_random_init(backbone: str) -> None:
    model = AlignmentClassifier(backbone, image_size=TINY, weights="random", lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    trainer = _quiet_trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=TensorData(n=8, batch_size=4))
    assert trainer.global_step == 2
    after = model.state_dict()
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])
    moved = [
        k for k in before if k.startswith("backbone.") and not torch.equal(before[k], after[k])
    ]
    assert moved, "the backbone is fine-tuned by default"
    assert set(trainer.callback_metrics) >= {"val_f05", "val_f1", "val_auroc", "val_loss"}


@pytest.mark.slow
def test_run_folder_and_checkpoint_round_trip(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = FinetuneConfig(
        backbone="resnet18",
        image_size=TINY,
        weights="random",
        epochs=2,
        lr=1e-3,
        run_dir=str(run),
        pos_weight=2.0,
        schedule="cosine",
        warmup_fraction=0.25,
    )
    data = TensorData()
    summary = run_training(cfg, datamodule=data)
    for name in ("config.yaml", "metrics.csv", "curves.png", "summary.json"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk == summary and len((run / "summary.json").read_text().splitlines()) == 1
    assert summary["backbone"] == "resnet18" and summary["weights_source"] == "random"
    assert summary["epochs"] == 2 and 0 <= summary["best_f05"] <= 1
    assert summary["parameters"] > 11_000_000 and summary["checkpoint_mb"] > 40
    table = pd.read_csv(run / "metrics.csv")
    assert list(table["epoch"]) == [0, 1]
    assert {"train_loss", "val_loss", "val_f05", "val_precision", "val_recall"} <= set(table)
    assert summary["best_f05"] == round(table["val_f05"].max(), 4)
    reached = summary["minutes_to_f05_0.95"]
    assert (reached is None) == (table["val_f05"].max() < 0.95)
    assert reached is None or 0 < reached <= summary["seconds"] / 60
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["image_size"] == TINY and resolved["weights_source"] == "random"
    assert resolved["preprocess"] == {"target_size": TINY, "crop": [0.25, 1.0]}

    # the best checkpoint reloads (weights_only) and predicts what was logged for its epoch
    model = load_checkpoint(run / "checkpoints" / "best.ckpt", backbone="resnet18")
    assert model.hparams.pos_weight == 2.0 and not model.training
    assert model.hparams.preprocess == resolved["preprocess"]
    scores = _validate(model, data)
    best = table.loc[table["val_f05"].idxmax()]
    assert scores["val_f05"] == pytest.approx(best["val_f05"], abs=1e-4)
    assert scores["val_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-4)


def _validate(model: AlignmentClassifier, data: pl.LightningDataModule) -> dict[str, float]:
    out = _quiet_trainer().validate(model, datamodule=data, verbose=False)[0]
    return {k: float(v) for k, v in out.items()}


def test_checkpoint_of_another_backbone_or_head_is_a_clear_error(tmp_path: Path) -> None:
    model = AlignmentClassifier("resnet18", image_size=TINY, weights="random")
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    path = tmp_path / "r18.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(BarsalignError, match="backbone 'resnet18', not 'convnext_tiny'"):
        load_checkpoint(path, backbone="convnext_tiny")
    # a head of another width (e.g. a 2-class head) in a checkpoint that names resnet18
    sd = dict(model.state_dict())
    sd["head.1.weight"] = torch.zeros(2, 512)
    sd["head.1.bias"] = torch.zeros(2)
    torch.save({**ckpt, "state_dict": sd}, path)
    with pytest.raises(BarsalignError, match="does not fit resnet18 with a one-logit head"):
        load_checkpoint(path)
    # tensors of another backbone under a resnet18 name
    other = AlignmentClassifier("resnet34", image_size=TINY, weights="random")
    torch.save({**ckpt, "state_dict": other.state_dict()}, path)
    with pytest.raises(BarsalignError, match="does not fit resnet18"):
        load_checkpoint(path)
    (tmp_path / "plain.pt").write_bytes(b"garbage")
    with pytest.raises(BarsalignError, match="plain.pt is not a readable checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def _fit_resnet18(tmp_path: Path, **overrides: Any) -> tuple[dict, dict]:
    """State dicts of a tiny random resnet18 before and after a real fit with `overrides`."""
    cfg = FinetuneConfig(
        backbone="resnet18",
        image_size=TINY,
        weights="random",
        lr=1e-3,
        run_dir=str(tmp_path / "run"),
        **overrides,
    )
    pl.seed_everything(cfg.seed, verbose=False)
    before = AlignmentClassifier("resnet18", image_size=TINY, weights="random").state_dict()
    run_training(cfg, datamodule=TensorData())
    after = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt").state_dict()
    return before, after


@pytest.mark.slow
@pytest.mark.parametrize("unfreeze_at", [None, 1])
def test_frozen_backbone_stays_put_until_unfrozen(tmp_path: Path, unfreeze_at: int | None) -> None:
    before, after = _fit_resnet18(
        tmp_path, epochs=2, freeze_backbone=True, unfreeze_at_epoch=unfreeze_at
    )
    key = "backbone.layer1.0.conv1.weight"
    assert torch.equal(before[key], after[key]) == (unfreeze_at is None)
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])


@pytest.mark.slow
def test_frozen_early_stages_stay_put_and_the_rest_trains(tmp_path: Path) -> None:
    before, after = _fit_resnet18(tmp_path, epochs=1, freeze_stages=2)
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer2.1.conv2.weight"):
        assert torch.equal(before[f"backbone.{key}"], after[f"backbone.{key}"]), key
    for key in ("layer3.0.conv1.weight", "layer4.1.conv2.weight"):
        assert not torch.equal(before[f"backbone.{key}"], after[f"backbone.{key}"]), key
    assert (
        load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt").hparams.freeze_stages == 2
    )


def test_freeze_stages_names_the_range_and_excludes_freeze_backbone() -> None:
    with pytest.raises(BarsalignError, match=r"freeze_stages must lie in 0\.\.3 for resnet18"):
        AlignmentClassifier("resnet18", image_size=TINY, weights="random", freeze_stages=4)
    with pytest.raises(BarsalignError, match="exclude each other"):
        AlignmentClassifier(
            "resnet18", image_size=TINY, weights="random", freeze_stages=1, freeze_backbone=True
        )
    lite0 = AlignmentClassifier(
        "tf_efficientnet_lite0", image_size=TINY, weights="random", freeze_stages=2
    )
    frozen = {n for n, p in lite0.backbone.named_parameters() if not p.requires_grad}
    assert frozen and all(
        n.startswith(("conv_stem", "bn1", "blocks.0.", "blocks.1.")) for n in frozen
    )
    assert any(n.startswith("blocks.1.") for n in frozen)


def test_config_and_profiles_validate(tmp_path: Path) -> None:
    assert FinetuneConfig().image_size == 320
    assert FinetuneConfig(backbone="convnext_tiny").image_size == 384
    for bad, match in (
        ({"epochs": 0}, "epochs"),
        ({"precision": "8-bit"}, "precision"),
        ({"pos_weight": "lots"}, "pos_weight"),
        ({"data_dir": str(tmp_path / "missing")}, "data_dir"),
    ):
        with pytest.raises(BarsalignError, match=match):
            FinetuneConfig(**bad)
    cpu = FinetuneConfig(**load_profile(PROJ_ROOT / "conf" / "cpu.yaml"))
    assert cpu.accelerator == "cpu" and cpu.backbone == "tf_efficientnet_lite0"
    gpu = FinetuneConfig(**load_profile(PROJ_ROOT / "conf" / "gpu.yaml"))
    assert gpu.accelerator == "gpu" and gpu.precision == "bf16-mixed"
    study = [p.name for p in PRESETS.values() if p.profile == "gpu"]
    text = (PROJ_ROOT / "conf" / "gpu.yaml").read_text()
    assert all(name in text for name in study)
    with pytest.raises(BarsalignError, match="preprocess_mode"):
        FinetuneConfig(preprocess_mode="sobel")
    with pytest.raises(BarsalignError, match="roi"):
        FinetuneConfig(roi="0.5,0.5")
    assert FinetuneConfig().augment_config() == AugmentConfig()
    assert FinetuneConfig(augment=False).augment_config() is None
    no_blur = FinetuneConfig(augment={"p_blur": 0, "rotate_deg": 2.5}).augment_config()
    assert no_blur == AugmentConfig(p_blur=0.0, rotate_deg=2.5)
    jpeg = FinetuneConfig(augment={"p_jpeg": 0.3, "jpeg_quality": [40, 80]}).augment_config()
    assert jpeg == AugmentConfig(p_jpeg=0.3, jpeg_quality=(40, 80))
    dc = {"input_size": (3, 224, 224)}
    off = FinetuneConfig(data_dir=str(tmp_path), augment=False, roi=None)
    assert make_datamodule(off, dc).augment_cfg is None
    on = FinetuneConfig(data_dir=str(tmp_path), augment={"p_blur": 0}, roi=None)
    assert make_datamodule(on, dc).augment_cfg == AugmentConfig(p_blur=0.0)
    for bad_aug, match in (
        ({"p_blurr": 0}, r"augment: no field 'p_blurr'; known: \['blur_sigma'"),
        ({"p_blur": "off"}, "augment: p_blur must be a number, not 'off'"),
        ({"p_blur": 2}, "p_blur must lie in"),
        ({"jpeg_quality": 50}, r"augment: jpeg_quality must be \[low, high\], not 50"),
        ("yes", "augment must be True, False or a mapping"),
    ):
        with pytest.raises(BarsalignError, match=match):
            FinetuneConfig(augment=bad_aug)
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: resnet18\nbatchsize: 4\n")
    with pytest.raises(BarsalignError, match=r"bad.yaml: unknown parameter\(s\) \['batchsize'\]"):
        load_profile(bad)


def test_roi_auto_waits_for_the_labels_and_a_given_roi_wins(tmp_path: Path) -> None:
    default = FinetuneConfig()
    assert default.roi == "auto" and default.mask_left is False  # either side may hold it
    with pytest.raises(BarsalignError, match="resolved by recipe.plan_training"):
        default.preprocess_config()
    given = FinetuneConfig(data_dir=str(tmp_path), roi="0.5,0,1,1", preprocess_mode="edges")
    assert given.roi == (0.5, 0.0, 1.0, 1.0) and not given.mask_left
    assert given.to_dict()["roi"] == [0.5, 0.0, 1.0, 1.0]
    assert given.preprocess_config().roi == (0.5, 0.0, 1.0, 1.0)
    assert FinetuneConfig(roi=None).roi is None and FinetuneConfig(roi=None).mask_left
    assert FinetuneConfig(roi="none").preprocess_config() == PreprocessConfig(
        target_size=320, mode="none"
    )


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("barsalign train: error: data_dir") and "\n" not in err
    assert main(["train", "--backbone", "no_such_net", "--weights", "random"]) == 2
    assert "unknown timm backbone" in capsys.readouterr().err


DDP_SCRIPT = """
import hashlib, json, sys
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tests.test_train import TensorData
from barsalign.modeling.train import run_training
from barsalign.modeling.train_config import FinetuneConfig


def digest(module):
    h = hashlib.sha256()
    for _, p in sorted(module.named_parameters()):
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


class Noted(TensorData):
    # the training samples this rank was handed, per epoch, and its weights before and after
    def train_dataloader(self):
        outer = self

        class Indexed(Dataset):
            def __len__(self):
                return len(outer.x)

            def __getitem__(self, i):
                outer.seen.setdefault(outer.trainer.current_epoch, []).append(int(i))
                return outer.x[i], outer.y[i]

        return DataLoader(Indexed(), batch_size=self.batch_size, shuffle=True)

    def setup(self, stage):
        if stage == "fit":
            self.seen, self.before = {}, digest(self.trainer.lightning_module)

    def teardown(self, stage):
        if stage == "fit":
            self.after = digest(self.trainer.lightning_module)


cfg = FinetuneConfig(backbone="resnet18", image_size=32, weights="random", epochs=2,
                     batch_size=4, run_dir=sys.argv[1], accelerator="cpu", devices=2,
                     strategy="ddp", num_nodes=1)
data = Noted(n=16, size=32, batch_size=4)
summary = run_training(cfg, datamodule=data)
print("RESULT", json.dumps({"rank": dist.get_rank(), "world": dist.get_world_size(),
                            "backend": dist.get_backend(), "summary": summary,
                            "seen": data.seen, "before": data.before, "after": data.after}),
      flush=True)
"""


@pytest.mark.slow
def test_ddp_two_cpu_processes_on_gloo(tmp_path: Path) -> None:
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, str(script), str(run)],
        cwd=PROJ_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [
        json.loads(line.split("RESULT ", 1)[1])
        for line in done.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    assert sorted(r["rank"] for r in results) == [0, 1]
    assert all(r["world"] == 2 and r["backend"] == "gloo" for r in results)
    rank0 = next(r for r in results if r["rank"] == 0)
    assert rank0["summary"]["devices"] == 2 and rank0["summary"]["epochs"] == 2
    assert next(r for r in results if r["rank"] == 1)["summary"] == {}  # rank 0 writes
    assert json.loads((run / "summary.json").read_text()) == rank0["summary"]
    assert load_checkpoint(run / "checkpoints" / "best.ckpt", backbone="resnet18")
    # each epoch the two ranks trained on different halves of the 16 samples, all of them
    rank1 = next(r for r in results if r["rank"] == 1)
    for epoch in ("0", "1"):
        mine, theirs = set(rank0["seen"][epoch]), set(rank1["seen"][epoch])
        assert len(mine) == len(theirs) == 8 and not mine & theirs, (epoch, mine, theirs)
        assert mine | theirs == set(range(16))
    # and ended with the same weights (gradients averaged), which training changed
    assert rank0["before"] == rank1["before"] != rank0["after"] == rank1["after"]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(PROJ_ROOT)}


@pytest.mark.slow
def test_cli_trains_on_a_labelled_folder(synth_small: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("barsalign.data", reason="the data module (issue 4) has not landed")
    out = tmp_path / "cli_run"
    args = ["train", "--data", str(synth_small / "example_set"), "--backbone", "resnet18"]
    args += ["--epochs", "1", "--image-size", "64", "--out", str(out), "--weights", "random"]
    args += ["--roi", "0.4,0,1,0.9", "--preprocess-mode", "grayscale", "--no-augment"]
    assert main([*args, "--accelerator", "cpu", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads((out / "summary.json").read_text())
    assert printed["backbone"] == "resnet18" and printed["image_size"] == 64
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["data_dir"] == str(synth_small / "example_set")
    assert resolved["augment"] is False
    assert resolved["preprocess"]["target_size"] == 64
    assert resolved["roi"] == resolved["preprocess"]["roi"] == [0.4, 0.0, 1.0, 0.9]
    assert resolved["preprocess"]["mode"] == "grayscale" and not resolved["preprocess"]["mask_left"]
    ckpt = load_checkpoint(out / "checkpoints" / "best.ckpt")
    assert ckpt.hparams.preprocess == resolved["preprocess"]
    # evaluation applies the run's own region and mode
    scorer = load_scorer(out / "checkpoints" / "best.ckpt")
    assert scorer.preprocess_cfg == PreprocessConfig(
        target_size=64, mode="grayscale", mask_left=False, roi=(0.4, 0.0, 1.0, 0.9)
    )


@pytest.mark.slow
def test_04_finetune_notebook_runs(synth_small: Path, run_notebook, tmp_path: Path) -> None:
    pytest.importorskip("barsalign.data", reason="the data module (issue 4) has not landed")
    run = tmp_path / "nb_run"
    run_notebook(
        "04_finetune",
        run,
        backbone="mobilenetv3_large_100",
        data_dir=str(synth_small / "example_set"),
        image_size=64,
        epochs=2,
        weights="random",
        accelerator="cpu",
        min_f05=0.0,  # 2 epochs from random weights need not beat the all-aligned guess
    )
    assert (run / "04_finetune.ipynb").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["backbone"] == "mobilenetv3_large_100" and summary["epochs"] == 2
    assert len(pd.read_csv(run / "metrics.csv")) == 2


def test_synthetic_twins_swap_pool_frames_for_short_bar_scenes_and_their_twins(
    synth_small: Path, tmp_path: Path
) -> None:
    from barsalign.data import load_labels
    from barsalign.modeling.recipe import with_synthetic_default
    from barsalign.synth import load_metadata

    root = shutil.copytree(synth_small, tmp_path / "synth")  # the pool gets a labels.csv
    plain = with_synthetic_default(FinetuneConfig(), root=root, twins_dir=tmp_path / "tw")
    assert Path(plain.data_dir) == root / "train_set" / "labels.csv"
    assert plain.val_data_dir == str(root / "example_set")
    assert not (tmp_path / "tw").exists(), "no twins unless asked"
    cfg = FinetuneConfig(synthetic_twins=8)
    twins = with_synthetic_default(cfg, root=root, twins_dir=tmp_path / "tw")
    assert Path(twins.data_dir) == tmp_path / "tw" / "labels.csv"
    assert twins.val_data_dir == plain.val_data_dir, "validation stays the example set"
    extra = load_metadata(tmp_path / "tw" / "frames")
    kinds = [(r["kind"], r["label"]) for r in extra]
    assert kinds == [("hard", "not_aligned"), ("twin", "aligned")] * 4, "each followed by its twin"
    assert all(3.0 <= r["max_gap_px"] <= 4.5 for r in extra if r["kind"] == "hard")
    items = load_labels(twins.data_dir)
    ours = [it for it in items if it.path.resolve().is_relative_to((tmp_path / "tw").resolve())]
    assert len(items) <= 24 and len(ours) == 8, "8 pool frames give way to 8 new ones"
    with pytest.raises(BarsalignError, match="synthetic_twins must be >= 0"):
        FinetuneConfig(synthetic_twins=-1)
