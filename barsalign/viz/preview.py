"""What training feeds the network, for 03_preprocess: `training_view` resolves a profile or a
checkpoint the way `barsalign train` does (the region proposed from the labels, the size, the
mode, the augmentation), the figures show every step and augmented variants of real training
frames, and the sliders write a profile fragment that training reads unchanged."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from barsalign.augment import AugmentConfig, augmented_variants
from barsalign.errors import BarsalignError
from barsalign.modeling.train_config import FinetuneConfig, profile_params, write_profile
from barsalign.preprocess import (
    PreprocessConfig,
    crop_resize,
    finish,
    read_image,
    roi_box,
    to_bgr8,
)

AUGMENT_FIELDS = dataclasses.fields(AugmentConfig)


def augment_values(values: AugmentConfig | dict[str, Any]) -> dict[str, Any]:
    """An augmentation (or its fields' values) as profile values: numbers, and the JPEG
    quality range as a list."""
    if isinstance(values, AugmentConfig):
        values = dataclasses.asdict(values)
    return {k: list(v) if k == "jpeg_quality" else float(v) for k, v in values.items()}


@dataclass(frozen=True)
class TrainingView:
    """What a training run feeds the network, resolved as `barsalign train` resolves it.

    Args:
        cfg: the training config with its region resolved ("auto" proposed from the labels).
        preprocess: the crop, size and mode every frame goes through (`cfg.preprocess_config`,
            or a checkpoint's own).
        augment: the training augmentation (`cfg.augment_config`); None: off.
        frames: the training split's labelled frames (path, label = 1 for aligned).
        source: where the settings came from: a profile, a checkpoint or training's defaults.
        region: how the region was chosen, in the recipe's words.
    """

    cfg: FinetuneConfig
    preprocess: PreprocessConfig
    augment: AugmentConfig | None
    frames: list[tuple[Path, int]]
    source: str
    region: str
    profiles: tuple[str, ...] = ()  # the profiles it was resolved from, in order

    def fragment(self) -> dict[str, Any]:
        """The previewed settings as profile values (`train_config.write_profile`)."""
        p = self.preprocess
        return {
            "image_size": p.target_size,
            "roi": list(p.roi) if p.roi else "none",
            "preprocess_mode": p.mode,
            "mask_left": p.mask_left,
            "augment": augment_values(self.augment) if self.augment else False,
        }

    def adjusted(self, **changes: Any) -> TrainingView:
        """The view with some profile values changed (`fragment`'s keys), checked and resolved
        by the training config itself."""
        unknown = sorted(set(changes) - set(self.fragment()))
        if unknown:
            raise BarsalignError(f"adjusted: no setting {unknown}; known: {list(self.fragment())}")
        cfg = dataclasses.replace(self.cfg, **changes)
        region = self.region if "roi" not in changes else f"given: {cfg.roi}"
        return dataclasses.replace(
            self,
            cfg=cfg,
            preprocess=cfg.preprocess_config(),
            augment=cfg.augment_config(),
            region=region,
        )


def training_view(
    params: dict[str, Any],
    profile: str | Path | Sequence[str | Path] | None = None,
    checkpoint: str | Path | None = None,
) -> TrainingView:
    """What a run of these parameters would train on, or what `checkpoint` was trained on.

    Args:
        params: training parameters (a notebook's `globals()`: the keys of `FinetuneConfig`);
            over `profile`'s as `barsalign.modeling.train_config.profile_params` merges them.
        checkpoint: a trained `.ckpt`: its own preprocessing, and the augmentation and frames
            of the run's `config.yaml`; `params`' `data_dir` stands in for moved frames.
    """
    from barsalign.data import split_labels
    from barsalign.modeling.recipe import plan_training, with_synthetic_default

    if checkpoint is not None:
        cfg, pcfg, source = _checkpoint_config(Path(checkpoint), params.get("data_dir"))
        region = f"the checkpoint's: {list(pcfg.roi) if pcfg.roi else 'whole frame'}"
    else:
        merged = {**profile_params(params, profile), "tracking": False}
        cfg = FinetuneConfig.from_params(merged)
        if cfg.data_dir is None:
            cfg = with_synthetic_default(cfg)
        cfg, plan = plan_training(cfg)  # the region proposed here, as training proposes it
        pcfg, region = cfg.preprocess_config(), plan.roi_reason
    names = [profile] if isinstance(profile, str | Path) else list(profile or [])
    names = [str(n) for n in names] if checkpoint is None else []
    if checkpoint is None:
        source = f"profile {' + '.join(names)}" if names else "training's defaults"
    train_items, _ = split_labels(cfg.data_dir, cfg.val_data_dir, cfg.val_fraction, cfg.seed)
    frames = [(Path(it.path), int(it.label)) for it in train_items]
    return TrainingView(cfg, pcfg, cfg.augment_config(), frames, source, region, tuple(names))


def _checkpoint_config(
    ckpt: Path, data_dir: str | None
) -> tuple[FinetuneConfig, PreprocessConfig, str]:
    """A checkpoint's training config (from its run's config.yaml) and its preprocessing."""
    from barsalign.inference import load_predictor

    pcfg = load_predictor(ckpt).preprocess_cfg
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    saved_path = run / "config.yaml"
    saved = yaml.safe_load(saved_path.read_text()) if saved_path.is_file() else None
    if not isinstance(saved, dict) or not (data_dir or saved.get("data_dir")):
        raise BarsalignError(
            f"{ckpt}: no {saved_path} naming the frames it trained on; pass data_dir"
        )
    given = {"roi": pcfg.roi, "image_size": pcfg.target_size, "preprocess_mode": pcfg.mode}
    given |= {"mask_left": pcfg.mask_left, "tracking": False}
    if data_dir:
        given["data_dir"] = data_dir
    return FinetuneConfig.from_params({**saved, **given}), pcfg, f"checkpoint {ckpt}"


def write_fragment(view: TrainingView, path: str | Path) -> Path:
    """The view's settings as a profile fragment (YAML) that 04_finetune's `profile` and
    `barsalign train --profile` take unchanged, on top of the profile it came from."""
    name = Path(path).name
    base = [p for p in view.profiles if Path(p).resolve() != Path(path).resolve()]
    header = (
        f"Written by 03_preprocess from {view.source}; region {view.region}.\n"
        f"Train on it: barsalign train {''.join(f'--profile {p} ' for p in base)}--profile {name}\n"
        f"or: papermill notebooks/04_finetune.ipynb OUT.ipynb {''.join(f'-f {p} ' for p in base)}"
        f"-f {name}"
    )
    return write_profile(path, view.fragment(), header)


def pipeline_steps(image_bgr: np.ndarray, cfg: PreprocessConfig) -> list[tuple[str, np.ndarray]]:
    """(title, image) for the original and each step, computed as `preprocess` does."""
    img = to_bgr8(image_bgr)
    square = crop_resize(img, cfg)
    gray = cv2.cvtColor(square, cv2.COLOR_BGR2GRAY)
    mean = float(gray.mean())
    dark = mean < cfg.dark_threshold
    alpha, beta = (cfg.dark_alpha, cfg.dark_beta) if dark else (cfg.light_alpha, cfg.light_beta)
    adjusted = cv2.convertScaleAbs(gray, alpha=alpha, beta=beta)
    k = int(cfg.blur_kernel)
    blurred = cv2.GaussianBlur(adjusted, (k, k), 0)
    edges = cv2.subtract(adjusted, blurred)
    masked = edges.copy()
    if cfg.mask_left:
        masked[:, : int(masked.shape[1] * cfg.mask_fraction)] = 0
    shown = img
    if cfg.roi is not None:  # step 0: the region of interest, drawn on the original
        x0, y0, x1, y1 = roi_box(img.shape, cfg.roi)
        shown = img.copy()
        cv2.rectangle(shown, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 255), max(2, img.shape[1] // 200))
    steps = [
        (f"original {img.shape[1]}x{img.shape[0]}" + (" + roi" if cfg.roi else ""), shown),
        (f"crop + resize {cfg.target_size}", square),
        (f"gray (mean {mean:.0f}: {'dark' if dark else 'light'})", gray),
        (f"x{alpha:g} +{beta:g}", adjusted),
        (f"blur {k}x{k}", blurred),
        ("adjusted - blur", edges),
        (f"mask left {cfg.mask_fraction:.0%}" if cfg.mask_left else "no mask", masked),
    ]
    if cfg.mode != "edges":  # colour and grayscale stop after steps 2 and 3 (then the mask)
        kept = steps[: 2 if cfg.mode == "none" else 3]
        if cfg.mask_left:  # the pipeline's own last steps on the resized square
            kept.append((f"mask left {cfg.mask_fraction:.0%}", finish(square, cfg)))
        return kept
    return steps


def _show(ax: Any, img: np.ndarray, title: str) -> None:
    if img.ndim == 3:
        ax.imshow(img[:, :, ::-1])
    else:
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def plot_steps(image_bgr: np.ndarray, cfg: PreprocessConfig, title: str = "") -> Any:
    """One row: the original and each preprocessing step."""
    import matplotlib.pyplot as plt

    steps = pipeline_steps(image_bgr, cfg)
    fig, axes = plt.subplots(1, len(steps), figsize=(2.3 * len(steps), 2.6))
    for ax, (name, img) in zip(axes, steps, strict=True):
        _show(ax, img, name)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_variants(
    image_bgr: np.ndarray,
    n: int,
    pcfg: PreprocessConfig,
    acfg: AugmentConfig | None = None,
    seed: int = 0,
    cols: int = 4,
) -> Any:
    """A grid of N augmented, preprocessed variants of one frame (first: no augmentation)."""
    import matplotlib.pyplot as plt

    variants = augmented_variants(image_bgr, n, pcfg, acfg, seed)
    rows = (len(variants) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < len(variants):
            _show(ax, variants[k], "plain" if k == 0 else f"variant {k}")
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig


def interactive(
    paths: Sequence[str | Path], view: TrainingView, fragment: str | Path, seed: int = 0
) -> Any:
    """ipywidgets over what training reads (size, mode, region, mask, augmentation): the
    steps and augmented variants redrawn live, the fragment rewritten at every change."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    p, a = view.preprocess, view.augment or AugmentConfig()
    x0, y0, x1, y1 = p.roi or (0.0, 0.0, 1.0, 1.0)
    frame = w.Dropdown(options=[(Path(q).name, str(q)) for q in paths], description="frame")
    box = {"step": 0.01, "continuous_update": False, "min": 0.0, "max": 1.0}
    knobs: dict[str, Any] = {
        "image_size": w.IntSlider(value=p.target_size, min=64, max=768, step=32),
        "preprocess_mode": w.Dropdown(options=["none", "grayscale", "edges"], value=p.mode),
        "roi_x": w.FloatRangeSlider(value=(x0, x1), **box),
        "roi_y": w.FloatRangeSlider(value=(y0, y1), **box),
        "mask_left": w.Checkbox(value=p.mask_left),
        "augment": w.Checkbox(value=view.augment is not None),
    }
    limits = {"rotate_deg": 30, "brightness": 1, "shift": 0.45, "blur_sigma": 5}
    limits |= {"gamma": 2, "noise_sigma": 20}
    for f in dataclasses.fields(AugmentConfig):
        if f.name == "jpeg_quality":
            knobs[f.name] = w.IntRangeSlider(value=a.jpeg_quality, min=1, max=100, step=1)
            continue
        top = limits.get(f.name, 1)
        knobs[f.name] = w.FloatSlider(value=getattr(a, f.name), min=0, max=top, step=top / 100)
    knobs["blur_sigma"].min = 0.3
    knobs["noise_sigma"].min = 1.0
    for name, k in knobs.items():
        k.description, k.continuous_update = name, False
    out = w.Output()
    state: dict[str, Any] = {}  # the view, its fragment and the figures last drawn (box.state)

    def redraw(_: Any = None) -> None:
        values = {k: v.value for k, v in knobs.items()}
        (rx0, rx1), (ry0, ry1) = values.pop("roi_x"), values.pop("roi_y")
        aug = augment_values({f.name: values.pop(f.name) for f in AUGMENT_FIELDS})
        values["roi"] = "none" if (rx0, ry0, rx1, ry1) == (0, 0, 1, 1) else [rx0, ry0, rx1, ry1]
        values["augment"] = aug if values["augment"] else False
        with out:
            out.clear_output(wait=True)
            try:
                v = view.adjusted(**values)
            except BarsalignError as err:  # a region of zero width, a bad probability
                print(f"not written: {err}")
                return
            state["view"], state["fragment"] = v, write_fragment(v, fragment)
            img = read_image(frame.value)
            state["fig"] = plot_steps(img, v.preprocess, Path(frame.value).name)
            n = 8 if v.augment else 1
            state["grid"] = plot_variants(img, n, v.preprocess, v.augment, seed=seed)
            plt.show()
            print(f"fragment written: {fragment}")

    for k in [frame, *knobs.values()]:
        k.observe(redraw, names="value")
    redraw()
    shape = list(knobs.values())
    ui = w.VBox([frame, w.HBox([w.VBox(shape[:6]), w.VBox(shape[6:])]), out])
    ui.state = state
    display(ui)
    return ui
