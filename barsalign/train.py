"""Fine-tune one backbone into a run folder: `FinetuneConfig` → `run_training` → artefacts.

A run writes `reports/runs/<run>/`: `config.yaml` (the resolved config), `metrics.csv` (one row
per epoch), `checkpoints/best.ckpt` (by validation F0.5) and `checkpoints/last.ckpt`,
`curves.png`, the best validation's `val_scores.csv` and `val_panel.png`, TensorBoard event
files in `tb/` and `summary.json` (one line); and an MLflow run (`barsalign.tracking`). The
Trainer's accelerator, devices, strategy, num_nodes and precision are parameters, so the same
run goes from a laptop CPU to DDP on GPUs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from barsalign.augment import AugmentConfig
from barsalign.config import CONF_DIR, PROJ_ROOT, RUNS_DIR, SYNTH_TWINS_DIR
from barsalign.errors import BarsalignError
from barsalign.outputs import atomic_write_text
from barsalign.preprocess import MODES, PreprocessConfig, parse_roi
from barsalign.presets import DEFAULT_BACKBONE, PRESETS
from barsalign.synth.looks import LOOKS

log = logging.getLogger(__name__)
DEFAULT_FROZEN_STAGES = 2  # a pretrained backbone's stem and first stages stay frozen
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything one fine-tuning run needs; None fields are resolved in `__post_init__`.

    Args:
        image_size: square input side; None takes the preset's (or the backbone's own).
        data_dir: labelled frames; None means the synthetic default (rendered if missing):
            its labelled pool `train_set/labels.csv`, validated on `example_set/`.
        val_data_dir: a separate validation folder; None splits `data_dir` by clip.
        synthetic_twins: on the synthetic default only: this many pool frames (whole clip
            groups) give way to scenes with one bar 3-4.5 px short, each followed by its twin
            with every bar flush (`barsalign.synth.hard_pool`, rendered once into
            `data/synthetic_twins/`). Does nothing with your own `data_dir`.
        gap_pairs: this many frames of gap pairs (`barsalign.synth.gap_pairs`: short-bar scenes of
            the renderer's looks and their flush twins, cropped around their stopper) are drawn
            beside your frames, `gap_pairs_share` of each batch; 0: none. Only with a region
            (given or proposed): the pairs are crops of the same kind.
        gap_pairs_looks: the looks the pairs come from; None: every built-in look.
        max_steps: optimizer steps; None sizes them to the training set
            (`barsalign.recipe.auto_steps`), unless `epochs` is given.
        epochs: passes over the training set, as steps (`max_steps` wins); None: automatic.
        warmup_fraction: share of the steps spent warming the learning rate up linearly.
        pos_weight: BCE weight of aligned frames: None (unweighted), "auto" (negatives per
            positive in the training split) or a number.
        weights: "auto" resolves pretrained weights offline; "random" starts from scratch.
        global_pool: the backbone's pooling before the head (`barsalign.model.POOLS`).
        unfreeze_at_epoch: with `freeze_backbone`, the epoch where the backbone is unfrozen.
        freeze_stages: keep the backbone's stem and first N stages frozen for the whole run
            (their ImageNet filters stay, and a CPU step is faster: `bench_train.py`); None:
            `DEFAULT_FROZEN_STAGES` when the weights are pretrained, 0 when they are random or
            with `freeze_backbone`.
        roi: region of interest cropped before preprocessing, (x0, y0, x1, y1) frame
            fractions; "auto" proposes it from the training labels (`barsalign.roi`) when the
            run starts; None: the whole frame.
        preprocess_mode: "none" (colour, the default), "grayscale" or "edges" (the plant's
            recipe).
        mask_left: zero the left half after resizing; None: on for a whole frame given as
            `roi: none`, off with a region (given or proposed).
        augment: training augmentation (`barsalign.augment.AugmentConfig`): True for its
            defaults, False for none, or a mapping of the fields to change, e.g. {p_blur: 0}.
        max_minutes: a wall-clock guard: a run it stops before its last step says so and
            records `cut_short` (None: no guard). The steps, not the clock, size the run.
        overwrite: replace an earlier run in `run_dir`; otherwise a non-empty folder is
            refused before anything is written.
        early_stopping_patience: epochs without a better validation F0.5 before stopping.
        tracking: log the run to MLflow too (`barsalign.tracking`; `MLFLOW_TRACKING_URI`, else
            the repo's `mlflow.db`); False: the run folder only.
    """

    backbone: str = DEFAULT_BACKBONE
    image_size: int | None = None
    data_dir: str | None = None
    val_data_dir: str | None = None
    synthetic_twins: int = 0
    gap_pairs: int = 0
    gap_pairs_share: float = 0.5
    gap_pairs_looks: list[str] | None = None
    run_name: str | None = None
    run_dir: str | None = None
    overwrite: bool = False
    max_steps: int | None = None
    epochs: int | None = None
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 1e-2
    dropout: float = 0.3
    global_pool: str = "avg"
    schedule: str = "cosine"
    warmup_fraction: float = 0.05
    pos_weight: float | str | None = None
    freeze_backbone: bool = False
    freeze_stages: int | None = None
    unfreeze_at_epoch: int | None = None
    weights: str = "auto"
    pretrained_path: str | None = None
    seed: int = 0
    roi: Any = "auto"
    preprocess_mode: str = "none"
    mask_left: bool | None = None
    val_fraction: float = 0.2
    augment: bool | dict[str, float] = True
    num_workers: int = 0
    max_minutes: float | None = None
    early_stopping_patience: int | None = None
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    progress_bar: bool = False
    tracking: bool = True

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if self.image_size is None:
            from barsalign.model import default_image_size

            set_("image_size", default_image_size(self.backbone))
        if self.run_name is None:
            set_("run_name", f"finetune_{self.backbone}")
        self._check_types()
        if self.roi == "auto":  # proposed from the labels when the run starts (recipe.py)
            if self.mask_left is None:
                set_("mask_left", False)  # an unknown camera's stopper may lie on either side
        else:
            set_("roi", parse_roi(self.roi))
            if self.mask_left is None:  # PreprocessConfig's rule: on without a roi, off with one
                set_("mask_left", PreprocessConfig(roi=self.roi).mask_left)
        if self.run_dir is None:
            set_("run_dir", str(RUNS_DIR / str(self.run_name)))
        checks = [
            (int(self.image_size) >= 32, f"image_size must be >= 32, not {self.image_size}"),
            (self.epochs is None or self.epochs >= 1, f"epochs must be >= 1: {self.epochs}"),
            (
                self.max_steps is None or self.max_steps >= 1,
                f"max_steps must be >= 1, not {self.max_steps}",
            ),
            (
                0 <= self.warmup_fraction < 1,
                f"warmup_fraction must lie in [0, 1), not {self.warmup_fraction}",
            ),
            (
                self.max_minutes is None or self.max_minutes > 0,
                f"max_minutes must be > 0, not {self.max_minutes}",
            ),
            (self.synthetic_twins >= 0, f"synthetic_twins must be >= 0: {self.synthetic_twins}"),
            (self.gap_pairs >= 0, f"gap_pairs must be >= 0, not {self.gap_pairs}"),
            (
                0 <= self.gap_pairs_share < 1,
                f"gap_pairs_share must lie in [0, 1), not {self.gap_pairs_share}",
            ),
            (
                self.gap_pairs_looks is None
                or (
                    isinstance(self.gap_pairs_looks, list | tuple)
                    and bool(self.gap_pairs_looks)
                    and all(lk in LOOKS for lk in self.gap_pairs_looks)
                ),
                f"gap_pairs_looks must be a list of look names ({', '.join(LOOKS)}), "
                f"not {self.gap_pairs_looks!r}",
            ),
            (self.batch_size >= 1, f"batch_size must be >= 1, not {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, not {self.lr}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), not {self.dropout}"),
            (0 < self.val_fraction < 1, f"val_fraction must be in (0, 1): {self.val_fraction}"),
            (
                self.preprocess_mode in MODES,
                f"preprocess_mode must be one of {MODES}, not {self.preprocess_mode!r}",
            ),
            (self.schedule in ("constant", "cosine"), f"schedule {self.schedule!r}: no such"),
            (self.weights in ("auto", "random"), f"weights must be auto or random: {self.weights}"),
            (
                str(self.precision) in PRECISIONS,
                f"precision {self.precision!r} not in {PRECISIONS}",
            ),
            (
                self.pos_weight is None
                or self.pos_weight == "auto"
                or isinstance(self.pos_weight, int | float),
                f"pos_weight must be None, 'auto' or a number, not {self.pos_weight!r}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise BarsalignError(msg)
        self.augment_config()  # a bad augment mapping fails here, not at the first batch
        for key in ("data_dir", "val_data_dir", "pretrained_path"):
            value = getattr(self, key)
            if value is not None and not Path(value).exists():
                raise BarsalignError(f"{key} {value} does not exist")

    def _check_types(self) -> None:
        """Each field of the type it is declared with (a profile's `epochs: three` is one
        line naming the field, not a TypeError deep inside training)."""
        for f in dataclasses.fields(self):
            value, kinds = getattr(self, f.name), set(str(f.type).replace(" ", "").split("|"))
            numeric = bool(kinds & {"int", "float"})
            if (value is None and "None" in kinds) or (isinstance(value, str) and "str" in kinds):
                continue
            if isinstance(value, bool):
                ok = "bool" in kinds or not numeric
            elif numeric:
                ok = isinstance(value, int) or (isinstance(value, float) and "float" in kinds)
            else:
                ok = kinds != {"bool"}
            if not ok:
                what = "true or false" if kinds <= {"bool", "None"} else "a number"
                raise BarsalignError(f"{f.name} must be {what}, not {value!r}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if isinstance(self.roi, tuple):
            out["roi"] = list(self.roi)  # YAML has no tuples
        return out

    def preprocess_config(self) -> PreprocessConfig:
        """The preprocessing this run trains with (stored in its checkpoint for inference)."""
        if self.roi == "auto":
            raise BarsalignError("roi 'auto' is resolved by recipe.plan_training first")
        return PreprocessConfig(
            target_size=int(self.image_size or 224),
            mode=self.preprocess_mode,
            mask_left=bool(self.mask_left),
            roi=self.roi,
        )

    def augment_config(self) -> AugmentConfig | None:
        """The training augmentation `augment` asks for; None when it is off."""
        if isinstance(self.augment, bool):
            return AugmentConfig() if self.augment else None
        if not isinstance(self.augment, dict):
            raise BarsalignError(
                f"augment must be True, False or a mapping of AugmentConfig fields, "
                f"not {self.augment!r}"
            )
        known = {f.name for f in dataclasses.fields(AugmentConfig)}
        unknown = sorted(set(self.augment) - known)
        if unknown:
            raise BarsalignError(f"augment: no field {unknown[0]!r}; known: {sorted(known)}")
        values = {}
        for key, value in self.augment.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BarsalignError(f"augment: {key} must be a number, not {value!r}")
            values[key] = float(value)
        return AugmentConfig(**values)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> FinetuneConfig:
        """A config from the known keys of `params` (a notebook's `globals()`, a profile)."""
        return cls(**{k: v for k, v in params.items() if k in CONFIG_KEYS})


CONFIG_KEYS = frozenset(f.name for f in dataclasses.fields(FinetuneConfig))
"""The parameter names a profile, a notebook or a command line may set."""


def load_profile(path: str | Path) -> dict[str, Any]:
    """Parameters from a `conf/*.yaml` profile; unknown keys are an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise BarsalignError(f"profile {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise BarsalignError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise BarsalignError(f"{path} must hold a mapping of parameter: value")
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        known = sorted(CONFIG_KEYS)
        raise BarsalignError(f"{path}: unknown parameter(s) {unknown}; known: {known}")
    return data


def profile_path(profile: str | Path) -> Path:
    """A profile as a user names it: a path as given, else relative to the repo (a notebook's
    working directory is notebooks/, where `conf/cpu.yaml` is not)."""
    path = Path(profile)
    if not path.is_absolute() and not path.exists() and (PROJ_ROOT / path).exists():
        return PROJ_ROOT / path
    return path


def profile_params(
    params: dict[str, Any], profile: str | Path | Sequence[str | Path] | None
) -> dict[str, Any]:
    """The training parameters of `params` (a notebook's `globals()`) over the profiles'.

    Profiles apply in order (a fragment written by 03_preprocess after `conf/cpu.yaml`); a
    parameter of `params` wins where it differs from training's default, so a notebook's
    untouched parameters cell leaves the profile's values standing.
    """
    given = {k: v for k, v in params.items() if k in CONFIG_KEYS}
    if profile is None:
        return given
    merged: dict[str, Any] = {}
    for path in [profile] if isinstance(profile, str | Path) else profile:
        merged.update(load_profile(profile_path(path)))
    defaults = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}
    merged.update({k: v for k, v in given.items() if k not in merged or v != defaults[k]})
    return merged


def write_profile(path: str | Path, values: dict[str, Any], header: str = "") -> Path:
    """Write a profile (or a fragment of one) as YAML that `load_profile`, `barsalign train
    --profile` and the notebooks' `profile` read unchanged; the values are checked as a
    training config first, so a fragment that would not train is never written.

    Args:
        values: training parameters (`CONFIG_KEYS`); tuples are written as lists.
        header: comment lines put on top (what the fragment is, how to use it).
    """
    unknown = sorted(set(values) - CONFIG_KEYS)
    if unknown:
        raise BarsalignError(
            f"{path}: unknown parameter(s) {unknown}; known: {sorted(CONFIG_KEYS)}"
        )
    clean = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    FinetuneConfig.from_params(clean)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return atomic_write_text(
        path, comment + yaml.safe_dump(clean, sort_keys=False, default_flow_style=None)
    )


def finetune_demo_runs(demo_run: Any) -> list[Any]:
    """The 04_finetune runs of `make demo`, on the CPU profile (reports.DemoRun as `demo_run`).

    EfficientNet-Lite0 from the packaged ImageNet weights and from random initialisation on
    the profile's steps, then MobileNetV3-Large (no weights on this machine: random, 100
    steps); the budgets keep the whole demo near 30 minutes on 2 cores. The random starts train
    every layer: the profile's frozen early stages keep ImageNet filters, and frozen random
    filters would only handicap them.
    """
    cpu = load_profile(CONF_DIR / "cpu.yaml")
    lite0, mnv3 = "tf_efficientnet_lite0", "mobilenetv3_large_100"
    budget = cpu
    random = {"weights": "random", "freeze_stages": 0}
    return [
        demo_run("04_finetune", f"finetune_{lite0}", budget, "Lite0 fine-tuned from ImageNet"),
        demo_run(
            "04_finetune",
            f"finetune_{lite0}_random",
            # what the ImageNet weights are worth: from random filters the same steps may learn
            # nothing, so this run is not held to beating a guess either; the first run is
            {**budget, **random, "min_f05": 0.0},
            "Lite0 from random initialisation, same budget",
        ),
        demo_run(
            "04_finetune",
            f"finetune_{mnv3}",
            # 100 steps from random weights show what no weights cost; not held to beating a
            # guess (04's min_f05) either
            {**cpu, **random, "backbone": mnv3, "max_steps": 100, "min_f05": 0.0},
            "MobileNetV3-Large, random initialisation (no weights here)",
        ),
    ]


def _preprocess_dict(datamodule: Any) -> dict[str, Any] | None:
    """The data module's preprocessing config as plain JSON types (None if it has none)."""
    for name in ("preprocess_cfg", "preprocess_config", "preprocess"):
        value = getattr(datamodule, name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return json.loads(json.dumps(dataclasses.asdict(value)))
    return None


def with_synthetic_default(
    cfg: FinetuneConfig, root: Path | None = None, twins_dir: Path = SYNTH_TWINS_DIR
) -> FinetuneConfig:
    """The synthetic default, the plant's way: train on the labelled pool (with
    `cfg.synthetic_twins`, partly short-bar scenes and their twins, into `twins_dir`), validate
    on the example set; `root` is the rendered data set (default: rendered first if missing)."""
    from barsalign.synth import ensure_default, hard_pool, pool_labels

    root = root or ensure_default()
    val = cfg.val_data_dir if cfg.val_data_dir is not None else str(root / "example_set")
    if cfg.synthetic_twins:
        data = hard_pool(root, twins_dir, frames=cfg.synthetic_twins, hard_fraction=1.0, twins=True)
        log.info("training pool: %d frames are short-bar scenes and twins", cfg.synthetic_twins)
    else:
        data = pool_labels(root)
    return dataclasses.replace(cfg, data_dir=str(data), val_data_dir=val)


def make_datamodule(
    cfg: FinetuneConfig,
    data_cfg: dict[str, Any],
    balance: str = "shuffle",
    extra_dir: str | None = None,
) -> Any:
    """The project's data module (barsalign.data) for this run, at the backbone's data config;
    `balance` "sampler" draws the classes equally often (`recipe.TrainingPlan.balance`);
    `extra_dir` frames (the gap pairs) are drawn beside them, `cfg.gap_pairs_share` of draws."""
    from barsalign.data import AlignmentDataModule

    return AlignmentDataModule(
        balance="sampler" if balance == "sampler" else "pos_weight",
        data_dir=cfg.data_dir,
        val_dir=cfg.val_data_dir,
        data_config=data_cfg,
        preprocess=cfg.preprocess_config(),
        batch_size=cfg.batch_size,
        val_fraction=cfg.val_fraction,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
        augment=cfg.augment_config(),
        extra_dir=extra_dir,
        extra_share=cfg.gap_pairs_share,
    )


def epoch_table(raw_csv: Path) -> Any:
    """Lightning's CSV log (train and val rows apart) as one row per epoch."""
    import pandas as pd

    df = pd.read_csv(raw_csv)
    df = df.drop(columns=[c for c in ("step",) if c in df]).groupby("epoch").first()
    return df.reset_index()


def plot_curves(table: Any, out: Path) -> Path:
    """Loss and validation metrics per epoch, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for col in ("train_loss", "val_loss"):
        if col in table:
            a.plot(table["epoch"], table[col], marker="o", label=col)
    a.set(xlabel="epoch", ylabel="BCE loss", title="loss")
    a.legend()
    for col in ("val_f05", "val_accuracy", "val_auroc", "val_precision", "val_recall"):
        if col in table:
            b.plot(table["epoch"], table[col], marker=".", label=col[4:])
    b.set(xlabel="epoch", ylim=(0, 1.02), title="validation (aligned = positive)")
    b.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


TARGET_F05 = 0.95
"""The plant's bar: validation F0.5 the summary times the run to (`minutes_to_f05_0.95`)."""


def _minutes_to(table: Any, target: float) -> float | None:
    """Training minutes until validation F0.5 first reached `target`; None if it never did."""
    if "val_f05" not in table or "elapsed_s" not in table:
        return None
    hit = table[table["val_f05"] >= target]
    return None if hit.empty else round(float(hit["elapsed_s"].iloc[0]) / 60, 2)


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """A run folder must be new, empty, or replaced on purpose (`overwrite`): an earlier run's
    checkpoints are never deleted by a run that then fails on its data."""
    if run_dir.exists() and not run_dir.is_dir():
        raise BarsalignError(f"run folder {run_dir} is a file")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise BarsalignError(
            f"run folder {run_dir} already holds a run: pass --overwrite to replace it, "
            "or choose another --out"
        )


def _epoch_clock() -> Any:
    import lightning.pytorch as pl

    class EpochClock(pl.Callback):
        """Logs `elapsed_s`, seconds since the fit began, with each epoch's validation."""

        def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.started = time.perf_counter()

        def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                pl_module.log("elapsed_s", time.perf_counter() - self.started, sync_dist=True)

    return EpochClock()


def run_training(cfg: FinetuneConfig, datamodule: Any = None) -> dict[str, Any]:
    """Train `cfg.backbone` and write the run folder; return the summary (also summary.json).

    Args:
        datamodule: a LightningDataModule yielding (x float[B,3,S,S], y float[B]) with
            aligned = 1; None builds the project's own from `cfg.data_dir`.
    """
    import lightning.pytorch as pl
    import torch
    from lightning.fabric.utilities.rank_zero import _get_rank
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from barsalign import tracking
    from barsalign.model import (
        AlignmentClassifier,
        StagedUnfreeze,
        count_parameters,
        data_config,
        freeze_early_stages,
    )
    from barsalign.recipe import plan_training

    # 1. the run folder, the backbone (a bad name fails first) and the data are checked
    #    before anything is written
    run_dir = Path(str(cfg.run_dir))
    if _get_rank() in (None, 0):  # DDP's other ranks start after rank 0 made the folder
        check_run_dir(run_dir, cfg.overwrite)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = AlignmentClassifier(
        backbone=cfg.backbone,
        image_size=int(cfg.image_size or 224),
        dropout=cfg.dropout,
        global_pool=cfg.global_pool,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        schedule=cfg.schedule,
        warmup_fraction=cfg.warmup_fraction,
        pos_weight=None,
        freeze_backbone=cfg.freeze_backbone,
        freeze_stages=cfg.freeze_stages or 0,
        weights=cfg.weights,
        pretrained_path=cfg.pretrained_path,
    )
    if cfg.freeze_stages is None:  # pretrained filters stay; random ones must train
        frozen = 0 if model.weights_source == "random" or cfg.freeze_backbone else None
        frozen = DEFAULT_FROZEN_STAGES if frozen is None else frozen
        freeze_early_stages(model.backbone, frozen, cfg.backbone)
        model.hparams["freeze_stages"] = frozen
        cfg = dataclasses.replace(cfg, freeze_stages=frozen)
    if cfg.data_dir is None and datamodule is None:
        cfg = with_synthetic_default(cfg)
    elif cfg.synthetic_twins:
        log.info("synthetic_twins=%d: not used, the frames are your own", cfg.synthetic_twins)
    plan = None
    if datamodule is None:
        cfg, plan = plan_training(cfg)
        for line in plan.lines(cfg):
            log.info("plan: %s", line)
    elif cfg.roi == "auto":
        cfg = dataclasses.replace(cfg, roi=None, mask_left=True)
    if model.weights_source == "random" and cfg.freeze_stages:
        log.warning("freeze_stages=%d keeps random filters frozen", cfg.freeze_stages)
    if datamodule is None:
        dc = data_config(model.backbone, int(cfg.image_size or 224))
        datamodule = make_datamodule(
            cfg, dc, plan.balance if plan else "shuffle", plan.pairs_dir if plan else None
        )
    preprocess = _preprocess_dict(datamodule)
    if preprocess is not None:  # kept in the checkpoint: evaluation and export apply the same
        model.hparams["preprocess"] = preprocess
    if cfg.pos_weight is not None:
        if cfg.pos_weight == "auto":
            datamodule.setup("fit")
            pw = float(datamodule.pos_weight)
        else:
            pw = float(cfg.pos_weight)
        model.loss.pos_weight = torch.tensor([pw])
        model.hparams["pos_weight"] = pw

    # 2. callbacks and trainer
    ckpt = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor="val_f05",
        mode="max",
        save_last=True,
        enable_version_counter=False,
    )
    kept = tracking.best_validation_scores()  # for the best validation's figure
    callbacks: list[Any] = [ckpt, _epoch_clock(), kept]
    if cfg.freeze_backbone:
        callbacks.append(StagedUnfreeze(cfg.unfreeze_at_epoch))
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStopping("val_f05", mode="max", patience=cfg.early_stopping_patience))
    logger = CSVLogger(str(run_dir), name="", version="logs")
    loggers = [logger, tracking.tensorboard_logger(run_dir)]  # TensorBoard in RUN/tb/
    tracker = tracking.start_training(cfg, run_dir)  # MLflow beside them; None: off
    steps = plan.steps if plan else cfg.max_steps
    trainer = pl.Trainer(
        max_steps=steps or -1,
        max_epochs=-1 if steps else (cfg.epochs or 1),
        val_check_interval=plan.val_every if plan else None,
        check_val_every_n_epoch=None if plan else 1,
        max_time={"minutes": cfg.max_minutes} if cfg.max_minutes else None,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=cfg.precision,
        callbacks=callbacks,
        logger=[*loggers, tracker] if tracker else loggers,
        default_root_dir=str(run_dir),
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=1,
        deterministic=False,
    )
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("best.ckpt", "last.ckpt"):
            (run_dir / "checkpoints" / stale).unlink(missing_ok=True)
        for stale in (run_dir / tracking.TENSORBOARD_DIR).glob("events.out.tfevents.*"):
            stale.unlink()  # a replaced run's curves would mix with the new ones
        resolved = {**cfg.to_dict(), "weights_source": model.weights_source}
        if preprocess is not None:
            resolved["preprocess"] = preprocess
        if plan is not None:
            resolved["plan"] = {
                "steps": plan.steps,
                "warmup_steps": plan.warmup_steps,
                "passes": round(plan.passes, 2),
                "balance": plan.balance,
                "train": plan.n_train,
                "val": plan.n_val,
                "roi": plan.roi_reason,
            }
        (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    # 3. fit, then the artefacts (rank zero only)
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return {}
    table = epoch_table(Path(logger.log_dir) / "metrics.csv")
    table.to_csv(run_dir / "metrics.csv", index=False)
    plot_curves(table, run_dir / "curves.png")
    tracking.write_validation(kept, run_dir, run_dir.name)
    best_path = Path(ckpt.best_model_path) if ckpt.best_model_path else None
    best = table.loc[table["val_f05"].idxmax()] if "val_f05" in table else None
    n_train = int(getattr(datamodule, "n_train", 0) or 0)
    cut_short = bool(steps) and trainer.global_step < int(steps)
    if cut_short:
        log.warning(
            "max_minutes=%s stopped the run at step %d of %d: a faster or idler machine "
            "trains further (the steps, not the clock, size a run)",
            cfg.max_minutes,
            trainer.global_step,
            steps,
        )
    summary = {
        "run": run_dir.name,
        "backbone": cfg.backbone,
        "image_size": cfg.image_size,
        "weights_source": model.weights_source.split(":")[0],
        "best_f05": round(float(best["val_f05"]), 4) if best is not None else None,
        "accuracy": round(float(best["val_accuracy"]), 4) if best is not None else None,
        "auroc": round(float(best["val_auroc"]), 4) if best is not None else None,
        "best_epoch": int(best["epoch"]) + 1 if best is not None else None,
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "planned_steps": int(steps) if steps else None,
        "cut_short": cut_short,
        "roi": list(cfg.roi) if isinstance(cfg.roi, tuple) else None,
        "seconds": round(seconds, 1),
        f"minutes_to_f05_{TARGET_F05}": _minutes_to(table, TARGET_F05),
        "train_images_per_s": round(trainer.global_step * cfg.batch_size / seconds, 1)
        if n_train
        else None,
        "parameters": count_parameters(model),
        "checkpoint_mb": round(best_path.stat().st_size / 2**20, 1) if best_path else None,
        "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
        "devices": trainer.num_devices * trainer.num_nodes,
        "precision": str(cfg.precision),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary) + "\n")
    tracking.finish_training(tracker, run_dir, summary)
    log.info("run %s: %s", run_dir, summary)
    return summary


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="fine-tune one backbone into a run folder",
        description="Fine-tune a timm backbone (aligned / not aligned) and write a run folder: "
        "config.yaml, metrics.csv, best/last checkpoints, curves.png, summary.json.",
    )
    p.add_argument("--data", dest="data_dir", help="labelled frames (default: synthetic)")
    p.add_argument("--val-data", dest="val_data_dir", help="separate validation frames")
    p.add_argument("--backbone", help=f"timm name; presets: {', '.join(PRESETS)}")
    p.add_argument("--epochs", type=int, help="passes over the training set (default: automatic)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (default: sized to the data)")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace --out's run")
    p.add_argument("--image-size", type=int)
    p.add_argument(
        "--gap-pairs",
        type=int,
        help="draw N frames of the renderer's short-bar/flush pairs beside yours (default 0)",
    )
    p.add_argument("--out", dest="run_dir", help="run folder (default reports/runs/<run>)")
    p.add_argument(
        "--profile",
        action="append",
        help="conf/*.yaml parameter file; again for a fragment on top (03_preprocess writes "
        "one); flags override them",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weights", choices=("auto", "random"))
    p.add_argument("--pretrained-path", help="safetensors or state dict to start from")
    p.add_argument("--pos-weight", help="'auto' or a number (default: unweighted)")
    p.add_argument("--freeze-backbone", action="store_true", default=None)
    p.add_argument(
        "--freeze-stages", type=int, help="keep the stem and the first N stages frozen (default 0)"
    )
    p.add_argument(
        "--max-minutes", type=float, help="wall-clock guard: warns when it cuts the run short"
    )
    p.add_argument("--patience", dest="early_stopping_patience", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--roi",
        help="stopper region x0,y0,x1,y1 (frame fractions), 'none' for the whole frame, "
        "or 'auto' (default: proposed from the training labels; `barsalign roi` shows it)",
    )
    p.add_argument("--preprocess-mode", choices=MODES)
    p.add_argument("--mask-left", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="training augmentation (default on; a profile may set its fields)",
    )
    p.add_argument("--accelerator", help="cpu, gpu, auto")
    p.add_argument("--devices", help="number of devices or 'auto'")
    p.add_argument("--strategy", help="auto, ddp, ddp_spawn, fsdp, ...")
    p.add_argument("--num-nodes", type=int)
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-tracking", dest="tracking", action="store_false", default=None, help="no MLflow run"
    )
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    params: dict[str, Any] = profile_params({}, args.profile) if args.profile else {}
    params.update({k: v for k, v in vars(args).items() if k in CONFIG_KEYS and v is not None})
    if isinstance(params.get("devices"), str) and params["devices"].isdigit():
        params["devices"] = int(params["devices"])
    if isinstance(params.get("pos_weight"), str) and params["pos_weight"] != "auto":
        try:
            params["pos_weight"] = float(params["pos_weight"])
        except ValueError:
            msg = f"--pos-weight {params['pos_weight']!r}: 'auto' or a number"
            raise BarsalignError(msg) from None
    params["progress_bar"] = not args.no_progress
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = run_training(FinetuneConfig(**params))
    if summary:
        print(json.dumps(summary))
    return 0


__all__ = [
    "FinetuneConfig",
    "epoch_table",
    "load_profile",
    "plot_curves",
    "profile_params",
    "run_training",
    "write_profile",
]
