"""Mutation testing of the seams: mutmut over each module with the fast tests that cover it.

For each target, a copy of the working tree (the files git tracks or does not ignore) in a
temporary folder gets a `[tool.mutmut]` of its own (that module, its tests), `mutmut run`
mutates it and runs, for each mutant, the tests that reach the mutated function. The table says
how many mutants the tests killed and how many survived; `--json` keeps every survivor's name
(`mutmut show NAME` in the copy prints its diff).

    nice -n 19 python benchmarks/mutation_rates.py --only smoother metrics --json out.json

BARSALIGN_TEST_DATA (default: a folder in the system's temp dir) keeps the tests' small rendered
set between the many test sessions a run starts.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS: dict[str, tuple[str, str, list[str]]] = {
    # name: (file, or a package's files as "folder/*", mutant names, the tests that cover it)
    "preprocess": (
        "barsalign/preprocess/*",
        "barsalign.preprocess.*",
        ["tests/test_preprocess.py"],
    ),
    "inference": ("barsalign/inference/*", "barsalign.inference.*", ["tests/test_inference.py"]),
    "metrics": (
        "barsalign/evaluation/metrics.py",
        "barsalign.evaluation.metrics.*",
        ["tests/test_metrics.py"],
    ),
    "labelstore": (
        "barsalign/labelstore/*",
        "barsalign.labelstore.*",
        [
            "tests/test_labeling.py",
            "tests/test_labels.py",  # the conversions to and from the journal
            "tests/test_active.py::test_pseudo_labels_never_overwrite_survive_restart_and_undo_in_one_step",
            "tests/test_active.py::test_labeler_order_pseudo_reviews_least_confident_first",
        ],
    ),
    "smoother": (
        "barsalign/monitor/smoother.py",
        "barsalign.monitor.smoother.xǁSmootherǁ*",
        [
            "tests/test_monitor.py",
            "-k",
            "green or flicker or amber or reset or smoother or defaults or edges",
        ],
    ),
}
SETTINGS: dict[str, dict[str, object]] = {
    # the inference tests build an ONNX export in a session fixture and run ONNX Runtime and
    # torch threads: each mutant's time limit is (its tests' time + timeout_constant seconds) x
    # the multiplier, and mutmut's fork server forks before torch starts a thread (a fork of
    # the default runner, taken after the tests' warm-up, hangs on a lock a thread held)
    "inference": {"timeout_constant": 120, "process_isolation": "forkserver"},
}
"""`[tool.mutmut]` settings of one target beyond the defaults."""
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 36: "timeout"}


def copy_tree(dest: Path) -> None:
    """The working tree's files (tracked, or untracked and not ignored) into `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (p.decode() for p in listed)):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def configure(tree: Path, path: str, tests: list[str], settings: dict[str, object]) -> None:
    """Replace the copy's `[tool.mutmut]` with one for `path` and `tests`."""
    pyproject = tree / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    text = re.sub(r"\n\[tool\.mutmut\]\n(?:(?!\n\[).)*", "", text, flags=re.S)
    text += (
        "\n[tool.mutmut]\n"
        'source_paths = ["barsalign"]\n'
        'also_copy = ["conf", "notebooks", "benchmarks", "docs", "README.md"]\n'
        f"only_mutate = {json.dumps([path])}\n"
        'pytest_add_cli_args = ["-m", "not slow", "-p", "no:cacheprovider"]\n'
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
    )
    text += "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    pyproject.write_text(text, encoding="utf-8")


def run_target(name: str, keep: Path | None) -> dict:
    """Mutate one target in a fresh copy; its counts and survivors."""
    path, names, tests = TARGETS[name]
    tree = Path(tempfile.mkdtemp(prefix=f"mutmut-{name}-"))
    copy_tree(tree)
    configure(tree, path, tests, SETTINGS.get(name, {}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("BARSALIGN_TEST_DATA", str(Path(tempfile.gettempdir()) / "barsalign-test-data"))
    env |= {"HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    started = time.perf_counter()
    mutmut = Path(sys.executable).with_name("mutmut")
    done = subprocess.run(
        [str(mutmut), "run", names], cwd=tree, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    metas = sorted((tree / "mutants").glob(f"{path}.meta"))
    if done.returncode != 0 or not metas:
        tail = (done.stdout + done.stderr).strip()[-3000:]
        raise SystemExit(f"{name}: mutmut run failed (exit {done.returncode}) in {tree}:\n{tail}")
    codes = {k: v for m in metas for k, v in json.loads(m.read_text())["exit_code_by_key"].items()}
    picked = {k: v for k, v in codes.items() if fnmatch.fnmatchcase(k, names)}
    status = {
        k: STATUS.get(v, "suspicious" if v is not None else "not checked")
        for k, v in picked.items()
    }
    counts = Counter(status.values())
    covered = counts["killed"] + counts["survived"] + counts["timeout"] + counts["suspicious"]
    if keep is None:
        shutil.rmtree(tree, ignore_errors=True)
    return {
        "target": name,
        "file": path,
        "tests": " ".join(tests),
        "mutants": len(picked),
        **{k: counts[k] for k in ("killed", "survived", "no tests", "timeout", "suspicious")},
        "not checked": counts["not checked"],
        "survival_covered": round(counts["survived"] / covered, 3) if covered else None,
        "survival_all": round((counts["survived"] + counts["no tests"]) / len(picked), 3)
        if picked
        else None,
        "survivors": sorted(k for k, s in status.items() if s in ("survived", "no tests")),
        "seconds": round(seconds),
        "copy": str(tree) if keep is not None else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--json", type=Path, help="write every target's counts and survivors")
    parser.add_argument("--keep", action="store_true", help="keep the copies (mutmut show)")
    args = parser.parse_args()
    rows = []
    print(
        "| target | mutants | killed | survived | no tests | timeout | survival (covered) | "
        "survival (all) | minutes |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.only:
        row = run_target(name, Path(".") if args.keep else None)
        rows.append(row)
        print(
            f"| {name} | {row['mutants']} | {row['killed']} | {row['survived']} | "
            f"{row['no tests']} | {row['timeout']} | {row['survival_covered']} | "
            f"{row['survival_all']} | {row['seconds'] / 60:.1f} |",
            flush=True,
        )
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
