"""Validation F0.5 of a training profile over seeds, beside recipes that change some settings:
how far a change moves the score, against how far the seed alone moves it.

Every run is a real fine-tuning (`modeling.train.run_training`) on the synthetic default, or on
your frames with `--set data_dir=DIR`. The table has one row per recipe: each seed's best
validation F0.5, the mean, the standard deviation and the mean training minutes; with
`--held-out DIR` (a labelled folder; `default` is 05_evaluate's held-out set) also each seed's
F0.5 there at 0.5, from the best checkpoint. The profile itself is always the first row. On
this 2-core CPU a run of conf/cpu.yaml trains its 450 steps in about 10 minutes; on a GPU add
`--set accelerator=gpu --set num_workers=12`.

A recipe is "NAME: key=value; key=value" with FinetuneConfig's keys and YAML values.
Run: .venv/bin/python benchmarks/sweep_recipes.py --seeds 3 \\
         --recipe "no blur: augment={p_blur: 0}" --recipe "pw 1/3: pos_weight=0.333" \\
         [--profile conf/cpu.yaml] [--set key=value ...] [--held-out default|DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from barsalign.config import CONF_DIR
from barsalign.errors import BarsalignError
from barsalign.modeling.train import run_training
from barsalign.modeling.train_config import CONFIG_KEYS, FinetuneConfig, load_profile


def parse_settings(text: str, where: str) -> dict[str, Any]:
    """`key=value; key=value` (YAML values) into a dict of FinetuneConfig keys."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in CONFIG_KEYS:
            raise BarsalignError(f"{where}: {part!r} is not key=value with a FinetuneConfig key")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise BarsalignError(f"{where}: {key}'s value {value!r} is not YAML ({err})") from None
    return out


def parse_recipe(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME: key=value; ...` into (name, settings)."""
    name, sep, rest = text.partition(":")
    if not sep or not name.strip():
        raise BarsalignError(f"recipe {text!r}: expected 'NAME: key=value; key=value'")
    return name.strip(), parse_settings(rest, f"recipe {name.strip()!r}")


def held_out_f05(checkpoint: Path, data: Any, tracking: bool = True) -> float:
    """F0.5 at 0.5 of a checkpoint on a labelled set (`evaluate.LabelledSet`); with
    `tracking` an MLflow evaluation run, its F0.5 on the training run (`heldout_f05`)."""
    from barsalign.evaluation.evaluate import evaluate_scorer, load_scorer

    row, _ = evaluate_scorer(load_scorer(checkpoint), data, latency_frames=1, tracking=tracking)
    if row["unreadable"]:
        raise BarsalignError(f"{data.root}: {row['unreadable']} unreadable frame(s)")
    return float(row["f05"])


def sweep(
    base: dict[str, Any],
    recipes: list[tuple[str, dict[str, Any]]],
    seeds: int,
    out: Path,
    held_out: Any = None,
) -> list[dict[str, Any]]:
    """One row per recipe with each seed's best validation F0.5 and the training minutes, and
    the held-out F0.5 per seed when `held_out` (an `evaluate.LabelledSet`) is given."""
    rows = []
    for name, changes in [("profile", {}), *recipes]:
        scores, minutes, held = [], [], []
        slug = "".join(c if c.isalnum() else "_" for c in name)
        for seed in range(seeds):
            run = out / f"{slug}_s{seed}"
            params = {**base, **changes, "seed": seed, "run_name": run.name, "run_dir": str(run)}
            summary = run_training(FinetuneConfig(**params))
            scores.append(float(summary["best_f05"]))
            minutes.append(float(summary["seconds"]) / 60.0)
            said = f"  {name} seed {seed}: F0.5 {scores[-1]:.3f}"
            if held_out is not None:
                ckpt = run / "checkpoints" / "best.ckpt"
                held.append(held_out_f05(ckpt, held_out, bool(params.get("tracking", True))))
                said += f", held-out {held[-1]:.3f}"
            print(said, file=sys.stderr, flush=True)
        row = {
            "recipe": name,
            "changes": changes,
            "f05": scores,
            "mean": statistics.fmean(scores),
            "sd": statistics.stdev(scores) if len(scores) > 1 else float("nan"),
            "minutes": statistics.fmean(minutes),
        }
        if held_out is not None:
            row["held_out_f05"], row["held_out_mean"] = held, statistics.fmean(held)
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    held = any("held_out_f05" in r for r in rows)
    extra = (" held-out F0.5 per seed | held-out mean |", " --- | --- |") if held else ("", "")
    lines = [
        "| recipe | changes | val F0.5 per seed | mean | sd | minutes |" + extra[0],
        "| --- | --- | --- | --- | --- | --- |" + extra[1],
    ]
    for r in rows:
        changes = "; ".join(f"{k}={v}" for k, v in r["changes"].items()) or "-"
        per_seed = ", ".join(f"{s:.3f}" for s in r["f05"])
        line = (
            f"| {r['recipe']} | {changes} | {per_seed} | {r['mean']:.3f} | {r['sd']:.3f} "
            f"| {r['minutes']:.1f} |"
        )
        if held:
            line += (
                f" {', '.join(f'{s:.3f}' for s in r['held_out_f05'])} | {r['held_out_mean']:.3f} |"
            )
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(CONF_DIR / "cpu.yaml"))
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 for every recipe")
    ap.add_argument("--recipe", action="append", default=[], help="'NAME: key=value; ...'")
    ap.add_argument("--set", action="append", default=[], help="key=value for every run")
    ap.add_argument("--out", help="run folders and sweep.json (default: a temporary folder)")
    ap.add_argument(
        "--held-out", help="also score each run on this labelled folder ('default': 05_evaluate's)"
    )
    args = ap.parse_args(argv)
    try:
        if args.seeds < 1:
            raise BarsalignError(f"--seeds must be >= 1, not {args.seeds}")
        base = load_profile(args.profile)
        for text in args.set:
            base.update(parse_settings(text, f"--set {text!r}"))
        recipes = [parse_recipe(t) for t in args.recipe]
        FinetuneConfig(**base)
        for name, changes in recipes:  # a bad value fails before the first run, not after it
            try:
                FinetuneConfig(**{**base, **changes})
            except BarsalignError as err:
                raise BarsalignError(f"recipe {name!r}: {err}") from None
        held_out = None
        if args.held_out:
            from barsalign.evaluation.evaluate import ensure_held_out, labelled_folder
            from barsalign.preprocess import read_image

            folder = ensure_held_out() if args.held_out == "default" else Path(args.held_out)
            held_out = labelled_folder(folder)
            if len(set(held_out.labels.tolist())) < 2:
                raise BarsalignError(f"--held-out {folder}: needs aligned and not_aligned frames")
            for path in held_out.paths:  # a bad frame fails here, not after the first run
                read_image(path)
    except BarsalignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sweep_"))
    out.mkdir(parents=True, exist_ok=True)
    rows = sweep(base, recipes, args.seeds, out, held_out)
    (out / "sweep.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{Path(args.profile).name}, seeds 0-{args.seeds - 1}, runs in {out}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
