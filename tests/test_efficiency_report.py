"""The report index's label-efficiency section: benchmarks/label_efficiency.py's curves and the
labels each look needs, from the JSON the benchmark wrote (a small real run here)."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from barsalign.config import PROJ_ROOT
from barsalign.errors import BarsalignError
from barsalign.reports import write_index
from barsalign.viz.efficiency_report import efficiency_looks, labels_needed, strategy_curves


def _run(strategy: str, seed: int, curve: list[float], pseudo: float | None = None) -> dict:
    pts = dict(zip(("50", "100", "150"), curve, strict=False))
    return {
        "strategy": strategy,
        "seed": seed,
        "curve": pts,
        "pseudo": {} if pseudo is None else {"50": {"f05": pseudo, "n": 9, "wrong_rate": 0.2}},
    }


def test_labels_needed_picks_the_strategy_nearest_the_whole_pool_soonest() -> None:
    res = {
        "frames": 400,
        "all": [0.80, 0.82],  # mean 0.81: within 0.01 means 0.80
        "runs": [
            _run("random", 0, [0.5, 0.70, 0.805], 0.4),
            _run("random", 1, [0.5, 0.72, 0.805], 0.6),
            _run("uncertainty", 0, [0.5, 0.80, 0.92]),
            _run("uncertainty", 1, [0.5, 0.78, 0.90]),  # 0.79 at 100: not yet
            _run("diverse", 0, [0.5, 0.81, 0.86]),
            _run("diverse", 1, [0.5, 0.80, 0.86]),  # 0.805 at 100: within 0.01
        ],
    }
    curves = strategy_curves(res)
    assert curves["random"]["n"].tolist() == [50, 100, 150]
    np.testing.assert_allclose(curves["random"]["mean"], [0.5, 0.71, 0.805])
    np.testing.assert_allclose(curves["random"]["sd"], [0.0, 0.01, 0.0], atol=1e-12)
    assert curves["random"]["pseudo_mean"].tolist() == pytest.approx([0.5])
    r = labels_needed(res, target=0.90)
    assert r["best"] == "diverse" and r["best_near"] == 100 and r["random_near"] == 150
    assert r["best_target"] is None and r["random_target"] is None and r["most"] == 150
    assert r["all"] == pytest.approx(0.81)
    # to 0.90 only uncertainty gets there (at 150); it is not "best" by the first rule
    assert labels_needed(res, target=0.85)["best_target"] == 150  # diverse's 0.86 at 150


def test_a_broken_benchmark_json_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "label_efficiency_x" / "label_efficiency.json"
    bad.parent.mkdir()
    bad.write_text('{"looks": {"left_low": {"frames": 3}}}')
    with pytest.raises(BarsalignError, match=r"label_efficiency_x/label_efficiency.json: not a"):
        efficiency_looks(tmp_path)
    bad.write_text("{")
    with pytest.raises(BarsalignError, match="not a label_efficiency.json"):
        write_index(tmp_path)


class _Section(HTMLParser):
    """The index's label-efficiency section: its image sources and table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, str] = {}
        self.rows: list[list[str]] = []
        self._in_table = self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images[a.get("id", "")] = a["src"]
        if tag == "table":
            self._in_table = a.get("id") == "label-efficiency-table"
        if self._in_table and tag == "tr":
            self.rows.append([])
        if self._in_table and tag in ("td", "th"):
            self._in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False
        if tag == "table":
            self._in_table = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


@pytest.fixture(scope="module")
def bench_reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """reports/ after a small real run of the benchmark: a 110-frame left_low pool (30 held
    out), two seeds, 50 and 100 labels, features at 64 px; its data and cache in a tmp folder."""
    from barsalign.synth import render_look_sets

    root = tmp_path_factory.mktemp("efficiency")
    data = root / "data"
    render_look_sets(
        "left_low", data / "looks" / "left_low", n_train=110, n_val=0, n_test=30, workers=2
    )
    reports = root / "reports"
    cmd = [sys.executable, str(PROJ_ROOT / "benchmarks" / "label_efficiency.py")]
    cmd += ["--looks", "left_low", "--seeds", "0", "1", "--budgets", "50", "100"]
    cmd += ["--image-size", "64", "--out", str(reports / "label_efficiency")]
    env = {**os.environ, "BARSALIGN_DATA_DIR": str(data)}
    done = subprocess.run(cmd, env=env, cwd=PROJ_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    write_index(reports)
    return reports


@pytest.mark.slow
def test_the_index_shows_the_benchmarks_curves_and_labels_needed(bench_reports: Path) -> None:
    from PIL import Image

    from barsalign.active import STRATEGIES

    written = json.loads((bench_reports / "label_efficiency" / "label_efficiency.json").read_text())
    res = written["looks"]["left_low"]
    assert res["frames"] == 110 and {r["strategy"] for r in res["runs"]} == set(STRATEGIES)
    assert (bench_reports / "label_efficiency" / "label_efficiency.png").is_file()
    page = _Section()
    page.feed((bench_reports / "index.html").read_text())
    src = page.images["label-efficiency-plot"]
    assert src.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as img:
        assert img.width > 400 and img.height > 300
    head, *rows = page.rows
    assert head[:4] == ["look", "pool frames", "F0.5, all labelled", "best strategy"]
    assert len(rows) == 1
    need = labels_needed(res)
    look, frames, whole, best, *labels = rows[0]
    assert (look, frames, best) == ("left_low", "110", need["best"])
    assert whole == f"{np.mean(res['all']):.3f}"
    keys = ("best_near", "random_near", "best_target", "random_target")
    for cell, key in zip(labels, keys, strict=True):
        assert cell == (str(need[key]) if need[key] is not None else "not reached by 100")


@pytest.mark.slow
def test_the_section_renders_in_a_browser_offline(bench_reports: Path) -> None:
    from playwright.sync_api import sync_playwright
    from test_label_browser import CHROMIUM, FLAGS

    assert Path(CHROMIUM).exists(), "install Debian's chromium (make test does)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto((bench_reports / "index.html").as_uri(), wait_until="load")
        plot = page.locator("#label-efficiency-plot")
        assert plot.evaluate("e => e.complete && e.naturalWidth > 400")
        assert plot.bounding_box()["width"] <= 1280  # fits the page
        table = page.locator("#label-efficiency-table")
        assert table.is_visible() and table.locator("tbody tr").count() == 1
        assert "left_low" in table.inner_text()
        browser.close()


def test_the_networks_points_are_summarised_and_tabled(tmp_path: Path) -> None:
    from barsalign.viz.efficiency_report import _network_html, network_summary

    rows = [
        {"look": "default", "strategy": "all", "labels": "all", "f05": 0.90},
        {"look": "default", "strategy": "all", "labels": "all", "f05": 0.86},
        {"look": "default", "strategy": "random", "labels": 300, "f05": 0.70},
        {"look": "default", "strategy": "random", "labels": 500, "f05": 0.80},
        {"look": "default", "strategy": "uncertainty", "labels": 300, "f05": 0.88},
        {"look": "default", "strategy": "uncertainty", "labels": 500, "error": "boom"},
    ]
    s = network_summary(rows)
    assert s["all"] == (pytest.approx(0.88), pytest.approx(0.02), 2)
    assert s["budgets"] == [300, 500]
    assert s["reached"] == {"random": None, "uncertainty": 300}
    assert 500 not in s["strategies"]["uncertainty"]  # the failed run is left out
    f = tmp_path / "label_efficiency_net" / "finetune.jsonl"
    f.parent.mkdir()
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    page = _network_html(tmp_path)
    assert "0.880 ±0.020 (2)" in page and "label_efficiency_net/finetune.jsonl" in page
    assert "<td>uncertainty</td><td>0.880 ±0.000 (1)</td><td>-</td><td>300</td>" in page
    f.write_text("{")
    with pytest.raises(BarsalignError, match="label_efficiency_net/finetune.jsonl: not a"):
        _network_html(tmp_path)
