"""Label noise made and measured: labels flipped at random, and what `benchmarks/label_noise.py`
recorded of how many flips the top suspects held."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from barsalign.data.labels import write_csv_labels
from barsalign.errors import BarsalignError

if TYPE_CHECKING:
    import pandas as pd

    from barsalign.data import Item


def flip_labels(items: Sequence[Item], share: float, seed: int = 0) -> tuple[list[Item], list[int]]:
    """The items with `share` of their labels flipped at random (seeded), and which ones."""
    if not 0 < share < 1:
        raise BarsalignError(f"share must lie in (0, 1), not {share}")
    flipped = sorted(random.Random(seed).sample(range(len(items)), round(share * len(items))))
    out = list(items)
    for i in flipped:
        out[i] = dataclasses.replace(out[i], label=1 - out[i].label)
    return out, flipped


def write_labels_csv(items: Sequence[Item], path: str | Path) -> Path:
    """Items as a labels CSV with absolute paths (`data.labels.write_csv_labels`)."""
    return write_csv_labels([(Path(it.path).resolve(), it.label) for it in items], path)


def recorded_noise(root: str | Path) -> pd.DataFrame:
    """benchmarks/label_noise.py's results under `root` (every `label_noise.json`), one row
    each: flip seed, how the scores were made (probe or fine-tunings; features, C, folds),
    flips, flips in the top suspects and their share, held-out F0.5 of the flipped and the
    relabelled labels; empty when none was recorded."""
    import pandas as pd

    rows = []
    for path in sorted(Path(root).rglob("label_noise.json")):
        try:
            r = json.loads(path.read_text(encoding="utf-8"))
            cfg = r.get("suspect_config") or {"features": ["head"], "C": r["settings"]["C"]}
            rows.append(
                {
                    "seed": r.get("seed", cfg.get("seed")),
                    "scores": r.get("scores", "probe"),
                    "features": "+".join(cfg["features"]),
                    "C": cfg["C"],
                    "folds": cfg.get("folds", 5),
                    "frames": r["frames"],
                    "flips": r["flipped"],
                    "top": r["top"],
                    "flips in top": r["flips_in_top"],
                    "share found": r["share_found"],
                    "F0.5 flipped": r["held_out_f05"]["flipped"],
                    "F0.5 relabelled": r["held_out_f05"]["relabelled"],
                    "file": str(path),
                }
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise BarsalignError(f"{path}: not a label_noise.json ({err})") from None
    return pd.DataFrame(rows)


def noise_summary(root: str | Path) -> str:
    """A markdown paragraph for the report: the share of flipped labels the top suspects held,
    per probe (mean over the flip seeds measured), or a line saying it was not measured."""
    df = recorded_noise(root)
    if df.empty:
        return (
            f"**Not measured**: no `label_noise.json` under `{root}` (run "
            "`benchmarks/label_noise.py` to measure how many flipped labels the suspects hold)."
        )
    lines = []
    for (scores, features, c, folds), g in df.groupby(
        ["scores", "features", "C", "folds"], sort=False
    ):
        per_seed = ", ".join(
            f"seed {int(r['seed'])}: {r['flips in top']} of {r['flips']}"
            for _, r in g.sort_values("seed").iterrows()
        )
        how = (
            f"one fine-tuning per fold ({folds} folds)"
            if scores == "finetune"
            else f"probe on `{features}` (C {c:g}, {folds} folds)"
        )
        lines.append(
            f"- {how}: the top {int(g['top'].iloc[0])} of "
            f"{int(g['frames'].iloc[0])} suspects held **{g['share found'].mean():.0%}** of the "
            f"flipped labels on average "
            f"({per_seed}); held-out F0.5 {g['F0.5 flipped'].mean():.3f} with the flipped "
            f"labels, {g['F0.5 relabelled'].mean():.3f} after relabelling the top suspects"
        )
    return (
        "Recorded by `benchmarks/label_noise.py` (labels flipped at random, found from the "
        "flipped labels alone; one line per way of scoring):\n\n" + "\n".join(lines)
    )
