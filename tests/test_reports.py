"""The report index: a row per run, links that resolve, the comparison table when present."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from barsalign.errors import BarsalignError
from barsalign.reports import execute_notebook, to_html, write_index


class _Index(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tables: dict[str, int] = {}
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "a":
            self.links.append(a["href"])
        if tag == "table":
            self._table = a.get("id") or a.get("class") or "table"
            self.tables[self._table] = 0
        if tag == "tr" and self._table is not None:
            self.tables[self._table] += 1


def _run(reports: Path, name: str, summary: dict | None) -> None:
    run = reports / "runs" / name
    run.mkdir(parents=True)
    (run / f"{name}.html").write_text(f"<html><body>{name}</body></html>")
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))


def test_index_has_a_row_per_run_and_every_link_resolves(tmp_path: Path) -> None:
    _run(tmp_path, "01_eda", None)
    _run(tmp_path, "finetune_a", {"backbone": "resnet18", "best_f05": 0.91})
    _run(tmp_path, "finetune_b", {"backbone": "tf_efficientnet_lite0", "best_f05": 0.97})
    (tmp_path / "runs" / "empty").mkdir()  # a run without a report is not listed
    _run(tmp_path, "05_evaluate", None)
    (tmp_path / "runs" / "05_evaluate" / "comparison.csv").write_text(
        "model,f05\nfinetune_b,0.97\nfinetune_a,0.91\nbaseline,0.8\n"
    )
    index = write_index(tmp_path)
    parser = _Index()
    parser.feed(index.read_text())
    assert parser.tables["runs"] == 1 + 4, "header plus one row per run with a report"
    assert parser.tables["dataframe comparison"] == 1 + 3
    assert parser.links, "links to every run"
    for href in parser.links:
        assert (tmp_path / href).is_file(), href
    text = index.read_text()
    assert "0.97" in text and "tf_efficientnet_lite0" in text


@pytest.mark.slow
def test_executed_notebook_becomes_html_without_code(synth_small: Path, tmp_path: Path) -> None:
    out = execute_notebook(
        "01_eda",
        tmp_path / "runs" / "01_eda",
        {"data_dir": str(synth_small), "examples_per_class": 1, "contact_sheet_frames": 4},
    )
    page = to_html(out).read_text()
    assert "Exploratory data analysis" in page
    assert "eda.inventory(" not in page, "code cells are hidden"
    assert "data:image/png;base64" in page, "images are embedded: one file to mail"


def test_a_failing_notebook_is_one_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BarsalignError, match="01_eda.ipynb failed in cell"):
        execute_notebook("01_eda", tmp_path, {"data_dir": str(tmp_path / "nothing_here")})
