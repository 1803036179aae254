"""Label quality: flipped labels of a rendered set rank high; the suspects table; the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from barsalign.cli import main
from barsalign.data import load_labels
from barsalign.errors import BarsalignError
from barsalign.label_quality import (
    COLUMNS,
    SuspectConfig,
    find_suspects,
    flip_labels,
    noise_summary,
    rank_suspects,
    read_suspects,
    write_labels_csv,
    write_suspects,
)
from barsalign.synth import STOPPER_ROI, SynthConfig, pool_labels, render_dataset

POOL = SynthConfig(
    seed=11, width=384, height=288, n_example=0, n_pool=120, n_clips=0, sequence_length=(1, 2)
)
"""120 labelled pool frames, small enough to score in seconds."""


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = render_dataset(tmp_path_factory.mktemp("noise") / "set", POOL, workers=2)
    return pool_labels(root)


def test_self_confidence_ranks_the_least_believed_label_first() -> None:
    """The ranking is by P(given label), worked out here by hand, lowest first."""
    labels = np.array([1, 0, 1, 0, 1, 0])
    scores = np.array([0.9, 0.2, 0.05, 0.6, 0.7, 0.1])  # P(aligned)
    given = np.where(labels == 1, scores, 1 - scores)  # 0.9 0.8 0.05 0.4 0.7 0.9
    paths = [f"/f/img_{i:05d}.jpg" for i in range(6)]
    df = rank_suspects(paths, labels, scores, truth={paths[2]: 0, paths[3]: 0})
    assert list(df["path"]) == [paths[i] for i in np.argsort(given, kind="stable")]
    assert list(df["rank"]) == [1, 2, 3, 4, 5, 6]
    assert np.allclose(df["label_quality"], np.sort(given))
    first = df.iloc[0]
    assert (first["label"], first["truth"], first["truth_confirms"]) == (
        "aligned",
        "not_aligned",
        "yes",
    )
    assert df.set_index("path").loc[paths[3], "truth_confirms"] == "no"  # truth agrees
    assert (df.set_index("path").loc[paths[0], ["truth", "truth_confirms"]] == "").all()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:frame .* is smaller than target_size")
def test_flipped_labels_of_a_rendered_set_rank_high(pool: Path, tmp_path: Path) -> None:
    """On 120 small frames the probe is weak (out-of-fold AUROC about 0.7), yet the top tenth of
    suspects holds several times the flips a random order would put there."""
    truth = load_labels(pool)
    noisy, flipped = flip_labels(truth, 0.1, seed=0)
    assert len(flipped) == 12 and all(noisy[i].label != truth[i].label for i in flipped)
    labels = write_labels_csv(noisy, tmp_path / "noisy.csv")
    df = find_suspects(labels, SuspectConfig(folds=4, image_size=160, roi=STOPPER_ROI, C=0.1))
    assert list(df.columns) == list(COLUMNS) and len(df) == len(truth)
    flips = {str(Path(truth[i].path).resolve()) for i in flipped}
    # the renderer's truth, read from metadata.jsonl, names exactly the flipped frames
    assert {p for p, c in zip(df["path"], df["truth_confirms"], strict=True) if c == "yes"} == flips
    top = set(df["path"].head(12))  # the top 10 %: a random order holds 1.2 flips there
    assert len(flips & top) >= 4, f"{len(flips & top)} of the 12 flips in the top 12"
    out = write_suspects(df, tmp_path / "suspects.csv")
    assert [p for p, _ in read_suspects(out)] == list(df.loc[df["suspect"], "path"])


def test_cli_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "frames"
    empty.mkdir()
    out = ["--out", str(tmp_path / "s.csv")]
    cases = [
        (["--data", str(empty), *out], f"{empty}: no labelled frames"),
        (["--data", str(tmp_path / "nowhere"), *out], "nowhere does not exist"),
        (["--data", str(empty), "--out", str(tmp_path / "s.txt")], "name it *.csv"),
    ]
    for argv, message in cases:
        assert main(["suspects", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("barsalign suspects: error: ") and message in err, err
        assert err.count("\n") == 1, err
    assert not (tmp_path / "s.csv").exists()


def test_suspects_csv_round_trip(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"img_{i:05d}.jpg") for i in range(4)]
    df = rank_suspects(paths, np.array([1, 1, 0, 0]), np.array([0.01, 0.9, 0.95, 0.1]))
    out = write_suspects(df, tmp_path / "suspects.csv")
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(COLUMNS)
    assert [r["path"] for r in rows][:2] == [paths[0], paths[2]]
    flagged = [(r["path"], float(r["score"])) for r in rows if r["suspect"] == "True"]
    assert read_suspects(out) == flagged


def _markdown_cells(text: str) -> tuple[list[str], list[list[str]]]:
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()]
    return cells[0], cells[2:]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:frame .* is smaller than target_size")
def test_the_label_noise_table_comes_back_from_the_tracker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks/label_noise.py on a small rendered pool, two flip seeds: `barsalign runs
    --kind label_noise --markdown --group features` gives its numbers (and their mean) from
    MLflow alone; the features blocks asked are the ones the probe saw."""
    from barsalign.config import PROJ_ROOT
    from tests.test_benchmarks import _bench_module

    monkeypatch.syspath_prepend(str(PROJ_ROOT / "benchmarks"))  # as when run as a script
    cfg = SynthConfig(**{**POOL.__dict__, "seed": 12, "n_example": 40})
    root = render_dataset(tmp_path / "set", cfg, workers=2)
    out = tmp_path / "noise"
    results = []
    for seed in (0, 1):
        args = ["--pool", str(pool_labels(root)), "--held-out", str(root / "example_set")]
        args += ["--flip", "0.1", "--seed", str(seed), "--folds", "4", "--image-size", "64"]
        args += ["--features", "head", "stage3", "--C", "0.01", "--out", str(out / str(seed))]
        args += ["--roi", ",".join(map(str, STOPPER_ROI))]
        assert _bench_module("label_noise").main(args) == 0
        results.append(json.loads((out / str(seed) / "label_noise.json").read_text()))
    capsys.readouterr()
    query = f"tags.out LIKE '{out.resolve()}/%'"
    argv = ["runs", "--kind", "label_noise", "--markdown", "--group", "features"]
    assert main([*argv, "--filter", query]) == 0
    header, body = _markdown_cells(capsys.readouterr().out)
    assert header[:3] == ["features", "run", "seed"], header
    assert len(body) == 3, "two seeds and their mean"
    col = {k: header.index(k) for k in header}
    for res, cell in zip(results, body[:2], strict=True):
        assert cell[col["features"]] == "head+stage3"
        assert res["suspect_config"]["features"] == ["head", "stage3"]
        assert cell[col["flips"]] == str(res["flipped"]) == "12"
        assert cell[col["top"]] == str(res["top"]) == "12"
        assert cell[col["flips in top"]] == str(res["flips_in_top"])
        assert cell[col["share found"]] == f"{100 * res['share_found']:.1f} %"
        for key, name in (
            ("oof_auroc_given", "OOF AUROC (given)"),
            ("oof_auroc_vs_truth", "OOF AUROC (truth)"),
        ):
            assert float(cell[col[name]]) == pytest.approx(res[key], abs=0.0011), name
        for key in ("truth", "flipped", "relabelled"):
            got = float(cell[col[f"F0.5 {key}"]])
            assert got == pytest.approx(res["held_out_f05"][key], abs=0.0011), key
    assert body[0][col["seed"]] == "0" and body[1][col["seed"]] == "1"
    mean = body[2]
    assert mean[0] == "**mean head+stage3**"
    want = 100 * (results[0]["share_found"] + results[1]["share_found"]) / 2
    assert mean[col["share found"]].startswith(f"**{want:.1f} %**"), mean
    # the share is the flips among the top suspects, counted here from the suspects CSV
    df = pd.read_csv(out / "0" / "suspects.csv")
    top = df.head(results[0]["top"])
    assert (top["truth_confirms"] == "yes").sum() == results[0]["flips_in_top"]
    assert main(["runs", "--kind", "label_noise", "--filter", query]) == 0
    assert "head+stage3" in capsys.readouterr().out
    # the report's line (05_evaluate) from the two JSONs: the mean share and each seed's count
    line = noise_summary(out)
    mean_share = (results[0]["share_found"] + results[1]["share_found"]) / 2
    assert f"held **{mean_share:.0%}** of the flipped labels" in line, line
    for res in results:
        assert f"seed {res['seed']}: {res['flips_in_top']} of 12" in line, line


def test_noise_summary_says_not_measured(tmp_path: Path) -> None:
    assert noise_summary(tmp_path).startswith("**Not measured**: no `label_noise.json` under")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "label_noise.json").write_text('{"frames": 10}')
    with pytest.raises(BarsalignError, match="x/label_noise.json: not a label_noise.json"):
        noise_summary(tmp_path)


def test_label_noise_markdown_cells_and_means() -> None:
    """`format_markdown(kind="label_noise")`: shares in per cent, counts whole, minutes to a
    tenth, one mean row per probe with the share's sd, no mean across probes."""
    from barsalign.runs import NOISE_COLUMNS, format_markdown

    def row(seed: int, features: str, found: int, minutes: float) -> dict:
        r = {k: None for k in NOISE_COLUMNS}
        r |= {"run": f"r{seed}{features}", "seed": seed, "features": features, "C": "0.001"}
        r |= {"flips": 120, "top": 240, "flips in top": found, "share found": found / 120}
        r |= {"minutes": minutes, "OOF AUROC (given)": 0.78512, "tags": {}, "params": {}}
        return {**r, "params": {"features": features}}

    rows = [row(1, "head", 54, 2.26), row(0, "head", 60, 1.0), row(0, "head+stage3", 66, 3.0)]
    header, body = _markdown_cells(format_markdown(rows, "features", "label_noise"))
    col = {k: header.index(k) for k in header}
    assert header[0] == "features" and header.count("features") == 1
    assert [b[0] for b in body] == ["head", "head", "**mean head**", "head+stage3"], "by seed"
    first = body[0]
    assert first[col["seed"]] == "0" and first[col["share found"]] == "50.0 %"
    assert first[col["flips in top"]] == "60" and first[col["minutes"]] == "1.0"
    assert body[1][col["minutes"]] == "2.3" and first[col["OOF AUROC (given)"]] == "0.785"
    mean = body[2]
    assert mean[col["share found"]] == "**47.5 %** (sd 3.5)", mean  # 50 % and 45 %
    assert mean[col["flips in top"]] == "57.0" and mean[col["minutes"]] == "1.6"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:frame .* is smaller than target_size")
def test_finetune_scores_come_from_runs_that_never_saw_the_fold(pool: Path, tmp_path: Path) -> None:
    """`FinetuneScores`: one short real training per fold, each on the other folds' labels only;
    every frame gets a probability, and the suspects table ranks them like the probe's."""
    from barsalign.label_quality import suspects_of
    from barsalign.label_quality.finetune import FinetuneScores
    from barsalign.label_quality.suspects import fold_groups

    items = load_labels(pool)
    oof = FinetuneScores(tmp_path / "folds", {"max_steps": 2, "image_size": 64, "batch_size": 8})
    cfg = SuspectConfig(folds=2, image_size=64, roi=STOPPER_ROI)
    df, _ = suspects_of(items, cfg, "the pool", oof)
    assert len(df) == len(items) and df["score"].between(0, 1).all()
    labels = np.array([it.label for it in items])
    fold = fold_groups(labels, [it.group for it in items], 2, cfg.seed)
    for k in (0, 1):
        trained = {
            r["path"] for r in csv.DictReader((tmp_path / f"folds/fold{k}/labels.csv").open())
        }
        scored = {str(Path(it.path).resolve()) for it, f in zip(items, fold, strict=True) if f == k}
        assert trained and scored and not trained & scored
        assert (tmp_path / f"folds/fold{k}/run/checkpoints/best.ckpt").is_file()


def test_finetune_scores_refuse_settings_each_fold_sets() -> None:
    from barsalign.label_quality.finetune import FinetuneScores

    with pytest.raises(BarsalignError, match="data_dir, roi are set per fold"):
        FinetuneScores(Path("x"), {"data_dir": "a", "roi": None, "max_steps": 3})
