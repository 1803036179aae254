"""The label-efficiency section of the report index: benchmarks/label_efficiency.py's curves.

The benchmark writes, per look, every strategy's held-out F0.5 over seeds at each number of
human labels (`label_efficiency*/label_efficiency.json` under reports/). This module reads the
newest result of each look, averages the seeds (`strategy_curves`), finds how many labels the
best strategy and random order need to come within 0.01 of the whole pool labelled and to
reach a target F0.5 (`labels_needed`), draws the curves (`efficiency_figure`, which the
benchmark saves too) and gives the index its section (`efficiency_html`), with the fine-tuned
network's points where `--finetune-picks` wrote some (`network_summary`).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.config import REPORTS_DIR
from barsalign.errors import BarsalignError

EFFICIENCY_TARGET = 0.90
"""The held-out F0.5 the label-efficiency table counts human labels to."""


def efficiency_looks(reports_dir: str | Path = REPORTS_DIR) -> dict[str, dict[str, Any]]:
    """Each look's newest result of benchmarks/label_efficiency.py, from every
    `label_efficiency*/label_efficiency.json` under `reports_dir` (its `settings` and `file`
    added)."""
    files = sorted(
        Path(reports_dir).glob("label_efficiency*/label_efficiency.json"),
        key=lambda p: p.stat().st_mtime,
    )
    looks: dict[str, dict[str, Any]] = {}
    for f in files:
        try:
            data = json.loads(f.read_text())
            found = {k: v for k, v in data["looks"].items() if v["runs"] and "all" in v}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise BarsalignError(f"{f}: not a label_efficiency.json ({err!r})") from None
        for name, res in found.items():
            looks[name] = {**res, "settings": data.get("settings", {}), "file": f}
    return looks


def strategy_curves(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per strategy, over the seeds' runs: the numbers of labels `n` and the held-out F0.5's
    `mean` and `sd` there, and with pseudo-labels (`pseudo_n`, `pseudo_mean`)."""
    out = {}
    for strategy in sorted({r["strategy"] for r in res["runs"]}):
        runs = [r for r in res["runs"] if r["strategy"] == strategy]
        curves = [{int(k): v for k, v in r["curve"].items()} for r in runs]
        pseudo = [{int(k): v["f05"] for k, v in r.get("pseudo", {}).items()} for r in runs]
        n = sorted(set.intersection(*(set(c) for c in curves)))
        pn = sorted(set.intersection(*(set(c) for c in pseudo)))
        f = np.array([[c[k] for k in n] for c in curves])
        out[strategy] = {
            "n": np.array(n),
            "mean": f.mean(axis=0),
            "sd": f.std(axis=0),
            "pseudo_n": np.array(pn),
            "pseudo_mean": np.array([np.mean([c[k] for c in pseudo]) for k in pn]),
        }
    return out


def labels_to(curve: dict[str, Any], goal: float) -> int | None:
    """The fewest labels at which the mean curve reaches `goal` (None: never)."""
    hit = np.flatnonzero(curve["mean"] >= goal)
    return int(curve["n"][hit[0]]) if len(hit) else None


def labels_needed(res: dict[str, Any], target: float = EFFICIENCY_TARGET) -> dict[str, Any]:
    """One look's row: the strategy that needs the fewest labels to come within 0.01 of the
    whole pool labelled (then to `target`, then the best last point), its labels and random's."""
    curves = strategy_curves(res)
    whole = float(np.mean(res["all"]))
    need = {
        s: (labels_to(c, whole - 0.01), labels_to(c, target), float(c["mean"][-1]))
        for s, c in curves.items()
    }

    def rank(s: str) -> tuple[float, float, float]:
        near, hit, last = need[s]
        return (near or np.inf, hit or np.inf, -last)

    best = min(need, key=rank)
    rand = need.get("random", (None, None, None))
    return {
        "frames": res["frames"],
        "all": whole,
        "best": best,
        "most": int(max(c["n"][-1] for c in curves.values())),
        "best_near": need[best][0],
        "random_near": rand[0],
        "best_target": need[best][1],
        "random_target": rand[1],
    }


def efficiency_figure(looks: dict[str, dict[str, Any]]) -> Any:
    """Held-out F0.5 against human labels, one panel per look: a line per strategy with the
    seeds' spread as a band (mean ± sd), dashed with pseudo-labels, and the whole pool."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(looks), figsize=(6 * len(looks), 4.4), squeeze=False)
    for ax, (name, res) in zip(axes[0], looks.items(), strict=True):
        for k, (strategy, c) in enumerate(strategy_curves(res).items()):
            colour = f"C{k}"
            ax.plot(c["n"], c["mean"], "o-", ms=3, color=colour, label=strategy)
            ax.fill_between(
                c["n"], c["mean"] - c["sd"], c["mean"] + c["sd"], color=colour, alpha=0.2
            )
            if len(c["pseudo_n"]):
                ax.plot(
                    c["pseudo_n"],
                    c["pseudo_mean"],
                    "s--",
                    ms=3,
                    color=colour,
                    alpha=0.6,
                    label=f"{strategy} + pseudo-labels",
                )
        n, whole = res["frames"], res["all"]
        ax.errorbar(
            [n],
            [np.mean(whole)],
            [np.std(whole)],
            fmt="D",
            color="k",
            capsize=3,
            label=f"all {n} labelled",
        )
        ax.axhline(np.mean(whole) - 0.01, color="k", ls=":", lw=1, label="all - 0.01")
        ticks = [b for b in (50, 100, 200, 300, 500, 1000) if b < n] + [n]
        ax.set_xscale("log")
        ax.set_xticks(ticks, [*map(str, ticks[:-1]), f"all\n{n}"])
        ax.minorticks_off()
        ax.set_xlabel("human labels")
        ax.set_ylabel("held-out F0.5 (probe, threshold 0.5)")
        ax.set_title(f"{name}: {res['pool']}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def network_results(reports_dir: str | Path = REPORTS_DIR) -> dict[str, list[dict[str, Any]]]:
    """The network's points (`label_efficiency.py --finetune-picks`): the rows of every
    `label_efficiency*/finetune.jsonl` under `reports_dir`, by file."""
    out = {}
    for f in sorted(Path(reports_dir).glob("label_efficiency*/finetune.jsonl")):
        try:
            out[str(f)] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as err:
            raise BarsalignError(f"{f}: not a finetune.jsonl ({err!r})") from None
    return out


def network_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sd and count of the network's held-out F0.5 per strategy and number of labels (runs
    that failed left out), "all" (every pool frame), and the fewest labels each strategy needs
    to come within 0.01 of "all"."""
    done = [r for r in rows if "f05" in r]

    def stats(v: list[float]) -> tuple[float, float, int] | None:
        return (float(np.mean(v)), float(np.std(v)), len(v)) if v else None

    full = stats([r["f05"] for r in done if r["labels"] == "all"])
    budgets = sorted({int(r["labels"]) for r in done if r["labels"] != "all"})
    strategies: dict[str, dict[int, tuple[float, float, int]]] = {}
    reached: dict[str, int | None] = {}
    for strategy in sorted({r["strategy"] for r in done} - {"all"}):
        points = {}
        for k in budgets:
            v = stats([r["f05"] for r in done if r["strategy"] == strategy and r["labels"] == k])
            if v:
                points[k] = v
        strategies[strategy] = points
        curve = {"n": np.array(list(points)), "mean": np.array([v[0] for v in points.values()])}
        reached[strategy] = labels_to(curve, full[0] - 0.01) if full and points else None
    return {"all": full, "budgets": budgets, "strategies": strategies, "reached": reached}


def _table(attr: str, heads: list[str], rows: list[list[str]]) -> str:
    """An HTML table (`attr`: its id or class attribute), every cell escaped."""
    cells = lambda row, tag: "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row)  # noqa: E731
    return (
        f'<div class="wide"><table {attr}><thead><tr>{cells(heads, "th")}</tr></thead><tbody>'
        + "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
        + "</tbody></table></div>"
    )


def _network_html(reports_dir: Path) -> str:
    """The table of the network's points, when the benchmark wrote some."""
    parts = []
    for f, rows in network_results(reports_dir).items():
        s = network_summary(rows)
        if s["all"] is None and not s["budgets"]:
            continue

        def cell(v: tuple[float, float, int] | None) -> str:
            return f"{v[0]:.3f} ±{v[1]:.3f} ({v[2]})" if v else "-"

        heads = ["strategy", *map(str, s["budgets"]), "labels to all - 0.01"]
        body = [
            [
                name,
                *(cell(pts.get(k)) for k in s["budgets"]),
                str(s["reached"][name] or "not reached"),
            ]
            for name, pts in s["strategies"].items()
        ]
        looks = ", ".join(sorted({str(r.get("look", "?")) for r in rows}))
        parts.append(
            '<p class="sub">The fine-tuned network (the default recipe) on the frames each '
            f"strategy picked, look {html.escape(looks)}: held-out F0.5, mean ± sd (runs); "
            f"every pool frame labelled: {cell(s['all'])}. From "
            f"{html.escape(str(Path(f).relative_to(reports_dir)))}.</p>"
            + _table('class="label-efficiency-network"', heads, body)
        )
    return "".join(parts)


def efficiency_html(reports_dir: Path, target: float = EFFICIENCY_TARGET) -> str:
    """The label-efficiency section of the index: the curves and the labels each look needs."""
    import base64
    import io

    import matplotlib.pyplot as plt

    looks = efficiency_looks(reports_dir)
    if not looks:
        return ""
    fig = efficiency_figure(looks)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    png = base64.b64encode(buf.getvalue()).decode()

    def labels(v: int | None, most: int) -> str:
        return str(v) if v is not None else f"not reached by {most}"

    rows: list[list[str]] = []
    for name, res in looks.items():
        r = labels_needed(res, target)
        cells = [name, str(r["frames"]), f"{r['all']:.3f}", r["best"]]
        cells += [labels(r[k], r["most"]) for k in ("best_near", "random_near")]
        cells += [labels(r[k], r["most"]) for k in ("best_target", "random_target")]
        rows.append(cells)
    heads = [
        "look",
        "pool frames",
        "F0.5, all labelled",
        "best strategy",
        "labels to all - 0.01 (best)",
        "random",
        f"labels to F0.5 {target:.2f} (best)",
        "random",
    ]
    some = next(iter(looks.values()))
    st = some["settings"]
    seeds = ", ".join(map(str, st.get("seeds", [])))
    files = sorted({str(Path(r["file"]).relative_to(reports_dir)) for r in looks.values()})
    return (
        '<section id="label-efficiency"><h2>Fewer labels: held-out F0.5 per human label</h2>'
        '<p class="sub">The active-learning loop (<code>barsalign.active</code>) labels batches of '
        "50 frames by each strategy, with a simulated annotator wrong "
        f"{float(st.get('error_rate', 0)):.0%} of the time; mean over seeds {html.escape(seeds)} "
        "(band: ± their standard deviation). The F0.5 is the loop's probe (logistic regression "
        "on frozen Lite0 features) on held-out frames, not a fine-tuned network's; "
        f"from {html.escape(', '.join(files))} (benchmarks/label_efficiency.py).</p>"
        f'<img id="label-efficiency-plot" alt="held-out F0.5 against human labels" '
        f'style="max-width:100%" src="data:image/png;base64,{png}">'
        + _table('id="label-efficiency-table"', heads, rows)
        + _network_html(reports_dir)
        + "</section>"
    )


__all__ = [
    "EFFICIENCY_TARGET",
    "efficiency_figure",
    "efficiency_html",
    "efficiency_looks",
    "labels_needed",
    "labels_to",
    "network_results",
    "network_summary",
    "strategy_curves",
]
