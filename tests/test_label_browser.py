"""End to end in a real browser: JupyterLab + headless Debian Chromium, keys → ← ↓ u on 02_label."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from barsalign.config import NOTEBOOKS_DIR
from barsalign.labelstore import class_file, read_class_file

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _diagnosis(page: Page, tmp_path: Path, err: Exception) -> str:
    """What failed, with a screenshot path and the ends of the page text and the server log."""
    shot = tmp_path / "failure.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
        text = page.inner_text("body")[-1500:]
    except Exception as shot_err:  # the page itself may be gone
        text = f"(no page text: {shot_err})"
    log = (tmp_path / "jupyter.log").read_text(errors="replace")[-1500:]
    return (
        f"{type(err).__name__}: {str(err)[:500]}\nscreenshot: {shot}\n"
        f"--- page text (end) ---\n{text}\n--- jupyter.log (end) ---\n{log}"
    )


@pytest.mark.slow
def test_label_in_browser(synth_small: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (make test does)"
    nb = json.loads((NOTEBOOKS_DIR / "02_label.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    src = "".join(params["source"])
    src = src.replace("data_dir = None", f"data_dir = {str(synth_small)!r}")
    src = src.replace("run_dir = None", f"run_dir = {str(tmp_path / 'run')!r}")
    src = src.replace("interactive = False", "interactive = True")
    params["source"] = src
    (tmp_path / "02_label.ipynb").write_text(json.dumps(nb))
    port, token = _free_port(), "barsalign-e2e"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "HOME": str(tmp_path)}
    env.pop("JUPYTER_DATA_DIR", None)
    jup = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={tmp_path}",
            "--allow-root",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "jupyter.log", "w"),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                page.goto(f"{url}/lab/tree/02_label.ipynb?token={token}", timeout=120_000)
                page.wait_for_selector(".jp-Notebook", timeout=120_000)
                page.wait_for_selector(
                    ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000
                )
                page.click("text=Run", timeout=30_000)
                page.click("text=Run All Cells", timeout=30_000)
                # JupyterLab sometimes asks which kernel to use when the kernel specs load after
                # the notebook opens (a race in JupyterLab, not ours): accept the preferred one
                deadline = time.monotonic() + 180
                while True:
                    found = page.wait_for_selector(
                        ".barsalign-labeler, .jp-Dialog .jp-mod-accept", timeout=180_000
                    )
                    if "barsalign-labeler" in (found.get_attribute("class") or ""):
                        box = found
                        break
                    assert time.monotonic() < deadline, "the labeler never showed"
                    found.click()
                    page.wait_for_timeout(500)
                page.wait_for_timeout(1500)
                box.hover()
                labels = tmp_path / "run" / "labels"
                for key in ("ArrowRight", "ArrowLeft", "ArrowDown", "u"):
                    box.hover()
                    page.keyboard.press(key)
                    page.wait_for_timeout(800)
                page.screenshot(path=str(tmp_path / "labeler.png"))
                if os.environ.get("LABEL_SHOT"):  # keep the screenshot for a person to look at
                    shutil.copy(tmp_path / "labeler.png", os.environ["LABEL_SHOT"])
            except Exception as err:  # keep what the browser showed: a flaky wait is then readable
                raise AssertionError(_diagnosis(page, tmp_path, err)) from err
            browser.close()
        journal = [json.loads(x) for x in (labels / "journal.jsonl").read_text().splitlines()]
        assert [(e["action"], e["cls"]) for e in journal] == [
            ("label", "aligned"),
            ("label", "not_aligned"),
            ("label", "skipped"),
            ("undo", "skipped"),
        ]
        assert len(read_class_file(class_file(labels, "aligned"))) == 1
        assert len(read_class_file(class_file(labels, "not_aligned"))) == 1
        assert read_class_file(class_file(labels, "skipped")) == []
        assert (tmp_path / "labeler.png").stat().st_size > 10_000
    finally:
        jup.terminate()
        jup.wait(30)
