"""nbval over every numbered notebook: a changed contract output fails with nbval's diff.

Each notebook marks the cells whose outputs are its contract (tag `nbval-check-output`: class
counts, the checksum of a preprocessed frame, the comparison table's scores, the exports' parity).
Their reference outputs, and only theirs, are stored in `tests/notebook_refs/<notebook>.ipynb`,
sanitized with `tests/nbval_sanitize.cfg`; `notebooks/` stays without outputs.

For the check, papermill injects the small parameters below into the current notebook
(`prepare_only`), the reference outputs are put on the contract cells, and `pytest --nbval-lax`
executes the six notebooks once, in one subprocess: a contract cell whose fresh output differs
fails with nbval's diff, any other cell fails only when it raises. `make notebook-refs` (this
file with `--update-notebook-refs`) executes them with papermill and rewrites the references:
the deliberate way to accept a changed result; review the diff and commit it.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import nbformat
import pytest

from barsalign.config import KERNEL_NAME, NOTEBOOKS_DIR

TAG = "nbval-check-output"
REFS = Path(__file__).parent / "notebook_refs"
SANITIZE = Path(__file__).parent / "nbval_sanitize.cfg"
NOTEBOOKS = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
ALTERED = "03_preprocess_altered"
"""A copy of 03 whose reference checksum is changed by hand: nbval must fail it."""


def contract_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code" and TAG in c.metadata.get("tags", [])]


def sanitize(text: str) -> str:
    """The references are stored as nbval compares them: with the sanitizers applied."""
    from nbval.plugin import get_sanitize_patterns

    for regex, replace in get_sanitize_patterns(SANITIZE.read_text()):
        text = re.sub(regex, replace, text)
    return text


def _sanitized(outputs: list[Any]) -> list[Any]:
    out = []
    for o in copy.deepcopy(outputs):
        if "metadata" in o:
            o["metadata"] = {}
        if "execution_count" in o:
            o["execution_count"] = None
        if "text" in o:
            o["text"] = sanitize(o["text"])
        for key, value in o.get("data", {}).items():
            if isinstance(value, str):
                o["data"][key] = sanitize(value)
        out.append(o)
    return out


def contract_params(synth: Path, runs: Path) -> dict[str, dict[str, Any]]:
    """The small test parameters of each notebook (a fixed seed and fixed frames)."""
    clip = sorted((synth / "clips").glob("*.mp4"))[0]
    return {
        "01_eda": {
            "data_dir": str(synth),
            "examples_per_class": 2,
            "contact_sheet_frames": 8,
            "cluster_frames": 16,
        },
        "02_label": {
            "data_dir": str(synth),
            "n_frames": 12,
            "n_undo": 2,
            "error_rate": 0.2,
            "interactive": False,
            "min_kappa": -0.5,  # 12 frames at error rate 0.2: kappa is -0.105 here
        },
        "03_preprocess": {
            "data_dir": str(synth / "example_set"),
            "image_size": 96,
            "roi": "0.5,0,1,0.8",
        },
        "04_finetune": {
            "backbone": "mobilenetv3_large_100",
            "data_dir": str(synth / "example_set"),
            "image_size": 64,
            "epochs": 2,
            "weights": "random",
            "accelerator": "cpu",
            "min_f05": 0.0,  # 4 steps from random weights learn nothing
        },
        "05_evaluate": {
            "runs_dir": str(runs),
            "eval_data_dir": str(synth / "example_set"),
            "baseline_train_dir": str(synth / "example_set"),
            "gallery_size": 2,
            "latency_frames": 2,
        },
        "06_export": {
            "checkpoint": str(runs / "tiny" / "checkpoints" / "best.ckpt"),
            "runs_dir": str(runs),
            "threshold": 0.5,
            "parity_data_dir": str(synth),
            "eval_data_dir": str(synth / "example_set"),
            "parity_frames": 6,
            "latency_repeats": 3,
            "clip": str(clip),
            "strip_frames": 4,
        },
    }


def tiny_run(runs: Path) -> Path:
    """An untrained resnet18 at 64 px from seed 0: the fixed model 05 and 06 score."""
    import torch

    from barsalign import export

    torch.manual_seed(0)
    return export.untrained_checkpoint(
        runs / "tiny" / "checkpoints" / "best.ckpt", backbone="resnet18", image_size=64
    )


def prepare(name: str, params: dict[str, Any], run_dir: Path, out: Path) -> Any:
    """The notebook as papermill would run it: the parameters injected, nothing executed."""
    import papermill as pm

    run_dir.mkdir(parents=True, exist_ok=True)  # as barsalign.reports.execute_notebook does
    pm.execute_notebook(
        str(NOTEBOOKS_DIR / f"{name}.ipynb"),
        str(out),
        parameters={"run_dir": str(run_dir), **params},
        kernel_name=KERNEL_NAME,
        prepare_only=True,
        progress_bar=False,
    )
    return nbformat.read(out, as_version=4)


def attach_references(nb: Any, name: str) -> list[str]:
    """Put the stored reference outputs on the contract cells; the ids that have none."""
    ref_path = REFS / f"{name}.ipynb"
    refs = nbformat.read(ref_path, as_version=4) if ref_path.is_file() else None
    by_id = {c.id: c for c in refs.cells} if refs else {}
    missing = []
    for c in contract_cells(nb):
        if c.id in by_id:
            c.outputs = copy.deepcopy(by_id[c.id].outputs)
            c.execution_count = by_id[c.id].execution_count or 1  # nbval skips unrun cells
        else:
            missing.append(c.id)
    return missing


def write_references(name: str, executed: Path) -> Path:
    """Keep the contract cells of an executed notebook, outputs sanitized, as the reference."""
    nb = nbformat.read(executed, as_version=4)
    ref = nbformat.v4.new_notebook(metadata={"kernelspec": nb.metadata["kernelspec"]})
    for c in contract_cells(nb):
        kept = nbformat.v4.new_code_cell(c.source, metadata={"tags": [TAG]})
        kept.id, kept.execution_count = c.id, c.execution_count
        kept.outputs = _sanitized(c.outputs)
        ref.cells.append(kept)
    REFS.mkdir(exist_ok=True)
    nbformat.write(ref, REFS / f"{name}.ipynb")
    return REFS / f"{name}.ipynb"


def alter_checksum(nb: Any) -> tuple[str, str]:
    """Change the reference checksum of 03's contract cell by one hex digit: (old, new)."""
    for c in contract_cells(nb):
        for o in c.outputs:
            m = re.search(r"sha256 ([0-9a-f]{16})", o.get("text", ""))
            if m:
                old = m.group(1)
                new = old[:-1] + ("0" if old[-1] != "0" else "1")
                o["text"] = o["text"].replace(old, new)
                return old, new
    raise AssertionError("03_preprocess's reference has no sha256 line to alter")


def run_nbval(paths: list[Path], work: Path) -> tuple[int, str, dict[str, list[str]]]:
    """`pytest --nbval-lax` over `paths` in a subprocess: exit code, output, failures per file."""
    xml = work / "nbval.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "--nbval-sanitize-with",
        str(SANITIZE),
        "--nbval-cell-timeout",
        "900",
        "-p",
        "no:cacheprovider",
        "--color=no",
        "--rootdir",
        str(work),
        f"--junitxml={xml}",
        *map(str, paths),
    ]
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=os.environ.copy())
    failures: dict[str, list[str]] = {p.stem: [] for p in paths}
    cases: dict[str, int] = {p.stem: 0 for p in paths}
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            stem = Path(case.get("file") or case.get("classname", "")).stem
            stem = next((s for s in failures if stem.endswith(s)), stem)
            cases[stem] = cases.get(stem, 0) + 1
            for bad in (*case.findall("failure"), *case.findall("error")):
                failures.setdefault(stem, []).append(
                    f"{case.get('name')}: {bad.get('message', '')}\n{bad.text or ''}"
                )
    for stem, n in cases.items():
        if n == 0:
            failures[stem].append("nbval collected no cells")
    return done.returncode, done.stdout + done.stderr, failures


@pytest.fixture(scope="session")
def nbval_session(
    synth_small: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> dict[str, Any]:
    """Prepare the six notebooks (and the altered copy of 03) and run nbval over them once."""
    work = tmp_path_factory.mktemp("nbval")
    runs = work / "runs"
    tiny_run(runs)
    update = request.config.getoption("--update-notebook-refs") or ""
    unknown = set(update.split(",")) - {"", "all", *NOTEBOOKS}
    assert not unknown, f"--update-notebook-refs: no notebook {sorted(unknown)}; {NOTEBOOKS}"
    paths, missing, checksums = [], {}, ("", "")
    for name, params in contract_params(synth_small, runs).items():
        out = work / f"{name}.ipynb"
        if update == "all" or name in update.split(","):
            from barsalign.reports import execute_notebook

            executed = execute_notebook(name, work / "refs_run" / name, params, timeout=900)
            write_references(name, executed)
        nb = prepare(name, params, work / "out" / name, out)
        missing[name] = attach_references(nb, name)
        nbformat.write(nb, out)
        paths.append(out)
        if name == "03_preprocess" and not missing[name]:
            altered = copy.deepcopy(nb)
            checksums = alter_checksum(altered)
            nbformat.write(altered, work / f"{ALTERED}.ipynb")
            paths.append(work / f"{ALTERED}.ipynb")
    rc, output, failures = run_nbval(paths, work)
    return {
        "rc": rc,
        "output": output,
        "failures": failures,
        "missing": missing,
        "checksums": checksums,
        "work": work,
        "synth": synth_small,
    }


@pytest.mark.slow
def test_notebooks_reproduce_their_reference_outputs(nbval_session: dict[str, Any]) -> None:
    missing = {k: v for k, v in nbval_session["missing"].items() if v}
    assert not missing, f"contract cells without a reference (make notebook-refs): {missing}"
    failed = {k: v for k, v in nbval_session["failures"].items() if v and k != ALTERED}
    assert not failed, "\n\n".join(
        f"== {name} ==\n" + "\n".join(msgs) for name, msgs in failed.items()
    )


@pytest.mark.slow
def test_an_altered_reference_fails_with_nbvals_diff(nbval_session: dict[str, Any]) -> None:
    """The copy of 03 whose stored checksum was changed fails, on that cell, with the diff."""
    assert nbval_session["rc"] != 0
    failures = nbval_session["failures"][ALTERED]
    assert len(failures) == 1, failures
    diff = failures[0]
    assert "Cell outputs differ" in diff and "mismatch 'stdout'" in diff, diff
    old, new = nbval_session["checksums"]  # pytest's diff: - the fresh output, + the reference
    fresh = re.findall(r"^\s*- .*?([0-9a-f]{6,})$", diff, re.M)
    stored = re.findall(r"^\s*\+ .*?([0-9a-f]{6,})$", diff, re.M)
    assert fresh and old.endswith(fresh[0]), f"the diff shows the computed checksum: {diff}"
    assert stored and new.endswith(stored[0]), f"and the altered reference: {diff}"


@pytest.mark.slow
def test_the_notebooks_leave_their_runs_in_the_tracker(
    nbval_session: dict[str, Any], capsys
) -> None:
    """What `make demo` leaves in MLflow, with the small parameters: 04's training, 05's
    evaluation of each model (the baseline too), 06's export and its registered version."""
    from mlflow import MlflowClient

    from barsalign.cli import main
    from barsalign.registry import REGISTERED_MODEL

    c = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])  # the session's store (conftest.py)
    experiment = c.get_experiment_by_name("barsalign").experiment_id
    work = nbval_session["work"]
    trained_dir = (work / "out" / "04_finetune").resolve()
    (trained,) = c.search_runs(
        [experiment], f"tags.kind = 'train' and tags.run_dir = '{trained_dir}'"
    )
    assert trained.info.status == "FINISHED"
    assert trained.data.params["backbone"] == "mobilenetv3_large_100"
    assert "summary.best_f05" in trained.data.metrics
    tiny = (work / "runs" / "tiny" / "checkpoints" / "best.ckpt").resolve()
    baseline = (work / "out" / "05_evaluate" / "baseline.pkl").resolve()
    held = (nbval_session["synth"] / "example_set").resolve()
    for model in (tiny, baseline):
        evaluations = c.search_runs(
            [experiment],
            f"tags.kind = 'evaluate' and tags.model = '{model}' and tags.data_dir = '{held}'",
        )
        assert evaluations, f"05 evaluated {model.name}: no MLflow run"
        assert {a.path for a in c.list_artifacts(evaluations[0].info.run_id)} >= {"panel.png"}
    exports = c.search_runs([experiment], f"tags.kind = 'export' and tags.checkpoint = '{tiny}'")
    assert exports, "06's export: no MLflow run"
    versions = c.search_model_versions(f"name = '{REGISTERED_MODEL}'")
    assert exports[0].info.run_id in {v.run_id for v in versions}
    capsys.readouterr()
    assert main(["runs", "--filter", f"tags.run_dir = '{trained_dir}'"]) == 0
    assert trained.info.run_id in capsys.readouterr().out


def test_every_notebook_marks_its_contract_and_stores_only_that() -> None:
    """Each notebook has contract cells, each has a reference, and the references hold no more.

    Last in this file, so that `make notebook-refs` has written the references before it runs.
    """
    assert len(NOTEBOOKS) == 6, NOTEBOOKS
    for name in NOTEBOOKS:
        nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        cells = {c.id: c for c in contract_cells(nb)}
        assert cells, f"{name}: no cell tagged {TAG!r}"
        assert (REFS / f"{name}.ipynb").is_file(), f"{name}: no reference: make notebook-refs"
        ref = nbformat.read(REFS / f"{name}.ipynb", as_version=4)
        assert [c.id for c in ref.cells] == list(cells), (
            f"{name}: tests/notebook_refs holds other cells than the contract: make notebook-refs"
        )
        for c in ref.cells:
            assert c.source == cells[c.id].source, (
                f"{name} cell {c.id} changed since its reference: make notebook-refs, "
                "review the new outputs and commit them"
            )
            assert c.outputs, f"{name} cell {c.id}: the reference has no output"
            for o in c.outputs:
                kinds = set(o.get("data", {})) | ({"text"} if "text" in o else set())
                assert kinds <= {"text", "text/plain"}, f"{name} {c.id}: only text compares"
                assert o.get("name") != "stderr", f"{name} {c.id}: a warning is no contract"
                text = o.get("text", "") + o.get("data", {}).get("text/plain", "")
                assert "/tmp/" not in text and "/work/" not in text, "paths are sanitized"
