"""02_label: the live labeler by default; under papermill (interactive=False) the simulated
annotator's labels, undo and restart land on disk, beside and never in the live labels."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from barsalign.config import NOTEBOOKS_DIR
from barsalign.errors import BarsalignError
from barsalign.labelstore import LabelStore, by_annotator, class_file, read_class_file
from barsalign.reports import DEMO_PLAN


def test_02_opens_as_the_live_labeler_and_every_headless_run_simulates() -> None:
    nb = nbformat.read(NOTEBOOKS_DIR / "02_label.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "\ninteractive = True  #" in "\n" + params.source, "Run all shows the labeler"
    intro = nb.cells[0].source
    for name in ("data_dir", "start", "end", "local_prefix", "server_prefix"):
        assert f"`{name}" in intro, f"the first cell says how to set {name}"
    demo = [s for s in DEMO_PLAN if s.notebook == "02_label"]
    assert demo and all(s.params.get("interactive") is False for s in demo), "make demo"


@pytest.mark.slow
def test_02_label_notebook(synth_small: Path, run_notebook, tmp_path: Path) -> None:
    live = tmp_path / "labels"  # a person's labels in the default labels folder survive
    live.mkdir()
    first = str(synth_small / "train_set" / "img_00001.jpg")
    class_file(live, "aligned").write_text(first + "\n")
    run_notebook(
        "02_label",
        tmp_path,
        data_dir=str(synth_small),
        run_dir=str(tmp_path),
        interactive=False,
        n_frames=12,
        n_undo=2,
        error_rate=0.2,
        min_kappa=-0.5,  # 12 frames at error rate 0.2: kappa is noise (-0.105 with seed 0)
    )
    sim = tmp_path / "simulated"
    got = LabelStore(sim).labeled()
    assert len(got) == 12
    per = by_annotator(LabelStore(sim))
    assert set(per) == {"sim_a"} and len(per["sim_a"]) == 12
    assert len(LabelStore(sim / "b").labeled()) == 12
    assert read_class_file(class_file(live, "aligned")) == [first]
    assert sorted(p.name for p in live.iterdir()) == ["class_aligned.txt"]


@pytest.mark.slow
def test_02_fails_when_the_annotators_agree_less_than_min_kappa(
    synth_small: Path, run_notebook, tmp_path: Path
) -> None:
    """Annotators who guess (error rate 0.5) cannot reach kappa 0.9: the check cell says so."""
    with pytest.raises(BarsalignError, match="below min_kappa 0.9"):
        run_notebook(
            "02_label",
            tmp_path,
            data_dir=str(synth_small),
            interactive=False,
            n_frames=12,
            n_undo=0,
            error_rate=0.5,
            min_kappa=0.9,
        )
