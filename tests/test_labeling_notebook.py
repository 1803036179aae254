"""02_label under papermill: the simulated annotator's labels, undo and restart land on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from barsalign.labelstore import LabelStore, by_annotator


@pytest.mark.slow
def test_02_label_notebook(synth_small: Path, run_notebook, tmp_path: Path) -> None:
    run_notebook(
        "02_label",
        tmp_path,
        data_dir=str(synth_small),
        run_dir=str(tmp_path),
        n_frames=12,
        n_undo=2,
        error_rate=0.2,
    )
    got = LabelStore(tmp_path / "labels").labeled()
    assert len(got) == 12
    per = by_annotator(LabelStore(tmp_path / "labels"))
    assert set(per) == {"sim_a"} and len(per["sim_a"]) == 12
    assert len(LabelStore(tmp_path / "labels" / "b").labeled()) == 12
