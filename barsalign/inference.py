"""The one way to load a model you can score with: a checkpoint, an export, or the baseline.

`load_predictor` opens a Lightning checkpoint (`.ckpt`), an exported model (`.onnx`,
`.torchscript.pt`, its model card checked) or wraps a fitted classical baseline, and gives a
`Predictor`: its weights, the preprocessing it was trained with (region of interest included),
the backbone's normalisation, its operating threshold and card. Evaluation, prediction, export's
checks and the live monitor all score through it, so they cannot preprocess a frame differently.

`export.py` writes what this module reads: the model card (`model.onnx` →
`model.onnx.card.json`) and the scoring fields inside the model file (`EMBEDDED_KEY`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from barsalign.baseline import EdgeBaseline
from barsalign.errors import BarsalignError
from barsalign.metrics import check_threshold
from barsalign.preprocess import PreprocessConfig, normalise, preprocess, scoring_problem

CARD_VERSION = 2
"""2: the scoring fields also live inside the model file (`EMBEDDED_KEY`)."""
EMBEDDED_KEY = "barsalign_card"
"""ONNX metadata_props key / TorchScript extra file holding the card's `SCORING_KEYS` (JSON)."""
SCORING_KEYS = ("backbone", "image_size", "preprocess", "data_config")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "coreml": ".mlpackage"}
"""Exported model files by format."""
CARD_KEYS = (
    "card_version",
    "format",
    "model_file",
    "model_sha256",
    "backbone",
    "image_size",
    "input",
    "preprocess",
    "data_config",
    "threshold",
)
"""What every model card holds."""


@dataclass
class Predictor:
    """A model with the preprocessing it was trained with: BGR frames in, P(aligned) out.

    Args:
        logits_fn: a prepared batch (see `prepare`) → one logit per frame.
        kind: "checkpoint", "onnx", "torchscript" or "baseline".
        threshold: the card's operating threshold; None where none was chosen (checkpoints,
            the baseline), and `decision_threshold` is then 0.5.
        features: the baseline's own input from a frame; None for networks, whose input is
            `preprocess` then `normalise` with `data_config`.
        torch_model: the LightningModule of a checkpoint (Grad-CAM, export), else None.
    """

    name: str
    backbone: str
    image_size: int
    preprocess_cfg: PreprocessConfig
    logits_fn: Callable[[np.ndarray], np.ndarray]
    source: Path
    kind: str = "checkpoint"
    data_config: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None
    card: dict[str, Any] = field(default_factory=dict)
    weights_source: str = ""
    parameters: int = 0
    torch_model: Any = None
    features: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def decision_threshold(self) -> float:
        """The threshold `predict` uses: the card's, else 0.5."""
        return 0.5 if self.threshold is None else self.threshold

    def prepare(self, image_bgr: np.ndarray, name: str | None = "frame") -> np.ndarray:
        """One frame as the model's input; a BarsalignError (prefixed with `name` when given)
        when the frame is far below the model's input size (`preprocess.scoring_problem`)."""
        problem = scoring_problem(image_bgr, self.preprocess_cfg)
        if problem:
            raise BarsalignError(f"{name}: {problem}" if name else problem)
        if self.features is not None:
            return self.features(image_bgr)
        return normalise(preprocess(image_bgr, self.preprocess_cfg), self.data_config)

    def tensors(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Frames as the model's input batch ([B, 3, S, S] normalised for networks)."""
        return np.stack([self.prepare(img) for img in images_bgr])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits [B] of a prepared batch, as float64."""
        return np.asarray(self.logits_fn(batch), dtype=np.float64).reshape(len(batch))

    def scores(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """P(aligned) per frame."""
        return sigmoid(self.logits(self.tensors(images_bgr)))

    def predict(self, images_bgr: Sequence[np.ndarray], threshold: float | None = None) -> Any:
        """1 (aligned) or 0 per frame, at `threshold` or the model's `decision_threshold`."""
        thr = self.decision_threshold if threshold is None else check_threshold(threshold)
        return (self.scores(images_bgr) >= thr).astype(int)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """P(aligned) from logits."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


# --- loading --------------------------------------------------------------------------------


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

    from barsalign.model import count_parameters, data_config, load_checkpoint

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


# --- exported files: runtimes -----------------------------------------------------------------


def physical_cores() -> int:
    """Physical cores this process may run on (a core's hyper-threads counted once); the
    number of usable CPUs where Linux's topology files cannot be read."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpus = cpus or list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text(), (topo / "core_id").read_text()))
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def onnx_session(path: str | Path, threads: int | None = None, optimize: bool = True) -> Any:
    """An ONNX Runtime CPU session: all graph optimisations (or none), sequential execution,
    `threads` intra-op threads (None: one per physical core, `physical_cores`)."""
    import onnxruntime as ort  # a second or so to import; only exported models need it

    opts = ort.SessionOptions()
    level = "ORT_ENABLE_ALL" if optimize else "ORT_DISABLE_ALL"
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - any ORT failure means an unusable file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BarsalignError(f"{path} is not a loadable ONNX model: {first}") from None


def session_logits(session: Any) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX Runtime session as batch [B,3,S,S] float32 → logits [B]."""
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: np.ascontiguousarray(batch)})[0]


def format_logits(
    fmt: str, path: Path, threads: int | None = None, optimize: bool = True
) -> Callable[[np.ndarray], np.ndarray]:
    """A function batch [B,3,S,S] float32 → logits [B] for an exported file (no card check)."""
    if fmt == "onnx":
        return session_logits(onnx_session(path, threads, optimize))
    if fmt == "torchscript":
        import torch

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as err:  # noqa: BLE001
            raise BarsalignError(f"{path} is not a loadable TorchScript model: {err}") from None

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

        return run
    raise BarsalignError(f"cannot run {fmt} models on this machine")


# --- exported files: the model card ---------------------------------------------------------


def card_path(model_path: str | Path) -> Path:
    """Where a model's card lives: `model.onnx` → `model.onnx.card.json`."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".card.json")


def sha256(path: str | Path) -> str:
    """The file's sha256 (a folder's — a CoreML package — over its files in name order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def format_of(path: Path) -> str:
    """The export format a file name says ("onnx", "torchscript", "coreml")."""
    for fmt, suffix in SUFFIXES.items():
        if path.name.endswith(suffix):
            return fmt
    raise BarsalignError(f"{path}: not an exported model ({', '.join(SUFFIXES.values())})")


def scoring_json(card: dict[str, Any]) -> str:
    """The card's scoring fields as canonical JSON (what goes into the model file)."""
    return json.dumps({k: card[k] for k in SCORING_KEYS}, sort_keys=True)


def embedded_scoring(model_path: str | Path) -> dict[str, Any] | None:
    """The scoring fields written into an exported model file, or None if it has none."""
    path = Path(model_path)
    fmt = format_of(path)
    try:
        if fmt == "onnx":
            import onnx

            props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
            text = props.get(EMBEDDED_KEY)
        elif fmt == "torchscript":
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith(f"/extra/{EMBEDDED_KEY}")]
                text = zf.read(names[0]).decode("utf-8") if names else None
        else:
            return None
        return None if text is None else json.loads(text)
    except Exception as err:  # noqa: BLE001 - a damaged file: one line, whatever the parser says
        raise BarsalignError(
            f"{path} is not a readable {fmt} model ({type(err).__name__})"
        ) from None


def read_card(model_path: str | Path, expect_preprocess: Any = None) -> dict[str, Any]:
    """The model's card, checked: it exists, belongs to this very file, and describes a
    preprocessing this code knows (and equals `expect_preprocess` when one is given)."""
    model_path = Path(model_path)
    cpath = card_path(model_path)
    if not model_path.exists():
        raise BarsalignError(f"model {model_path} does not exist")
    if not cpath.is_file():
        raise BarsalignError(
            f"{model_path} has no model card ({cpath.name}): export it with `barsalign export` "
            "so its preprocessing travels with it"
        )
    try:
        card = json.loads(cpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise BarsalignError(f"model card {cpath} is not valid JSON: {err}") from None
    except OSError as err:
        raise BarsalignError(f"cannot read model card {cpath}: {err.strerror or err}") from None
    missing = [k for k in CARD_KEYS if not isinstance(card, dict) or k not in card]
    if missing:
        raise BarsalignError(f"model card {cpath} lacks {missing}")
    if card["card_version"] != CARD_VERSION:
        raise BarsalignError(
            f"model card {cpath}: version {card['card_version']!r}, not {CARD_VERSION}; "
            "export the model again with this barsalign"
        )
    if card["model_file"] != model_path.name or card["format"] != format_of(model_path):
        raise BarsalignError(
            f"model card {cpath} describes {card['model_file']} ({card['format']}), "
            f"not {model_path.name}"
        )
    if card["model_sha256"] != sha256(model_path):
        raise BarsalignError(
            f"model card {cpath} does not match {model_path.name}: the file changed since export "
            "(sha256 differs); export it again"
        )
    pcfg = _card_preprocess(card["preprocess"], cpath)
    if expect_preprocess is not None and expect_preprocess != pcfg:
        theirs, ours = dataclasses.asdict(pcfg), dataclasses.asdict(expect_preprocess)
        diff = {k: (theirs[k], ours[k]) for k in theirs if theirs[k] != ours[k]}
        raise BarsalignError(
            f"model card {cpath}: the model was trained with other preprocessing than requested "
            f"(field: (card, requested)) {diff}"
        )
    _check_scoring_fields(card, cpath, pcfg)
    embedded = embedded_scoring(model_path)
    stated = json.loads(scoring_json(card))
    if card["format"] != "coreml" and embedded != stated:
        diff = (
            "the model file holds none"
            if not isinstance(embedded, dict)
            else ", ".join(k for k in SCORING_KEYS if embedded.get(k) != stated.get(k))
        )
        raise BarsalignError(
            f"model card {cpath} does not match what {model_path.name} says of its own "
            f"preprocessing ({diff}): the card was edited; export the model again"
        )
    card["_preprocess_cfg"] = pcfg
    return card


def _card_preprocess(stored: Any, cpath: Path) -> PreprocessConfig:
    """The card's preprocessing as a PreprocessConfig: every field this code has, no other."""
    fields = {f.name for f in dataclasses.fields(PreprocessConfig)}
    if not isinstance(stored, dict) or set(stored) != fields:
        extra = sorted(set(stored) - fields) if isinstance(stored, dict) else stored
        lacking = sorted(fields - set(stored)) if isinstance(stored, dict) else []
        raise BarsalignError(
            f"model card {cpath}: its preprocessing config does not match this code's "
            f"PreprocessConfig (unknown {extra}, missing {lacking}); export the model again"
        )
    try:
        return PreprocessConfig(**_tuples(stored, PreprocessConfig))
    except (TypeError, ValueError, BarsalignError) as err:
        raise BarsalignError(f"model card {cpath}: preprocessing config rejected: {err}") from None


def _check_scoring_fields(card: dict[str, Any], cpath: Path, pcfg: PreprocessConfig) -> None:
    """The card's threshold, input size and normalisation: values a model can score with."""
    check_threshold(card["threshold"], f"model card {cpath}: threshold")
    size = card["image_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size != pcfg.target_size:
        raise BarsalignError(
            f"model card {cpath}: image_size {size!r} is not the preprocessing's target_size "
            f"{pcfg.target_size}"
        )
    dc = card["data_config"]
    for key in ("mean", "std"):
        values = dc.get(key) if isinstance(dc, dict) else None
        ok = (
            isinstance(values, list)
            and len(values) == 3
            and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in values
            )
            and (key == "mean" or all(v > 0 for v in values))
        )
        if not ok:
            raise BarsalignError(
                f"model card {cpath}: data_config.{key} must be 3 finite numbers"
                f"{' above 0' if key == 'std' else ''}, not {values!r}"
            )


def _tuples(stored: dict[str, Any], cls: Any) -> dict[str, Any]:
    """JSON lists back to tuples where the dataclass default is a tuple."""
    out = dict(stored)
    for f in dataclasses.fields(cls):
        tuple_typed = isinstance(f.default, tuple) or "tuple" in str(f.type).lower()
        if isinstance(out.get(f.name), list) and tuple_typed:
            out[f.name] = tuple(out[f.name])
    return out


__all__ = [
    "CARD_KEYS",
    "CARD_VERSION",
    "EMBEDDED_KEY",
    "Predictor",
    "SCORING_KEYS",
    "SUFFIXES",
    "as_predictor",
    "baseline_predictor",
    "card_path",
    "check_model_path",
    "checkpoint_predictor",
    "embedded_scoring",
    "exported_predictor",
    "format_logits",
    "format_of",
    "load_predictor",
    "onnx_session",
    "physical_cores",
    "preprocess_from",
    "read_card",
    "scoring_json",
    "sha256",
    "sigmoid",
]
