"""The report index and every page under reports/, in headless Chromium with no network: a tiny
training (04), its evaluation (05) and export (06) executed by papermill, as `make demo` does.

Every request a page makes must stay on the machine (file: or data:), every image must load,
and the index must open with the plant summary: the model, F0.5, precision, three error
thumbnails, and the date and data it was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_label_browser import CHROMIUM, FLAGS, browser_versions

from barsalign.reports import to_html, write_index
from barsalign.synth import SynthConfig, render_dataset

HELD_OUT = SynthConfig(seed=11, width=384, height=288, n_example=24, n_pool=0, n_clips=0)
"""Frames the tiny run never saw (another seed of the tests' small renderer)."""


@pytest.fixture(scope="module")
def reports(synth_small: Path, run_notebook, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """reports/ after 04 (tracked to the tests' store), 05 and 06 on the small data set."""
    root = tmp_path_factory.mktemp("reports")
    runs = root / "runs"
    held_out = render_dataset(root.parent / "held_out", HELD_OUT, workers=2) / "example_set"
    clip = next((synth_small / "clips").glob("*.mp4"))
    pages = [
        run_notebook(
            "04_finetune",
            runs / "finetune_tiny",
            backbone="resnet18",
            data_dir=str(synth_small / "example_set"),
            image_size=64,
            max_steps=4,
            batch_size=8,
            weights="random",
            roi="0.5,0,1,0.8",
            accelerator="cpu",
            min_f05=0.0,  # 4 steps from random weights: the pages are tested, not the model
        ),
        run_notebook(
            "05_evaluate",
            runs / "05_evaluate",
            runs_dir=str(runs),
            eval_data_dir=str(held_out),
            baseline_train_dir=str(synth_small / "example_set"),
            gallery_size=2,
            latency_frames=2,
        ),
        run_notebook(
            "06_export",
            runs / "06_export",
            runs_dir=str(runs),
            parity_data_dir=str(synth_small),
            eval_data_dir=str(held_out),
            parity_frames=4,
            latency_repeats=2,
            clip=str(clip),
            strip_frames=2,
        ),
    ]
    for page in pages:
        to_html(page)
    write_index(root)
    return root


@pytest.mark.slow
def test_every_report_page_renders_offline_with_the_summary_first(reports: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (make test does)"
    plant = json.loads((reports / "runs" / "06_export" / "plant_summary.json").read_text())
    pages = [reports / "index.html", *sorted(reports.glob("runs/*/*.html"))]
    assert len(pages) == 4, pages
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        except Exception as err:
            raise AssertionError(f"{browser_versions()}: {err}"[:2000]) from err
        context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
        requests: list[str] = []
        context.on("request", lambda r: requests.append(r.url))
        context.route(  # nothing leaves the machine, even where the check below would miss it
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(("file:", "data:"))
                else route.abort()
            ),
        )
        page = context.new_page()
        for path in pages:
            page.goto(path.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete && e.naturalWidth > 0, e.src.slice(0, 60)])"
            )
            broken = [src for ok, src in images if not ok]
            assert not broken, f"{path.name}: images that did not load: {broken}"
            if path.name != "index.html":
                assert images, f"{path.name}: a report page shows its figures"
        outside = [u for u in requests if not u.startswith(("file:", "data:"))]
        assert not outside, f"requests that left the machine: {outside}"
        # the plant manager's screen: the first thing on the index
        page.goto((reports / "index.html").as_uri(), wait_until="load")
        summary = page.locator("#summary")
        assert page.evaluate(
            "() => document.querySelector('#summary') === document.querySelector('h1 ~ section')"
        )
        assert summary.locator("#model").inner_text() == "resnet18" == plant["model"]
        assert summary.locator("#f05").inner_text() == f"{plant['f05']:.3f}"
        assert summary.locator("#precision").inner_text() == f"{plant['precision']:.3f}"
        thumbs = summary.locator(".errors img")
        assert thumbs.count() == 3 and len(plant["errors"]) == 3
        assert all(
            thumbs.nth(i).evaluate("e => e.naturalWidth") == 192 for i in range(thumbs.count())
        )
        trained = summary.locator("#trained").inner_text()
        assert plant["trained"] in trained and plant["data"] in trained
        assert plant["data"].endswith("example_set"), plant["data"]
        box = summary.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 900 * 1.5, "about one screen"
        runs = page.locator("table#runs tbody tr")
        assert runs.count() >= 1 and "finetune_tiny" in runs.first.inner_text(), (
            "the runs table comes from the tracker"
        )
        assert page.locator("table#pages").count() == 1
        browser.close()
