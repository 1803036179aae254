"""The EDA's cluster view: real Lite0 embeddings of rendered frames on a 2-D map, the frames a
lasso or a click selects, and the widget that turns mouse events on its picture into them.

The tests on real embeddings are slow (a backbone pass over 20 frames); the first test checks
the selection on a map of known points without one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from barsalign.errors import BarsalignError
from barsalign.viz import eda
from barsalign.viz.cluster_map import ClusterMap, ClusterWidget, project


@pytest.fixture(scope="module")
def cmap(synth_small: Path) -> ClusterMap:
    """20 frames of the tests' small set (10 per class), embedded at 96 px without a cache."""
    df = eda.inventory(synth_small)
    frames = df[df["file"].isin(eda.pick_examples(df, 10, by="label", seed=0))]
    return ClusterMap.build(synth_small, frames, image_size=96, cache_dir=None)


def test_selection_on_a_map_of_known_points(tmp_path: Path) -> None:
    import pandas as pd

    xy = np.array([[0, 0], [1, 0], [0, 1], [5, 5], [6, 5], [9, 9]], dtype=float)
    frames = pd.DataFrame({"file": [f"f{i}.jpg" for i in range(6)], "label": ["aligned"] * 6})
    cmap = ClusterMap(tmp_path, frames, xy)
    assert cmap.select([(-1, -1), (2, -1), (-1, 2)])["file"].tolist() == [
        "f0.jpg",
        "f1.jpg",
        "f2.jpg",
    ]
    assert cmap.select([(4, 4), (7, 4), (7, 6), (4, 6)])["file"].tolist() == ["f3.jpg", "f4.jpg"]
    assert cmap.select_near(5.6, 5.2)["file"].tolist() == ["f4.jpg"]
    assert cmap.select_near(8, 8)["path"].tolist() == [str(tmp_path / "f5.jpg")]
    assert cmap.farthest(1)["file"].tolist() == ["f5.jpg"]
    back = cmap.to_map(cmap.to_pixels(xy))  # the picture's pixels and the map agree
    np.testing.assert_allclose(back, xy, atol=1e-9)
    with pytest.raises(BarsalignError, match="6 frames but map coordinates"):
        ClusterMap(tmp_path, frames, xy[:5])


def _leftmost_box(xy: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The 2-6 leftmost points (as many as leave the widest gap to the next) and a lasso, a
    rectangle, around exactly them."""
    order = np.argsort(xy[:, 0], kind="stable")
    xs = xy[order, 0]
    n = max(range(2, 7), key=lambda k: xs[k] - xs[k - 1])
    cut = (xs[n - 1] + xs[n]) / 2
    lo, hi = xy[:, 1].min() - 1, xy[:, 1].max() + 1
    return sorted(order[:n].tolist()), np.array(
        [[xs[0] - 1, lo], [cut, lo], [cut, hi], [xs[0] - 1, hi]]
    )


@pytest.mark.slow
def test_the_map_holds_every_frame_with_its_session_and_a_real_embedding(
    cmap: ClusterMap, synth_small: Path
) -> None:
    assert len(cmap.frames) == 20 and cmap.xy.shape == (20, 2)
    assert set(cmap.frames["label"]) == {"aligned", "not_aligned"}
    assert cmap.frames["session"].notna().all()  # from the renderer's metadata
    assert {"label", "scene", "session"} <= set(cmap.colour_columns())
    assert np.isfinite(cmap.xy).all() and len({tuple(p) for p in cmap.xy.round(6)}) == 20
    # the same frames embedded again land on the same map (features by content, seeded PCA)
    again = ClusterMap.build(synth_small, cmap.frames, image_size=96, cache_dir=None)
    np.testing.assert_allclose(again.xy, cmap.xy, atol=1e-4)


@pytest.mark.slow
def test_a_lasso_around_known_points_returns_exactly_those_frames(cmap: ClusterMap) -> None:
    inside, box = _leftmost_box(cmap.xy)
    got = cmap.select(box)
    expected = [str(cmap.root / cmap.frames["file"][i]) for i in inside]
    assert sorted(got["path"]) == sorted(expected)
    assert set(got["label"]) <= {"aligned", "not_aligned"}
    # a small round lasso about one point takes that point alone
    i = 7
    d = np.hypot(*(cmap.xy - cmap.xy[i]).T)
    r = np.sort(d)[1] / 2
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = cmap.xy[i] + r * np.column_stack([np.cos(angles), np.sin(angles)])
    assert cmap.select(ring)["file"].tolist() == [cmap.frames["file"][i]]
    assert cmap.select(ring + 10 * (cmap.xy.max() - cmap.xy.min())).empty


@pytest.mark.slow
def test_a_click_returns_the_nearest_frame(cmap: ClusterMap) -> None:
    for i in (0, 5, 13):
        d = np.hypot(*(cmap.xy - cmap.xy[i]).T)
        nudge = np.sort(d)[1] / 3  # nearer this point than any other
        got = cmap.select_near(cmap.xy[i, 0] + nudge, cmap.xy[i, 1])
        assert got["file"].tolist() == [cmap.frames["file"][i]]
    three = cmap.select_near(*cmap.xy[2], k=3)
    assert three["file"].iloc[0] == cmap.frames["file"][2] and len(three) == 3


@pytest.mark.slow
def test_bad_lassos_and_methods_fail_in_one_line(cmap: ClusterMap) -> None:
    with pytest.raises(BarsalignError, match="at least 3"):
        cmap.select([(0, 0), (1, 1)])
    with pytest.raises(BarsalignError, match="unknown map method 'umap'"):
        project(np.zeros((5, 4)), "umap")
    with pytest.raises(BarsalignError, match="no column 'weather'"):
        cmap.figure("weather")


@pytest.mark.slow
def test_tsne_maps_the_same_frames(cmap: ClusterMap, synth_small: Path) -> None:
    from barsalign.active import embed

    x = embed([synth_small / f for f in cmap.frames["file"]], None, 96, cache_dir=None)
    xy = project(x, "tsne")
    assert xy.shape == (20, 2) and np.isfinite(xy).all()


@pytest.mark.slow
def test_the_widget_turns_a_click_and_a_lasso_on_its_picture_into_frames(
    cmap: ClusterMap,
) -> None:
    ui = ClusterWidget(cmap, by="session", max_thumbs=4)
    assert ui.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"label", "scene", "session"} <= set(ui.colour.options) and ui.colour.value == "session"
    # a click: mouse down and up on the pixel of the point farthest from its nearest neighbour
    d = np.hypot(*(cmap.xy[:, None] - cmap.xy[None]).transpose(2, 0, 1)) + np.eye(20) * 1e9
    lone = int(np.argmax(d.min(axis=1)))
    (px, py) = cmap.to_pixels([cmap.xy[lone]])[0]
    for kind in ("mousedown", "mouseup"):
        ui.handle({"type": kind, "dataX": round(px), "dataY": round(py)})
    path = str(cmap.root / cmap.frames["file"][lone])
    assert ui.selection["path"].tolist() == [path]
    assert path in ui.table.value and "1 frame</b>" in ui.info.value
    assert ui.thumbs.value[:8] == b"\x89PNG\r\n\x1a\n"
    # a lasso: drag around the leftmost points
    inside, box = _leftmost_box(cmap.xy)
    corners = cmap.to_pixels(box)
    edges = [
        corners[k] + t * (corners[(k + 1) % 4] - corners[k]) for k in range(4) for t in (0, 0.5)
    ]
    drag = [(round(x), round(y)) for x, y in edges]  # ipyevents sends whole pixels
    ui.handle({"type": "mousedown", "dataX": drag[0][0], "dataY": drag[0][1]})
    for x, y in drag[1:]:
        ui.handle({"type": "mousemove", "dataX": x, "dataY": y})
    ui.handle({"type": "mouseup", "dataX": drag[0][0], "dataY": drag[0][1]})
    expected = sorted(str(cmap.root / cmap.frames["file"][i]) for i in inside)
    assert sorted(ui.selection["path"]) == expected
    assert f"{len(inside)} frames</b>" in ui.info.value
    # colouring by another column redraws the same map
    ui.colour.value = "label"
    assert ui.by == "label" and ui.image.value[:8] == b"\x89PNG\r\n\x1a\n"
