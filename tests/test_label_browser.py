"""End to end in a real browser: JupyterLab + headless Debian Chromium, keys → ← ↓ u on 02_label.

02 opened with its defaults (only the data and run folders set) and run all shows the live
labeler, which resumes after the frames already in the class files."""

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


def browser_versions(browser_version: str | None = None) -> str:
    """The Chromium and Playwright versions a failure message names (Chromium's own word when
    Playwright could not start it)."""
    from importlib.metadata import version

    if browser_version is None:
        run = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=60)
        browser_version = (run.stdout or run.stderr).strip() or "unknown"
    return f"chromium {browser_version}, playwright {version('playwright')}"


def write_lab_settings(settings_dir: Path) -> None:
    """JupyterLab settings for a test: no news toast, no update check, no kernel dialog."""
    ext = settings_dir / "@jupyterlab"
    notes = ext / "apputils-extension" / "notification.jupyterlab-settings"
    tracker = ext / "notebook-extension" / "tracker.jupyterlab-settings"
    for path, values in (
        (notes, {"fetchNews": "false", "checkForUpdates": False}),
        (tracker, {"autoStartDefaultKernel": True}),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def run_all_cells(page: Page, tries: int = 5) -> None:
    """Run the open notebook by JupyterLab's command (menu text changes between releases).

    The execution indicator can say idle while the kernel's websocket is still being replaced,
    and requests sent then are discarded ("Discarding N buffered messages"): wait for the
    kernel's own info reply, then send, and send again if no cell started within 20 s.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    page.evaluate(
        """async () => {
            const ctx = window.jupyterapp.shell.currentWidget.sessionContext;
            await ctx.ready;
            await ctx.session.kernel.info;
        }"""
    )
    started = (
        "() => [...document.querySelectorAll('.jp-InputPrompt')]"
        ".some(e => /[0-9*]/.test(e.textContent))"
    )
    for _ in range(tries):
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        try:
            page.wait_for_function(started, timeout=20_000)
            return
        except PlaywrightTimeout:  # the request was dropped: send it again
            continue
    raise AssertionError(f"no cell started after {tries} run-all-cells commands")


def _diagnosis(page: Page, tmp_path: Path, err: Exception, versions: str) -> str:
    """What failed, with the browser's versions, a screenshot path and the ends of the page text
    and the server log."""
    shot = tmp_path / "failure.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
        text = page.inner_text("body")[-1500:]
    except Exception as shot_err:  # the page itself may be gone
        text = f"(no page text: {shot_err})"
    log = (tmp_path / "jupyter.log").read_text(errors="replace")[-1500:]
    return (
        f"{type(err).__name__}: {str(err)[:500]}\n{versions}\nscreenshot: {shot}\n"
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
    assert "\ninteractive = True" in src, "the defaults show the live labeler"
    params["source"] = src
    labels = tmp_path / "run" / "labels"  # one frame labelled earlier: the labeler resumes after it
    labels.mkdir(parents=True)
    pool = sorted((synth_small / "train_set").glob("img_*.jpg"))
    class_file(labels, "aligned").write_text(f"{pool[0]}\n")
    (tmp_path / "02_label.ipynb").write_text(json.dumps(nb))
    port, token = _free_port(), "barsalign-e2e"
    write_lab_settings(tmp_path / "lab-settings")
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "HOME": str(tmp_path),
    }
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
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells by command
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
            try:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            except Exception as err:
                raise AssertionError(f"{browser_versions()}: {err}"[:2000]) from err
            versions = browser_versions(browser.version)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                page.goto(f"{url}/lab/tree/02_label.ipynb?token={token}", timeout=120_000)
                page.wait_for_selector(".jp-Notebook", timeout=120_000)
                page.wait_for_selector(
                    ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000
                )
                run_all_cells(page)
                box = page.wait_for_selector(".barsalign-labeler", timeout=180_000)
                page.wait_for_timeout(1500)
                box.hover()
                for key in ("ArrowRight", "ArrowLeft", "ArrowDown", "u"):
                    box.hover()
                    page.keyboard.press(key)
                    page.wait_for_timeout(800)
                page.screenshot(path=str(tmp_path / "labeler.png"))
                if os.environ.get("LABEL_SHOT"):  # keep the screenshot for a person to look at
                    shutil.copy(tmp_path / "labeler.png", os.environ["LABEL_SHOT"])
            except Exception as err:  # keep what the browser showed: a flaky wait is then readable
                raise AssertionError(_diagnosis(page, tmp_path, err, versions)) from err
            browser.close()
        journal = [json.loads(x) for x in (labels / "journal.jsonl").read_text().splitlines()]
        assert [(e["annotator"], e["path"]) for e in journal[:1]] == [("import", str(pool[0]))]
        mine = [e for e in journal if e["annotator"] == "me"]
        assert [(e["action"], e["cls"]) for e in mine] == [
            ("label", "aligned"),
            ("label", "not_aligned"),
            ("label", "skipped"),
            ("undo", "skipped"),
        ]
        assert [e["path"] for e in mine[:3]] == [str(p) for p in pool[1:4]], "resumed after it"
        assert len(read_class_file(class_file(labels, "aligned"))) == 2
        assert len(read_class_file(class_file(labels, "not_aligned"))) == 1
        assert read_class_file(class_file(labels, "skipped")) == []
        assert (tmp_path / "labeler.png").stat().st_size > 10_000
    finally:
        jup.terminate()
        jup.wait(30)


@pytest.mark.slow
def test_failure_names_browser_versions() -> None:
    from importlib.metadata import version

    text = browser_versions()
    assert text.startswith("chromium Chromium ") and text.endswith(
        f"playwright {version('playwright')}"
    )
