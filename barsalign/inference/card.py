"""The model card beside an exported file, and the scoring fields inside it, read and checked.

`export` writes them (`model.onnx` → `model.onnx.card.json`; the card's `SCORING_KEYS` also go
into the file itself under `EMBEDDED_KEY`); `read_card` refuses a card that belongs to another
file, another input size or another preprocessing, or that was edited by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import zipfile
from pathlib import Path
from typing import Any

from barsalign.errors import BarsalignError
from barsalign.evaluation.metrics import check_threshold
from barsalign.preprocess import PreprocessConfig

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
