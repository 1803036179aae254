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


@pytest.fixture
def empty_tracker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tracker with no store yet: the index lists the run folders."""
    db = tmp_path / "tracker" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    return db


def test_index_has_a_row_per_run_and_every_link_resolves(tmp_path: Path, empty_tracker) -> None:
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
    assert not empty_tracker.exists(), "looking at the tracker creates no store"
    assert 'id="summary"' not in text, "no export, no summary"


def test_the_runs_table_comes_from_the_tracker(tmp_path: Path, empty_tracker: Path) -> None:
    """Training runs as MLflow holds them (`barsalign.runs.runs_table`), linked to their
    reports; every report page still listed below."""
    from mlflow import MlflowClient

    from barsalign import tracking

    _run(tmp_path, "finetune_b", {"backbone": "resnet18", "best_f05": 0.5})
    _run(tmp_path, "01_eda", None)
    c = MlflowClient(tracking.tracking_uri())
    eid = tracking.experiment_id(c)
    for name, f05 in (("finetune_b", 0.8125), ("elsewhere", 0.6)):
        run = c.create_run(eid, run_name=name, tags={"kind": "train"})
        c.log_param(run.info.run_id, "backbone", "tf_efficientnet_lite0")
        c.log_metric(run.info.run_id, "summary.best_f05", f05)
        c.set_terminated(run.info.run_id)
    parser = _Index()
    text = write_index(tmp_path).read_text()
    parser.feed(text)
    assert parser.tables["runs"] == 1 + 2 and parser.tables["pages"] == 1 + 2
    assert "0.812" in text and "0.600" in text and "tf_efficientnet_lite0" in text
    assert text.count('href="runs/finetune_b/finetune_b.html"') == 2, "tracked row and page row"
    for href in parser.links:
        assert (tmp_path / href).is_file(), href


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
