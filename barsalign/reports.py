"""Runs notebooks with papermill, turns them into code-free HTML, and writes the report index.

`barsalign demo` is the main job: render the default synthetic data set, run every notebook in
`DEMO_PLAN` into `reports/runs/<run>/`, convert each to HTML and write `reports/index.html`.
"""

from __future__ import annotations

import argparse
import html
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from barsalign.config import CONF_DIR, KERNEL_NAME, NOTEBOOKS_DIR, REPORTS_DIR, RUNS_DIR
from barsalign.errors import BarsalignError
from barsalign.modeling.train_config import load_profile


@dataclass(frozen=True)
class DemoRun:
    """One notebook execution of the demo: `notebook` (no suffix) into `runs/<run>/`."""

    notebook: str
    run: str
    params: dict[str, Any] = field(default_factory=dict)
    title: str = ""


CPU_PROFILE = load_profile(CONF_DIR / "cpu.yaml")
LITE0, MNV3 = "tf_efficientnet_lite0", "mobilenetv3_large_100"
RANDOM_START = {"weights": "random", "freeze_stages": 0}
"""The demo's random starts train every layer: frozen random filters would only handicap them."""

DEMO_PLAN: list[DemoRun] = [
    DemoRun(  # the cluster map's static view: no one clicks in a report
        "01_eda",
        "01_eda",
        {"interactive": False},
        "Exploratory data analysis of the synthetic conveyor",
    ),
    DemoRun(  # headless: the simulated annotators, not the live labeler
        "02_label",
        "02_label",
        {"interactive": False, "n_frames": 30},
        "Labeling with a simulated annotator",
    ),
    DemoRun(  # what the 04_finetune runs below are fed: the CPU profile, its proposed region
        "03_preprocess",
        "03_preprocess",
        {"profile": str(CONF_DIR / "cpu.yaml"), "frames_per_lighting": 2},
        "What the network sees: region, size, mode and augmentation of the CPU profile",
    ),
    # 04_finetune on the CPU profile's steps: Lite0 from the shipped looks backbone (ImageNet,
    # then stopper crops of the renderer's looks) and from random initialisation, then
    # MobileNetV3-Large (no weights on this machine: random, 100 steps); the budgets keep the
    # whole demo near 30 minutes on 2 cores
    DemoRun(
        "04_finetune",
        f"finetune_{LITE0}",
        CPU_PROFILE,
        "Lite0 fine-tuned from its pretrained backbone (ImageNet, then the renderer's looks)",
    ),
    DemoRun(
        "04_finetune",
        f"finetune_{LITE0}_random",
        # what the pretrained weights are worth: from random filters the same steps may learn
        # nothing, so this run is not held to beating a guess either; the first run is
        {**CPU_PROFILE, **RANDOM_START, "min_f05": 0.0},
        "Lite0 from random initialisation, same budget",
    ),
    DemoRun(
        "04_finetune",
        f"finetune_{MNV3}",
        # 100 steps from random weights show what no weights cost; not held to beating a
        # guess (04's min_f05) either
        {**CPU_PROFILE, **RANDOM_START, "backbone": MNV3, "max_steps": 100, "min_f05": 0.0},
        "MobileNetV3-Large, random initialisation (no weights here)",
    ),
    DemoRun("05_evaluate", "05_evaluate", {}, "Held-out evaluation: Table 1, thresholds, errors"),
    DemoRun("06_export", "06_export", {}, "Export of the best run and the live monitor"),  # last
]
"""What `make demo` runs, in order. Later steps append their runs here."""


def execute_notebook(
    notebook: str,
    run_dir: str | Path,
    params: dict[str, Any] | None = None,
    *,
    timeout: int = 3600,
    log_output: bool = False,
) -> Path:
    """Execute `notebooks/<notebook>.ipynb` with papermill into `run_dir`; return the output path.

    Raises BarsalignError naming the notebook and the failing cell's error when a cell fails.
    """
    import papermill as pm

    src = NOTEBOOKS_DIR / f"{notebook}.ipynb"
    if not src.is_file():
        raise BarsalignError(f"{src} not found")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / f"{notebook}.ipynb"
    params = {"run_dir": str(run_dir), **(params or {})}
    try:
        pm.execute_notebook(
            str(src),
            str(out),
            parameters=params,
            kernel_name=KERNEL_NAME,
            cwd=str(NOTEBOOKS_DIR),
            progress_bar=False,
            log_output=log_output,
            execution_timeout=timeout,
        )
    except pm.PapermillExecutionError as err:
        raise BarsalignError(
            f"{src.name} failed in cell {err.exec_count}: {err.ename}: {err.evalue} "
            f"(executed notebook kept at {out})"
        ) from None
    return out


TEMPLATES = Path(__file__).parent / "templates"
"""nbconvert templates: `offline` is JupyterLab's page without its CDN scripts."""


def to_html(executed: Path) -> Path:
    """Convert an executed notebook to one HTML file without code, images embedded, that
    loads nothing from the network (the `offline` template)."""
    cmd = [
        sys.executable,
        "-m",
        "nbconvert",
        "--to",
        "html",
        "--no-input",
        "--embed-images",
        f"--TemplateExporter.extra_template_basedirs={TEMPLATES}",
        "--template",
        "offline",
        str(executed),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BarsalignError(
            f"nbconvert failed on {executed}: {done.stderr.strip().splitlines()[-1]}"
        )
    return executed.with_suffix(".html")


def _run_entries(runs_dir: Path) -> list[dict[str, Any]]:
    """Each run folder with its HTML report, summary JSON (if the run wrote one) and time."""
    entries = []
    for run in sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []:
        pages = sorted(run.glob("*.html"))
        if not pages:
            continue
        summary_path = run / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        info_path = run / "run.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        entries.append(
            {
                "run": run.name,
                "html": pages[0],
                "summary": summary,
                "title": info.get("title", ""),
                "mtime": time.strftime("%Y-%m-%d %H:%M", time.localtime(pages[0].stat().st_mtime)),
            }
        )
    return entries


INDEX_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; font-size: 0.95rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.45rem 0.6rem; text-align: left; }
th { background: #f3f4f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
a { color: #0b5cad; } .wide { overflow-x: auto; }
#summary { border: 1px solid #ddd; border-radius: 8px; padding: 0.6rem 1.2rem; margin: 1rem 0; }
#summary h2 { margin: 0.4rem 0; } #summary h3 { margin: 0.6rem 0 0.3rem; font-size: 1rem; }
.kpis { display: flex; gap: 2.5rem; } .kpis div { color: #555; }
.kpi { display: block; font-size: 2rem; font-weight: 600; color: #111; }
.errors { display: flex; gap: 1rem; } .errors figure { margin: 0; width: 192px; }
.errors img { width: 192px; height: 192px; } figcaption { font-size: 0.8rem; color: #444; }
"""


def _comparison_html(reports_dir: Path) -> str:
    """The newest evaluation's comparison table (runs/*/comparison.csv), best F0.5 first."""
    import pandas as pd

    tables = sorted(
        (reports_dir / "runs").glob("*/comparison.csv"), key=lambda p: p.stat().st_mtime
    )
    if not tables:
        return ""
    df = pd.read_csv(tables[-1])
    link = tables[-1].parent.relative_to(reports_dir).as_posix()
    pages = sorted(tables[-1].parent.glob("*.html"))
    source = (
        (
            f' from <a href="{html.escape(link)}/{html.escape(pages[0].name)}">'
            f"{html.escape(link)}</a>"
        )
        if pages
        else ""
    )
    df = df[[c for c in COMPARISON_COLUMNS if c in df]].rename(columns=COMPARISON_COLUMNS)
    table = df.to_html(
        index=False, float_format=lambda v: f"{v:.3f}", na_rep="—", classes="comparison", border=0
    )
    return f'<h2>Model comparison (held-out set){source}</h2><div class="wide">{table}</div>'


COMPARISON_COLUMNS = {
    "model": "model",
    "image_side": "side",
    "weights_source": "weights",
    "f05": "F0.5",
    "f1": "F1",
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "auroc": "AUROC",
    "threshold_precision": "threshold (precision target)",
    "latency_ms": "ms / frame",
    "checkpoint_mb": "MB",
}
"""The comparison columns the index shows, and their headings (the CSV keeps them all)."""
RUN_COLUMNS = ("backbone", "weights_source", "best_f05", "auroc", "epochs", "seconds")
"""The summary.json fields the runs table shows, where a run has them."""


def _tracked_runs() -> list[dict[str, Any]]:
    """The tracker's training runs (`barsalign.runs.runs_table`); none when it has no store
    yet or does not answer (the index then lists the run folders)."""
    from urllib.parse import unquote, urlparse

    from barsalign import tracking
    from barsalign.runs import runs_table

    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(unquote(urlparse(uri).path)).is_file():
        return []  # no store: nothing was tracked, and none is created by looking
    try:
        return runs_table()
    except BarsalignError:
        return []


def _tracked_html(rows: list[dict[str, Any]], pages: dict[str, str]) -> str:
    """The tracked training runs as the index's runs table, each linked to its report."""
    from barsalign.runs import RUNS_COLUMNS

    head = "".join(f"<th>{html.escape(k)}</th>" for k in (*RUNS_COLUMNS, "report"))
    body = []
    for r in rows:
        cells = []
        for k in RUNS_COLUMNS:
            v = r.get(k)
            text = "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
            cls = ' class="num"' if isinstance(v, int | float) else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        link = pages.get(str(r.get("run")))
        cells.append(f'<td><a href="{html.escape(link)}">report</a></td>' if link else "<td></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="wide"><table id="runs"><thead><tr>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def write_index(reports_dir: str | Path = REPORTS_DIR, title: str = "barsalign reports") -> Path:
    """Write `reports/index.html`: the plant summary (`barsalign.summary`, when 06_export wrote
    one), the held-out comparison, the label-efficiency curves (when
    benchmarks/label_efficiency.py wrote some), the tracker's training runs (else the run
    folders), and a row per report linking its HTML."""
    from barsalign.summary import newest_summary, summary_html
    from barsalign.viz.efficiency_report import efficiency_html

    reports_dir = Path(reports_dir)
    entries = _run_entries(reports_dir / "runs")
    entries.sort(key=lambda e: e["mtime"])  # the order they ran in
    tracked = _tracked_runs()
    keys = [k for k in RUN_COLUMNS if any(k in e["summary"] for e in entries)]
    columns = ["run", "report", "what", "updated", *keys]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in columns)
    rows = []
    for e in entries:
        link = e["html"].relative_to(reports_dir).as_posix()
        cells = [
            f"<td>{html.escape(e['run'])}</td>",
            f'<td><a href="{html.escape(link)}">{html.escape(e["html"].name)}</a></td>',
            f"<td>{html.escape(e['title'])}</td>",
            f"<td>{e['mtime']}</td>",
        ]
        for k in keys:
            v = e["summary"].get(k, "")
            text = (f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}") if isinstance(v, float) else str(v)
            cls = ' class="num"' if isinstance(v, int | float) else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    comparison = _comparison_html(reports_dir)
    found = newest_summary(reports_dir / "runs")
    folders = (
        f'<div class="wide"><table id="{"pages" if tracked else "runs"}"><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
    if tracked:
        from barsalign.tracking import tracking_uri

        pages = {e["run"]: e["html"].relative_to(reports_dir).as_posix() for e in entries}
        runs = (
            f"<h2>Training runs (MLflow: <code>{html.escape(tracking_uri())}</code>)</h2>"
            f"{_tracked_html(tracked, pages)}<h2>Reports</h2>{folders}"
        )
    else:
        runs = f"<h2>Runs</h2>{folders}"
    body = (
        f"<h1>{html.escape(title)}</h1>"
        '<p class="sub">Is every bar\'s head at the stopper? Classifiers that say <b>aligned</b> '
        "or <b>not aligned</b> from the stopper camera, trained and evaluated on the data "
        "named in each run. Aligned is the positive class; F0.5 weighs precision higher because "
        'a false "aligned" means a bad cut.</p>'
        f"{summary_html(found) if found else ''}{comparison}"
        f"{efficiency_html(reports_dir)}{runs}"
    )
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{INDEX_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
    out = reports_dir / "index.html"
    out.write_text(page)
    return out


def run_demo(plan: list[DemoRun] | None = None, runs_dir: Path = RUNS_DIR) -> Path:
    """Render the default data set, execute every notebook of the plan, write HTML and index."""
    from barsalign.synth import ensure_default

    ensure_default()
    for step in plan or DEMO_PLAN:
        started = time.perf_counter()
        print(f"[demo] {step.notebook} -> {runs_dir / step.run}", flush=True)
        (runs_dir / step.run).mkdir(parents=True, exist_ok=True)
        (runs_dir / step.run / "run.json").write_text(
            json.dumps({"notebook": step.notebook, "title": step.title, "params": step.params})
        )
        executed = execute_notebook(step.notebook, runs_dir / step.run, step.params)
        to_html(executed)
        print(f"[demo] {step.run} done in {time.perf_counter() - started:.0f} s", flush=True)
    index = write_index(runs_dir.parent)
    print(f"[demo] open {index}")
    return index


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="render the default data and run every notebook")
    p.add_argument("--only", nargs="*", help="run names from the plan to run (default: all)")
    p.set_defaults(func=_demo_cli)
    r = subparsers.add_parser(
        "report", help="convert executed notebooks to HTML and write the index"
    )
    r.add_argument("--reports-dir", type=Path, default=REPORTS_DIR)
    r.set_defaults(func=_report_cli)


def _demo_cli(args: argparse.Namespace) -> int:
    plan = DEMO_PLAN
    if args.only:
        unknown = set(args.only) - {s.run for s in DEMO_PLAN}
        if unknown:
            raise BarsalignError(
                f"unknown run(s) {sorted(unknown)}; the plan has {[s.run for s in DEMO_PLAN]}"
            )
        plan = [s for s in DEMO_PLAN if s.run in args.only]
    run_demo(plan)
    return 0


def _report_cli(args: argparse.Namespace) -> int:
    runs = Path(args.reports_dir) / "runs"
    for executed in sorted(runs.glob("*/*.ipynb")):
        to_html(executed)
    print(write_index(args.reports_dir))
    return 0


__all__ = [
    "DEMO_PLAN",
    "DemoRun",
    "execute_notebook",
    "run_demo",
    "to_html",
    "write_index",
]
