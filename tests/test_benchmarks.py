"""benchmarks/: sweep_recipes's recipes parse or fail in one line and a tiny sweep trains;
hard_pool mixes a rendered pool with hard frames into a CSV the data module reads."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from barsalign.config import PROJ_ROOT
from barsalign.errors import BarsalignError


def _bench_module(name: str):
    path = PROJ_ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sweep_module():
    return _bench_module("sweep_recipes")


def _tiny_profile(folder: Path, data_dir: Path, extra: str = "") -> Path:
    """A profile that trains resnet18 from scratch at 64 px for one epoch on `data_dir`."""
    profile = folder / "tiny.yaml"
    profile.write_text(
        "backbone: resnet18\nimage_size: 64\nepochs: 1\nweights: random\naccelerator: cpu\n"
        f"data_dir: {data_dir}\n{extra}"
    )
    return profile


def test_recipes_parse_with_yaml_values_or_fail_in_one_line() -> None:
    sweep = _sweep_module()
    name, changes = sweep.parse_recipe("no blur: augment={p_blur: 0}; pos_weight=0.333")
    assert name == "no blur" and changes == {"augment": {"p_blur": 0}, "pos_weight": 0.333}
    for bad, match in (
        ("no name here", "expected 'NAME: key=value"),
        ("x: lrate=0.1", "'lrate=0.1' is not key=value with a FinetuneConfig key"),
        ("x: lr", "'lr' is not key=value"),
        ("x: augment={p_blur: [}", "augment's value"),
    ):
        with pytest.raises(BarsalignError, match=match):
            sweep.parse_recipe(bad)


@pytest.mark.slow
def test_a_tiny_sweep_trains_every_recipe_and_seed(
    synth_small: Path, tmp_path: Path, capsys
) -> None:
    sweep = _sweep_module()
    profile = _tiny_profile(tmp_path, synth_small / "example_set")
    out = tmp_path / "sweep"
    args = ["--profile", str(profile), "--seeds", "2", "--out", str(out)]
    assert sweep.main([*args, "--recipe", "no aug: augment=false", "--set", "batch_size=8"]) == 0
    rows = json.loads((out / "sweep.json").read_text())
    assert [r["recipe"] for r in rows] == ["profile", "no aug"]
    assert all(len(r["f05"]) == 2 and 0.0 <= r["mean"] <= 1.0 for r in rows)
    for run in ("profile_s0", "profile_s1", "no_aug_s0", "no_aug_s1"):
        assert (out / run / "summary.json").is_file()
    config = (out / "no_aug_s1" / "config.yaml").read_text()
    assert "augment: false" in config and "seed: 1" in config and "batch_size: 8" in config
    table = capsys.readouterr().out
    assert "| no aug | augment=False |" in table and "| profile | - |" in table
    assert sweep.main([*args, "--recipe", "bad: augment={p_blurr: 0}"]) == 2
    assert "error: recipe 'bad': augment: no field 'p_blurr'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_sweep_scores_each_run_on_a_held_out_folder(
    synth_small: Path, tmp_path: Path, capsys
) -> None:
    sweep = _sweep_module()
    profile = _tiny_profile(tmp_path, synth_small / "example_set", "batch_size: 8\n")
    out = tmp_path / "sweep"
    held = synth_small / "example_set"
    args = ["--profile", str(profile), "--seeds", "2", "--out", str(out), "--held-out", str(held)]
    assert sweep.main(args) == 0
    (row,) = json.loads((out / "sweep.json").read_text())
    assert len(row["held_out_f05"]) == 2 and all(0.0 <= f <= 1.0 for f in row["held_out_f05"])
    assert row["held_out_mean"] == pytest.approx(sum(row["held_out_f05"]) / 2)
    assert "held-out F0.5 per seed | held-out mean |" in capsys.readouterr().out
    (tmp_path / "one_class" / "aligned").mkdir(parents=True)
    frame = next((held / "aligned").glob("*.jpg"))
    (tmp_path / "one_class" / "aligned" / frame.name).write_bytes(frame.read_bytes())
    one = ["--profile", str(profile), "--held-out", str(tmp_path / "one_class")]
    assert sweep.main(one) == 2
    assert "needs aligned and not_aligned frames" in capsys.readouterr().err
    (tmp_path / "one_class" / "not_aligned").mkdir()
    (tmp_path / "one_class" / "not_aligned" / "cut.jpg").write_bytes(frame.read_bytes()[:200])
    assert sweep.main(one) == 2
    assert "cut.jpg" in capsys.readouterr().err


def test_hard_pool_replaces_whole_clip_groups_or_adds(synth_small: Path, tmp_path: Path) -> None:
    import cv2

    from barsalign.data import load_labels
    from barsalign.synth import load_metadata

    hard_pool = _bench_module("hard_pool")
    out = tmp_path / "hard"
    argv = ["--pool", str(synth_small), "--out", str(out), "--frames", "6", "--hard-fraction", "1"]
    assert hard_pool.main(argv) == 0
    extra = load_metadata(out / "frames")
    assert len(extra) == 6 and {r["kind"] for r in extra if r["label"] == "not_aligned"} == {"hard"}
    assert all(3.0 <= r["max_gap_px"] <= 4.5 for r in extra if r["kind"] == "hard")
    frame = cv2.imread(str(out / "frames" / extra[0]["file"]))
    assert frame.shape[:2] == (288, 384)  # the pool's camera, not the default 1152x864
    items = load_labels(out / "labels.csv")  # relative paths resolve from the CSV's folder
    assert all(it.path.is_file() for it in items)
    pool = {str((synth_small / r["file"]).resolve()): r for r in load_metadata(synth_small)}
    kept = [pool[str(it.path.resolve())] for it in items if str(it.path.resolve()) in pool]
    assert len(items) - len(kept) == 6
    dropped = {r["clip_id"] for r in pool.values() if r["file"].startswith("train_set/")} - {
        r["clip_id"] for r in kept
    }
    dropped_frames = sum(1 for r in pool.values() if r["clip_id"] in dropped)
    assert dropped and dropped_frames >= 6 and len(kept) == 24 - dropped_frames
    pairs = zip(items[: len(kept)], kept, strict=True)
    assert all(it.label == (r["label"] == "aligned") for it, r in pairs)
    assert hard_pool.main([*argv, "--add"]) == 0
    assert len(load_labels(out / "labels.csv")) == 24 + 6
    assert hard_pool.main([*argv, "--hard-gap", "3"]) == 2


def test_hard_pool_twins_pair_each_hard_scene_with_its_flush_twin(
    synth_small: Path, tmp_path: Path
) -> None:
    from barsalign.synth import load_metadata

    hard_pool = _bench_module("hard_pool")
    out = tmp_path / "twins"
    argv = ["--pool", str(synth_small), "--out", str(out), "--frames", "8", "--hard-fraction", "1"]
    assert hard_pool.main([*argv, "--twins"]) == 0
    extra = load_metadata(out / "frames")
    kinds = Counter((r["kind"], r["label"]) for r in extra)
    assert set(kinds) == {("hard", "not_aligned"), ("twin", "aligned")}, kinds
    assert kinds["hard", "not_aligned"] == kinds["twin", "aligned"] == 4


def test_label_efficiency_counts_the_labels_each_strategy_needs() -> None:
    bench = _bench_module("label_efficiency")

    def run(strategy: str, seed: int, curve: list[float]) -> dict:
        pseudo = {50: {"f05": curve[0] + 0.1, "n": 40 + seed, "wrong_rate": 0.1 * seed}}
        return {
            "strategy": strategy,
            "seed": seed,
            "curve": dict(zip((50, 100, 150), curve, strict=True)),
            "pseudo": pseudo,
            "clips_per_batch": 10.0 + seed,
        }

    res = {
        "all_mean": 0.80,
        "runs": [
            run("random", 0, [0.5, 0.78, 0.80]),
            run("random", 1, [0.5, 0.78, 0.78]),  # mean 0.79 at 150: within 0.01 of all
            run("diverse", 0, [0.6, 0.80, 0.91]),
            run("diverse", 1, [0.6, 0.78, 0.91]),
        ],
    }
    s = bench.summarise(res, [50, 100], [50, 100, 150])
    assert s["random"]["labels_to_all"] == 150 and s["random"]["labels_to_090"] is None
    assert s["diverse"]["labels_to_all"] == 100 and s["diverse"]["labels_to_090"] == 150
    assert s["diverse"]["f05"] == {50: pytest.approx(0.6), 100: pytest.approx(0.79)}
    assert s["diverse"]["pseudo_f05"] == {50: pytest.approx(0.7)}
    assert s["diverse"]["pseudo_wrong_rate"][50] == pytest.approx(0.05)
    assert s["random"]["clips_per_batch"] == 10.5


def test_gap_signal_counts_the_pixels_a_short_bar_changes() -> None:
    """benchmarks/gap_signal.py: a twin pair differs where the short bar is, and scaling the
    frames down leaves fewer changed pixels; identical frames differ nowhere."""
    bench = _bench_module("gap_signal")
    from barsalign.synth.gap_pairs import _pair_specs
    from barsalign.synth.render import render

    # the first lit pair (a night pair's 3 px gap can change no pixel by 20 levels)
    short, flush, meta = next(
        p for p in _pair_specs("left_low", 4, 3) if p[2]["lighting"] != "night"
    )
    assert max(meta["gaps_px"]) > 0
    a = bench._gray_jpeg(render(short), 95)
    b = bench._gray_jpeg(render(flush), 95)
    native, half = bench.signal(a, b, 1.0, 20.0), bench.signal(a, b, 0.5, 20.0)
    assert native > half >= 0 and native > 0
    assert bench.signal(a, a.copy(), 1.0, 0.0) == 0


def test_pretrain_looks_crops_each_frame_to_its_looks_stopper_square(tmp_path: Path) -> None:
    """benchmarks/pretrain_looks.py: every frame of the chosen splits becomes one square crop
    of `side` px under its label's folder, named after its look (or a tag) and split."""
    import cv2

    from barsalign.synth.dataset import load_metadata, render_look_sets

    bench = _bench_module("pretrain_looks")
    look = render_look_sets(
        "top_down", tmp_path / "top_down", seed=2, workers=1, n_train=2, n_val=1, n_test=1
    )
    n = bench.crop_look(look, ("train", "test"), tmp_path / "crops", 48)
    written = sorted((tmp_path / "crops").rglob("*.jpg"))
    assert n == len(written) == 3
    truth = {
        f"top_down_{s}_{Path(m['file']).name}": m["label"]
        for s in ("train", "test")
        for m in load_metadata(look / s)
    }
    for path in written:
        assert truth[path.name] == path.parent.name
        assert cv2.imread(str(path)).shape == (48, 48, 3)
    # one tag per rendered seed keeps two seeds' same-named clips apart
    assert bench.crop_look(look, ("val",), tmp_path / "crops", 48, tag="top_down_s2") == 1
    assert len(list((tmp_path / "crops").rglob("top_down_s2_val_*.jpg"))) == 1
    with pytest.raises(BarsalignError, match="not rendered"):
        bench.main(["--looks", "no_such_look", "--out", str(tmp_path / "x")])


def test_pretrain_looks_saves_the_backbone_a_fine_tune_starts_from(tmp_path: Path) -> None:
    """`--save`: the checkpoint's backbone alone, float16, loadable as `pretrained_path`."""
    import torch
    from safetensors.torch import load_file

    from barsalign.export import untrained_checkpoint
    from barsalign.modeling.backbones import create_backbone

    bench = _bench_module("pretrain_looks")
    ckpt = untrained_checkpoint(tmp_path / "best.ckpt", image_size=64)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    n = bench.save_backbone(ckpt, tmp_path / "w" / "lite0.safetensors")
    saved = load_file(str(tmp_path / "w" / "lite0.safetensors"))
    assert n == len(saved) == sum(k.startswith("backbone.") for k in state)
    assert not any(k.startswith(("head", "backbone.")) for k in saved)
    model, source = create_backbone(
        "tf_efficientnet_lite0", pretrained_path=tmp_path / "w" / "lite0.safetensors"
    )
    assert source.startswith("file:")
    for key, value in model.state_dict().items():
        want = state[f"backbone.{key}"]
        if want.is_floating_point():
            assert saved[key].dtype == torch.float16
            assert torch.allclose(value, want, rtol=1e-3, atol=1e-4), key
        else:
            assert torch.equal(value, want), key


def test_label_efficiency_network_points_run_most_telling_first_and_tabulate() -> None:
    bench = _bench_module("label_efficiency")
    picks = [
        {"seed": s, "strategy": st, "labels": k, "csv": f"s{s}_{st}_{k}.csv"}
        for s in (0, 1)
        for st in ("random", "uncertainty")
        for k in (50, 500, 1000)
    ] + [{"seed": s, "strategy": "all", "labels": "all", "csv": f"s{s}_all.csv"} for s in (0, 1)]
    for p in picks:  # the seed batch is one label set for both strategies
        if p["labels"] == 50:
            p["csv"] = f"s{p['seed']}_seed_50.csv"
    todo = bench.job_order(picks)
    assert len(todo) == 2 + 2 * 2 * 2 + 2  # the two seed batches trained once each
    keys = list(todo)
    assert keys[:2] == ["s0_all.csv", "s1_all.csv"]
    assert [todo[k]["labels"] for k in keys[2:]] == [500] * 4 + [1000] * 4 + [50] * 2
    assert len(todo["s0_seed_50.csv"]["rows"]) == 2
    rows = [
        {"strategy": "all", "labels": "all", "f05": 0.88},
        {"strategy": "all", "labels": "all", "f05": 0.86},  # all: 0.87, goal 0.86
        {"strategy": "random", "labels": 500, "f05": 0.80},
        {"strategy": "random", "labels": 1000, "f05": 0.86},
        {"strategy": "uncertainty", "labels": 500, "f05": 0.85},
        {"strategy": "uncertainty", "labels": 500, "f05": 0.87},
        {"strategy": "uncertainty", "labels": 1000, "error": "RuntimeError: out of memory"},
    ]
    lines = bench.network_table(rows).splitlines()
    assert lines[0].startswith("all (every pool frame, 2 seeds): 0.870")
    random_row = next(line for line in lines if line.startswith("| random"))
    unc_row = next(line for line in lines if line.startswith("| uncertainty"))
    assert random_row.endswith("| 1000 |") and "0.800 ±0.000 (1)" in random_row
    assert unc_row.endswith("| 500 |") and "| - |" in unc_row  # the failed run left out


def test_roi_stability_measures_a_box_against_the_stopper() -> None:
    from barsalign.synth.geometry import STOPPER_ROI

    bench = _bench_module("roi_stability")
    assert bench.against_stopper(STOPPER_ROI) == pytest.approx((1.0, 1.0))
    assert bench.against_stopper((0.0, 0.0, 0.5, 1.0))[0] == 0.0  # the left half misses it
    x0, y0, x1, y1 = STOPPER_ROI
    cover, area = bench.against_stopper((x0, y0, (x0 + x1) / 2, y1))
    assert cover == pytest.approx(0.5) and area == pytest.approx(0.5)


def test_set_items_become_typed_settings_and_a_bare_key_is_one_line() -> None:
    from barsalign.errors import BarsalignError
    from barsalign.modeling.train_config import parse_settings

    got = parse_settings(["accelerator=gpu", " lr=0.0003", "augment=false", "roi=[0, 0, 1, 1]"])
    assert got == {"accelerator": "gpu", "lr": 0.0003, "augment": False, "roi": [0, 0, 1, 1]}
    with pytest.raises(BarsalignError, match="--set 'lr': expected key=value"):
        parse_settings(["lr"])
