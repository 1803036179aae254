"""Pretrain on the renderer's looks: a backbone that has seen other stoppers before yours.

Every frame of the source looks' rendered sets (`data/looks/NAME/{train,test}`, rendered by
benchmarks/looks.py) is cut to its look's stopper box (`look.json` `stopper_roi`, the renderer's
own box, grown to a square) and written, resized to `--side` px, into one labelled folder; the
looks' `val` splits make the validation folder. The default recipe then trains on those crops
with no region of its own. `--exclude` keeps looks out of the sources, so a look can be scored
with a backbone that never saw it:

    .venv/bin/python benchmarks/pretrain_looks.py --exclude left_low top_down --out OUT
    .venv/bin/python benchmarks/looks.py --looks left_low top_down \\
        --set pretrained_path=OUT/run/checkpoints/best.ckpt --out reports/looks_pre

`--render-seed S [S ...]` crops sets rendered from those seeds instead (600 train and 60 val
frames per look and seed, `data/looks_pretrain/NAME_sS`), so no frame of the benchmark's sets is
seen; `--save FILE` writes the trained backbone alone as safetensors (the file
`barsalign/weights/` ships).

Run: .venv/bin/python benchmarks/pretrain_looks.py [--looks ...] [--exclude ...] [--side 320]
         [--render-seed S ...] [--save FILE] [--set key=value ...] [--out reports/pretrain_looks]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2

from barsalign.config import DATA_DIR, REPORTS_DIR
from barsalign.data.labels import folder_path
from barsalign.errors import BarsalignError
from barsalign.modeling.train_config import parse_settings
from barsalign.preprocess import read_image
from barsalign.roi import square_box
from barsalign.synth.looks import LOOKS

LOOKS_DIR = DATA_DIR / "looks"
PRETRAIN_DIR = DATA_DIR / "looks_pretrain"
PRETRAIN_FRAMES = {"n_train": 600, "n_val": 60, "n_test": 0}
"""Frames per look of a `--render-seed` set: as many as a benchmark set's train and test."""


def fresh_sets(look: str, seed: int, root: Path = PRETRAIN_DIR) -> Path:
    """The look's pretraining sets rendered from `seed` (rendered first when missing)."""
    from barsalign.synth import render_look_sets

    out = root / f"{look}_s{seed}"
    if not (out / "look.json").is_file():
        render_look_sets(look, out, seed=seed, **PRETRAIN_FRAMES)
    return out


def save_backbone(checkpoint: Path, target: Path) -> int:
    """Write the checkpoint's backbone tensors (our head left out) as float16 safetensors;
    returns the number of tensors."""
    import torch
    from safetensors.torch import save_file

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    backbone = {
        k[len("backbone.") :]: v.to(torch.float16) if v.is_floating_point() else v
        for k, v in state.items()
        if k.startswith("backbone.")
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in backbone.items()}, str(target))
    return len(backbone)


def crop_look(
    look_dir: Path, splits: tuple[str, ...], out: Path, side: int, tag: str | None = None
) -> int:
    """Write `look_dir`'s frames of `splits`, cut to the look's stopper square, into `out`,
    named `<tag>_<split>_<file>` (`tag`: the look's name unless given, e.g. one per seed)."""
    info = json.loads((look_dir / "look.json").read_text(encoding="utf-8"))
    fx0, fy0, fx1, fy1 = info["stopper_roi"]
    n = 0
    for split in splits:
        for line in (look_dir / split / "metadata.jsonl").read_text(encoding="utf-8").splitlines():
            meta = json.loads(line)
            image = read_image(look_dir / split / meta["file"])
            h, w = image.shape[:2]
            box = (fx0 * w, fy0 * h, fx1 * w, fy1 * h)
            x0, y0, x1, y1 = square_box(box, (w, h), 0.0)
            crop = image[round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w)]
            crop = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
            name = f"{tag or info['look']}_{split}_{Path(meta['file']).name}"
            target = out / folder_path(meta["label"], name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), crop, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise BarsalignError(f"{target}: could not be written")
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--looks", nargs="+", default=list(LOOKS), help="source looks")
    ap.add_argument("--exclude", nargs="*", default=[], help="looks kept out of the sources")
    ap.add_argument("--side", type=int, default=320, help="crop side written, px")
    ap.add_argument(
        "--render-seed", type=int, nargs="+", help="crop fresh sets rendered from these seeds"
    )
    ap.add_argument("--save", type=Path, help="write the trained backbone here (safetensors)")
    ap.add_argument("--set", action="append", default=[], help="key=value: a recipe setting")
    ap.add_argument("--out", type=Path, default=REPORTS_DIR / "pretrain_looks")
    args = ap.parse_args(argv)
    sources = [lk for lk in args.looks if lk not in set(args.exclude)]
    if args.render_seed:
        dirs = [(lk, fresh_sets(lk, seed)) for lk in sources for seed in args.render_seed]
        splits: tuple[str, ...] = ("train",)
    else:
        dirs = [(lk, LOOKS_DIR / lk) for lk in sources]
        splits = ("train", "test")
    missing = [lk for lk, d in dirs if not (d / "look.json").is_file()]
    if missing or not sources:
        raise BarsalignError(
            f"looks not rendered under {LOOKS_DIR}: {missing or 'none chosen'} "
            "(benchmarks/looks.py renders them)"
        )
    train_dir, val_dir = args.out / "crops_train", args.out / "crops_val"
    for look, look_dir in dirs:
        tag = look_dir.name if args.render_seed else look
        n_train = crop_look(look_dir, splits, train_dir, args.side, tag)
        n_val = crop_look(look_dir, ("val",), val_dir, args.side, tag)
        print(f"{tag}: {n_train} training crops, {n_val} validation crops", flush=True)

    from barsalign.modeling.train import run_training
    from barsalign.modeling.train_config import FinetuneConfig

    params: dict[str, Any] = {
        "data_dir": str(train_dir),
        "val_data_dir": str(val_dir),
        "roi": None,
        "run_dir": str(args.out / "run"),
        "run_name": f"pretrain_{'_'.join(sources)}",
        "weights": "imagenet",
        "overwrite": True,
    }
    params.update(parse_settings(args.set))
    summary = run_training(FinetuneConfig(**params))
    best = args.out / "run" / "checkpoints" / "best.ckpt"
    print(
        f"pretrained on {', '.join(sources)}: val F0.5 {summary['best_f05']}, "
        f"{summary['steps']} steps, {best}"
    )
    if args.save:
        print(f"saved {save_backbone(best, args.save)} backbone tensors to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
