"""Every notebook runs top to bottom under papermill with small parameters (assert cells inside)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from barsalign.config import NOTEBOOKS_DIR


@pytest.mark.slow
def test_01_eda_runs_on_the_synthetic_set(synth_small: Path, run_notebook, tmp_path: Path) -> None:
    out = run_notebook(
        "01_eda",
        tmp_path,
        data_dir=str(synth_small),
        examples_per_class=2,
        contact_sheet_frames=8,
        cluster_frames=16,
    )
    nb = nbformat.read(out, as_version=4)
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert len(images) >= 4, "brightness, examples, hard cases and contact sheet are drawn"
    assert (tmp_path / "contact_sheet.png").is_file() and (tmp_path / "brightness.png").is_file()
    assert (tmp_path / "cluster_map.png").is_file()
    widgets = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(widgets) == 1, "the click/lasso widget is built (interactive defaults to True)"
    assert "cluster map: 16 frames, coloured by label, scene, session" in out.read_text()


@pytest.mark.slow
def test_01_eda_runs_on_a_user_folder_without_metadata(
    tmp_path: Path, synth_small: Path, run_notebook
) -> None:
    import shutil

    user = tmp_path / "frames"
    shutil.copytree(synth_small / "example_set", user)
    (user / "aligned" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = run_notebook(
        "01_eda",
        tmp_path / "run",
        data_dir=str(user),
        examples_per_class=2,
        contact_sheet_frames=4,
        cluster_frames=8,
        interactive=False,
    )
    text = out.read_text()
    assert "broken.jpg" in text and "unreadable" in text, "unreadable frames are listed"


def _placeholder_or_built() -> list[str]:
    return sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_the_six_notebooks_exist() -> None:
    names = _placeholder_or_built()
    for prefix in (
        "01_eda",
        "02_label",
        "03_preprocess",
        "04_finetune",
        "05_evaluate",
        "06_export",
    ):
        assert prefix in names, f"notebooks/{prefix}.ipynb is missing"


@pytest.mark.parametrize("name", _placeholder_or_built())
def test_notebook_has_one_parameters_cell_first_among_code(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: exactly one cell tagged 'parameters'"
    assert code[0] is tagged[0], f"{name}: the parameters cell comes first"
    assert nb.metadata["kernelspec"]["name"] == "barsalign"
