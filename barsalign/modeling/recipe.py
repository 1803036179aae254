"""The default recipe, sized to the data it is given: steps, region, class balance, warm-up.

`plan_training` reads the labels once, before anything is written, and decides:

- **steps**: a budget in optimizer steps, not epochs, so a slow or busy machine trains the
  same model. A small set is seen `PASSES_SMALL` times; the number of samples drawn lies in
  `SAMPLES` (300 frames: 6000 samples, 20 passes; 2400 frames: 7200 samples, 3 passes). An
  explicit `epochs` or `max_steps` wins.
- **region**: `roi="auto"` proposes the stopper region from the training labels
  (`barsalign.roi.propose_roi`); a user's own `roi` wins.
- **balance**: a minority class under `BALANCE_BELOW` of the training frames is drawn as often
  as the majority (a weighted sampler); otherwise plain shuffling.
- **warm-up**: `warmup_fraction` of the steps, then a cosine decay to the last step.
- **gap pairs**: with `gap_pairs` and a region, the renderer's short-bar scenes and their flush
  twins (`barsalign.synth.gap_pairs`) are rendered once and drawn beside the training frames.

Without a `data_dir`, `with_synthetic_default` gives the frames: the rendered pool and example set.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from barsalign.augment import describe
from barsalign.config import SYNTH_TWINS_DIR
from barsalign.data import check_both_classes, class_counts, split_labels
from barsalign.modeling.train_config import FinetuneConfig

log = logging.getLogger(__name__)

PASSES_SMALL = 20  # how often a small training set is seen
SAMPLES = (6000, 7200)  # the fewest and most training samples of the automatic budget
BALANCE_BELOW = 0.3  # minority share under which batches are drawn class-balanced


@dataclass(frozen=True)
class TrainingPlan:
    """What a run will do, decided before it starts (printed, and kept in config.yaml)."""

    n_train: dict[str, int]
    n_val: dict[str, int]
    steps: int
    steps_reason: str
    val_every: int  # steps between validations; `steps` is a multiple of it
    passes: float  # how many times the training set is seen
    warmup_steps: int
    balance: str  # "sampler" (class-balanced draws) or "shuffle"
    balance_reason: str
    roi: tuple[float, float, float, float] | None
    roi_reason: str
    pairs_dir: str | None = None  # the gap pairs drawn beside the training frames
    pairs_reason: str = "none"

    def lines(self, cfg: FinetuneConfig, weights_source: str = "") -> list[str]:
        """The plan in a few lines, for a person reading the log before training starts
        (`weights_source`: where the backbone's weights came from, once it is built)."""
        tr, va = self.n_train, self.n_val
        return [
            f"training frames: {tr['aligned']} aligned + {tr['not_aligned']} not aligned; "
            f"validation: {va['aligned']} + {va['not_aligned']}",
            f"steps: {self.steps} of batch {cfg.batch_size} ({self.passes:.1f} passes; "
            f"{self.steps_reason}); warm-up {self.warmup_steps} steps, then "
            f"{cfg.schedule} to the last",
            f"image size: {cfg.image_size} px, mode {cfg.preprocess_mode}, "
            f"{cfg.backbone} with weights {weights_source or cfg.weights}, lr {cfg.lr:g}, "
            f"frozen stages {cfg.freeze_stages}",
            f"region: {self.roi_reason}",
            f"class balance: {self.balance_reason}",
            f"gap pairs: {self.pairs_reason}",
            f"augmentation: {describe(cfg.augment_config())}",
        ]


def auto_steps(n_train: int, batch_size: int) -> tuple[int, str]:
    """The automatic step budget for `n_train` frames, and why."""
    samples = min(max(PASSES_SMALL * n_train, SAMPLES[0]), SAMPLES[1])
    steps = max(1, math.ceil(samples / batch_size))
    why = (
        f"automatic: {PASSES_SMALL} passes over {n_train} frames, kept within "
        f"{SAMPLES[0]}-{SAMPLES[1]} samples"
    )
    return steps, why


def plan_training(cfg: FinetuneConfig) -> tuple[FinetuneConfig, TrainingPlan]:
    """Read the labels and decide the run's steps, region and balance (see the module doc);
    returns the config with `roi` resolved and the plan."""
    train, val = split_labels(cfg.data_dir, cfg.val_data_dir, cfg.val_fraction, cfg.seed)
    n_train, n_val = class_counts(train), class_counts(val)
    check_both_classes(n_train, "training", cfg.data_dir)
    check_both_classes(n_val, "validation", cfg.val_data_dir or cfg.data_dir)
    # 1. steps, whole multiples of the validation interval so the last step is validated
    per_epoch = math.ceil(len(train) / cfg.batch_size)
    if cfg.max_steps is not None:
        steps, why = int(cfg.max_steps), "max_steps as given"
    elif cfg.epochs is not None:
        steps, why = int(cfg.epochs) * per_epoch, f"{cfg.epochs} epochs as given"
    else:
        steps, why = auto_steps(len(train), cfg.batch_size)
    val_every = min(per_epoch, steps)
    if steps % val_every:
        steps = math.ceil(steps / val_every) * val_every
        why += f", rounded up to whole validations every {val_every} steps"
    # 2. region
    roi, roi_reason = cfg.roi, "whole frame (roi none)"
    if cfg.roi == "auto":
        from barsalign.roi import propose_roi

        proposal = propose_roi(
            [(it.path, it.label) for it in train], seed=cfg.seed, rule=cfg.roi_rule
        )
        roi, roi_reason = proposal.roi, f"proposed: {proposal.reason}"
    elif cfg.roi is not None:
        roi_reason = f"given: {list(cfg.roi)}"
    # 3. balance
    minority = min(n_train.values()) / max(1, len(train))
    balance = "sampler" if minority < BALANCE_BELOW else "shuffle"
    how = "class-balanced draws" if balance == "sampler" else "plain shuffling"
    balance_reason = f"{how} (the minority class is {minority:.0%} of the training frames)"
    # 4. gap pairs: crops of the same kind as a region's, so only with one
    pairs_dir, pairs_reason = None, "none (gap_pairs 0)"
    if cfg.gap_pairs and roi is None:
        pairs_reason = "none: the frames are used whole (no region), the pairs are crops"
    elif cfg.gap_pairs:
        from barsalign.synth.gap_pairs import render_gap_pairs

        looks = cfg.gap_pairs_looks
        pairs_dir = str(render_gap_pairs(cfg.gap_pairs, looks, seed=0))
        pairs_reason = (
            f"{cfg.gap_pairs} frames from the looks {', '.join(looks) if looks else 'all'}, "
            f"{cfg.gap_pairs_share:.0%} of the draws ({pairs_dir})"
        )
    resolved = dataclasses.replace(cfg, roi=roi)
    plan = TrainingPlan(
        n_train=n_train,
        n_val=n_val,
        steps=steps,
        steps_reason=why,
        val_every=val_every,
        passes=steps * cfg.batch_size / len(train),
        warmup_steps=int(round(cfg.warmup_fraction * steps)),
        balance=balance,
        balance_reason=balance_reason,
        roi=roi,
        roi_reason=roi_reason,
        pairs_dir=pairs_dir,
        pairs_reason=pairs_reason,
    )
    return resolved, plan


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
