"""The plant manager's summary: the recommended model, its score on held-out frames at the
operating threshold, what its errors look like, and the date and data it was trained on.

06_export calls `plant_summary` for the model it exported: the held-out frames (05_evaluate's)
are scored with the exported model at its card's operating threshold, and up to three errors,
the costly false "aligned" first (`evaluate.error_cases`), are saved as thumbnails beside
`plant_summary.json`. `reports.write_index` opens with the newest one (`summary_html`).
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from barsalign.errors import BarsalignError
from barsalign.outputs import atomic_write_bytes, atomic_write_text
from barsalign.tracking import data_label

SUMMARY_FILE = "plant_summary.json"
OUTCOMES = {"FP": "false aligned: the shear would cut", "FN": "false not aligned: the line waits"}


def _trained_on(checkpoint: Path) -> dict[str, Any]:
    """When the checkpoint's run trained and on which frames (its config.yaml and summary)."""
    import yaml

    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    config = (
        yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    )
    done = run / "summary.json"
    stamp = (done if done.is_file() else checkpoint).stat().st_mtime
    plan = (config or {}).get("plan") or {}
    data, val = (config or {}).get("data_dir"), (config or {}).get("val_data_dir")
    return {
        "run": run.name,
        "trained": time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)),
        "data": data_label(str(Path(data).resolve())) if data else "unknown (no config.yaml)",
        "train_frames": plan.get("train"),
        "validation": data_label(str(Path(val).resolve())) if val else "a split of the data",
        "val_frames": plan.get("val"),
    }


def plant_summary(
    model: str | Path, held_out: str | Path | None, out_dir: str | Path, n_errors: int = 3
) -> dict[str, Any]:
    """Score the held-out frames with an exported model at its card's threshold; write the
    summary JSON and `n_errors` error thumbnails into `out_dir`; return the summary.

    Args:
        model: an exported model with its card (`model.onnx`), as the monitor loads it.
        held_out: labelled frames none of the runs trained on; None: the synthetic held-out set.
    """
    from barsalign.evaluation import evaluate as ev
    from barsalign.inference import card_path, load_predictor

    model, out_dir = Path(model), Path(out_dir)
    card = json.loads(card_path(model).read_text())
    scorer = load_predictor(model)
    data = ev.labelled_folder(held_out or ev.ensure_held_out())
    threshold = float(card["threshold"])
    scores, bad, _ = ev.score_paths(scorer, data.paths)
    ok = ~np.isnan(scores)
    if not ok.any():
        raise BarsalignError(f"no readable frames in {data.root} ({len(bad)} unreadable)")
    m = ev.evaluate_scores(data.labels[ok], scores[ok], threshold)
    frames = ev.per_frame_table(data, scores, threshold)
    errors = []
    for outcome in OUTCOMES:  # the costly false "aligned" first
        for case in ev.error_cases(scorer, frames, outcome, n_errors - len(errors), side=192):
            name = f"error_{len(errors) + 1}.png"
            png = cv2.imencode(".png", cv2.cvtColor(case["image"], cv2.COLOR_RGB2BGR))[1]
            atomic_write_bytes(out_dir / name, png.tobytes())
            caption = case["caption"].replace("\n", "; ")
            errors.append({"file": name, "outcome": outcome, "caption": caption})
    counts = frames["outcome"].value_counts()
    summary = {
        "model": card["backbone"],
        "model_file": model.name,
        "image_size": card["image_size"],
        "threshold": threshold,
        "threshold_source": card["threshold_source"],
        "f05": round(float(m["f05"]), 4),
        "precision": round(float(m["precision"]), 4),
        "recall": round(float(m["recall"]), 4),
        "held_out": data_label(str(Path(data.root).resolve())),
        "held_out_frames": int(ok.sum()),
        "false_aligned": int(counts.get("FP", 0)),
        "false_not_aligned": int(counts.get("FN", 0)),
        "errors": errors,
        **_trained_on(Path(card["checkpoint"])),
    }
    atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def newest_summary(runs_dir: Path) -> Path | None:
    """The newest `plant_summary.json` under `runs_dir/*/`, or None."""
    found = sorted(runs_dir.glob(f"*/{SUMMARY_FILE}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def summary_html(path: Path) -> str:
    """The summary as the top of the report index: one screen, images embedded."""
    s = json.loads(path.read_text())
    e = html.escape
    per = s["held_out_frames"]
    figures = "".join(
        f'<figure><img src="{_data_uri(path.parent / err["file"])}" alt="{e(err["outcome"])}">'
        f"<figcaption><b>{e(OUTCOMES[err['outcome']])}</b><br>{e(err['caption'])}</figcaption>"
        "</figure>"
        for err in s["errors"]
        if (path.parent / err["file"]).is_file()
    )
    errors = (
        f'<h3>What the errors look like</h3><div class="errors">{figures}</div>'
        if figures
        else "<p>No errors on the held-out frames.</p>"
    )
    train = f" ({sum(s['train_frames'].values())} frames)" if s.get("train_frames") else ""
    return (
        '<section id="summary">'
        f'<h2>Recommended model: <span id="model">{e(s["model"])}</span></h2>'
        '<div class="kpis">'
        f'<div><span class="kpi" id="f05">{s["f05"]:.3f}</span>F0.5</div>'
        f'<div><span class="kpi" id="precision">{s["precision"]:.3f}</span>precision</div>'
        f'<div><span class="kpi">{s["recall"]:.3f}</span>recall</div></div>'
        f"<p>On <b>{per}</b> held-out frames (<code>{e(s['held_out'])}</code>) none of the runs "
        f"trained on, at the operating threshold <b>{s['threshold']:.3f}</b> "
        f"({e(s['threshold_source'])}): of the frames it calls aligned, "
        f"{s['precision']:.0%} are aligned; it called {s['false_aligned']} not-aligned "
        f"frame(s) aligned and held {s['false_not_aligned']} aligned frame(s) back.</p>"
        f"{errors}"
        f'<p id="trained">Trained <b>{e(s["trained"])}</b> on <code>{e(s["data"])}</code>{train}, '
        f"validated on <code>{e(s['validation'])}</code> (run {e(s['run'])}, exported as "
        f"{e(s['model_file'])} at {s['image_size']} px).</p></section>"
    )


__all__ = ["SUMMARY_FILE", "newest_summary", "plant_summary", "summary_html"]
