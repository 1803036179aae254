"""`barsalign preprocess IN_DIR OUT_DIR`: every frame of a folder preprocessed, for a look."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cv2

from barsalign.config import IMAGE_SUFFIXES
from barsalign.errors import BarsalignError
from barsalign.outputs import atomic_write_bytes, check_output_dir, os_error, refuse_inside
from barsalign.preprocess.config import MODES, PreprocessConfig
from barsalign.preprocess.frames import list_images, read_image
from barsalign.preprocess.pipeline import preprocess


def preprocess_folder(in_dir: str | Path, out_dir: str | Path, cfg: PreprocessConfig) -> dict:
    """Write every frame of `in_dir` processed (PNG, same relative path) to `out_dir`.

    Checked before the first frame is read: `out_dir` is not `in_dir` nor inside it, it can
    be written, and no two inputs map to one output (`a.jpg` and `a.png` both to `a.png`).
    Each PNG is written atomically; a failed write fails the command, naming the file.
    """
    src, dst = Path(in_dir), Path(out_dir)
    if not src.is_dir():
        raise BarsalignError(f"{src}: not a folder")
    files = list_images(src)
    if not files:
        raise BarsalignError(f"{src}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    # 1. one output per input, none of them an input
    refuse_inside(dst, [src], "output folder")
    inputs = {f.resolve() for f in files}
    targets: dict[Path, Path] = {}
    for f in files:
        target = (dst / f.relative_to(src)).with_suffix(".png")
        if target in targets:
            raise BarsalignError(
                f"{targets[target]} and {f} would both be written as {target}: "
                "rename one of them (or preprocess them from separate folders)"
            )
        if target.resolve() in inputs:
            raise BarsalignError(f"{target} is an input frame: choose another output folder")
        targets[target] = f
    check_output_dir(dst, [src])
    # 2. read, preprocess, write
    bad: list[str] = []
    for target, f in targets.items():
        try:
            out = preprocess(read_image(f), cfg)
        except BarsalignError as err:
            bad.append(str(err))
            continue
        ok, buf = cv2.imencode(".png", out)
        if not ok:
            raise BarsalignError(f"{target}: OpenCV could not encode the processed frame as PNG")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise os_error(target.parent, err, "make") from None
        atomic_write_bytes(target, buf.tobytes(), fsync=False)
    return {"written": len(files) - len(bad), "unreadable": bad}


def _cmd_preprocess(args: argparse.Namespace) -> int:
    mask = False if args.no_mask else None
    cfg = PreprocessConfig(target_size=args.size, mode=args.mode, mask_left=mask, roi=args.roi)
    res = preprocess_folder(args.in_dir, args.out_dir, cfg)
    print(f"wrote {res['written']} frames to {args.out_dir}")
    for line in res["unreadable"]:
        print(f"unreadable: {line}")
    if res["unreadable"]:
        raise BarsalignError(f"{len(res['unreadable'])} unreadable file(s) in {args.in_dir}")
    return 0


def add_commands(subparsers: Any) -> None:
    """`barsalign preprocess IN_DIR OUT_DIR --size 384 --mode edges`."""
    p = subparsers.add_parser("preprocess", help="write preprocessed frames for a visual check")
    p.add_argument("in_dir", help="folder of frames (searched recursively)")
    p.add_argument("out_dir", help="where the processed PNGs go (same relative paths)")
    p.add_argument("--size", type=int, default=PreprocessConfig.target_size)
    p.add_argument("--mode", choices=MODES, default=PreprocessConfig.mode)
    p.add_argument("--no-mask", action="store_true", help="keep the left half")
    p.add_argument(
        "--roi", help="crop the region x0,y0,x1,y1 (frame fractions) first; implies --no-mask"
    )
    p.set_defaults(func=_cmd_preprocess)
