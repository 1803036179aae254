"""Fine-tune one backbone into a run folder: `FinetuneConfig` → `run_training` → artefacts.

A run writes `reports/runs/<run>/`: `config.yaml` (the resolved config), `metrics.csv` (one row
per epoch), `checkpoints/best.ckpt` (by validation F0.5) and `checkpoints/last.ckpt`,
`curves.png`, the best validation's `val_scores.csv` and `val_panel.png`, TensorBoard event
files in `tb/` (`barsalign.run_folder`) and `summary.json` (one line); and an MLflow run
(`barsalign.tracking`). The Trainer's accelerator, devices, strategy, num_nodes and precision
are parameters, so the same run goes from a laptop CPU to DDP on GPUs. The config and its
profiles are `barsalign.modeling.train_config`; the plan sized to the data is `modeling.recipe`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from barsalign.errors import BarsalignError
from barsalign.modeling.train_config import (
    CONFIG_KEYS,
    DEFAULT_FROZEN_STAGES,
    PRECISIONS,
    FinetuneConfig,
    profile_params,
)
from barsalign.preprocess import MODES
from barsalign.presets import PRESETS, WEIGHTS
from barsalign.roi import RULES as ROI_RULES
from barsalign.run_folder import (
    TARGET_F05,
    TENSORBOARD_DIR,
    best_validation_scores,
    check_run_dir,
    epoch_clock,
    epoch_table,
    minutes_to,
    plot_curves,
    tensorboard_logger,
    write_validation,
)

log = logging.getLogger(__name__)


def _preprocess_dict(datamodule: Any) -> dict[str, Any] | None:
    """The data module's preprocessing config as plain JSON types (None if it has none)."""
    for name in ("preprocess_cfg", "preprocess_config", "preprocess"):
        value = getattr(datamodule, name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return json.loads(json.dumps(dataclasses.asdict(value)))
    return None


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
    from barsalign.modeling.backbones import data_config, freeze_early_stages
    from barsalign.modeling.model import AlignmentClassifier, StagedUnfreeze, count_parameters
    from barsalign.modeling.recipe import plan_training, with_synthetic_default

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
        for line in plan.lines(cfg, model.weights_source):
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
    kept = best_validation_scores()  # for the best validation's figure
    callbacks: list[Any] = [ckpt, epoch_clock(), kept]
    if cfg.freeze_backbone:
        callbacks.append(StagedUnfreeze(cfg.unfreeze_at_epoch))
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStopping("val_f05", mode="max", patience=cfg.early_stopping_patience))
    logger = CSVLogger(str(run_dir), name="", version="logs")
    loggers = [logger, tensorboard_logger(run_dir)]  # TensorBoard in RUN/tb/
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
        for stale in (run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*"):
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
    write_validation(kept, run_dir, run_dir.name)
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
        f"minutes_to_f05_{TARGET_F05}": minutes_to(table, TARGET_F05),
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
    p.add_argument(
        "--weights",
        choices=WEIGHTS,
        help="auto: Lite0 starts from the backbone pretrained on the renderer's looks; "
        "imagenet: from ImageNet alone; random: from scratch",
    )
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
    p.add_argument(
        "--roi-rule",
        choices=ROI_RULES,
        help=f"how 'auto' scores the cells (default {ROI_RULES[0]})",
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


__all__ = ["make_datamodule", "run_training"]
