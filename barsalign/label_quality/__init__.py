"""Frames whose label is most likely wrong: out-of-fold scores, then cleanlab's label issues.

The package, in the order `barsalign suspects --data DIR` runs:

- `features`: `SuspectConfig`, and frozen pretrained features of each frame's stopper region
  (cached), the probe's input;
- `suspects`: the grouped out-of-fold probe, cleanlab's ranking and label issues, the suspects
  CSV (written here, read back by the labeler's `order="suspect"`) and its thumbnails;
- `noise`: labels flipped at random, and what `benchmarks/label_noise.py` recorded of how many
  of them the top suspects held;
- `cli`: the `barsalign suspects` command.

The names below are the public API, what the labeler, active learning, notebook 05 and the
benchmarks import; the modules hold the rest.
"""

from barsalign.label_quality.features import FEATURE_BLOCKS, SuspectConfig, region_features
from barsalign.label_quality.noise import (
    flip_labels,
    noise_summary,
    write_labels_csv,
)
from barsalign.label_quality.suspects import (
    COLUMNS,
    NAMES,
    SUSPECTS_FILE,
    find_suspects,
    fit_probe,
    rank_suspects,
    read_suspects,
    suspects_of,
    synthetic_truth,
    thumbnails,
    write_suspects,
)

__all__ = [
    "COLUMNS",
    "FEATURE_BLOCKS",
    "NAMES",
    "SUSPECTS_FILE",
    "SuspectConfig",
    "find_suspects",
    "fit_probe",
    "flip_labels",
    "noise_summary",
    "rank_suspects",
    "read_suspects",
    "region_features",
    "suspects_of",
    "synthetic_truth",
    "thumbnails",
    "write_labels_csv",
    "write_suspects",
]
