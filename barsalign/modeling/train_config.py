"""The training config and its YAML profiles: `FinetuneConfig` checks and resolves every
parameter of a run; `load_profile`, `profile_params` and `write_profile` read, merge and write
the `conf/*.yaml` profiles that `barsalign train`, the notebooks and 03's fragments share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from barsalign.augment import AugmentConfig
from barsalign.config import PROJ_ROOT, RUNS_DIR
from barsalign.errors import BarsalignError
from barsalign.outputs import atomic_write_text
from barsalign.preprocess import MODES, PreprocessConfig, parse_roi
from barsalign.presets import DEFAULT_BACKBONE, WEIGHTS
from barsalign.roi import RULES as ROI_RULES
from barsalign.synth.looks import LOOKS

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
            (`barsalign.modeling.recipe.auto_steps`), unless `epochs` is given.
        epochs: passes over the training set, as steps (`max_steps` wins); None: automatic.
        warmup_fraction: share of the steps spent warming the learning rate up linearly.
        pos_weight: BCE weight of aligned frames: None (unweighted), "auto" (negatives per
            positive in the training split) or a number.
        weights: "auto" resolves pretrained weights offline (`barsalign.modeling.backbones`:
            for Lite0 the shipped backbone pretrained on the renderer's looks); "imagenet" the
            same without that backbone; "random" starts from scratch.
        global_pool: the backbone's pooling before the head (`barsalign.modeling.backbones.POOLS`).
        unfreeze_at_epoch: with `freeze_backbone`, the epoch where the backbone is unfrozen.
        freeze_stages: keep the backbone's stem and first N stages frozen for the whole run
            (their ImageNet filters stay, and a CPU step is faster: `bench_train.py`); None:
            `DEFAULT_FROZEN_STAGES` when the weights are pretrained, 0 when they are random or
            with `freeze_backbone`.
        roi: region of interest cropped before preprocessing, (x0, y0, x1, y1) frame
            fractions; "auto" proposes it from the training labels (`barsalign.roi`) when the
            run starts; None: the whole frame.
        roi_rule: how `roi: auto` scores the frame's cells (`barsalign.roi.RULES`).
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
    roi_rule: str = ROI_RULES[0]
    preprocess_mode: str = "none"
    mask_left: bool | None = None
    val_fraction: float = 0.2
    augment: bool | dict[str, Any] = True
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
            from barsalign.modeling.backbones import (
                default_image_size,  # imports timm: only when needed
            )

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
            (
                self.roi_rule in ROI_RULES,
                f"roi_rule must be one of {', '.join(ROI_RULES)}, not {self.roi_rule!r}",
            ),
            (self.schedule in ("constant", "cosine"), f"schedule {self.schedule!r}: no such"),
            (
                self.weights in WEIGHTS,
                f"weights must be one of {', '.join(WEIGHTS)}, not {self.weights!r}",
            ),
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
        values: dict[str, Any] = {}
        for key, value in self.augment.items():
            if key == "jpeg_quality":
                if not (
                    isinstance(value, list | tuple)
                    and len(value) == 2
                    and all(isinstance(q, int) and not isinstance(q, bool) for q in value)
                ):
                    raise BarsalignError(
                        f"augment: jpeg_quality must be [low, high], not {value!r}"
                    )
                values[key] = (int(value[0]), int(value[1]))
                continue
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


def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """`--set key=value` items as training settings, each value read as YAML (numbers,
    booleans, lists); an item without "=" is a one-line error."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BarsalignError(f"--set {item!r}: expected key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


__all__ = [
    "CONFIG_KEYS",
    "FinetuneConfig",
    "load_profile",
    "parse_settings",
    "profile_params",
    "profile_path",
    "write_profile",
]
