"""The console script: `--help` is instant (no torch), and its table agrees with the commands."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from barsalign.cli import COMMANDS, build_parser, main

HEAVY = ("torch", "lightning", "timm", "onnxruntime", "sklearn")

PROBE = """
import json, sys
from barsalign.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


def heavy_imports(*argv: str) -> list[str]:
    """The heavy libraries imported by running `barsalign ARGV` in a fresh interpreter."""
    probe = PROBE.format(heavy=repr(set(HEAVY)))
    out = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True
    )
    assert "usage: barsalign" in out.stdout, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_top_level_help_lists_every_command_without_heavy_imports() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "barsalign", "--help"], capture_output=True, text=True, check=True
    )
    for name, command in COMMANDS.items():
        assert name in out.stdout
        assert command.help.split()[0] in out.stdout
    assert heavy_imports("--help") == []


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_help_without_heavy_imports(command: str) -> None:
    assert heavy_imports(command, "--help") == []


def _subcommand_helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.dest: a.help for a in sub._choices_actions}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_table_help_is_the_command_modules_own(command: str) -> None:
    """The line `--help` shows from the table is the one the command's module defines."""
    loaded = _subcommand_helps(build_parser(command))
    assert loaded[command] == COMMANDS[command].help
    assert set(loaded) == set(COMMANDS)


def test_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bogus"])
    assert exc.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


def test_command_flags_still_parse() -> None:
    """A command's own flags reach its function (the lazily built parser is the real one)."""
    args = build_parser("predict").parse_args(["predict", "--model", "m.onnx", "--source", "d"])
    assert args.func.__module__ == "barsalign.evaluation.predict"
    assert str(args.source) == "d" and args.threshold is None
