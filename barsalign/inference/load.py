"""`load_predictor`: a checkpoint, an export (its card checked) or the baseline as a `Predictor`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from barsalign.errors import BarsalignError
from barsalign.inference.card import SUFFIXES, card_path, read_card
from barsalign.inference.predictor import Predictor
from barsalign.inference.runtimes import format_logits, onnx_session, session_logits
from barsalign.modeling.baseline import EdgeBaseline
from barsalign.preprocess import PreprocessConfig


def check_model_path(model_path: str | Path) -> Path:
    """A model file `load_predictor` can open: it exists and is a .ckpt or an export."""
    path = Path(model_path)
    if not (path.is_file() or (path.is_dir() and path.name.endswith(SUFFIXES["coreml"]))):
        raise BarsalignError(f"model {path} does not exist")
    if path.suffix != ".ckpt" and not any(path.name.endswith(s) for s in SUFFIXES.values()):
        raise BarsalignError(
            f"{path}: expected a .ckpt checkpoint or an exported model "
            f"({', '.join(SUFFIXES.values())})"
        )
    return path


def load_predictor(
    model_path: str | Path, threads: int | None = None, expect_preprocess: Any = None
) -> Predictor:
    """A checkpoint (.ckpt) or an exported model (its card checked) ready to score frames.

    Args:
        threads: intra-op threads of an exported model's runtime (None: one per physical
            core).
        expect_preprocess: refuse an export whose card names other preprocessing than this.
    """
    path = check_model_path(model_path)
    if path.suffix == ".ckpt":
        return checkpoint_predictor(path)
    return exported_predictor(path, threads, expect_preprocess)


def as_predictor(model: Predictor | EdgeBaseline) -> Predictor:
    """A Predictor as is; a fitted `EdgeBaseline` wrapped as one."""
    return baseline_predictor(model) if isinstance(model, EdgeBaseline) else model


def baseline_predictor(baseline: EdgeBaseline) -> Predictor:
    """The classical baseline (fitted) as a Predictor: its features, its logistic regression."""
    if baseline.model is None:
        raise BarsalignError(f"{baseline.name}: fit the baseline before scoring with it")
    return Predictor(
        name=baseline.name,
        backbone=baseline.backbone,
        image_size=baseline.side,
        preprocess_cfg=baseline.preprocess_cfg,
        logits_fn=baseline.logits_fn,
        source=baseline.source,
        kind="baseline",
        weights_source=baseline.weights_source,
        parameters=baseline.parameters,
        features=baseline.prepare,
    )


def preprocess_from(hparams: dict[str, Any], ckpt: Path) -> PreprocessConfig:
    """The PreprocessConfig a run trained with: from the checkpoint, else the run's config.yaml."""
    stored, source = hparams.get("preprocess"), ckpt
    if stored is None:
        for cfg_file in (ckpt.parent / "config.yaml", ckpt.parent.parent / "config.yaml"):
            if cfg_file.is_file():
                try:
                    run_cfg = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}
                except (yaml.YAMLError, UnicodeDecodeError) as err:
                    raise BarsalignError(f"{cfg_file}: not readable YAML ({err})") from None
                stored = run_cfg.get("preprocess") if isinstance(run_cfg, dict) else None
                source = cfg_file
                break
    if stored is None:
        raise BarsalignError(f"{ckpt}: no preprocessing config stored with it or its run")
    if isinstance(stored, PreprocessConfig):
        return stored
    if not isinstance(stored, dict):
        raise BarsalignError(f"{source}: its preprocessing config is not a mapping: {stored!r}")
    try:
        return PreprocessConfig(**stored)
    except TypeError as err:
        raise BarsalignError(f"{source}: preprocessing config rejected: {err}") from None
    except BarsalignError as err:
        raise BarsalignError(f"{source}: {err}") from None


def checkpoint_predictor(path: Path) -> Predictor:
    """A training checkpoint with the preprocessing stored in it (or in its run's config)."""
    # torch, timm and lightning load in seconds: only checkpoints need them, not exports
    import torch

    from barsalign.modeling.model import count_parameters, data_config, load_checkpoint

    model = load_checkpoint(path)
    hp = dict(model.hparams)
    image_size = int(hp["image_size"])
    pcfg = preprocess_from(hp, path)
    if pcfg.target_size != image_size:
        raise BarsalignError(
            f"{path}: trained at {image_size} px, but its preprocessing makes "
            f"{pcfg.target_size} px frames"
        )

    def logits(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).float().numpy()

    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return Predictor(
        name=run.name,
        backbone=hp["backbone"],
        image_size=image_size,
        preprocess_cfg=pcfg,
        logits_fn=logits,
        source=path,
        kind="checkpoint",
        data_config=data_config(model.backbone, image_size),
        weights_source=model.weights_source,
        parameters=count_parameters(model),
        torch_model=model,
    )


def exported_predictor(
    path: Path, threads: int | None = None, expect_preprocess: Any = None
) -> Predictor:
    """An exported model after its card is checked (`read_card`)."""
    card = read_card(path, expect_preprocess)
    pcfg = card.pop("_preprocess_cfg")
    fmt, size = card["format"], int(card["image_size"])
    if fmt == "onnx":
        session = onnx_session(path, threads)
        dims = session.get_inputs()[0].shape
        if list(dims[1:]) != [3, size, size]:
            raise BarsalignError(
                f"model card {card_path(path)} says input {size}x{size}, but "
                f"{path.name} takes {dims}"
            )
        logits_fn = session_logits(session)
    else:
        logits_fn = format_logits(fmt, path, threads)
    dc = dict(card["data_config"])
    for key in ("input_size", "mean", "std"):
        if isinstance(dc.get(key), list):
            dc[key] = tuple(dc[key])
    return Predictor(
        name=str(card.get("run") or path.name.removesuffix(SUFFIXES[fmt])),
        backbone=str(card["backbone"]),
        image_size=size,
        preprocess_cfg=pcfg,
        logits_fn=logits_fn,
        source=path,
        kind=fmt,
        data_config=dc,
        threshold=float(card["threshold"]),
        card=card,
        weights_source=str(card.get("weights_source", "")),
        parameters=int(card.get("parameters", 0)),
    )
