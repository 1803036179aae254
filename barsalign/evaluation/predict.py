"""`barsalign evaluate` and `barsalign predict`: score a folder with a checkpoint or export.

The plant's contract: a folder with `aligned/` and `not_aligned/` in, F0.5 out. `predict` also
takes any folder of frames and writes a CSV of path, score, label.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.data.labels import is_layout
from barsalign.errors import BarsalignError
from barsalign.evaluation.evaluate import (
    evaluate_scores,
    labelled_folder,
    score_paths,
    track_evaluation,
    write_json,
)
from barsalign.evaluation.metrics import check_precision_target, check_threshold
from barsalign.inference import Predictor, card_path, check_model_path, load_predictor
from barsalign.outputs import atomic_write_text, check_output_file
from barsalign.viz.eda import require_images

METRIC_ROWS = ("f05", "f1", "accuracy", "precision", "recall", "auroc")


def format_metrics(m: dict[str, Any]) -> str:
    """The metric table as aligned text lines (what the commands print)."""
    lines = [f"{'frames':<22}{m['n']} ({m['n_aligned']} aligned)"]
    for key in METRIC_ROWS:
        value = m.get(key)
        text = "undefined (one class only)" if value is None else f"{value:.4f}"
        lines.append(f"{key:<22}{text}")
    lines.append(f"{'threshold':<22}{m['threshold']:.4f}")
    lines.append(f"{'confusion tp/fp/fn/tn':<22}{m['tp']}/{m['fp']}/{m['fn']}/{m['tn']}")
    if "threshold_f05" in m:
        lines.append(f"{'threshold max F0.5':<22}{m['threshold_f05']:.4f}")
        tp = m.get("threshold_precision")
        tp_text = "not reached" if tp is None else f"{tp:.4f}"
        lines.append(f"{'threshold P>=' + format(m['precision_target'], 'g'):<22}{tp_text}")
    return "\n".join(lines)


def _model_inputs(model: str | Path) -> list[Path]:
    """The files a model run reads (the model and, for exports, its card), checked to exist:
    they are never outputs."""
    return [check_model_path(model), card_path(model)]


def _threshold(predictor: Predictor, given: float | None) -> float:
    """The decision threshold: the one given, else the model card's, else 0.5 (all checked)."""
    if given is not None:
        return check_threshold(given, "--threshold")
    return check_threshold(predictor.decision_threshold, f"{predictor.source}: threshold")


def predict_folder(
    model: str | Path, source: str | Path, out_csv: str | Path, threshold: float | None = None
) -> dict[str, Any]:
    """Score every image under `source` into a CSV; metrics too when it has the class layout.

    The threshold, the source and the output path are checked before the model is loaded;
    the CSV is written atomically once every frame is scored.
    """
    if threshold is not None:
        check_threshold(threshold, "--threshold")
    inputs = _model_inputs(model)
    source = Path(source)
    if not source.is_dir():
        raise BarsalignError(f"--source {source} is not a folder")
    out_csv = check_output_file(out_csv, inputs, "--out")
    data = labelled_folder(source) if is_layout(source) else None
    paths = data.paths if data else require_images(source)
    predictor = load_predictor(model)
    thr = _threshold(predictor, threshold)
    scores, bad, ms = score_paths(predictor, paths)
    reasons = dict(bad)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "score", "label"])
    for p, s in zip(paths, scores, strict=True):
        if np.isnan(s):
            writer.writerow([str(p), "", "unreadable"])
        else:
            writer.writerow([str(p), f"{s:.6f}", "aligned" if s >= thr else "not_aligned"])
    atomic_write_text(out_csv, buf.getvalue())
    result: dict[str, Any] = {
        "frames": len(paths),
        "unreadable": sorted(reasons),
        "ms_per_frame": ms,
        "threshold": thr,
        "csv": str(out_csv),
    }
    if data is not None:
        ok = ~np.isnan(scores)
        if ok.any():
            result["metrics"] = evaluate_scores(data.labels[ok], scores[ok], thr)
    return result


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    e = subparsers.add_parser("evaluate", help="metrics of a model on a labelled folder")
    e.add_argument("--model", required=True, type=Path, help="a .ckpt checkpoint or .onnx export")
    e.add_argument(
        "--data",
        required=True,
        type=Path,
        help="folder with aligned/ and not_aligned/ (or a synthetic data set)",
    )
    e.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold (default: the model card's, else 0.5)",
    )
    e.add_argument("--precision-target", type=float, default=0.99)
    e.add_argument("--json", type=Path, default=Path("evaluation.json"), help="where to write")
    e.add_argument("--no-tracking", dest="tracking", action="store_false", help="no MLflow run")
    e.set_defaults(func=_evaluate_cli)
    p = subparsers.add_parser("predict", help="score a folder of frames into a CSV")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--source", required=True, type=Path, help="folder of frames")
    p.add_argument("--out", type=Path, default=Path("predictions.csv"))
    p.add_argument("--threshold", type=float, default=None)
    p.set_defaults(func=_predict_cli)


def _report_unreadable(bad: list[str]) -> None:
    if bad:
        print(f"{len(bad)} unreadable frame(s), not scored:", file=sys.stderr)
        for path in bad:
            print(f"  {path}", file=sys.stderr)


def _evaluate_cli(args: argparse.Namespace) -> int:
    # 1. arguments and the output path, before any frame is scored
    if args.threshold is not None:
        check_threshold(args.threshold, "--threshold")
    check_precision_target(args.precision_target, "--precision-target")
    inputs = _model_inputs(args.model)
    data = labelled_folder(args.data)
    check_output_file(args.json, inputs, "--json")
    if args.tracking:  # a tracker that does not answer fails before the frames are scored
        from barsalign import tracking

        tracking.client()
    # 2. score, report, write
    predictor = load_predictor(args.model)
    thr = _threshold(predictor, args.threshold)
    scores, bad, ms = score_paths(predictor, data.paths)
    _report_unreadable([b[0] for b in bad])
    ok = ~np.isnan(scores)
    if not ok.any():
        raise BarsalignError(f"no readable frames in {data.root}")
    m = evaluate_scores(data.labels[ok], scores[ok], thr, args.precision_target)
    print(f"model {args.model} on {data.root}")
    print(format_metrics(m))
    print(f"{'ms per frame':<22}{ms:.1f}")
    write_json(
        args.json,
        {
            "model": str(args.model),
            "data": str(data.root),
            **m,
            "ms_per_frame": ms,
            "unreadable": [b[0] for b in bad],
        },
    )
    print(f"wrote {args.json}")
    # 3. the MLflow run, and held-out metrics on the training run it scores
    if args.tracking:
        card = inputs[1] if inputs[1].is_file() else None
        given = "given" if args.threshold is not None else None
        source = given or ("model card" if card else "default 0.5")
        run = track_evaluation(
            predictor,
            data,
            scores,
            {**m, "ms_per_frame": ms, "unreadable": len(bad)},
            source,
            [args.json, *([card] if card else [])],
        )
        print(f"tracked as MLflow run {run['run_id']} in {tracking.tracking_uri()}")
    return 0


def _predict_cli(args: argparse.Namespace) -> int:
    result = predict_folder(args.model, args.source, args.out, args.threshold)
    _report_unreadable(result["unreadable"])
    print(
        f"scored {result['frames'] - len(result['unreadable'])} of {result['frames']} frames "
        f"into {result['csv']} ({result['ms_per_frame']:.1f} ms per frame)"
    )
    if "metrics" in result:
        print(format_metrics(result["metrics"]))
    return 0
