"""The one way to load a model you can score with: a checkpoint, an export, or the baseline.

`load_predictor` opens a Lightning checkpoint (`.ckpt`), an exported model (`.onnx`,
`.torchscript.pt`, its model card checked) or wraps a fitted classical baseline, and gives a
`Predictor`: its weights, the preprocessing it was trained with (region of interest included),
the backbone's normalisation, its operating threshold and card. Evaluation, prediction, export's
checks and the live monitor all score through it, so they cannot preprocess a frame differently.

The package:

- `predictor`: `Predictor` (frames → the model's input → logits → P(aligned)) and `sigmoid`;
- `load`: `load_predictor` and the three kinds it loads (checkpoint, export, baseline), with
  the preprocessing a checkpoint's run trained with (`preprocess_from`);
- `card`: the model card and the scoring fields inside an exported file, read and checked
  (`read_card`); `barsalign.export` writes them;
- `runtimes`: ONNX Runtime sessions and TorchScript modules as batch → logits.

The names below are the public API, what evaluation, export, prediction, the monitor and the
notebooks import; the modules hold the rest.
"""

from barsalign.inference.card import (
    CARD_KEYS,
    CARD_VERSION,
    EMBEDDED_KEY,
    SCORING_KEYS,
    SUFFIXES,
    card_path,
    embedded_scoring,
    format_of,
    read_card,
    scoring_json,
    sha256,
)
from barsalign.inference.load import (
    as_predictor,
    baseline_predictor,
    check_model_path,
    checkpoint_predictor,
    exported_predictor,
    load_predictor,
    preprocess_from,
)
from barsalign.inference.predictor import Predictor, sigmoid
from barsalign.inference.runtimes import (
    format_logits,
    onnx_session,
    physical_cores,
    session_logits,
)

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
    "session_logits",
    "sha256",
    "sigmoid",
]
