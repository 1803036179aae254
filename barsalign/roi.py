"""Where the decision is made: a stopper region proposed from the labelled frames themselves.

The classifier must see the few pixels where a bar head meets the stopper, and a whole frame
shrunk to the network's input leaves a 3-8 px gap at 1-2 px. A camera of the user's own has no
known stopper box, so the region is found from the labels.

Raw pixels do not find it: the classes differ everywhere (empty tables, rolling bars, light),
and most of all at the bed's edges. So `propose_roi` asks pretrained features instead: every
frame goes once through the frozen ImageNet backbone at a coarse size, and each cell of its
last feature map is scored by how well that cell's features alone tell aligned from not
aligned: a logistic regression per cell, its out-of-fold AUROC the cell's score (rule "local",
the default). Rule "probe" scores the cells by one linear probe on the pooled features instead,
through its class-activation map (the probe's weights applied at every cell, Zhou et al. 2016):
it gives tighter squares where it holds, but boxes the far side of the frame more often on
cameras unlike the default (docs/experiments.md, 2026-12-01). The cells scoring best form the
core; the region is the box around them, grown by a small margin for camera shifts and squared
in pixels (centred on the best cell where the core is larger than a square the frame holds).
Weak evidence gives the whole frame and says so.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from barsalign.data.labels import load_labels
from barsalign.errors import BarsalignError
from barsalign.outputs import atomic_write_bytes, check_output_file
from barsalign.preprocess import decode_image, roi_box

Roi = tuple[float, float, float, float]
PROBE_WIDTH = 640  # frames are shrunk to this width (aspect kept) for the probe's features
MIN_EVIDENCE = 3.0  # the best cell's score below this: the labels point nowhere in particular
KEEP = 0.8  # cells scoring at least this share of the best one form the region's core
MARGIN = 0.03  # added around the core for camera shifts, as a share of the frame's longer side
MIN_SIDE = 0.5  # the region's least side, as a share of the frame's shorter side
RULES = ("local", "probe")  # how a cell's evidence is scored (module doc); the first is the default
LOCAL_DIMS = 32  # rule "local": each cell's features are reduced to this many by PCA


@dataclass(frozen=True)
class RoiProposal:
    """A proposed region with the evidence behind it.

    Args:
        roi: (x0, y0, x1, y1) as frame fractions, or None for the whole frame.
        score_map: per-cell evidence of the rule's map (see `evidence` for its scale).
        evidence: the best cell's score; below `MIN_EVIDENCE` the proposal is the whole frame
            (rule "probe": |t|; rule "local": (AUROC - 0.5) x 20, so 3 is an AUROC of 0.65).
        frame_size: (width, height) of the frames the map was computed on.
        n_frames: {"aligned": n, "not_aligned": n} frames used.
        reason: one line saying what was chosen and why.
    """

    roi: Roi | None
    score_map: np.ndarray
    evidence: float
    frame_size: tuple[int, int]
    n_frames: dict[str, int]
    reason: str


def _welch_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-element |t| between two stacks of samples (axis 0)."""
    va = a.var(axis=0, ddof=1) / len(a)
    vb = b.var(axis=0, ddof=1) / len(b)
    return np.abs(a.mean(axis=0) - b.mean(axis=0)) / np.sqrt(va + vb + 1e-6)


def square_box(
    box: tuple[float, float, float, float],
    frame: tuple[int, int],
    min_side: float,
    focus: tuple[float, float] | None = None,
) -> Roi:
    """Grow a pixel box to a square of at least `min_side` px around its centre, inside the
    frame (shifted, not cut, at the borders); returned as frame fractions. Along a side the
    square cannot hold, it centres on `focus` (x, y px) instead, when one is given."""
    w, h = frame
    x0, y0, x1, y1 = box
    side = min(max(x1 - x0, y1 - y0, min_side), w, h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if focus is not None and x1 - x0 > side:
        cx = focus[0]
    if focus is not None and y1 - y0 > side:
        cy = focus[1]
    nx0 = float(np.clip(cx - side / 2, 0, w - side))
    ny0 = float(np.clip(cy - side / 2, 0, h - side))
    return (
        round(nx0 / w, 4),
        round(ny0 / h, 4),
        round((nx0 + side) / w, 4),
        round((ny0 + side) / h, 4),
    )


def box_from_map(
    score: np.ndarray, frame: tuple[int, int], keep: float, margin: float, min_side: float
) -> Roi:
    """The square region around the connected cells that score at least `keep` times the best
    one, centred on the best cell where the square cannot hold them all (see `propose_roi`)."""
    w, h = frame
    core = (score >= keep * float(score.max())).astype(np.uint8)
    _, comp = cv2.connectedComponents(core)
    peak = np.unravel_index(int(np.argmax(score)), score.shape)
    ys, xs = np.nonzero(comp == comp[peak])
    cell_w, cell_h = w / score.shape[1], h / score.shape[0]
    pad = margin * max(w, h)
    box = (
        max(0.0, xs.min() * cell_w - pad),
        max(0.0, ys.min() * cell_h - pad),
        min(float(w), (xs.max() + 1) * cell_w + pad),
        min(float(h), (ys.max() + 1) * cell_h + pad),
    )
    focus = ((peak[1] + 0.5) * cell_w, (peak[0] + 0.5) * cell_h)
    return square_box(box, frame, min_side * min(w, h), focus)


def _feature_maps(images: list[np.ndarray], size: tuple[int, int], backbone: str) -> np.ndarray:
    """The frozen pretrained backbone's last feature maps, [N, C, h, w], one frame at a time."""
    import torch

    from barsalign.modeling.backbones import create_backbone, data_config

    model, _ = create_backbone(backbone, weights="imagenet")  # as measured; cache keys assume it
    model.eval()
    dc = data_config(model, size[0])
    mean = np.asarray(dc["mean"], np.float32).reshape(3, 1, 1)
    std = np.asarray(dc["std"], np.float32).reshape(3, 1, 1)
    out = []
    with torch.inference_mode():
        for img in images:
            rgb = cv2.resize(img, size, interpolation=cv2.INTER_AREA)[:, :, ::-1]
            x = (rgb.transpose(2, 0, 1).astype(np.float32) / 255.0 - mean) / std
            out.append(model.forward_features(torch.from_numpy(x[None]))[0].numpy())
    return np.stack(out)


def _probe_map(maps: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-cell |t| between the classes of a linear probe's class-activation map."""
    from sklearn.linear_model import LogisticRegression

    pooled = maps.mean(axis=(2, 3))
    scale = pooled.std(axis=0) + 1e-6
    probe = LogisticRegression(C=0.1, max_iter=3000).fit(pooled / scale, labels)
    cam = np.einsum("c,nchw->nhw", probe.coef_[0] / scale, maps)
    return _welch_t(cam[labels == 1], cam[labels == 0])


def local_map(maps: np.ndarray, labels: np.ndarray, dims: int = LOCAL_DIMS) -> np.ndarray:
    """Per cell, how well that cell's features alone tell the classes apart: the 5-fold
    out-of-fold AUROC of a logistic regression on them (PCA to `dims`), above chance, x 20."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    n, c, h, w = maps.shape
    cells = maps.transpose(0, 2, 3, 1).reshape(-1, c)
    dims = min(dims, c, len(cells))
    fit = np.random.default_rng(0).choice(len(cells), min(len(cells), 20000), replace=False)
    z = PCA(dims, random_state=0).fit(cells[fit]).transform(cells).reshape(n, h, w, dims)
    z = z / (z.reshape(-1, dims).std(axis=0) + 1e-6)
    folds = min(5, int(np.bincount(labels, minlength=2).min()))
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(z[:, 0, 0], labels))
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            pred = np.zeros(n)
            for tr, te in splits:
                probe = LogisticRegression(C=0.1, max_iter=2000).fit(z[tr, i, j], labels[tr])
                pred[te] = probe.decision_function(z[te, i, j])
            out[i, j] = roc_auc_score(labels, pred)
    return np.clip(out - 0.5, 0, None) * 20


def draw_per_class(
    frames: Sequence[tuple[Path, int]], max_per_class: int, seed: int
) -> dict[int, list[Path]]:
    """Up to `max_per_class` frames of each class (1 aligned, 0 not), drawn at random with
    `seed`: the frames `propose_roi` reads."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Path]] = {0: [], 1: []}
    for path, label in frames:
        by_class[int(label)].append(Path(path))
    for label, paths in by_class.items():
        if len(paths) < 2:
            name = "aligned" if label else "not_aligned"
            raise BarsalignError(
                f"a region needs labelled frames of both classes: {len(paths)} {name} frame(s)"
            )
        rng.shuffle(paths)
        del paths[max_per_class:]
    return by_class


def propose_roi(
    frames: Sequence[tuple[Path, int]],
    max_per_class: int = 100,
    keep: float = KEEP,
    margin: float = MARGIN,
    min_side: float = MIN_SIDE,
    backbone: str = "tf_efficientnet_lite0",
    seed: int = 0,
    rule: str = RULES[0],
) -> RoiProposal:
    """Propose the stopper region from labelled frames (aligned = 1).

    Args:
        frames: (path, label) pairs; up to `max_per_class` of each class are read.
        keep: cells scoring at least `keep` times the best one form the region's core.
        margin: added around the core on every side, as a fraction of the frame's longer side.
        min_side: the region's least side, as a fraction of the frame's shorter side.
        rule: how a cell is scored: "local" (a probe per cell) or "probe" (one probe's
            activation map); see the module doc.
    """
    if rule not in RULES:
        raise BarsalignError(f"roi rule must be one of {', '.join(RULES)}, not {rule!r}")
    by_class = draw_per_class(frames, max_per_class, seed)
    # 1. the frames at their most common size (others are resized to it)
    paths = by_class[1] + by_class[0]
    labels = np.array([1] * len(by_class[1]) + [0] * len(by_class[0]))
    images = [decode_image(p.read_bytes(), str(p)) for p in paths]
    (w, h), _ = Counter((im.shape[1], im.shape[0]) for im in images).most_common(1)[0]
    size = (PROBE_WIDTH, max(64, round(PROBE_WIDTH * h / w / 32) * 32))
    # 2. which cells carry the decision, by the rule's map, smoothed a little
    score_of = _probe_map if rule == "probe" else local_map
    score = score_of(_feature_maps(images, size, backbone), labels).astype(np.float32)
    score = cv2.GaussianBlur(score, (0, 0), 0.7)
    n = {"aligned": len(by_class[1]), "not_aligned": len(by_class[0])}
    best = float(score.max())
    if best < MIN_EVIDENCE:
        reason = (
            f"whole frame: no part of the frame separates aligned from not-aligned frames "
            f"(best cell {best:.1f} < {MIN_EVIDENCE}, rule {rule}); pass --roi to choose one"
        )
        return RoiProposal(None, score, best, (w, h), n, reason)
    # 3. the box around the best cells, grown by the margin and squared
    roi = box_from_map(score, (w, h), keep=keep, margin=margin, min_side=min_side)
    px = roi_box((h, w), roi)
    reason = (
        f"where aligned and not-aligned frames differ most for pretrained features (rule "
        f"{rule}, best cell {best:.1f}, {n['aligned']} + {n['not_aligned']} frames): "
        f"{px[2] - px[0]}x{px[3] - px[1]} px at ({px[0]}, {px[1]}) of {w}x{h}"
    )
    return RoiProposal(roi, score, best, (w, h), n, reason)


def draw_proposal(
    frames: Sequence[Path], proposal: RoiProposal, out: Path, columns: int = 3
) -> Path:
    """Sample frames with the score map and the proposed box drawn on them, one PNG."""
    w, h = proposal.frame_size
    box = roi_box((h, w), proposal.roi) if proposal.roi else (0, 0, w, h)
    heat = proposal.score_map / max(proposal.score_map.max(), 1e-6)
    heat = cv2.resize((255 * heat).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    heat = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    tiles = []
    for path in frames:
        img = cv2.resize(decode_image(Path(path).read_bytes(), str(path)), (w, h))
        vis = cv2.addWeighted(img, 0.65, heat, 0.35, 0)
        cv2.rectangle(vis, box[:2], box[2:], (0, 255, 255), max(2, w // 300))
        tiles.append(cv2.resize(vis, (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    ok, buf = cv2.imencode(".png", np.vstack(rows))
    if not ok:
        raise BarsalignError(f"{out}: could not encode the picture")
    return atomic_write_bytes(out, buf.tobytes())


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "roi",
        help="propose the stopper region from labelled frames and draw it",
        description="Propose the region training crops to (what `train --roi auto` uses) from "
        "labelled frames, print it, and draw it with the evidence map on sample frames.",
    )
    p.add_argument("--data", dest="data_dir", required=True, help="labelled frames")
    p.add_argument("--out", default="roi.png", help="the picture (PNG; default roi.png)")
    p.add_argument("--samples", type=int, default=6, help="frames drawn (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rule", choices=RULES, default=RULES[0], help=f"how cells are scored (default {RULES[0]})"
    )
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise BarsalignError(f"--out {out}: the picture is a PNG, name it *.png")
    check_output_file(out, what="--out")
    if args.samples < 1:
        raise BarsalignError(f"--samples must be >= 1, not {args.samples}")
    items = load_labels(args.data_dir)
    proposal = propose_roi([(it.path, it.label) for it in items], seed=args.seed, rule=args.rule)
    step = max(1, len(items) // args.samples)
    draw_proposal([it.path for it in items[::step][: args.samples]], proposal, out)
    roi = ",".join(f"{v:g}" for v in proposal.roi) if proposal.roi else "none"
    print(f"roi {roi}  ({proposal.reason})")
    print(f"drawn on {min(args.samples, len(items))} frames: {out}")
    return 0
