"""How stable the region proposal is on label sets an active-learning loop picked.

For each label CSV of a `benchmarks/label_efficiency.py --write-picks` folder (budgets up to
`--max-labels`), the frozen backbone's feature maps of up to `--cap` frames per class are
computed once, and four rules propose a box from them: `propose_roi`'s rule "probe" (100
frames per class drawn with the set's seed, one probe, its class separation measured on the
frames it was fitted on), the same on every frame read, and both again with the separation
averaged over 16 bootstrap probes, each measured on the frames it was not fitted on (out of
bag). Each box is compared with the renderer's stopper box: the share of it covered (0: the box
missed the stopper) and the box's area relative to it. One JSON line per set goes to `--out`;
the summary is printed.

With `--folders`, rendered labelled folders of any look instead (their `metadata.jsonl` is the
truth): for each of `--seeds` draws, the boxes of `propose_roi`'s two rules, `probe` (one probe's
activation map; `current` in files before 2026-12-01) and `local` (the default: a logistic
regression per cell on that cell's features alone, PCA to 32, its 5-fold out-of-fold AUROC as
the map), each scored by the share of the folder's bar heads within 20 px
of the stopper face, and of its face ends, that lie inside the box.

Run: .venv/bin/python benchmarks/roi_stability.py PICKS_DIR [--max-labels 500] [--out FILE]
     .venv/bin/python benchmarks/roi_stability.py --folders DIR [DIR ...] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from barsalign.data.labels import load_labels
from barsalign.preprocess import decode_image, roi_box
from barsalign.roi import (
    KEEP,
    MARGIN,
    MIN_SIDE,
    PROBE_WIDTH,
    _feature_maps,
    _probe_map,
    box_from_map,
    draw_per_class,
    local_map,
)

RULES = ("current", "all_single", "sub_bagged", "all_bagged", "medoid5")


def bagged_map(maps: np.ndarray, labels: np.ndarray, bags: int, seed: int) -> np.ndarray:
    """Mean over bootstrap probes of the out-of-bag |t| of their class-activation maps."""
    from sklearn.linear_model import LogisticRegression

    from barsalign.roi import _welch_t

    rng = np.random.default_rng(seed)
    pooled = maps.mean(axis=(2, 3))
    scale = pooled.std(axis=0) + 1e-6
    every = np.arange(len(labels))
    out = []
    for _ in range(bags):
        fit = rng.choice(every, len(every), replace=True)
        oob = np.setdiff1d(every, fit)
        if len(set(labels[fit])) < 2 or min(np.bincount(labels[oob], minlength=2)) < 3:
            continue
        probe = LogisticRegression(C=0.1, max_iter=3000).fit(pooled[fit] / scale, labels[fit])
        cam = np.einsum("c,nchw->nhw", probe.coef_[0] / scale, maps[oob])
        out.append(_welch_t(cam[labels[oob] == 1], cam[labels[oob] == 0]))
    return np.mean(out, axis=0)


def against_stopper(roi: tuple[float, ...]) -> tuple[float, float]:
    """(share of the renderer's stopper box inside `roi`, area of `roi` / area of that box)."""
    from barsalign.synth.geometry import STOPPER_ROI

    x0, y0, x1, y1 = roi
    a0, b0, a1, b1 = STOPPER_ROI
    inter = max(0.0, min(x1, a1) - max(x0, a0)) * max(0.0, min(y1, b1) - max(y0, b0))
    area = (a1 - a0) * (b1 - b0)
    return inter / area, (x1 - x0) * (y1 - y0) / area


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(
        0.0, min(a[3], b[3]) - max(a[1], b[1])
    )
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def one_set(csv: Path, seed: int, cap: int) -> dict[str, object]:
    """The four rules' boxes for one label set."""

    items = load_labels(csv)
    rng = np.random.default_rng(seed)
    by: dict[int, list[Path]] = {0: [], 1: []}
    for it in items:
        by[int(it.label)].append(it.path)
    for paths in by.values():
        rng.shuffle(paths)
        del paths[cap:]
    labels = np.array([1] * len(by[1]) + [0] * len(by[0]))
    images = [decode_image(p.read_bytes(), str(p)) for p in by[1] + by[0]]
    (w, h), _ = Counter((im.shape[1], im.shape[0]) for im in images).most_common(1)[0]
    maps = _feature_maps(
        images,
        (PROBE_WIDTH, max(64, round(PROBE_WIDTH * h / w / 32) * 32)),
        "tf_efficientnet_lite0",
    )
    draw = np.random.default_rng(seed)
    sub = []
    for c in (1, 0):  # propose_roi's own rule: 100 frames per class
        idx = np.flatnonzero(labels == c)
        draw.shuffle(idx)
        sub += list(idx[:100])
    s = np.array(sub)
    maker: dict[str, Callable[[], np.ndarray]] = {
        "current": lambda: _probe_map(maps[s], labels[s]),
        "all_single": lambda: _probe_map(maps, labels),
        "sub_bagged": lambda: bagged_map(maps[s], labels[s], 16, seed),
        "all_bagged": lambda: bagged_map(maps, labels, 16, seed),
    }
    row: dict[str, object] = {"set": csv.name, "labels": len(items), "read": len(labels)}

    def box(score: np.ndarray) -> tuple[float, ...]:
        score = cv2.GaussianBlur(score.astype(np.float32), (0, 0), 0.7)
        return box_from_map(score, (w, h), keep=KEEP, margin=MARGIN, min_side=MIN_SIDE)

    boxes = []  # five draws of 100 frames per class: the box that agrees most with the others
    for k in range(5):
        draw_k = np.random.default_rng(seed + k)
        sub_k = []
        for c in (1, 0):
            idx = np.flatnonzero(labels == c)
            draw_k.shuffle(idx)
            sub_k += list(idx[:100])
        boxes.append(box(_probe_map(maps[sub_k], labels[sub_k])))
    agree = [sum(iou(b, o) for o in boxes) for b in boxes]
    medoid = boxes[int(np.argmax(agree))]
    for rule, make in {**maker, "medoid5": None}.items():
        roi = medoid if make is None else box(make())
        cover, area = against_stopper(roi)
        row[rule] = {
            "roi": [float(v) for v in roi],
            "cover": round(cover, 3),
            "area": round(area, 2),
        }
    return row


def truth_points(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Bar heads within 20 px of the face, and stopper-face ends, of a rendered folder (px)."""
    near, faces = [], []
    for line in (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        faces += list(row.get("stopper_face_px") or [])
        heads = zip(row.get("heads_px") or [], row.get("gaps_px") or [], strict=False)
        near += [hd for hd, g in heads if g <= 20]
    return np.array(near, float).reshape(-1, 2), np.array(faces, float).reshape(-1, 2)


def folder_rows(folder: Path, seeds: int) -> list[dict[str, object]]:
    """`probe` and `local` boxes for `seeds` draws of propose_roi's frames of one folder."""

    items = load_labels(folder)
    where = {Path(it.path): i for i, it in enumerate(items)}
    images = [decode_image(Path(it.path).read_bytes(), str(it.path)) for it in items]
    labels = np.array([int(it.label) for it in items])
    (w, h), _ = Counter((im.shape[1], im.shape[0]) for im in images).most_common(1)[0]
    size = (PROBE_WIDTH, max(64, round(PROBE_WIDTH * h / w / 32) * 32))
    maps = _feature_maps(images, size, "tf_efficientnet_lite0")
    near, faces = truth_points(folder)
    rows = []
    for seed in range(seeds):
        drawn = draw_per_class([(Path(it.path), it.label) for it in items], 100, seed)
        s = np.array([where[p] for p in drawn[1] + drawn[0]])
        for rule, make in (("probe", _probe_map), ("local", local_map)):
            score = cv2.GaussianBlur(make(maps[s], labels[s]).astype(np.float32), (0, 0), 0.7)
            roi = box_from_map(score, (w, h), keep=KEEP, margin=MARGIN, min_side=MIN_SIDE)
            x0, y0, x1, y1 = roi_box((h, w), roi)

            def inside(p: np.ndarray, x0=x0, y0=y0, x1=x1, y1=y1) -> float:
                ok = (p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1)
                return float(ok.mean()) if len(p) else float("nan")

            rows.append(
                {
                    "folder": str(folder),
                    "seed": seed,
                    "rule": rule,
                    "box_px": [x0, y0, x1, y1],
                    "heads": round(inside(near), 3),
                    "faces": round(inside(faces), 3),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def folders_main(folders: list[Path], seeds: int, out: Path) -> int:
    """The `--folders` mode: rows to `out`, a table per folder and rule printed."""
    rows = [r for f in folders for r in folder_rows(f, seeds)]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(
        "\n| folder | rule | draws | heads inside >= 0.85 | missed (< 0.5) | mean heads "
        "| mean face ends | mean side px |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    keys = [(str(f), r) for f in folders for r in ("probe", "local")]
    for key in [*keys, ("all", "probe"), ("all", "local")]:
        sel = [r for r in rows if r["rule"] == key[1] and key[0] in ("all", r["folder"])]
        hd = np.array([r["heads"] for r in sel], float)
        fc = np.array([r["faces"] for r in sel], float)
        side = [r["box_px"][2] - r["box_px"][0] for r in sel]  # type: ignore[index]
        print(
            f"| {key[0]} | {key[1]} | {len(sel)} | {int((hd >= 0.85).sum())} | "
            f"{int((hd < 0.5).sum())} | {hd.mean():.3f} | {np.nanmean(fc):.3f} "
            f"| {np.mean(side):.0f} |"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("picks", nargs="?", help="a label_efficiency.py --write-picks folder")
    ap.add_argument("--max-labels", type=int, default=500)
    ap.add_argument("--cap", type=int, default=250, help="frames read per class")
    ap.add_argument("--out", default="reports/roi_stability.jsonl")
    ap.add_argument("--folders", nargs="+", type=Path, help="rendered labelled folders instead")
    ap.add_argument("--seeds", type=int, default=5, help="with --folders: draws per folder")
    args = ap.parse_args(argv)
    if args.folders:
        return folders_main(args.folders, args.seeds, Path(args.out))
    if not args.picks:
        ap.error("give a picks folder or --folders")
    where = Path(args.picks)
    picks = json.loads((where / "picks.json").read_text())
    sets = sorted(
        {
            (p["csv"], p["seed"])
            for p in picks
            if p["labels"] != "all" and p["labels"] <= args.max_labels
        }
    )
    rows = []
    with open(args.out, "w") as fh:
        for csv, seed in sets:
            rows.append(one_set(where / csv, seed, args.cap))
            fh.write(json.dumps(rows[-1]) + "\n")
            print(csv, {r: rows[-1][r]["cover"] for r in RULES}, flush=True)  # type: ignore[index]
    print("\n| rule | sets | missed (cover < 0.5) | cover < 0.75 | mean cover | mean area |")
    print("| --- | --- | --- | --- | --- | --- |")
    for rule in RULES:
        c = [r[rule]["cover"] for r in rows]  # type: ignore[index]
        a = [r[rule]["area"] for r in rows]  # type: ignore[index]
        print(
            f"| {rule} | {len(c)} | {sum(x < 0.5 for x in c)} | {sum(x < 0.75 for x in c)} "
            f"| {np.mean(c):.3f} | {np.mean(a):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
